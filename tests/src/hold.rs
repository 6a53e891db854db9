//! Held DNS answers in the lab (`dns_hold`): the tracker names a router
//! resolver answers, a device that sends its first datagram the moment an
//! answer arrives (as a QUIC client does), and a paced query stream that
//! measures each answer's latency. Shared by the lab tests and the bench.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dns::{build_query, parse_reply, QType, Zone};
use crate::lab::{ip, ip4, Lab, ROUTER_V4};
use crate::netns::{in_netns, UdpCounter};

/// The NFQUEUE the lab queues answers to.
pub const QUEUE: u16 = 5336;
/// Where devices send their first-flight datagrams.
pub const PORT: u16 = 4433;
pub const TRACKERS: usize = 300;

/// Tracker i: `t<i>.tracking.example.com` at 198.18.1.x / 198.18.2.x.
pub fn tracker(i: usize) -> (String, String) {
    (format!("t{i}.tracking.example.com"), format!("198.18.{}.{}", 1 + i / 250, 1 + i % 250))
}

/// Allowed host i (i < 250): `ok<i>.example.org` at 198.18.9.x.
pub fn allowed(i: usize) -> (String, String) {
    (format!("ok{i}.example.org"), format!("198.18.9.{}", 1 + i % 250))
}

/// The router resolver's zone: every tracker and 20 allowed hosts at an
/// address of its own (added to the WAN), one tracker over IPv6 too, and
/// `cdn.example.org`, a CNAME to a tracker. `extra` adds options (the DIY
/// anchor's `--nftset`).
pub fn tracker_zone(lab: &Lab, extra: &[String]) -> Zone {
    let hosts = lab.dir.join("trackers.hosts");
    let mut body = String::new();
    let mut addrs = Vec::new();
    for (n, a) in (0..TRACKERS).map(tracker).chain((0..20).map(allowed)) {
        body.push_str(&format!("{a} {n}\n"));
        addrs.push(a);
    }
    body.push_str("2001:db8:7::1 t0.tracking.example.com\n");
    std::fs::write(&hosts, body).expect("write hosts");
    lab.add_wan_hosts(&addrs);
    let mut zone = Zone::new()
        .arg(&format!("--addn-hosts={}", hosts.display()))
        .host("edge.tracking.example.com", "198.18.8.1")
        .cname("cdn.example.org", "edge.tracking.example.com");
    for a in extra {
        zone = zone.arg(a);
    }
    zone
}

/// In device n's namespace: asks the router for each name (all queries
/// sent at once) and sends one datagram to the answer's first address the
/// moment each answer arrives; the payload names the target
/// (`first <addr>`). Returns the answers that carried an address.
pub fn resolve_and_send(lab: &Lab, n: u8, names: Vec<String>) -> usize {
    in_netns(&lab.dev(n).name, move || {
        let q = UdpSocket::bind("0.0.0.0:0").expect("bind");
        // Room for every answer of the burst: with the default 208 KiB
        // (≈832 bytes a datagram) the socket itself would drop past 256.
        set_rcvbuf(&q, 4 << 20);
        q.connect(SocketAddr::new(ip(ROUTER_V4), 53)).expect("connect");
        let out = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for (i, name) in names.iter().enumerate() {
            q.send(&build_query(0x4000 + i as u16, name, QType::A)).expect("send query");
        }
        let (mut answered, mut replies) = (0, 0);
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(5);
        q.set_read_timeout(Some(Duration::from_millis(200))).ok();
        while replies < names.len() && Instant::now() < end {
            let Ok(k) = q.recv(&mut buf) else { continue };
            let Some(r) = parse_reply(&buf[..k]) else { continue };
            replies += 1;
            if let Some(addr) = r.addrs.first() {
                let _ = out.send_to(format!("first {addr}").as_bytes(), SocketAddr::new(*addr, PORT));
                answered += 1;
            }
        }
        answered
    })
}

/// The first-flight datagrams of device n that reached a tracker.
pub fn leaked(counter: &UdpCounter, n: u8) -> u64 {
    counter.matching(ip4(n), |b| b.starts_with(b"first 198.18.1.") || b.starts_with(b"first 198.18.2."))
}

/// Waits until a probe device n sends after its other datagrams has
/// arrived: those before it (same path, same order) have arrived by then
/// if they ever do. False when no probe ever arrives.
pub fn settle(lab: &Lab, counter: &UdpCounter, n: u8) -> bool {
    let (_, probe) = allowed(19);
    let is_probe = |b: &[u8]| b == b"probe";
    let before = counter.matching(ip4(n), is_probe);
    let end = Instant::now() + Duration::from_secs(5);
    while counter.matching(ip4(n), is_probe) == before && Instant::now() < end {
        let _ = crate::netns::udp_send(&lab.dev(n).name, ip(&probe), PORT, b"probe");
        std::thread::sleep(Duration::from_millis(50));
    }
    counter.matching(ip4(n), is_probe) > before
}

/// Answer latencies (µs, sorted) of a query stream paced at `rate` per
/// second for `count` queries from device n to `server`, and how many
/// went unanswered.
pub fn paced_latencies(lab: &Lab, n: u8, server: IpAddr, name: &str, rate: u32, count: usize) -> (Vec<u64>, usize) {
    let name = name.to_string();
    in_netns(&lab.dev(n).name, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.connect(SocketAddr::new(server, 53)).expect("connect");
        let r = s.try_clone().expect("clone");
        r.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; 65536]));
        let got = Arc::new(Mutex::new(Vec::with_capacity(count)));
        let (sent2, got2) = (sent.clone(), got.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok(k) = r.recv(&mut buf) {
                let at = Instant::now();
                if let Some(rep) = parse_reply(&buf[..k]) {
                    if let Some(t) = sent2.lock().unwrap()[rep.id as usize].take() {
                        got2.lock().unwrap().push(at.duration_since(t).as_micros() as u64);
                    }
                }
            }
        });
        let queries: Vec<Vec<u8>> = (0..count).map(|i| build_query(i as u16, &name, QType::A)).collect();
        // Paced by the millisecond (rate/1000 queries each), sleeping in
        // between: a spinning sender would take a core from the resolver
        // and the daemon on a two-core box, and be the noise it measures.
        let per_ms = (rate as usize / 1000).max(1);
        let t0 = Instant::now();
        for (tick, chunk) in queries.chunks(per_ms).enumerate() {
            let due = t0 + Duration::from_millis(tick as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for (k, q) in chunk.iter().enumerate() {
                sent.lock().unwrap()[(tick * per_ms + k) % 65536] = Some(Instant::now());
                let _ = s.send(q);
            }
        }
        let _ = reader.join();
        let mut v = std::mem::take(&mut *got.lock().unwrap());
        v.sort_unstable();
        let lost = count - v.len();
        (v, lost)
    })
}

/// The p-th percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// SO_RCVBUFFORCE (root) so the size holds beyond rmem_max.
fn set_rcvbuf(s: &UdpSocket, bytes: usize) {
    use std::os::fd::AsFd;
    let _ = nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::RcvBufForce, &bytes);
}
