//! (f) Holding DNS answers (`dns_hold`): the first-flight datagrams that
//! reach denied names with leash holding the answers, with leash snooping
//! a copy (NFLOG), and with the DIY anchor a user would set up instead
//! (dnsmasq `--nftset=` filling a set that one drop rule reads), each on
//! the same 300-name burst and 20 single-name rounds; and the added
//! latency of holding (p50/p99) at paced query rates, with the answers
//! per second leash holds when dnsmasq is not the limit.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use leash_lab::dns::{build_query, QType, OUTSIDE_RESOLVER};
use leash_lab::hold::{leaked, paced_latencies, percentile, resolve_and_send, settle, tracker, tracker_zone, PORT, QUEUE, TRACKERS};
use leash_lab::lab::{ip, mac, Lab, ROUTER_V4};
use leash_lab::netns::in_netns;
use leash_lab::wait::poll_until;

fn config(hold: &str) -> String {
    format!(
        "[daemon]\ndns_hold = \"{hold}\"\ndns_queue = {QUEUE}\n\n[defaults]\nprofile = \"iot\"\n\n[profile.iot]\nunlisted = \"allow\"\ndenied = \"block\"\ndeny = [\"trackers\"]\n\n[list.trackers]\nselectors = [\"tracking.example.com\"]\n"
    )
}

/// A lab of devices 1..=3 whose router dnsmasq forwards every query (no
/// cache) to an upstream resolver in the WAN holding the tracker zone, as
/// a router resolves names; `extra`: the router dnsmasq's own options.
/// dnsmasq adds to an nftset only what it forwards, so the DIY anchor
/// needs the names upstream, and the other setups get the same path.
fn lab(name: &str, extra: &[String]) -> Lab {
    let mut lab = Lab::new(name);
    for n in 1..=3 {
        lab.device(n);
    }
    let zone = tracker_zone(&lab, &[]);
    lab.start_outside_dns(&zone);
    // With a cache, as on a router: the paced latency stream asks one name.
    let mut router = leash_lab::Zone::new().arg(&format!("--server={OUTSIDE_RESOLVER}")).arg("--cache-size=10000");
    for a in extra {
        router = router.arg(a);
    }
    lab.start_dns(&router);
    lab
}

fn known(lab: &Lab, n: u8) {
    lab.udp_send(n, ip(ROUTER_V4), 9);
    lab.wait_until(Duration::from_secs(5), "device known", || lab.device_report(&mac(n)).is_some());
}

/// The 300-name burst from device n: (datagrams that reached a tracker,
/// answers with an address).
fn run_burst(lab: &Lab, n: u8) -> (u64, usize) {
    let counter = lab.wan_udp_counter(PORT);
    let answered = resolve_and_send(lab, n, (0..TRACKERS).map(|i| tracker(i).0).collect());
    settle(lab, &counter, n);
    (leaked(&counter, n), answered)
}

/// 20 rounds of one name each from device n (one that did not resolve
/// them in the burst): datagrams that reached a tracker.
fn rounds(lab: &Lab, n: u8) -> u64 {
    let counter = lab.wan_udp_counter(PORT);
    for i in 0..20 {
        resolve_and_send(lab, n, vec![tracker(i).0]);
    }
    settle(lab, &counter, n);
    leaked(&counter, n)
}

fn latency_line(what: &str, lab: &Lab, rate: u32) {
    // Warm: the name cached, the flow and the device known.
    let _ = paced_latencies(lab, 3, ip(ROUTER_V4), "ok1.example.org", 1000, 200);
    let (lat, lost) = paced_latencies(lab, 3, ip(ROUTER_V4), "ok1.example.org", rate, rate as usize);
    println!("dns_{what}_rate_{rate}_p50_us={} dns_{what}_rate_{rate}_p99_us={} dns_{what}_rate_{rate}_unanswered={lost}", percentile(&lat, 0.5), percentile(&lat, 0.99));
}

pub fn hold_figures() {
    // leash holding (the lab queues with iptables: no nft queue here).
    let mut l = lab("bench-hold", &[]);
    l.queue_dns_answers(QUEUE);
    l.start_leash(&config("external"));
    for n in 1..=3 {
        known(&l, n);
    }
    let (burst, answered) = run_burst(&l, 1);
    println!("hold_burst_names={TRACKERS} hold_burst_answered={answered} hold_burst_datagrams_to_denied={burst}");
    println!("hold_rounds=20 hold_rounds_datagrams_to_denied={}", rounds(&l, 2));
    for rate in [1000, 5000, 10_000] {
        latency_line("held", &l, rate);
    }
    held_per_second(&l);
    drop(l);

    // leash snooping a copy (NFLOG), the same lab otherwise.
    let mut l = lab("bench-snoop", &[]);
    l.start_leash(&config("off"));
    for n in 1..=3 {
        known(&l, n);
    }
    let (burst, answered) = run_burst(&l, 1);
    println!("snoop_burst_names={TRACKERS} snoop_burst_answered={answered} snoop_burst_datagrams_to_denied={burst}");
    println!("snoop_rounds=20 snoop_rounds_datagrams_to_denied={}", rounds(&l, 2));
    for rate in [1000, 5000, 10_000] {
        latency_line("snooped", &l, rate);
    }
    drop(l);

    // No leash, no rules: dnsmasq alone (the latency baseline).
    let l = lab("bench-bare", &[]);
    for rate in [1000, 5000, 10_000] {
        latency_line("bare", &l, rate);
    }
    held_per_second(&l);
    drop(l);

    // The DIY anchor: dnsmasq puts every tracker answer into a set before
    // it answers, one forward rule drops the set's addresses. Every device
    // alike, no consent, no names in any log.
    let l = lab("bench-diy", &["--nftset=/tracking.example.com/4#inet#diy#deny4".to_string()]);
    l.nft_script("table inet diy {\n\tset deny4 { type ipv4_addr; flags timeout; timeout 1h; }\n\tchain forward { type filter hook forward priority filter; policy accept; ip daddr @deny4 drop; }\n}\n");
    let (burst, answered) = run_burst(&l, 1);
    println!("diy_burst_names={TRACKERS} diy_burst_answered={answered} diy_burst_datagrams_to_denied={burst}");
    println!("diy_rounds=20 diy_rounds_datagrams_to_denied={}", rounds(&l, 2));
    for rate in [1000, 5000, 10_000] {
        latency_line("diy", &l, rate);
    }
}

/// Held answers per second when dnsmasq is not the limit: device 3 floods
/// a stub outside resolver that answers at once (each answer crosses the
/// forward hook and is held), 64 queries in flight; without leash (bare)
/// the same flood shows what the lab itself can carry.
fn held_per_second(lab: &Lab) {
    const STUB: &str = "198.51.100.53";
    lab.add_wan_hosts(&[STUB.to_string()]);
    let responder = in_netns(&lab.wan().name, || UdpSocket::bind(SocketAddr::new(ip(STUB), 53))).expect("bind the stub resolver");
    responder.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let stub = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let answer = leash_lab::dns::build_answer(0, "ok1.example.org", "198.18.9.2".parse().unwrap());
        while let Ok((n, peer)) = responder.recv_from(&mut buf) {
            let mut a = answer.clone();
            a[..2].copy_from_slice(&buf[..2.min(n)]);
            let _ = responder.send_to(&a, peer);
        }
    });
    let before = if lab.daemon_pid().is_some() { status_counter(lab, "dns_held") } else { 0 };
    let total = 100_000;
    let server: IpAddr = ip(STUB);
    let t0 = Instant::now();
    let replies = in_netns(&lab.dev(3).name, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.connect(SocketAddr::new(server, 53)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(300))).ok();
        let q = build_query(1, "ok1.example.org", QType::A);
        let (mut sent, mut got, mut buf) = (0usize, 0usize, [0u8; 512]);
        while got < total {
            while sent < total && sent - got < 64 {
                let _ = s.send(&q);
                sent += 1;
            }
            match s.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        got
    });
    let secs = t0.elapsed().as_secs_f64();
    let what = if lab.daemon_pid().is_some() { "held" } else { "bare" };
    let mut last = before;
    if lab.daemon_pid().is_some() {
        last = status_counter(lab, "dns_held");
        poll_until(Duration::from_secs(5), || {
            let c = status_counter(lab, "dns_held");
            let done = c == last;
            last = c;
            done
        });
    }
    println!("{what}_flood_queries={total} {what}_flood_replies={replies} {what}_flood_seconds={secs:.2} {what}_answers_per_second={:.0} {what}_counted={}", replies as f64 / secs, last - before);
    drop(stub);
}

fn status_counter(lab: &Lab, name: &str) -> u64 {
    leash_lab::flood::counter(&lab.leash_json(&["status"]), name)
}
