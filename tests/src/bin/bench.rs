//! The bench: prints the figures issue #3 asks for, as `key=value` lines.
//! Run it through `scripts/bench.sh` (release build). Figures, never
//! assertions: this machine is noisy.
//!
//! (a) conntrack NEW events judged vs. entries created by a `conntrack -R`
//!     burst, with lost and resynced counts, and what `conntrack -E` saw of it;
//! (b) latency from a device's first SYN to its block element being acked
//!     by the kernel, and the payload bytes a WAN server got first;
//! (c) RSS of the idle daemon, and with 256 devices;
//! (d) DNS-time judging: payload bytes a WAN server gets from a device that
//!     resolves a denied name and connects at once, with 20 ms added to the
//!     WAN link (NFQUEUE delayer: the lab kernel has no netem) and without;
//!     and DNS answers the daemon processes per second;
//! (e) status latency on the control socket (p50/p99/max) while floods run:
//!     5 000 LAN neighbours with flows (more than the device table holds),
//!     and a 250 000-flow `conntrack -R` burst; with RSS and the counters;
//! (f) held DNS answers against snooped ones and the DIY anchor (`hold.rs`);
//! (h) RSS with a 200 000-domain deny list, idle and with 256 devices;
//! (g) the burst of (a) at the conntrack buffer a 128 MB router gets from
//!     `conntrack_buffer = "auto"` beside an explicit 64 MiB: events lost,
//!     resyncs, flows judged;
//! (j) time to rebuild the table after someone else deletes or flushes it
//!     (`BENCH_ONLY=heal`);
//! (i) the drain ceiling: events judged per second while the daemon catches
//!     up a backlog of 100 000 NEW events queued while it was stopped
//!     (SIGSTOP, `conntrack -R`, SIGCONT), with the default receive buffer
//!     and with one that holds the backlog (`BENCH_ONLY=drain`).

#[path = "bench/hold.rs"]
mod hold;

use std::io::Write;
use std::time::{Duration, Instant};

use leash_lab::dns::{self, QType, Zone};
use leash_lab::lab::{ip, ip4, mac, Lab, CLOUD_V4, CLOUD_V6, ROUTER_V4, ROUTER_V6};
use leash_lab::wait::poll_until;
use serde_json::Value;

const CONFIG: &str = r#"
[daemon]
alert_interval = "1h"

[defaults]
profile = "open"

[profile.open]
unlisted = "allow"

[profile.strict]
unlisted = "block"

[[device]]
mac = "02:00:00:00:07:02"
name = "bench-phone"
profile = "strict"
"#;

fn main() {
    // BENCH_ONLY=dns / floods: only the DNS figures (d) / the flood figures (e).
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("dns") => return dns_figures(),
        Ok("floods") => return flood_figures(),
        Ok("hold") => return hold::hold_figures(),
        Ok("drain") => return drain_figures(),
        Ok("ctbuffer") => return ct_buffer_figures(burst_size(), true),
        Ok("rss") => return rss_figures(),
        Ok("heal") => return heal_figures(),
        _ => {}
    }
    let burst = burst_size();
    let mut lab = Lab::new("bench");
    lab.device(1);
    lab.device(2);
    lab.start_leash(CONFIG);
    let pid = lab.daemon_pid().expect("daemon running");
    println!("rss_idle_kb={}", rss_kb(pid));

    burst_figures(&lab, burst, "burst", 1);
    latency_figures(&lab);
    devices_figures(&lab, pid);
    drop(lab);

    dns_figures();
    flood_figures();
    hold::hold_figures();
    ct_buffer_figures(burst, false);
    rss_figures();
    drain_figures();
    heal_figures();
}

/// `conntrack -E -e NEW` in a namespace, its lines counted: what a user
/// would watch conntrack with instead of leash (FACTS: its `-b` sets the
/// buffer on the wrong socket, so it keeps the default).
struct ConntrackE {
    child: std::process::Child,
    lines: std::thread::JoinHandle<u64>,
}

impl ConntrackE {
    fn start(ns: &str) -> ConntrackE {
        use std::io::BufRead;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "conntrack", "-E", "-e", "NEW"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("conntrack -E");
        let out = child.stdout.take().expect("stdout");
        let lines = std::thread::spawn(move || std::io::BufReader::new(out).lines().map_while(Result::ok).count() as u64);
        // Subscribed before the burst: its first line would be too late a sign
        // (it prints only events), so give it the moment the netlink bind takes.
        std::thread::sleep(Duration::from_millis(300));
        ConntrackE { child, lines }
    }

    fn stop(mut self) -> u64 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.lines.join().unwrap_or(0)
    }
}

/// (j) Time to rebuild: with device 1 quarantined, someone else deletes the
/// table, flushes the ruleset or flushes a chain, three times each; the figure
/// is from the damage done (nft exited) until `nft list table` shows the
/// quarantine's rule and element again (polled as fast as nft answers).
/// Rounds are spaced past the watch's quiet time (11 s), so each is a first
/// rebuild: damage that keeps coming sooner is rebuilt with a doubling gap
/// (nft::watch), which would be measured instead.
fn heal_figures() {
    let mut lab = Lab::new("bench-heal");
    lab.device(1);
    lab.start_leash(CONFIG);
    let out = lab.leash(&["quarantine", &mac(1)]);
    assert!(out.status.success(), "quarantine: {}", String::from_utf8_lossy(&out.stderr));
    let r = lab.router();
    let whole = || {
        let o = r.try_exec(&["nft", "list", "table", "inet", "leash"]);
        let t = String::from_utf8_lossy(&o.stdout);
        o.status.success() && t.contains("ether saddr @quarantine_mac") && t.contains(&mac(1))
    };
    assert!(poll_until(Duration::from_secs(5), whole), "quarantine in place");
    for (name, damage) in [
        ("delete_table", &["nft", "delete", "table", "inet", "leash"][..]),
        ("flush_ruleset", &["nft", "flush", "ruleset"][..]),
        ("flush_chain", &["nft", "flush", "chain", "inet", "leash", "lan_out"][..]),
    ] {
        let mut ms = Vec::new();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(11));
            r.exec(damage);
            let t0 = Instant::now();
            let back = poll_until(Duration::from_secs(5), whole);
            ms.push(if back { format!("{}", t0.elapsed().as_millis()) } else { "never".into() });
        }
        println!("heal_{name}_ms={}", ms.join(","));
    }
    println!("heal_table_rebuilds={}", status(&lab)["counters"]["table_rebuilds"]);
}

/// Flows of the drain burst.
const DRAIN_BURST: usize = 100_000;

/// (i) Twice: with the default conntrack receive buffer (auto: 64 MiB on this machine's RAM) and with
/// 512 MiB. When the backlog does not fit, the kernel drops events and the
/// daemon resyncs from a dump (events_lost, resyncs say so); on the lab's
/// kernel 64 MiB held all 100 000 (0 lost). The rate is flows judged from
/// SIGCONT until the count settles, over that time; status is read on the
/// control socket every 5 ms.
fn drain_figures() {
    use leash_lab::flood::{self, status_once};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for (name, buffer) in [("drain_default_buffer", None), ("drain", Some("512MiB"))] {
        let mut lab = Lab::new("bench-drain");
        lab.device(1);
        let extra = buffer.map(|b| format!("conntrack_buffer = \"{b}\"\n")).unwrap_or_default();
        lab.start_leash(&format!("[daemon]\nalert_interval = \"1h\"\n{extra}\n[defaults]\nprofile = \"open\"\n\n[profile.open]\nunlisted = \"allow\"\n"));
        let r = lab.router();
        r.exec(&["ip", "neigh", "replace", &ip4(1).to_string(), "lladdr", &mac(1), "dev", "br-lan", "nud", "permanent"]);
        lab.wait_until(Duration::from_secs(5), "device 1 known", || lab.device_report(&mac(1)).is_some());
        let pid = Pid::from_raw(lab.daemon_pid().expect("daemon running") as i32);
        let sock = lab.socket();
        let read = || status_once(&sock, Duration::from_secs(10)).unwrap_or_default();
        let before = read();
        let judged0 = flood::counter(&before, "flows_judged");
        let lines = (0..DRAIN_BURST).map(|i| {
            let dst = std::net::Ipv4Addr::new(203, 0, (100 + (i / 250 / 250) % 50) as u8, (1 + (i / 250) % 250) as u8);
            flood::flow_line(ip4(1).to_string().parse().expect("ipv4"), dst, 1024 + (i % 250) as u16)
        });
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
        let insert = flood::conntrack_burst(r, &lab.dir, lines);
        let t0 = Instant::now();
        kill(pid, Signal::SIGCONT).expect("SIGCONT");
        // Caught up: every flow judged, or no change for a second.
        let mut last = (judged0, t0.elapsed());
        while t0.elapsed() < Duration::from_secs(60) {
            let j = flood::counter(&read(), "flows_judged");
            if j != last.0 {
                last = (j, t0.elapsed());
            }
            if j - judged0 >= DRAIN_BURST as u64 || t0.elapsed() > last.1 + Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = read();
        let judged = flood::counter(&s, "flows_judged") - judged0;
        let secs = last.1.as_secs_f64().max(1e-6);
        println!("{name}_buffer={}", buffer.unwrap_or("default"));
        println!("{name}_flows={DRAIN_BURST}");
        println!("{name}_insert_seconds={:.2}", insert.as_secs_f64());
        println!("{name}_new_events_received={}", flood::counter(&s, "ct_new_events") - flood::counter(&before, "ct_new_events"));
        println!("{name}_flows_judged={judged}");
        println!("{name}_events_lost={}", flood::counter(&s, "events_lost") - flood::counter(&before, "events_lost"));
        println!("{name}_resyncs={}", flood::counter(&s, "resyncs") - flood::counter(&before, "resyncs"));
        println!("{name}_flows_read_from_resync_dumps={}", flood::counter(&s, "ct_dumped") - flood::counter(&before, "ct_dumped"));
        println!("{name}_catch_up_seconds={secs:.3}");
        println!("{name}_events_per_second={:.0}", judged as f64 / secs);
        drop(lab);
    }
}

/// (h) The daemon with a 200 000-domain deny list (names shaped like a
/// block list's, ≈24 bytes each), idle and then with 256 devices, and how
/// its RSS splits (heap and stacks against the mapped binary).
fn rss_figures() {
    const DOMAINS: usize = 200_000;
    let mut lab = Lab::new("bench-rss");
    lab.device(1);
    let list = lab.dir.join("big.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&list).expect("list file"));
        let mut seed = 42u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        const SUBS: &[&str] = &["ads", "track", "metrics", "cdn", "api", "t", "pixel", "log"];
        const TLDS: &[&str] = &["com", "com", "net", "org", "io", "de", "xyz", "co.uk"];
        for i in 0..DOMAINS {
            let sub = if next(2) == 0 { format!("{}{}.", SUBS[next(8) as usize], next(50)) } else { String::new() };
            let _ = writeln!(f, "0.0.0.0 {sub}dom{i:x}{}.{}", ["ka", "lo", "mire", "nevo"][next(4) as usize], TLDS[next(8) as usize]);
        }
    }
    let config = CONFIG
        .replacen("[profile.open]\nunlisted = \"allow\"\n", "[profile.open]\nunlisted = \"allow\"\ndeny = [\"big\"]\n", 1)
        + &format!("\n[list.big]\nfiles = [\"{}\"]\n", list.display());
    lab.start_leash(&config);
    let pid = lab.daemon_pid().expect("daemon running");
    println!("rss_list_domains={DOMAINS}");
    let lists = lab.leash_json(&["lists"]);
    let big = lists.as_array().and_then(|a| a.iter().find(|l| l["name"] == "big").cloned()).unwrap_or(Value::Null);
    println!("rss_list_domains_loaded={}", big["domains"]);
    println!("rss_200k_list_idle_kb={}", rss_kb(pid));
    devices_figures_named(&lab, pid, "rss_200k_list_256_devices_kb");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for key in ["VmHWM", "RssAnon", "RssFile", "VmData", "VmStk"] {
        let v = st.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).map(|v| v.trim().trim_end_matches("kB").trim().to_string());
        println!("rss_200k_list_{}_kb={}", key.to_lowercase(), v.unwrap_or_default());
    }
}

fn burst_size() -> usize {
    std::env::var("BENCH_BURST").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000)
}

/// `conntrack_buffer = "auto"` on a 128 MB router: RAM/64 of its MemTotal
/// (≈124 516 kB on such boards), as `config::auto_conntrack_buffer` picks.
const SMALL_ROUTER_CT_BUFFER: u64 = 124_516 * 1024 / 64;

/// (g) The burst of (a) with the conntrack buffer a 128 MB router gets,
/// and (`with_64mib`) the old fixed 64 MiB beside it, each in a fresh lab.
fn ct_buffer_figures(burst: usize, with_64mib: bool) {
    let mut runs = vec![("burst_small_buffer", SMALL_ROUTER_CT_BUFFER)];
    if with_64mib {
        runs.push(("burst_64mib_buffer", 64 << 20));
    }
    for (prefix, bytes) in runs {
        let mut lab = Lab::new("ctbuf");
        lab.device(1);
        lab.start_leash(&CONFIG.replacen("[daemon]\n", &format!("[daemon]\nconntrack_buffer = {bytes}\n"), 1));
        let s = status(&lab);
        println!("{prefix}_bytes={}", s["conntrack_buffer"]);
        println!("{prefix}_granted_by_kernel={}", s["conntrack_buffer_granted"]);
        burst_figures(&lab, burst, prefix, 1);
        // Four `conntrack -R` at once: a faster burst, competing with
        // leash for the two cores, as a router's own traffic would.
        lab.router().try_exec(&["conntrack", "-F"]);
        burst_figures(&lab, burst, &format!("{prefix}_x4"), 4);
    }
}

fn status(lab: &Lab) -> Value {
    lab.leash_json(&["status"])
}

fn counter(lab: &Lab, name: &str) -> u64 {
    status(lab)["counters"][name].as_u64().unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (a) A burst of `n` conntrack entries from a known LAN device, inserted
/// by `parallel` `conntrack -R` at once; the figures' names start with
/// `prefix`.
fn burst_figures(lab: &Lab, n: usize, prefix: &str, parallel: usize) {
    let r = lab.router();
    r.exec(&["ip", "neigh", "replace", &ip4(1).to_string(), "lladdr", &mac(1), "dev", "br-lan", "nud", "permanent"]);
    lab.wait_until(Duration::from_secs(5), "device 1 known", || lab.device_report(&mac(1)).is_some());
    let parallel = parallel.max(1);
    let files: Vec<_> =
        (0..parallel).map(|p| std::env::temp_dir().join(format!("leash-bench-burst-{}.{p}.txt", std::process::id()))).collect();
    {
        let mut out: Vec<_> = files.iter().map(|f| std::io::BufWriter::new(std::fs::File::create(f).expect("burst file"))).collect();
        for i in 0..n {
            let dst = format!("203.0.{}.{}", 100 + (i / 250 / 250) % 50, 1 + (i / 250) % 250);
            let sport = 1024 + (i % 250) as u32;
            let _ = writeln!(out[i % parallel], "-I -s {} -d {dst} -p tcp --sport {sport} --dport 443 --state ESTABLISHED -t 600", ip4(1));
        }
    }
    let file = &files[0];
    let before_events = counter(lab, "ct_new_events");
    let before_dumped = counter(lab, "ct_dumped");
    let before_judged = counter(lab, "flows_judged");
    let (before_lost, before_resyncs) = (counter(lab, "events_lost"), counter(lab, "resyncs"));
    // The tool a user would pick instead, listening to the same burst.
    let anchor = (prefix == "burst").then(|| ConntrackE::start(&r.name));
    let t = Instant::now();
    let out = if parallel == 1 {
        r.try_exec(&["conntrack", "-R", file.to_str().unwrap_or_default()])
    } else {
        let cmd: Vec<String> = files.iter().map(|f| format!("conntrack -R {} &", f.display())).collect();
        r.try_exec(&["sh", "-c", &format!("{} wait", cmd.join(" "))])
    };
    let insert_s = t.elapsed().as_secs_f64();
    let created = r.try_exec(&["conntrack", "-C"]);
    let created: u64 = String::from_utf8_lossy(&created.stdout).trim().parse().unwrap_or(0);
    // Settled: judged everything, or nothing more arrives for a second.
    let mut last = (0, Instant::now());
    poll_until(Duration::from_secs(60), || {
        let s = status(lab);
        let c = &s["counters"];
        let got = c["ct_new_events"].as_u64().unwrap_or(0) + c["ct_dumped"].as_u64().unwrap_or(0);
        if got != last.0 {
            last = (got, Instant::now());
        }
        c["flows_judged"].as_u64().unwrap_or(0) - before_judged >= n as u64 || last.1.elapsed() > Duration::from_secs(1)
    });
    let s = status(lab);
    let c = &s["counters"];
    let events = c["ct_new_events"].as_u64().unwrap_or(0) - before_events;
    let dumped = c["ct_dumped"].as_u64().unwrap_or(0) - before_dumped;
    if let Some(anchor) = anchor {
        let seen = anchor.stop();
        println!("{prefix}_conntrack_E_new_events_seen={seen}");
        println!("{prefix}_conntrack_E_seen_pct={:.1}", seen as f64 * 100.0 / n as f64);
    }
    println!("{prefix}_entries_requested={n}");
    println!("{prefix}_entries_in_table={created}");
    println!("{prefix}_insert_seconds={insert_s:.2}");
    println!("{prefix}_conntrack_R_ok={}", out.status.success());
    println!("{prefix}_new_events_received={events}");
    println!("{prefix}_events_received_pct={:.1}", 100.0 * events as f64 / n.max(1) as f64);
    println!("{prefix}_overruns={}", c["events_lost"].as_u64().unwrap_or(0) - before_lost);
    println!("{prefix}_resyncs={}", c["resyncs"].as_u64().unwrap_or(0) - before_resyncs);
    println!("{prefix}_flows_read_from_resync_dumps={dumped}");
    println!("{prefix}_flows_judged={}", c["flows_judged"].as_u64().unwrap_or(0) - before_judged);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    r.try_exec(&["conntrack", "-F"]);
}

/// (b) Device 2 (profile strict: everything unlisted is blocked) connects
/// to a WAN host and writes as fast as it can.
fn latency_figures(lab: &Lab) {
    let server = lab.wan_tcp_server(8443);
    let mut lat = Vec::new();
    let mut leaked = Vec::new();
    let mut internal = Vec::new();
    for dst in CLOUD_V4.iter().chain(CLOUD_V6.iter()) {
        let dst = ip(dst);
        let before = server.bytes_from(if dst.is_ipv4() { ip4(2) } else { leash_lab::lab::ip6(2) });
        let t0 = lab.dev(2).run(move || {
            let t0 = monotonic_us();
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&(dst, 8443).into(), Duration::from_secs(2)) {
                let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
                let chunk = vec![0x55u8; 16 * 1024];
                let end = Instant::now() + Duration::from_secs(2);
                while Instant::now() < end && s.write_all(&chunk).is_ok() {}
            }
            t0
        });
        let peer = if dst.is_ipv4() { ip4(2) } else { leash_lab::lab::ip6(2) };
        let s = status(lab);
        let acked = s["enforce_latency"]["last_acked_monotonic_us"].as_u64().unwrap_or(0);
        lat.push(acked.saturating_sub(t0));
        internal.push(s["enforce_latency"]["last_us"].as_u64().unwrap_or(0));
        leaked.push(server.bytes_from(peer) - before);
    }
    println!("block_syn_to_element_us={}", join(&lat));
    println!("block_event_to_element_us={}", join(&internal));
    println!("block_payload_bytes_before_drop={}", join(&leaked));
    lat.sort_unstable();
    println!("block_syn_to_element_us_median={}", lat[lat.len() / 2]);
}

/// (c) 256 devices, each with an address and a flow.
fn devices_figures(lab: &Lab, pid: u32) {
    devices_figures_named(lab, pid, "rss_256_devices_kb");
}

fn devices_figures_named(lab: &Lab, pid: u32, key: &str) {
    let r = lab.router();
    for i in 0..256u32 {
        let m = format!("02:00:00:01:{:02x}:{:02x}", i / 256, i % 256);
        let a = format!("fd00:7::1:{:x}", i + 1);
        r.exec(&["ip", "-6", "neigh", "replace", &a, "lladdr", &m, "dev", "br-lan", "nud", "permanent"]);
        r.try_exec(&["conntrack", "-I", "-f", "ipv6", "-s", &a, "-d", "2001:db8:bad::7", "-p", "udp", "--sport", "5000", "--dport", "443", "-t", "600"]);
    }
    lab.wait_until(Duration::from_secs(20), "256 devices known", || {
        status(lab)["devices"].as_u64().unwrap_or(0) >= 256
    });
    println!("devices_known={}", status(lab)["devices"]);
    println!("{key}={}", rss_kb(pid));
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Runs of the DNS leak measurement at each delay, and the flood size.
const DNS_RUNS: usize = 5;
const DNS_FLOOD: usize = 20_000;
const DENY_FLOOD: usize = 20_000;

/// (d) A lab of its own: device 1 resolves denied names through the
/// router's dnsmasq and connects at once; device 2 floods dnsmasq with
/// queries for names it answers.
fn dns_figures() {
    let mut lab = Lab::new("bench-dns");
    lab.device(1);
    lab.device(2);
    let list = lab.dir.join("bad.txt");
    std::fs::write(&list, "tracking.example.com\ndeny.example\n").expect("write list");
    // Denied names for the denied-answer flood, each with an address of its own.
    let hosts = lab.dir.join("deny.hosts");
    let body: String = (0..DENY_FLOOD).map(|i| format!("198.18.{}.{} d{i}.deny.example\n", i / 256, i % 256)).collect();
    std::fs::write(&hosts, body).expect("write hosts");
    // One fresh denied address per run: t<i>.tracking.example.com → 203.0.113.(100+i).
    let mut zone = Zone::new().address("bench.example", "198.51.100.20").arg(&format!("--addn-hosts={}", hosts.display()));
    let targets: Vec<(String, String)> = (0..2 * DNS_RUNS).map(|i| (format!("t{i}.tracking.example.com"), format!("203.0.113.{}", 100 + i))).collect();
    for (name, addr) in &targets {
        lab.wan().ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        zone = zone.address(name, addr);
    }
    lab.start_dns(&zone);
    lab.start_leash(&format!(
        "[daemon]\nalert_interval = \"1h\"\n\n[defaults]\nprofile = \"iot\"\n\n[profile.iot]\nunlisted = \"allow\"\ndenied = \"block\"\ndeny = [\"bad\"]\n\n[list.bad]\nfiles = [\"{}\"]\n",
        list.display()
    ));
    for n in [1, 2] {
        lab.udp_send(n, ip(ROUTER_V4), 9);
        lab.udp_send(n, ip(ROUTER_V6), 9);
        lab.wait_until(Duration::from_secs(5), "device known", || lab.device_report(&mac(n)).is_some_and(|d| d["addresses"].as_array().is_some_and(|a| a.len() >= 2)));
    }
    let server = lab.wan_tcp_server(8443);

    println!("wan_rtt_ms_no_delay={:.2}", rtt_ms(&lab));
    let leaked = dns_leak_runs(&lab, &server, &targets[..DNS_RUNS]);
    println!("dns_block_payload_bytes_before_drop_no_delay={}", join(&leaked));
    lab.delay_wan(20);
    println!("wan_rtt_ms={:.2}", rtt_ms(&lab));
    let leaked = dns_leak_runs(&lab, &server, &targets[DNS_RUNS..]);
    println!("dns_block_payload_bytes_before_drop={}", join(&leaked));
    let elems = lab.set_elements("block_v4");
    let placed = targets.iter().filter(|(_, a)| elems.contains(&format!("{} . {a}", mac(1)))).count();
    println!("dns_block_elements_in_place={placed}/{}", targets.len());

    // Answers processed per second.
    let before = counter(&lab, "dns_answers");
    let before_unknown = counter(&lab, "dns_unknown_client");
    let t0 = Instant::now();
    let (replies, flood_time) = dns::flood(&lab.dev(2).name, ip(ROUTER_V4), DNS_FLOOD, 64, QType::A, |i| format!("q{i}.bench.example"));
    let mut last = (before, t0.elapsed());
    poll_until(Duration::from_secs(30), || {
        let c = counter(&lab, "dns_answers");
        if c != last.0 {
            last = (c, t0.elapsed());
        }
        c - before >= replies as u64 || t0.elapsed() > last.1 + Duration::from_secs(1)
    });
    let counted = last.0 - before;
    println!("dns_flood_queries={DNS_FLOOD}");
    println!("dns_flood_replies={replies}");
    println!("dns_flood_seconds={:.2}", flood_time.as_secs_f64());
    println!("dns_flood_replies_per_second={:.0}", replies as f64 / flood_time.as_secs_f64());
    println!("dns_answers_counted={counted}");
    println!("dns_answers_missed={}", (replies as u64).saturating_sub(counted));
    println!("dns_unknown_client_delta={}", counter(&lab, "dns_unknown_client") - before_unknown);
    println!("dns_answers_judged_per_second={:.0}", counted as f64 / last.1.as_secs_f64().max(1e-6));
    println!("rss_after_dns_flood_kb={}", rss_kb(lab.daemon_pid().unwrap_or(0)));

    // Denied answers: each one a block whose element must be acked.
    let before = counter(&lab, "dns_judged_deny");
    let blocks_before = status(&lab)["blocks_in_kernel"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    let (replies, flood_time) = dns::flood(&lab.dev(2).name, ip(ROUTER_V4), DENY_FLOOD, 64, QType::A, |i| format!("d{i}.deny.example"));
    let mut last = (before, t0.elapsed());
    poll_until(Duration::from_secs(60), || {
        let c = counter(&lab, "dns_judged_deny");
        if c != last.0 {
            last = (c, t0.elapsed());
        }
        c - before >= replies as u64 || t0.elapsed() > last.1 + Duration::from_secs(2)
    });
    let judged = last.0 - before;
    let blocks = status(&lab)["blocks_in_kernel"].as_u64().unwrap_or(0) - blocks_before;
    let in_kernel = lab.set_elements("block_v4").iter().filter(|e| e.contains(" . 198.18.")).count();
    println!("dns_deny_flood_replies={replies}");
    println!("dns_deny_flood_replies_per_second={:.0}", replies as f64 / flood_time.as_secs_f64());
    println!("dns_deny_judged={judged}");
    println!("dns_deny_blocks={blocks}");
    println!("dns_deny_elements_in_kernel={in_kernel}");
    println!("dns_deny_judged_per_second={:.0}", judged as f64 / last.1.as_secs_f64().max(1e-6));
    println!("dns_deny_ms_per_name={:.3}", last.1.as_secs_f64() * 1000.0 / judged.max(1) as f64);
    println!("syslog_dropped_after_deny_flood={}", status(&lab)["syslog_dropped"]);
    println!("rss_after_deny_flood_kb={}", rss_kb(lab.daemon_pid().unwrap_or(0)));
}

/// Median TCP connect time (SYN → SYN-ACK) from device 1 to an allowed WAN host.
fn rtt_ms(lab: &Lab) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            lab.dev(1).run(|| {
                let t = Instant::now();
                let _ = std::net::TcpStream::connect_timeout(&(ip("198.51.100.20"), 8443).into(), Duration::from_secs(2));
                t.elapsed().as_secs_f64() * 1000.0
            })
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Each run: device 1 asks the router's dnsmasq for a denied name and, in
/// the same thread, connects to the answer's address at once and writes for
/// 1 s. The figure is what the WAN server received.
fn dns_leak_runs(lab: &Lab, server: &leash_lab::netns::TcpServer, targets: &[(String, String)]) -> Vec<u64> {
    let mut leaked = Vec::new();
    for (name, _) in targets {
        let before = server.bytes_from(ip4(1));
        let name = name.clone();
        lab.dev(1).run(move || {
            let Ok(r) = dns::query_here(ip(ROUTER_V4), &name, QType::A, Duration::from_secs(2)) else { return };
            let Some(addr) = r.addrs.first().copied() else { return };
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&(addr, 8443).into(), Duration::from_secs(1)) {
                let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                let chunk = vec![0x55u8; 16 * 1024];
                let end = Instant::now() + Duration::from_secs(1);
                while Instant::now() < end {
                    if let Err(e) = s.write_all(&chunk) {
                        if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                            break;
                        }
                    }
                }
            }
        });
        // Delayed packets still in flight: settled when nothing arrives for 300 ms.
        let mut last = (server.bytes_from(ip4(1)), Instant::now());
        poll_until(Duration::from_secs(3), || {
            let b = server.bytes_from(ip4(1));
            if b != last.0 {
                last = (b, Instant::now());
            }
            last.1.elapsed() > Duration::from_millis(300)
        });
        leaked.push(server.bytes_from(ip4(1)) - before);
    }
    leaked
}

/// (e) Each flood in a lab of its own, with a status poller running.
fn flood_figures() {
    use leash_lab::flood::{self, StatusPoller};
    let config = "[daemon]\nalert_interval = \"1h\"\n\n[defaults]\nprofile = \"open\"\n\n[profile.open]\nunlisted = \"allow\"\n";
    let run = |name: &str, setup: &dyn Fn(&Lab), lines: Vec<String>| {
        let mut lab = Lab::new(name);
        lab.start_leash(config);
        flood::add_flood_net(lab.router());
        let pid = lab.daemon_pid().expect("daemon running");
        let poller = StatusPoller::start(lab.socket(), pid, Duration::from_millis(20), Duration::from_secs(2));
        setup(&lab);
        let n = lines.len();
        let took = flood::conntrack_burst(lab.router(), &lab.dir, lines.into_iter());
        // Settled: no new conntrack events for 2 s and nothing waiting.
        let mut last = (u64::MAX, Instant::now());
        poll_until(Duration::from_secs(90), || {
            let s = poller.last().unwrap_or_default();
            let seen = flood::counter(&s, "ct_new_events") + flood::counter(&s, "ct_dumped");
            if seen != last.0 {
                last = (seen, Instant::now());
            }
            let fresh = poller.last_age().is_some_and(|a| a < Duration::from_millis(500));
            fresh && last.1.elapsed() > Duration::from_secs(2) && flood::counter(&s, "flows_unjudged_pending") == 0
        });
        let s = poller.last().unwrap_or_default();
        let lat = poller.stop();
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        println!("{name}_flows={n}");
        println!("{name}_insert_seconds={:.2}", took.as_secs_f64());
        println!("{name}_status_p50_ms={}", ms(lat.quantile(0.5)));
        println!("{name}_status_p99_ms={}", ms(lat.quantile(0.99)));
        println!("{name}_status_max_ms={}", ms(lat.max()));
        println!("{name}_status_answered={}", lat.answered.len());
        println!("{name}_status_unanswered={}", lat.failures.len());
        println!("{name}_rss_max_kb={}", lat.rss_max_kb);
        println!("{name}_rss_anon_max_kb={}", lat.rss_anon_max_kb);
        for c in ["devices", "devices_evicted", "neighbour_dumps", "neighbour_lookups", "pending_evicted", "pending_expired", "flows_judged", "events_lost", "resyncs"] {
            println!("{name}_{c}={}", flood::counter(&s, c));
        }
    };
    let neighbours = 5000;
    let flows: Vec<String> = (0..4u16)
        .flat_map(|k| (0..neighbours).map(move |i| flood::flow_line(flood::flood_ip(i), std::net::Ipv4Addr::new(203, 0, 113, 8), 10_000 + k)))
        .collect();
    run("flood_neighbours", &|lab: &Lab| flood::add_neighbours(lab.router(), &lab.dir, 0..neighbours), flows);
    let (burst, sources) = (250_000, 2000);
    let flows: Vec<String> = (0..burst)
        .map(|i| {
            let dst = std::net::Ipv4Addr::new(198, 18 + (i / 65_536 % 2) as u8, (i / 256 % 256) as u8, (i % 256) as u8);
            flood::flow_line(flood::flood_ip(i % sources), dst, 20_000 + (i / sources % 40_000) as u16)
        })
        .collect();
    run("flood_burst", &|lab: &Lab| flood::add_neighbours(lab.router(), &lab.dir, 0..sources / 2), flows);
}
