//! Floods for the lab: thousands of fake LAN neighbours, conntrack bursts
//! from them, and a poller that times `status` on the control socket while
//! they run (the figure the floods tests print, and the bench reports).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Netns;

/// The fake neighbours live in a second LAN prefix on the router's br-lan,
/// so that the lab's real devices (192.168.7.0/24) are not disturbed.
pub const FLOOD_NET: &str = "10.77.0.1/16";

/// Fake neighbour i (0..65 000): 10.77.(i / 250).(1 + i % 250).
pub fn flood_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, (i / 250 % 256) as u8, (1 + i % 250) as u8)
}

/// MAC of fake neighbour i: 02:77:00:00:hi:lo.
pub fn flood_mac(i: usize) -> String {
    format!("02:77:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// Adds the flood prefix to br-lan in the router.
pub fn add_flood_net(router: &Netns) {
    router.ip(&["addr", "add", FLOOD_NET, "dev", "br-lan"]);
}

/// Adds permanent neighbour entries for fake neighbours `range` on br-lan,
/// in one `ip -batch` run.
pub fn add_neighbours(router: &Netns, dir: &Path, range: std::ops::Range<usize>) {
    let file = dir.join("neighbours.batch");
    {
        let mut f = BufWriter::new(std::fs::File::create(&file).expect("neighbour batch file"));
        for i in range {
            writeln!(f, "neigh replace {} lladdr {} dev br-lan nud permanent", flood_ip(i), flood_mac(i)).expect("write batch");
        }
    }
    router.ip(&["-batch", file.to_str().unwrap_or_default()]);
}

/// Writes `lines` (each the arguments of one `conntrack -I`) to a file and
/// runs `conntrack -R` on it in the router; returns how long it took.
pub fn conntrack_burst(router: &Netns, dir: &Path, lines: impl Iterator<Item = String>) -> Duration {
    let file = dir.join("conntrack.burst");
    {
        let mut f = BufWriter::new(std::fs::File::create(&file).expect("burst file"));
        for l in lines {
            writeln!(f, "{l}").expect("write burst");
        }
    }
    let t = Instant::now();
    // Exit status 1 when some entries existed already: the rest went in.
    router.try_exec(&["conntrack", "-R", file.to_str().unwrap_or_default()]);
    let took = t.elapsed();
    let _ = std::fs::remove_file(&file);
    took
}

/// One `conntrack -I` line: a TCP flow from `src` to `dst:443`.
pub fn flow_line(src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> String {
    format!("-I -s {src} -d {dst} -p tcp --sport {sport} --dport 443 --state ESTABLISHED -t 600")
}

/// Resident memory of a process (VmRSS), in kB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmRSS:")
}

/// Of that, anonymous memory (heap, stacks): what the daemon allocated,
/// without the pages of its binary.
pub fn rss_anon_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "RssAnon:")
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the poller saw.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    /// One per answered request, in order.
    pub answered: Vec<Duration>,
    /// Requests that got no answer within the deadline, or an error.
    pub failures: Vec<String>,
    /// The daemon's RSS at each answer, kB: the peak is what matters.
    pub rss_max_kb: u64,
    /// Its anonymous part (heap), peak.
    pub rss_anon_max_kb: u64,
}

impl Latencies {
    /// The q-quantile (0..=1) of the answered requests' latency.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.answered.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v[i.min(v.len() - 1)]
    }

    pub fn max(&self) -> Duration {
        self.answered.iter().max().copied().unwrap_or_default()
    }

    /// `p50_ms=… p99_ms=… max_ms=… answered=… failed=…` for printing.
    pub fn summary(&self) -> String {
        format!(
            "p50_ms={:.1} p99_ms={:.1} max_ms={:.1} answered={} failed={} rss_max_kb={} rss_anon_max_kb={}",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.max()),
            self.answered.len(),
            self.failures.len(),
            self.rss_max_kb,
            self.rss_anon_max_kb
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends `status` on the control socket every `every`, one request at a
/// time, straight over the socket (no CLI process start in the figure), and
/// times each answer. A request not answered within `deadline` is a failure.
/// What the poller saw, and its latest answer with when it came.
type Seen = Arc<Mutex<(Latencies, Option<(Value, Instant)>)>>;

pub struct StatusPoller {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<JoinHandle<()>>,
}

impl StatusPoller {
    pub fn start(socket: PathBuf, pid: u32, every: Duration, deadline: Duration) -> StatusPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((Latencies::default(), None)));
        let (s, out) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = status_once(&socket, deadline);
                let took = t.elapsed();
                let (rss, anon) = (rss_kb(pid), rss_anon_kb(pid));
                let mut g = out.lock().unwrap_or_else(|p| p.into_inner());
                g.0.rss_max_kb = g.0.rss_max_kb.max(rss);
                g.0.rss_anon_max_kb = g.0.rss_anon_max_kb.max(anon);
                match r {
                    Ok(v) => {
                        g.0.answered.push(took);
                        g.1 = Some((v, Instant::now()));
                    }
                    Err(e) => g.0.failures.push(format!("after {:.0} ms: {e}", ms(took))),
                }
                drop(g);
                std::thread::sleep(every.saturating_sub(took));
            }
        });
        StatusPoller { stop, seen, thread: Some(thread) }
    }

    /// The latest answer's `data` (the status object).
    pub fn last(&self) -> Option<Value> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).1.as_ref().map(|(v, _)| v.clone())
    }

    /// How long ago the latest answer came (None: no answer yet).
    pub fn last_age(&self) -> Option<Duration> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).1.as_ref().map(|(_, t)| t.elapsed())
    }

    /// A counter from the latest answer (`counters.<name>`, else top level).
    pub fn counter(&self, name: &str) -> u64 {
        self.last().map(|s| counter(&s, name)).unwrap_or(0)
    }

    pub fn stop(mut self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }
}

impl Drop for StatusPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `counters.<name>` of a status object, else its top-level `<name>`; 0 when absent.
pub fn counter(status: &Value, name: &str) -> u64 {
    status["counters"][name].as_u64().or_else(|| status[name].as_u64()).unwrap_or(0)
}

pub fn status_once(socket: &Path, deadline: Duration) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(deadline)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(deadline)).map_err(|e| e.to_string())?;
    s.write_all(b"{\"cmd\":\"status\"}\n").map_err(|e| format!("send: {e}"))?;
    let mut line = Vec::new();
    BufReader::new(s).read_until(b'\n', &mut line).map_err(|e| format!("no answer: {e}"))?;
    let v: Value = serde_json::from_slice(&line).map_err(|e| format!("not JSON ({e})"))?;
    if v["ok"] != Value::Bool(true) {
        return Err(format!("error answer: {v}"));
    }
    Ok(v["data"].clone())
}
