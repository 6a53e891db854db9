//! Adapter: sends leash's table to the kernel. The whole table goes through
//! `nft -f` (one atomic transaction, on every fw4 image); element updates,
//! the hot path, go over netlink in-process (`crate::codec`).

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected the {what}: {stderr}")]
    Rejected { what: &'static str, stderr: String },
}

/// Runs `nft -f -` on `script`; returns the pid of the nft that committed
/// it (its NEWGEN notification names that pid, so the table watch can tell
/// our own transaction from others').
pub fn run_script(what: &'static str, script: &str) -> Result<u32, NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(pid)
    } else {
        Err(NftError::Rejected { what, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Removes the table (clean stop); a table already gone is fine.
pub fn delete_table(table: &str) -> Result<(), NftError> {
    run_script("table removal", &format!("table inet {table} {{}}\ndelete table inet {table}\n")).map(drop)
}
