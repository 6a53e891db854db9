//! The lab's syslog daemon: a datagram socket bound where leash's `syslog`
//! key points, read by a background thread, plus a parser for leash's lines
//! (SPEC §5) in their RFC 3164 datagram form:
//! `<PRI>Mmm dd hh:mm:ss leash[PID]: VERB key=value key="quoted value" ...`

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Syslog priorities leash uses: facility daemon (3) * 8 + severity.
pub const PRI_ERR: u8 = 27;
pub const PRI_WARNING: u8 = 28;
pub const PRI_NOTICE: u8 = 29;
pub const PRI_INFO: u8 = 30;

/// Collects every datagram sent to `path` until dropped. `pause()` stops
/// reading, so that the socket fills up as under a slow syslog daemon.
pub struct SyslogSink {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Arc<Mutex<Reader>>,
    thread: Option<JoinHandle<()>>,
}

/// What the test asked (`paused`) and what the reader thread does
/// (`idle`): one lock, so that `pause()` returns only once no read is
/// under way.
#[derive(Default)]
struct Reader {
    paused: bool,
    idle: bool,
}

/// How often a paused reader checks whether it may read again.
const PAUSED_POLL: Duration = Duration::from_millis(5);

impl SyslogSink {
    /// Binds before the daemon starts, so that not one line is lost.
    pub fn bind(path: &Path) -> std::io::Result<SyslogSink> {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)?;
        // A read timeout lets the thread notice `stop` without a wake-up datagram.
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Arc::new(Mutex::new(Reader::default()));
        let (l, s, r) = (lines.clone(), stop.clone(), reader.clone());
        let thread = std::thread::Builder::new()
            .name("lab-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    let idle = {
                        let mut r = r.lock().unwrap();
                        r.idle = r.paused;
                        r.idle
                    };
                    if idle {
                        std::thread::sleep(PAUSED_POLL);
                        continue;
                    }
                    if let Ok(n) = sock.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).trim_end_matches(['\n', '\0']).to_string();
                        l.lock().unwrap().push(line);
                    }
                }
            })?;
        Ok(SyslogSink { path: path.to_path_buf(), lines, stop, reader, thread: Some(thread) })
    }

    /// Stops reading: datagrams pile up in the socket until it is full and
    /// the sender gets EAGAIN. Returns once the reader has stopped.
    pub fn pause(&self) {
        self.reader.lock().unwrap().paused = true;
        let stopped = crate::wait::poll_until(Duration::from_secs(2), || self.reader.lock().unwrap().idle);
        assert!(stopped, "the lab's syslog reader did not pause");
    }

    /// Reads again, everything that waits first.
    pub fn resume(&self) {
        let mut r = self.reader.lock().unwrap();
        r.paused = false;
        r.idle = false;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every datagram received so far, raw.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One parsed leash syslog line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub pri: u8,
    pub pid: u32,
    /// Everything after `leash[PID]: `.
    pub msg: String,
    /// The first word of `msg` (`QUARANTINE`, `WOULD-BLOCK`, ...).
    pub verb: String,
    /// The `key=value` pairs, unquoted.
    pub fields: BTreeMap<String, String>,
}

impl LogLine {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// True when every `(key, value)` pair is present with that exact value.
    pub fn has(&self, pairs: &[(&str, &str)]) -> bool {
        pairs.iter().all(|(k, v)| self.get(k) == Some(*v))
    }
}

/// Parses `<PRI>Mmm dd hh:mm:ss leash[PID]: MSG`; None for anything else
/// (so that a malformed line fails the test's predicate, visibly).
pub fn parse(line: &str) -> Option<LogLine> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    let pri: u8 = pri.parse().ok()?;
    // RFC 3164 timestamp: fixed 15 characters, then one space.
    let ts = rest.get(..15)?;
    if !is_rfc3164_time(ts) {
        return None;
    }
    let rest = rest.get(15..)?.strip_prefix(' ')?;
    let rest = rest.strip_prefix("leash[")?;
    let (pid, msg) = rest.split_once("]: ")?;
    let pid: u32 = pid.parse().ok()?;
    let (verb, fields) = parse_msg(msg);
    Some(LogLine { pri, pid, msg: msg.to_string(), verb, fields })
}

fn is_rfc3164_time(ts: &str) -> bool {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let b = ts.as_bytes();
    MONTHS.contains(&&ts[..3])
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && [7, 8, 10, 11, 13, 14].iter().all(|i| b[*i].is_ascii_digit())
}

/// Splits `VERB k=v k="v w" ...`; words without `=` are ignored (a daemon
/// fault line is free text after its verb).
pub fn parse_msg(msg: &str) -> (String, BTreeMap<String, String>) {
    let msg = msg.trim();
    let (verb, mut rest) = msg.split_once(' ').unwrap_or((msg, ""));
    let mut fields = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest[word_end..].starts_with('=') {
            let key = rest[..word_end].to_string();
            let (value, after) = parse_value(&rest[word_end + 1..]);
            fields.insert(key, value);
            rest = after;
        } else {
            rest = &rest[word_end..];
        }
    }
    (verb.to_string(), fields)
}

/// A bare value runs to the next space; a quoted one to the closing quote,
/// with `\"`, `\\` and `\xNN` escapes (leash's alert encoder).
fn parse_value(s: &str) -> (String, &str) {
    let Some(q) = s.strip_prefix('"') else {
        let end = s.find(' ').unwrap_or(s.len());
        return (s[..end].to_string(), &s[end..]);
    };
    let mut out = String::new();
    let mut chars = q.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &q[i + 1..]),
            '\\' => match chars.next() {
                Some((_, 'x')) => {
                    let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_line() {
        let l = parse("<28>Nov 22 21:14:03 leash[1834]: QUARANTINE device=aa:bb:cc:dd:ee:ff name=\"Living Room \\\"TV\\\"\" ip=192.168.1.23 dst=203.0.113.7 rule=list:telemetry profile=phone").unwrap();
        assert_eq!(l.pri, PRI_WARNING);
        assert_eq!(l.pid, 1834);
        assert_eq!(l.verb, "QUARANTINE");
        assert_eq!(l.get("name"), Some("Living Room \"TV\""));
        assert!(l.has(&[("device", "aa:bb:cc:dd:ee:ff"), ("rule", "list:telemetry"), ("profile", "phone")]));
        let l = parse("<30>Jan  1 00:00:00 leash[1]: WOULD-BLOCK x=\"a\\x0ab\"").unwrap();
        assert_eq!((l.verb.as_str(), l.get("x")), ("WOULD-BLOCK", Some("a\nb")));
        let l = parse("<27>Jan  1 00:00:00 leash[1]: reload failed: /x.toml:3: k: unknown key").unwrap();
        assert_eq!(l.verb, "reload");
        assert!(parse("<28>garbage").is_none());
        assert!(parse("Nov 22 21:14:03 leash[1]: X").is_none());
    }
}
