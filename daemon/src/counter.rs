//! An event counter shared between threads, read for `status`.
//!
//! 32-bit MIPS and PowerPC have no 64-bit atomics (`target_has_atomic =
//! "64"` is false there and std has no `AtomicU64`), so on those targets the
//! count sits under a mutex; everywhere else it is a relaxed `AtomicU64`.
//! Either way a counter counts to 2^64, never wrapping at 2^32.

#[cfg(target_has_atomic = "64")]
#[derive(Debug, Default)]
pub struct Counter(std::sync::atomic::AtomicU64);

#[cfg(not(target_has_atomic = "64"))]
#[derive(Debug, Default)]
pub struct Counter(std::sync::Mutex<u64>);

impl Counter {
    /// Adds one and returns the new count.
    #[cfg(target_has_atomic = "64")]
    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// Adds one and returns the new count.
    #[cfg(not(target_has_atomic = "64"))]
    pub fn bump(&self) -> u64 {
        let mut n = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    #[cfg(target_has_atomic = "64")]
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(not(target_has_atomic = "64"))]
    pub fn get(&self) -> u64 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn counts_from_zero() {
        let c = Counter::default();
        assert_eq!(c.get(), 0);
        assert_eq!(c.bump(), 1);
        assert_eq!(c.bump(), 2);
        assert_eq!(c.get(), 2);
    }
}
