//! The exec notifier's decisions (pure): a bounded queue that drops its
//! oldest job when full, a cap on programs running at once, and the
//! counters and log decisions for what ended.

use std::collections::VecDeque;

/// Programs running at once, at most: a router has little RAM and a burst
/// of alerts (a quarantine of a busy device) must not fork dozens.
pub const MAX_RUNNING: usize = 4;
/// Jobs waiting for a slot; beyond this the oldest is dropped (counted):
/// the newest alerts say most about what is happening now.
pub const MAX_QUEUED: usize = 64;

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with status 0.
    Ok,
    /// Exited non-zero, or killed by a signal it was not sent by leash.
    Exit(String),
    /// Could not be started (missing, not executable).
    Spawn(String),
    /// Still running at the timeout: killed.
    Timeout,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Runs that exited 0.
    pub sent: u64,
    /// Runs that failed (non-zero exit, spawn error, timeout).
    pub failed: u64,
    /// Of `failed`, those killed at the timeout.
    pub timeouts: u64,
    /// Jobs dropped from a full queue, unrun.
    pub dropped: u64,
}

#[derive(Debug)]
pub struct Slots<J> {
    queue: VecDeque<J>,
    running: usize,
    max_running: usize,
    max_queued: usize,
    pub counters: Counters,
}

impl<J> Slots<J> {
    pub fn new(max_running: usize, max_queued: usize) -> Slots<J> {
        Slots { queue: VecDeque::new(), running: 0, max_running: max_running.max(1), max_queued, counters: Counters::default() }
    }

    /// Queues a job; a full queue loses its oldest (returned, counted).
    pub fn push(&mut self, job: J) -> Option<J> {
        if self.max_queued == 0 {
            self.counters.dropped += 1;
            return None;
        }
        let lost = if self.queue.len() >= self.max_queued {
            self.counters.dropped += 1;
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.push_back(job);
        lost
    }

    /// The next job to start, if a slot is free; the slot is then taken.
    pub fn start(&mut self) -> Option<J> {
        if self.running >= self.max_running {
            return None;
        }
        let job = self.queue.pop_front()?;
        self.running += 1;
        Some(job)
    }

    /// A run ended: frees its slot and counts it. Returns whether to log a
    /// failure: the first and then at powers of two, so a broken script
    /// under a burst of alerts writes a handful of lines, not one per alert.
    pub fn done(&mut self, outcome: &Outcome) -> bool {
        self.running = self.running.saturating_sub(1);
        match outcome {
            Outcome::Ok => {
                self.counters.sent += 1;
                false
            }
            other => {
                self.counters.failed += 1;
                if *other == Outcome::Timeout {
                    self.counters.timeouts += 1;
                }
                self.counters.failed.is_power_of_two()
            }
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_running_start() {
        let mut s = Slots::new(2, 10);
        for i in 0..5 {
            assert_eq!(s.push(i), None);
        }
        assert_eq!(s.start(), Some(0));
        assert_eq!(s.start(), Some(1));
        assert_eq!(s.start(), None, "both slots taken");
        assert_eq!((s.running(), s.queued()), (2, 3));
        assert!(!s.done(&Outcome::Ok));
        assert_eq!(s.start(), Some(2));
        assert_eq!(s.start(), None);
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let mut s = Slots::new(1, 3);
        for i in 0..3 {
            s.push(i);
        }
        assert_eq!(s.push(3), Some(0));
        assert_eq!(s.push(4), Some(1));
        assert_eq!(s.counters.dropped, 2);
        assert_eq!(s.queued(), 3);
        assert_eq!(s.start(), Some(2), "the newest three remain, oldest first");
        let mut none: Slots<u8> = Slots::new(1, 0);
        assert_eq!(none.push(1), None);
        assert_eq!((none.counters.dropped, none.queued()), (1, 0));
    }

    #[test]
    fn failures_counted_and_logged_at_powers_of_two() {
        let mut s = Slots::new(4, 64);
        let mut logged = Vec::new();
        for i in 1..=9u64 {
            s.push(());
            s.start();
            let o = if i == 3 { Outcome::Timeout } else { Outcome::Exit("status 1".into()) };
            if s.done(&o) {
                logged.push(i);
            }
        }
        assert_eq!(logged, [1, 2, 4, 8]);
        assert_eq!(s.counters, Counters { sent: 0, failed: 9, timeouts: 1, dropped: 0 });
        assert_eq!(s.running(), 0);
        // A done() without a start never underflows.
        s.done(&Outcome::Ok);
        assert_eq!((s.running(), s.counters.sent), (0, 1));
    }
}
