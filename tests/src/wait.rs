//! Waiting without fixed sleeps: every wait in the lab polls a condition
//! until a deadline, so a fast machine runs fast and a slow one still passes.

use std::time::{Duration, Instant};

/// How often conditions are re-checked: short enough that a test never waits
/// much longer than the kernel needs, long enough not to burn a CPU.
pub const POLL: Duration = Duration::from_millis(25);

/// Polls `cond` until it holds or `deadline` has passed; returns whether it
/// held. The building block of the panicking waits below and in `Lab`.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds; panics with `what` on timeout. `Lab::wait_until`
/// adds the daemon log and the syslog lines to the panic message.
pub fn wait_until(deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll_until(deadline, cond) {
        panic!("timed out after {deadline:?} waiting for: {what}");
    }
}

/// Checks that `cond` keeps holding for the whole `window` (a negative
/// assertion such as "no more bytes arrive" needs an observation window;
/// it is not a sleep used to synchronise). Returns false at the first miss.
pub fn holds_for(window: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + window;
    loop {
        if !cond() {
            return false;
        }
        if Instant::now() >= end {
            return true;
        }
        std::thread::sleep(POLL);
    }
}
