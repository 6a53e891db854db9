//! Adapter: accepts control connections, checks that the peer is root, and
//! hands each request to the daemon loop, which owns all state.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{decode_request, Request, Response, MAX_REQUEST};

/// A request on its way to the daemon loop, with where to send the answer.
pub type Job = (Request, oneshot::Sender<Response>);

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CLIENTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind control socket {path}: {source}")]
    Bind { path: PathBuf, #[source] source: std::io::Error },
    #[error("control socket {path} is in use by a running leash")]
    InUse { path: PathBuf },
}

/// Binds the socket with mode 0600. A stale socket from a killed daemon is
/// replaced; a live one is an error (two daemons must not fight).
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse { path: path.into() });
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // umask makes the socket 0600 from birth: no window where others may connect.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.map_err(|source| ServerError::Bind { path: path.into(), source })?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(l)
}

/// Accepts connections until the listener fails; each client in its own task.
pub async fn serve(listener: UnixListener, jobs: mpsc::Sender<Job>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(max = MAX_CLIENTS, "too many control clients, refusing one");
            continue;
        };
        let jobs = jobs.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            if tokio::time::timeout(CLIENT_TIMEOUT, client(stream, jobs)).await.is_err() {
                tracing::warn!("control client timed out");
            }
        });
    }
}

async fn client(mut stream: UnixStream, jobs: mpsc::Sender<Job>) {
    let uid = stream.peer_cred().map(|c| c.uid());
    let (rd, mut wr) = stream.split();
    let mut lines = BufReader::new(rd.take(MAX_REQUEST as u64 + 1));
    let mut line = Vec::new();
    // Read the request even from a peer about to be refused, so that the
    // refusal is not lost to a reset.
    if lines.read_until(b'\n', &mut line).await.is_err() {
        return;
    }
    if uid.as_ref().ok() != Some(&0) {
        tracing::warn!(uid = ?uid.ok(), "control connection from a non-root peer refused");
        let _ = wr.write_all(&Response::err("permission denied: leash's control socket is for root").encode()).await;
        return;
    }
    let response = match decode_request(line.trim_ascii()) {
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            if jobs.send((req, tx)).await.is_err() {
                Response::err("daemon is stopping")
            } else {
                rx.await.unwrap_or_else(|_| Response::err("daemon dropped the request"))
            }
        }
        Err(e) => Response::err(e),
    };
    let _ = wr.write_all(&response.encode()).await;
}

