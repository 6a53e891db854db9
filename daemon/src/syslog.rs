//! Adapter: sends alert lines to the syslog datagram socket (`/dev/log`),
//! facility daemon, ident `leash`, in the RFC 3164 form logd and rsyslog read.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::alert::Severity;

const FACILITY_DAEMON: u8 = 3;

pub struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
    pid: u32,
    /// Lines that could not be delivered (no syslog daemon, full buffer).
    pub dropped: u64,
}

/// The datagram for one line; pure so that the format is unit-tested.
pub fn frame(severity: Severity, pid: u32, msg: &str, unix_secs: i64) -> String {
    let pri = FACILITY_DAEMON * 8 + severity as u8;
    format!("<{pri}>{} leash[{pid}]: {msg}", rfc3164_time(unix_secs))
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        Syslog { path: path.to_path_buf(), sock: None, pid: std::process::id(), dropped: 0 }
    }

    pub fn send(&mut self, severity: Severity, msg: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let line = frame(severity, self.pid, msg, now);
        // A restarted syslog daemon makes a new socket: reconnect once.
        for _ in 0..2 {
            match self.connected().and_then(|s| s.send(line.as_bytes())) {
                Ok(_) => return,
                Err(_) => self.sock = None,
            }
        }
        self.dropped += 1;
    }

    fn connected(&mut self) -> io::Result<&UnixDatagram> {
        if self.sock.is_none() {
            let s = UnixDatagram::unbound()?;
            s.connect(&self.path)?;
            s.set_nonblocking(true)?;
            self.sock = Some(s);
        }
        Ok(self.sock.as_ref().expect("set above"))
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
    fn delivers_to_a_socket() {
        let dir = std::env::temp_dir().join(format!("leash-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(&path);
        s.send(Severity::Notice, "ALERT device=aa:bb:cc:dd:ee:ff");
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<29>") && got.ends_with("ALERT device=aa:bb:cc:dd:ee:ff"), "{got}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
