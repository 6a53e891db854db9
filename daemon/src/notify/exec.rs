//! The exec notifier's adapter: runs `[notify] exec` once per alert, the
//! alert's JSON on stdin, on tokio tasks so that the event loop never waits
//! for a script. What may run and what is dropped is `queue::Slots`' call.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::queue::{Counters, Outcome, Slots, MAX_QUEUED, MAX_RUNNING};

#[derive(Debug)]
pub struct Job {
    pub program: PathBuf,
    pub timeout: Duration,
    /// One line of JSON.
    pub json: String,
    /// Also given as environment variables, so that a shell script needs
    /// no JSON parser for the common case.
    pub env: Vec<(&'static str, String)>,
}

#[derive(Clone)]
pub struct ExecRunner {
    slots: Arc<Mutex<Slots<Job>>>,
}

impl Default for ExecRunner {
    fn default() -> Self {
        ExecRunner { slots: Arc::new(Mutex::new(Slots::new(MAX_RUNNING, MAX_QUEUED))) }
    }
}

impl ExecRunner {
    /// Queues one run and starts what the free slots allow; never waits.
    pub fn submit(&self, job: Job) {
        if let Some(lost) = self.lock().push(job) {
            let dropped = self.lock().counters.dropped;
            if dropped.is_power_of_two() {
                tracing::warn!(program = %lost.program.display(), dropped, "notify exec queue full; dropped the oldest alert");
            }
        }
        self.pump();
    }

    pub fn counters(&self) -> (Counters, usize, usize) {
        let s = self.lock();
        (s.counters, s.running(), s.queued())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<Job>> {
        // A panic cannot happen while the lock is held (no I/O under it);
        // if it did, the counters are still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pump(&self) {
        loop {
            let Some(job) = self.lock().start() else { return };
            let me = self.clone();
            tokio::spawn(async move {
                let program = job.program.clone();
                let outcome = run(job).await;
                let (log, failed) = {
                    let mut s = me.lock();
                    (s.done(&outcome), s.counters.failed)
                };
                if log {
                    tracing::warn!(program = %program.display(), failed, outcome = ?outcome, "notify exec failed");
                }
                me.pump();
            });
        }
    }
}

async fn run(job: Job) -> Outcome {
    let mut cmd = Command::new(&job.program);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .envs(job.env.iter().map(|(k, v)| (*k, v.as_str())))
        // Its own process group: a timeout kills the script's children too
        // (a `curl` it started), not just the shell.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Spawn(e.to_string()),
    };
    let pid = child.id();
    let work = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its stdin closes the pipe: fine.
            let _ = stdin.write_all(job.json.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait().await
    };
    match tokio::time::timeout(job.timeout, work).await {
        Ok(Ok(status)) if status.success() => Outcome::Ok,
        Ok(Ok(status)) => Outcome::Exit(status.to_string()),
        Ok(Err(e)) => Outcome::Exit(format!("waiting for it failed: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on the process group we created; no memory involved.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            // Reaped by tokio after kill_on_drop: no zombie stays.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Outcome::Timeout
        }
    }
}
