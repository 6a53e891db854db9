//! Adapter: sends alert lines to the syslog datagram socket (`/dev/log`),
//! facility daemon, ident `leash`, in the RFC 3164 form logd and rsyslog read.
//!
//! A burst of alerts outruns the syslog daemon (a unix datagram socket
//! takes only `net.unix.max_dgram_qlen` datagrams, 10 by default, before
//! EAGAIN), and logd may be restarting. Lines therefore wait in a bounded
//! `Queue` (pure: policy only) and are sent in order when the socket takes
//! them again: the daemon loop waits for `writable()` and calls `flush()`,
//! and its 1 s tick calls `flush()` too, which reconnects. What a full
//! queue still loses is counted and reported in one err line (SPEC §5).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::Interest;

use crate::alert::Severity;

const FACILITY_DAEMON: u8 = 3;

/// Lines waiting at most: ten times the 300-line bursts measured under a
/// flood of denied names, yet bounded for a router with 64 MB of RAM.
pub const MAX_LINES: usize = 4096;
/// Bytes waiting at most (alert lines are 150–400 bytes): 512 KiB is the
/// worst case the queue adds to the daemon's ≈ 3.5 MB when syslog is gone.
pub const MAX_BYTES: usize = 512 * 1024;

/// The lines waiting for the syslog socket, oldest first. When full, a new
/// line is dropped (what is queued keeps its order) and counted; once the
/// queue has drained to half of both caps, `take_report` says how many
/// were lost since the last report, so one err line covers a whole run of
/// losses instead of one per freed slot.
#[derive(Debug)]
pub struct Queue {
    lines: VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    dropped: u64,
    unreported: u64,
}

impl Queue {
    pub fn new(max_lines: usize, max_bytes: usize) -> Queue {
        Queue { lines: VecDeque::new(), bytes: 0, max_lines, max_bytes, dropped: 0, unreported: 0 }
    }

    /// Appends `line`; false when it did not fit and was dropped (counted).
    pub fn push(&mut self, line: String) -> bool {
        if self.lines.len() >= self.max_lines || self.bytes + line.len() > self.max_bytes {
            self.lose();
            return false;
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        true
    }

    pub fn front(&self) -> Option<&str> {
        self.lines.front().map(String::as_str)
    }

    /// Removes the oldest line: it was delivered.
    pub fn pop_front(&mut self) -> Option<String> {
        let line = self.lines.pop_front()?;
        self.bytes -= line.len();
        Some(line)
    }

    /// Removes the oldest line as lost for good (the socket refuses it).
    pub fn discard_front(&mut self) {
        if self.pop_front().is_some() {
            self.lose();
        }
    }

    fn lose(&mut self) {
        self.dropped += 1;
        self.unreported += 1;
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Lines lost for good since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lost since the last report, if any; only once the queue is at most
    /// half full (by lines and by bytes), so that the report line fits.
    pub fn take_report(&mut self) -> Option<u64> {
        let room = self.lines.len() <= self.max_lines / 2 && self.bytes <= self.max_bytes / 2;
        if self.unreported == 0 || !room {
            return None;
        }
        Some(std::mem::take(&mut self.unreported))
    }
}

/// Why lines could not be sent; the report line names the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// EAGAIN/ENOBUFS: the syslog daemon reads slower than leash writes.
    Full,
    /// No socket at the path, nobody reading it, or another send error.
    Unreachable,
    /// EMSGSIZE: this line will never fit a datagram.
    TooLong,
}

impl Stall {
    /// What a failed send means for the line at the head of the queue.
    pub fn of(e: &io::Error) -> Stall {
        if e.kind() == io::ErrorKind::WouldBlock {
            return Stall::Full;
        }
        match e.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EINTR) => Stall::Full,
            Some(libc::EMSGSIZE) => Stall::TooLong,
            _ => Stall::Unreachable,
        }
    }
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stall::Full => "the syslog socket stayed full",
            Stall::Unreachable => "no syslog daemon took them",
            Stall::TooLong => "too long for a syslog datagram",
        })
    }
}

/// The err line's text for `n` lost lines.
pub fn dropped_message(n: u64, why: Stall) -> String {
    let lines = if n == 1 { "line" } else { "lines" };
    format!("{n} syslog {lines} dropped: {why}")
}

/// The datagram for one line; pure so that the format is unit-tested.
pub fn frame(severity: Severity, pid: u32, msg: &str, unix_secs: i64) -> String {
    let pri = FACILITY_DAEMON * 8 + severity as u8;
    format!("<{pri}>{} leash[{pid}]: {msg}", rfc3164_time(unix_secs))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub struct Syslog {
    path: PathBuf,
    pid: u32,
    /// Non-blocking, made once; a reconnect re-targets it with connect().
    sock: Option<UnixDatagram>,
    /// A duplicate of `sock`'s descriptor registered with tokio, made by
    /// the first `writable()`: only used to wait, never to send, so that
    /// sends are real syscalls even before the reactor has run.
    waiter: Option<tokio::net::UnixDatagram>,
    waiter_failed: bool,
    connected: bool,
    /// The last connect failed: new lines wait for the next `flush()`
    /// (the 1 s tick) instead of trying to connect once each.
    unreachable: bool,
    last_stall: Stall,
    queue: Queue,
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        Syslog::with_caps(path, MAX_LINES, MAX_BYTES)
    }

    pub fn with_caps(path: &Path, max_lines: usize, max_bytes: usize) -> Syslog {
        Syslog {
            path: path.to_path_buf(),
            pid: std::process::id(),
            sock: None,
            waiter: None,
            waiter_failed: false,
            connected: false,
            unreachable: false,
            last_stall: Stall::Full,
            queue: Queue::new(max_lines, max_bytes),
        }
    }

    /// Lines waiting for the socket now.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Lines lost for good (the queue was full, or a line the socket refuses).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Queues one line, stamped now, and sends what the socket takes.
    pub fn send(&mut self, severity: Severity, msg: &str) {
        let line = frame(severity, self.pid, msg, unix_now());
        if !self.queue.push(line) && self.queue.unreported == 1 {
            tracing::warn!(queued = self.queue.len(), why = %self.last_stall, path = %self.path.display(), "syslog queue full: alert lines are dropped until it drains");
        }
        // Also while blocked: the writable wake-up waits for the loop to pick
        // it, and a busy loop (a flood of denied answers, each a line) would
        // fill the queue meanwhile, where one non-blocking send a line keeps
        // pace with the reader. The kernel holds only 10 datagrams for
        // /dev/log by default (net.unix.max_dgram_qlen).
        if !self.unreachable {
            self.flush();
        }
    }

    /// Sends queued lines, oldest first, until the socket would block or
    /// the queue is empty; (re)connects at most once per call.
    pub fn flush(&mut self) {
        let mut tried_connect = false;
        loop {
            if let Some(n) = self.queue.take_report() {
                tracing::warn!(lines = n, why = %self.last_stall, "syslog lines were dropped; saying so on syslog");
                let line = frame(Severity::Err, self.pid, &dropped_message(n, self.last_stall), unix_now());
                // take_report only answers with the queue half empty.
                self.queue.push(line);
            }
            if self.queue.is_empty() {
                return;
            }
            if !self.connected {
                if tried_connect {
                    if !self.unreachable {
                        tracing::warn!(path = %self.path.display(), queued = self.queue.len(), "syslog socket refuses lines; they wait in the queue, retried every second");
                    }
                    self.unreachable = true;
                    return;
                }
                tried_connect = true;
                if let Err(e) = self.connect() {
                    if !self.unreachable {
                        tracing::warn!(path = %self.path.display(), error = %e, queued = self.queue.len(), "syslog socket unreachable; alert lines wait in the queue, retried every second");
                    }
                    self.unreachable = true;
                    self.last_stall = Stall::Unreachable;
                    return;
                }
                if self.unreachable {
                    tracing::info!(path = %self.path.display(), queued = self.queue.len(), "syslog socket reachable again");
                    self.unreachable = false;
                }
            }
            let (Some(sock), Some(line)) = (self.sock.as_ref(), self.queue.front()) else { return };
            match sock.send(line.as_bytes()) {
                Ok(_) => {
                    self.queue.pop_front();
                }
                Err(e) => match Stall::of(&e) {
                    Stall::Full => {
                        self.last_stall = Stall::Full;
                        return;
                    }
                    Stall::TooLong => {
                        tracing::warn!(bytes = line.len(), error = %e, "alert line too long for a syslog datagram; dropped");
                        self.last_stall = Stall::TooLong;
                        self.queue.discard_front();
                    }
                    // logd restarted (ECONNREFUSED) or its socket is gone:
                    // the loop reconnects once, the line stays queued.
                    Stall::Unreachable => {
                        tracing::debug!(path = %self.path.display(), error = %e, "syslog send failed; reconnecting");
                        self.connected = false;
                        self.last_stall = Stall::Unreachable;
                    }
                },
            }
        }
    }

    fn connect(&mut self) -> io::Result<()> {
        let sock = match self.sock.take() {
            Some(s) => s,
            None => {
                let s = UnixDatagram::unbound()?;
                s.set_nonblocking(true)?;
                s
            }
        };
        let connected = sock.connect(&self.path);
        self.sock = Some(sock);
        connected?;
        self.connected = true;
        Ok(())
    }

    /// Resolves when the socket may take a datagram again; never while
    /// there is no connection (`flush()` from the tick reconnects).
    /// Cancel-safe: it only waits.
    pub async fn writable(&mut self) {
        if !self.connected {
            return std::future::pending().await;
        }
        if self.waiter.is_none() && !self.waiter_failed {
            let made = match &self.sock {
                Some(s) => s.try_clone().and_then(tokio::net::UnixDatagram::from_std),
                None => Err(io::ErrorKind::NotConnected.into()),
            };
            match made {
                Ok(w) => self.waiter = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for the syslog socket; queued lines are retried every second");
                    self.waiter_failed = true;
                }
            }
        }
        let Some(w) = &self.waiter else { return std::future::pending().await };
        if w.writable().await.is_err() {
            return std::future::pending().await;
        }
        // Forget this readiness, so that the next wait ends at the kernel's
        // next wake-up (which follows the next EAGAIN), not at once.
        let _ = w.try_io(Interest::WRITABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
    }

    /// At a clean stop: sends what the socket takes within `within`.
    pub async fn drain(&mut self, within: Duration) {
        let end = tokio::time::Instant::now() + within;
        self.flush();
        while !self.queue.is_empty() && tokio::time::Instant::now() < end {
            // Writability ends the wait early; without a connection this
            // retries the connect every 50 ms.
            let step = end.min(tokio::time::Instant::now() + Duration::from_millis(50));
            let _ = tokio::time::timeout_at(step, self.writable()).await;
            self.flush();
        }
        if !self.queue.is_empty() {
            tracing::warn!(lines = self.queue.len(), why = %self.last_stall, "syslog lines still queued at exit are lost");
        }
    }
}

/// `Mmm dd hh:mm:ss` in UTC (routers keep their clock in UTC; logd adds the
/// zone when it prints).
fn rfc3164_time(unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (_, month, day) = civil_from_days(days);
    format!("{} {:>2} {:02}:{:02}:{:02}", MONTHS[(month - 1) as usize], day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}


#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test's socket path.
    fn sock_path(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leash-syslog-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("log")
    }

    fn msg(line: &str) -> &str {
        line.split_once("]: ").map(|(_, m)| m).unwrap_or(line)
    }

    /// Reads every datagram, flushing `s` whenever the socket is drained,
    /// until nothing is queued any more.
    fn read_all(rx: &UnixDatagram, s: &mut Syslog) -> Vec<String> {
        rx.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read_since_flush = true;
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    read_since_flush = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if s.pending() == 0 {
                        return got;
                    }
                    assert!(read_since_flush, "flush sent nothing to a drained socket ({} queued)", s.pending());
                    read_since_flush = false;
                    s.flush();
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    #[test]
    fn frames_like_logd_expects() {
        // 2026-11-22 21:14:03 UTC
        let t = 1_795_382_043;
        assert_eq!(frame(Severity::Warning, 1834, "QUARANTINE device=x", t), "<28>Nov 22 21:14:03 leash[1834]: QUARANTINE device=x");
        assert_eq!(frame(Severity::Info, 1, "m", 0), "<30>Jan  1 00:00:00 leash[1]: m");
        assert!(frame(Severity::Notice, 1, "m", 0).starts_with("<29>"));
        assert!(frame(Severity::Err, 1, "m", 0).starts_with("<27>"));
    }

    #[test]
    fn queue_keeps_order() {
        let mut q = Queue::new(8, 1024);
        for l in ["a", "b", "c"] {
            assert!(q.push(l.into()));
        }
        assert_eq!(q.front(), Some("a"));
        let out: Vec<String> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(out, ["a", "b", "c"]);
        assert!(q.is_empty());
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn full_queue_drops_new_lines_and_counts_them() {
        let mut q = Queue::new(3, 1024);
        let pushed: Vec<bool> = (0..5).map(|i| q.push(format!("l{i}"))).collect();
        assert_eq!(pushed, [true, true, true, false, false]);
        assert_eq!((q.len(), q.dropped()), (3, 2));
        assert_eq!(q.front(), Some("l0"), "what is queued keeps its place");

        // The byte cap too: 4 + 4 fit in 10, a third line does not.
        let mut q = Queue::new(100, 10);
        assert!(q.push("abcd".into()) && q.push("efgh".into()));
        assert!(!q.push("ijkl".into()));
        assert!(q.push("mn".into()), "a line that fits the bytes left is kept");
        assert_eq!((q.len(), q.dropped()), (3, 1));
        q.pop_front();
        assert!(q.push("opqr".into()), "popping frees its bytes");

        q.discard_front();
        assert_eq!(q.dropped(), 2, "a line the socket refuses counts as lost");
    }

    #[test]
    fn drops_are_reported_once_after_the_queue_drains() {
        let mut q = Queue::new(4, 1024);
        for i in 0..7 {
            q.push(format!("l{i}"));
        }
        assert_eq!(q.dropped(), 3);
        assert_eq!(q.take_report(), None, "full: no room for the report yet");
        q.pop_front();
        assert_eq!(q.take_report(), None, "3 of 4: still more than half full");
        q.pop_front();
        assert_eq!(q.take_report(), Some(3));
        assert_eq!(q.take_report(), None, "reported once");
        q.pop_front();
        assert_eq!(q.take_report(), None);
        // A new run of losses gets its own report.
        for i in 0..5 {
            q.push(format!("m{i}"));
        }
        while q.len() > 2 {
            q.pop_front();
        }
        assert_eq!(q.take_report(), Some(2));
        assert_eq!(q.dropped(), 5, "dropped counts every loss, reported or not");
        assert_eq!(dropped_message(37, Stall::Full), "37 syslog lines dropped: the syslog socket stayed full");
        assert_eq!(dropped_message(1, Stall::Unreachable), "1 syslog line dropped: no syslog daemon took them");
    }

    #[test]
    fn send_errors_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(Stall::of(&os(libc::EAGAIN)), Stall::Full);
        assert_eq!(Stall::of(&os(libc::ENOBUFS)), Stall::Full);
        assert_eq!(Stall::of(&os(libc::EMSGSIZE)), Stall::TooLong);
        for e in [libc::ECONNREFUSED, libc::ENOENT, libc::ENOTCONN, libc::EPERM] {
            assert_eq!(Stall::of(&os(e)), Stall::Unreachable, "errno {e}");
        }
    }

    #[test]
    fn delivers_to_a_socket() {
        let path = sock_path("deliver");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        s.send(Severity::Notice, "ALERT device=aa:bb:cc:dd:ee:ff");
        assert_eq!(s.pending(), 0, "sent at once");
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<29>") && got.ends_with("ALERT device=aa:bb:cc:dd:ee:ff"), "{got}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// More lines than an unread socket holds (`net.unix.max_dgram_qlen`
    /// datagrams, or the sender's buffer): the rest wait, none is lost.
    #[test]
    fn a_full_socket_keeps_lines_until_read() {
        let path = sock_path("full");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        let sent: Vec<String> = (0..1000).map(|i| format!("BLOCK n={i}")).collect();
        for m in &sent {
            s.send(Severity::Warning, m);
        }
        assert!(s.pending() > 0, "the unread socket must have filled up");
        assert_eq!(s.dropped(), 0);
        let got = read_all(&rx, &mut s);
        assert_eq!(got.iter().map(|l| msg(l)).collect::<Vec<_>>(), sent, "every line once, in order");
        assert_eq!((s.pending(), s.dropped()), (0, 0));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// Once the reader has made room, the next line sent takes the queued ones
    /// out with it, without waiting for a writable wake-up (`flush`), which a
    /// busy event loop may give late.
    #[test]
    fn a_send_after_the_reader_made_room_delivers_the_queue() {
        let path = sock_path("room");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut s = Syslog::new(&path);
        let mut n = 0;
        while s.pending() == 0 {
            s.send(Severity::Warning, &format!("BLOCK n={n}"));
            n += 1;
        }
        let mut buf = [0u8; 512];
        let mut got = 0;
        while rx.recv(&mut buf).is_ok() {
            got += 1;
        }
        s.send(Severity::Warning, &format!("BLOCK n={n}"));
        while rx.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!((got, s.pending(), s.dropped()), (n + 1, 0, 0), "every line out, no flush called");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_full_queue_reports_its_losses_once() {
        let path = sock_path("report");
        // No syslog daemon yet: everything queues, the rest is dropped.
        let mut s = Syslog::with_caps(&path, 8, MAX_BYTES);
        for i in 0..20 {
            s.send(Severity::Warning, &format!("BLOCK n={i}"));
        }
        assert_eq!((s.pending(), s.dropped()), (8, 12));
        let rx = UnixDatagram::bind(&path).unwrap();
        let got = read_all(&rx, &mut s);
        let msgs: Vec<&str> = got.iter().map(|l| msg(l)).collect();
        let mut want: Vec<String> = (0..8).map(|i| format!("BLOCK n={i}")).collect();
        want.push("12 syslog lines dropped: no syslog daemon took them".into());
        assert_eq!(msgs, want);
        assert!(got[8].starts_with("<27>"), "the report is an err line, facility daemon: {}", got[8]);

        s.send(Severity::Warning, "BLOCK n=20");
        assert_eq!(read_all(&rx, &mut s).iter().map(|l| msg(l)).collect::<Vec<_>>(), ["BLOCK n=20"], "no second report");
        assert_eq!(s.dropped(), 12);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_full_socket_then_a_full_queue_is_reported_as_such() {
        let path = sock_path("fullq");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::with_caps(&path, 8, MAX_BYTES);
        let total = 2000;
        for i in 0..total {
            s.send(Severity::Warning, &format!("BLOCK n={i}"));
        }
        let dropped = s.dropped();
        assert!(dropped > 0, "an unread socket and an 8-line queue cannot take {total} lines");
        let got = read_all(&rx, &mut s);
        let kept = total - dropped as usize;
        let want: Vec<String> = (0..kept).map(|i| format!("BLOCK n={i}")).chain([dropped_message(dropped, Stall::Full)]).collect();
        assert_eq!(got.iter().map(|l| msg(l)).collect::<Vec<_>>(), want, "the oldest lines kept, in order, then one report");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// logd restarted: its old socket is gone, a new one is bound at the
    /// same path; lines sent in between wait and then reach the new one.
    #[test]
    fn reconnects_after_the_syslog_daemon_restarts() {
        let path = sock_path("restart");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        s.send(Severity::Info, "one");
        assert_eq!(read_all(&rx, &mut s).iter().map(|l| msg(l)).collect::<Vec<_>>(), ["one"]);
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        s.send(Severity::Info, "two");
        s.send(Severity::Info, "three");
        assert_eq!((s.pending(), s.dropped()), (2, 0), "lines wait while there is no syslog daemon");
        s.flush();
        assert_eq!(s.pending(), 2, "still none");
        let rx = UnixDatagram::bind(&path).unwrap();
        s.flush();
        assert_eq!(read_all(&rx, &mut s).iter().map(|l| msg(l)).collect::<Vec<_>>(), ["two", "three"]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// The event loop's path: wait for writability, flush, repeat; a slow
    /// reader on another thread gets every line without polling.
    #[tokio::test]
    async fn writable_wakes_when_the_reader_catches_up() {
        let path = sock_path("writable");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        let n = 300;
        for i in 0..n {
            s.send(Severity::Warning, &format!("BLOCK n={i}"));
        }
        assert!(s.pending() > 0);
        // Full: no wake-up until the reader frees room, and one wake-up is
        // consumed (else the loop would spin on a socket that stays full).
        let idle = Duration::from_millis(100);
        assert!(tokio::time::timeout(idle, s.writable()).await.is_err(), "writable while the socket is full");
        let mut buf = [0u8; 512];
        let len0 = rx.recv(&mut buf).unwrap();
        let first = msg(&String::from_utf8_lossy(&buf[..len0])).to_string();
        tokio::time::timeout(Duration::from_secs(5), s.writable()).await.expect("woken when the reader frees room");
        let before = s.pending();
        s.flush();
        assert_eq!(s.pending(), before - 1, "one slot freed, one line sent");
        assert!(tokio::time::timeout(idle, s.writable()).await.is_err(), "the wake-up was consumed");
        let reader = std::thread::spawn(move || {
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 512];
            let mut got = vec![first];
            while got.len() < n {
                let Ok(len) = rx.recv(&mut buf) else { break };
                got.push(msg(&String::from_utf8_lossy(&buf[..len])).to_string());
            }
            got
        });
        while s.pending() > 0 {
            tokio::time::timeout(Duration::from_secs(5), s.writable()).await.expect("woken when the reader frees room");
            s.flush();
        }
        let got = reader.join().unwrap();
        assert_eq!(got, (0..n).map(|i| format!("BLOCK n={i}")).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A clean stop: what the socket takes within the bound goes out; a
    /// missing syslog daemon costs the bound, not more.
    #[tokio::test]
    async fn drain_sends_what_it_can_within_its_bound() {
        let path = sock_path("drain");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        let n = 300;
        for i in 0..n {
            s.send(Severity::Warning, &format!("BLOCK n={i}"));
        }
        assert!(s.pending() > 0);
        let reader = std::thread::spawn(move || {
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 512];
            (0..n).filter_map(|_| rx.recv(&mut buf).ok()).count()
        });
        s.drain(Duration::from_secs(5)).await;
        assert_eq!(s.pending(), 0);
        assert_eq!(reader.join().unwrap(), n);

        std::fs::remove_file(&path).unwrap();
        s.send(Severity::Info, "nobody reads this");
        let start = std::time::Instant::now();
        s.drain(Duration::from_millis(200)).await;
        assert!(start.elapsed() < Duration::from_secs(1), "drain took {:?}", start.elapsed());
        assert_eq!((s.pending(), s.dropped()), (1, 0));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
