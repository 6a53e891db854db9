//! Adapter: the CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response};

pub const DEFAULT_SOCKET: &str = "/var/run/leash.sock";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the leash daemon at {path} (is it running? --socket or LEASH_SOCKET name another): {source}")]
    Connect { path: PathBuf, #[source] source: std::io::Error },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("the daemon sent an unreadable answer: {0}")]
    Decode(#[source] serde_json::Error),
}

pub fn call(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io { path: path.into(), source };
    let mut s = UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.into(), source })?;
    s.set_read_timeout(Some(Duration::from_secs(15))).map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(ClientError::Decode)?;
    line.push(b'\n');
    // The daemon may answer and close before reading (a refusal): its
    // answer still waits to be read, so a failed write is reported only
    // when there is no answer.
    let sent = s.write_all(&line);
    let mut answer = Vec::new();
    let read = BufReader::new(s).read_until(b'\n', &mut answer);
    if answer.is_empty() {
        sent.map_err(io)?;
        read.map_err(io)?;
    }
    serde_json::from_slice(&answer).map_err(ClientError::Decode)
}
