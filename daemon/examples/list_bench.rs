//! Measures deny-list loading: time and memory per domain.
//!
//! `cargo run --release --example list_bench` writes a 100 000- and a
//! 1 000 000-domain list to /tmp (plain names, hosts lines and adblock rules
//! mixed) and loads each in a fresh process of itself, so that one
//! measurement's freed memory does not hide in the next one's RSS.
//! `list_bench FILE` measures one file.
//!
//! Each measurement ends with one `key=value` line: `b_per_domain_loaded`
//! (RSS growth once loaded and freed memory handed back, as the daemon
//! does), `b_per_domain_peak` (peak RSS growth while
//! loading), `heap_b_per_domain` (what the set itself holds), `lookup_ns`
//! (a name and its parents against the list) and `rss_kb` (the process).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use leash::config::ListDef;
use leash::policy::lists::{load_file, LoadedList};

const SIZES: &[usize] = &[100_000, 1_000_000];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(file) = args.get(1) {
        return measure(Path::new(file));
    }
    let me = std::env::current_exe()?;
    for &n in SIZES {
        let path = format!("/tmp/leash-bench-{n}.txt");
        let bytes = write_list(Path::new(&path), n)?;
        println!("wrote {path}: {n} domains, {bytes} bytes");
        let status = Command::new(&me).arg(&path).status()?;
        if !status.success() {
            return Err(format!("measuring {path} failed: {status}").into());
        }
    }
    Ok(())
}

fn measure(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    // The loading code's own pages (text, glibc's arena) are resident
    // before the baseline: a small list is loaded first, and its freed
    // memory handed back, so that the figures are the list's alone.
    let mut rng = Lcg(1);
    let warm: String = (0..5000).map(|_| name(&mut rng) + "\n").collect();
    drop(leash::policy::lists::parse_list(&warm));
    drop(warm);
    leash::policy::lists::release_freed_memory();
    let rss_before = status_kib("VmRSS:")?;
    let cpu_start = cpu_secs();
    let start = Instant::now();
    let content = load_file(path)?;
    let def = ListDef {
        name: "bench".into(),
        files: vec![path.to_path_buf()],
        selectors: vec![],
        urls: vec![],
        refresh: leash::config::DEFAULT_LIST_REFRESH,
    };
    let list = LoadedList::build(&def, [content]);
    let elapsed = start.elapsed();
    let cpu = cpu_secs() - cpu_start;
    // As the daemon does after loading lists.
    leash::policy::lists::release_freed_memory();
    let rss_after = status_kib("VmRSS:")?;
    let peak = status_kib("VmHWM:")?;

    let n = list.domains.len().max(1);
    let rss_delta = (rss_after.saturating_sub(rss_before)) * 1024;
    let peak_delta = (peak.saturating_sub(rss_before)) * 1024;
    println!(
        "  loaded {} domains ({} nets, {} bad lines) in {:.3} s ({:.3} s CPU); RSS +{:.1} MiB = {:.1} B/domain; heap {:.1} MiB = {:.1} B/domain; peak RSS +{:.1} MiB = {:.1} B/domain",
        list.domains.len(),
        list.nets.len(),
        list.bad_lines,
        elapsed.as_secs_f64(),
        cpu,
        rss_delta as f64 / 1048576.0,
        rss_delta as f64 / n as f64,
        list.domains.heap_bytes() as f64 / 1048576.0,
        list.domains.heap_bytes() as f64 / n as f64,
        peak_delta as f64 / 1048576.0,
        peak_delta as f64 / n as f64,
    );

    // Lookups: half listed names (or children of them), half unlisted.
    let mut rng = Lcg(99);
    let queries: Vec<String> = (0..200_000)
        .map(|i| if i % 2 == 0 { format!("x.{}", name(&mut rng)) } else { format!("{}.invalid", name(&mut rng)) })
        .collect();
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let hits = queries.iter().filter(|q| list.matches_name(q)).count();
    let per = start.elapsed().as_nanos() as f64 / queries.len() as f64;
    let per_cpu = (thread_cpu_ns() - cpu_start) as f64 / queries.len() as f64;
    println!("  {} lookups ({hits} hits): {per:.0} ns each ({per_cpu:.0} ns of CPU)", queries.len());
    println!(
        "list_domains={} b_per_domain_loaded={:.1} b_per_domain_peak={:.1} heap_b_per_domain={:.1} lookup_ns={per:.0} lookup_cpu_ns={per_cpu:.0} load_s={:.3} rss_kb={}",
        list.domains.len(),
        rss_delta as f64 / n as f64,
        peak_delta as f64 / n as f64,
        list.domains.heap_bytes() as f64 / n as f64,
        elapsed.as_secs_f64(),
        status_kib("VmRSS:")?,
    );
    Ok(())
}

/// This thread's CPU time in nanoseconds: lookups timed without the
/// waits for a core of a busy machine.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User plus system CPU time of this process: on a shared build machine
/// the wall-clock time also counts waiting for a core.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A memory figure of this process (`VmRSS:`, `VmHWM:` = peak RSS), from
/// /proc/self/status.
fn status_kib(key: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with(key)).ok_or("field missing in /proc/self/status")?;
    let kib = line.split_whitespace().nth(1).ok_or("malformed /proc/self/status")?;
    Ok(kib.parse()?)
}

/// Writes `n` distinct names in the three line forms, with some comments,
/// and returns the file's size.
fn write_list(path: &Path, n: usize) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "# leash list_bench: {n} generated domains")?;
    let mut rng = Lcg(n as u64);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut i = 0;
    while seen.len() < n {
        let d = name(&mut rng);
        if !seen.insert(d.clone()) {
            continue;
        }
        match i % 3 {
            0 => writeln!(out, "{d}")?,
            1 => writeln!(out, "0.0.0.0 {d}")?,
            _ => writeln!(out, "||{d}^")?,
        }
        if i % 1000 == 0 {
            writeln!(out, "! section {i}")?;
        }
        i += 1;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Names shaped like those of public block lists: a registrable domain
/// (word-ish label plus a TLD, sometimes two-part) with 0–3 subdomain labels
/// such as `ads`, `metrics-eu` or a random token. Averages ~24 bytes.
fn name(r: &mut Lcg) -> String {
    const TLDS: &[&str] =
        &["com", "com", "com", "com", "net", "net", "org", "io", "de", "ru", "cn", "info", "xyz", "co.uk", "com.br", "online", "top"];
    const SUBS: &[&str] = &[
        "ads", "ad", "track", "tracking", "metrics", "analytics", "telemetry", "cdn", "api", "stats", "log", "pixel",
        "t", "s", "www", "data", "collector", "beacon", "events", "sdk",
    ];
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "ne", "ro", "su", "ta", "vi", "xo", "ze", "ban", "cor", "del", "fin", "gul", "hex", "jun", "lex",
        "mar", "nov", "pix", "quo", "rad", "sol", "tek", "umb", "ver", "wax", "yol", "zen",
    ];
    let mut s = String::with_capacity(40);
    for _ in 0..r.next(3) {
        let sub = SUBS[r.next(SUBS.len() as u64) as usize];
        s.push_str(sub);
        match r.next(4) {
            0 => s.push_str(&format!("{}", r.next(100))),
            1 => s.push_str("-eu"),
            _ => {}
        }
        s.push('.');
    }
    if r.next(5) == 0 {
        // A random token label, as trackers use.
        for _ in 0..6 + r.next(8) {
            s.push((b'a' + r.next(26) as u8) as char);
        }
        s.push('.');
    }
    for _ in 0..2 + r.next(3) {
        s.push_str(SYL[r.next(SYL.len() as u64) as usize]);
    }
    if r.next(4) == 0 {
        s.push_str(&format!("{}", r.next(1000)));
    }
    s.push('.');
    s.push_str(TLDS[r.next(TLDS.len() as u64) as usize]);
    s
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}
