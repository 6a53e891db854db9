//! A static HTTP server in a namespace (Python's `http.server`), for lists
//! that leash subscribes to by URL: the files of one directory, 404 for
//! the rest. Stopped on drop.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::netns::tcp_connect;
use crate::wait;

pub struct HttpServer {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Serves `dir` on `addr` (which must be an address of namespace `ns`),
    /// ready when this returns.
    pub fn start(ns: &str, addr: SocketAddr, dir: &Path) -> HttpServer {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-m", "http.server", "--bind"])
            .arg(addr.ip().to_string())
            .arg("--directory")
            .arg(dir)
            .arg(addr.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 -m http.server (apt-get install python3)");
        let mut s = HttpServer { child: Some(child), addr };
        let up = wait::poll_until(Duration::from_secs(10), || tcp_connect(ns, addr.ip(), addr.port(), Duration::from_millis(200)).is_ok());
        if !up {
            s.stop();
            panic!("http.server did not listen on {addr} in {ns}");
        }
        s
    }

    /// `http://ADDR:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        match self.addr.ip() {
            IpAddr::V4(a) => format!("http://{a}:{}/{path}", self.addr.port()),
            IpAddr::V6(a) => format!("http://[{a}]:{}/{path}", self.addr.port()),
        }
    }

    /// Kills the server and waits for it (a stopped server refuses).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
