//! Network namespaces: creating and deleting them, running commands in them,
//! and running Rust code in them from a dedicated thread (`setns` changes
//! only the calling thread's namespace, so the test thread never moves).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// Runs a command; panics with its output when it fails (lab setup must not
/// half-succeed silently).
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if !out.status.success() {
        panic!("{args:?} failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// Runs a command and returns its output whatever the exit status.
pub fn try_sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop after
/// every process still inside it has been killed.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> Netns {
        assert!(name.len() <= 15, "namespace name {name:?} too long");
        sh(&["ip", "netns", "add", name]);
        register(name);
        let ns = Netns { name: name.to_string() };
        // Addresses are usable at once: no duplicate address detection (the
        // lab's addresses are unique by construction), loopback up.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// `ip netns exec <ns> ...`, panicking on failure.
    pub fn exec(&self, args: &[&str]) -> Output {
        sh(&self.exec_args(args).iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `ip netns exec <ns> ...`, any exit status.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        try_sh(&self.exec_args(args).iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn exec_args(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ["ip", "netns", "exec", &self.name].iter().map(|s| s.to_string()).collect();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs `f` in this namespace on a fresh thread and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }

    /// Pids of the processes inside (a daemon's children, helpers).
    pub fn pids(&self) -> Vec<i32> {
        let out = try_sh(&["ip", "netns", "pids", &self.name]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes inside this lab's own namespace: they were started by
        // this lab (the daemon, its nft children) and would keep it alive.
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let out = try_sh(&["ip", "netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!("lab: cannot delete namespace {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// Appends the name to `$LEASH_LAB_REGISTRY` when set: `scripts/test.sh`
/// deletes what is listed there on exit, so a test process killed outright
/// (no Drop) leaves nothing behind, and other runs' namespaces are never touched.
fn register(name: &str) {
    if let Some(path) = std::env::var_os("LEASH_LAB_REGISTRY") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{name}");
        }
    }
}

/// Runs `f` on a new thread that first joins namespace `name`. Sockets made
/// there stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    let handle = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&fd, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .expect("spawn netns thread");
    match handle.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Opens a TCP connection from namespace `ns`.
pub fn tcp_connect(ns: &str, addr: IpAddr, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    in_netns(ns, move || {
        let s = TcpStream::connect_timeout(&SocketAddr::new(addr, port), timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(s)
    })
}

/// Sends one UDP datagram from namespace `ns`.
pub fn udp_send(ns: &str, addr: IpAddr, port: u16, payload: &[u8]) -> std::io::Result<()> {
    let payload = payload.to_vec();
    in_netns(ns, move || {
        let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let s = UdpSocket::bind(bind)?;
        s.send_to(&payload, SocketAddr::new(addr, port)).map(|_| ())
    })
}

/// A TCP server in a namespace, bound to `[::]:port` (IPv4 and IPv6): it
/// echoes what it receives and counts the bytes per peer address, so a test
/// can tell whether a device's bytes still arrive. Stopped on drop.
pub struct TcpServer {
    pub port: u16,
    bytes: Arc<Mutex<HashMap<IpAddr, u64>>>,
    accepted: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(ns: &str, port: u16) -> TcpServer {
        let listener = in_netns(ns, move || TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)))
            .unwrap_or_else(|e| panic!("bind [::]:{port} in {ns}: {e}"));
        // Non-blocking accept so that the thread notices `stop`.
        listener.set_nonblocking(true).expect("nonblocking listener");
        let bytes = Arc::new(Mutex::new(HashMap::new()));
        let accepted = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, a, s) = (bytes.clone(), accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        *a.lock().unwrap() += 1;
                        let (b, s) = (b.clone(), s.clone());
                        conns.push(std::thread::spawn(move || serve(stream, unmap(peer.ip()), b, s)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TcpServer { port, bytes, accepted, stop, thread: Some(thread) }
    }

    /// Bytes received so far from `peer`.
    pub fn bytes_from(&self, peer: IpAddr) -> u64 {
        self.bytes.lock().unwrap().get(&peer).copied().unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.lock().unwrap()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, peer: IpAddr, bytes: Arc<Mutex<HashMap<IpAddr, u64>>>, stop: Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    // Echoes may stall for good (the peer is blocked or quarantined, its
    // close never arrives): a write timeout lets the thread notice `stop`.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                *bytes.lock().unwrap().entry(peer).or_default() += n as u64;
                let mut off = 0;
                while off < n {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match stream.write(&buf[off..n]) {
                        Ok(k) => off += k,
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `::ffff:a.b.c.d` (IPv4 on a dual-stack listener) as `a.b.c.d`.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A UDP sink in a namespace, bound to `[::]:port` (IPv4 and IPv6): counts
/// the datagrams per peer address and payload, so a test can tell which of
/// a device's first datagrams got out (each payload names its target).
/// Stopped on drop.
/// Datagrams per (sender, payload).
type Seen = Arc<Mutex<HashMap<(IpAddr, Vec<u8>), u64>>>;

pub struct UdpCounter {
    pub port: u16,
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpCounter {
    pub fn start(ns: &str, port: u16) -> UdpCounter {
        let sock = in_netns(ns, move || UdpSocket::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)))
            .unwrap_or_else(|e| panic!("bind udp [::]:{port} in {ns}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    *c.lock().unwrap().entry((unmap(peer.ip()), buf[..n].to_vec())).or_default() += 1;
                }
            }
        });
        UdpCounter { port, seen, stop, thread: Some(thread) }
    }

    /// Datagrams received so far from `peer`, whatever their payload.
    pub fn from(&self, peer: IpAddr) -> u64 {
        self.seen.lock().unwrap().iter().filter(|((p, _), _)| *p == peer).map(|(_, n)| n).sum()
    }

    /// Datagrams received so far from `peer` whose payload satisfies `pred`.
    pub fn matching(&self, peer: IpAddr, pred: impl Fn(&[u8]) -> bool) -> u64 {
        self.seen.lock().unwrap().iter().filter(|((p, b), _)| *p == peer && pred(b)).map(|(_, n)| n).sum()
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
