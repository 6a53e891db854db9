//! Holding DNS answers (`dns_hold`, SPEC §2): no datagram of a device
//! reaches a name denied when it was resolved, however fast it sends;
//! `dns_filter = "nxdomain"` answers denied names with NXDOMAIN for that
//! device alone; a killed daemon lets answers pass and holds them again
//! when it is back; hostile packets in the queue pass and are counted.
//!
//! This kernel has no nft `queue` (FACTS): the lab queues the answers with
//! `iptables-nft -j NFQUEUE --queue-bypass` and runs leash with
//! `dns_hold = "external"`; the `queue` rule leash writes on OpenWrt is
//! golden-tested in `nft/ruleset.rs`.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use leash_lab::dns::{build_query, OUTSIDE_RESOLVER};
use leash_lab::lab::ROUTER_V4;
use leash_lab::netns::in_netns;
use leash_lab::hold::{self, allowed, leaked, resolve_and_send, tracker, tracker_zone, PORT, QUEUE, TRACKERS};
use leash_lab::netns::UdpCounter;
use leash_lab::{flood, ip, ip4, mac, Lab, QType};

/// A lab whose router resolver answers the trackers and the allowed
/// hosts (each at an address of its own, all on the WAN), with the answers
/// queued for leash. `profiles`: extra TOML (profiles, devices).
fn held_lab(name: &str, devices: u8, extra: &str) -> Lab {
    held_lab_as(name, devices, extra, false)
}

/// `held_lab`, the daemon run `as_packaged` (common::wrap_as_packaged) or not.
fn held_lab_as(name: &str, devices: u8, extra: &str, as_packaged: bool) -> Lab {
    let mut lab = common::lab(name, devices);
    if as_packaged {
        common::wrap_as_packaged(&mut lab);
    }
    let zone = tracker_zone(&lab, &[]);
    lab.start_dns(&zone);
    lab.queue_dns_answers(QUEUE);
    lab.start_leash(&format!(
        r#"[daemon]
lan = ["br-lan"]
dns_hold = "external"
dns_queue = {QUEUE}

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "block"
deny = ["trackers"]

[list.trackers]
selectors = ["tracking.example.com"]
{extra}
"#
    ));
    for n in 1..=devices {
        lab.udp_send(n, ip(ROUTER_V4), 9);
        lab.wait_until(Duration::from_secs(5), "device known", || lab.device_report(&mac(n)).is_some());
    }
    lab.wait_until(Duration::from_secs(5), "queue bound", || lab.daemon_log().contains("holding DNS answers"));
    lab
}

fn settle(lab: &Lab, counter: &UdpCounter, n: u8) {
    assert!(hold::settle(lab, counter, n), "the allowed probe never arrived: the lab proves nothing\n{}", lab.diagnostics());
}

#[test]
fn no_datagram_reaches_a_denied_name_resolved_and_sent_to_at_once() {
    let lab = held_lab("hold-udp", 1, "");
    let counter = lab.wan_udp_counter(PORT);
    // The control: allowed names, same path, get through.
    assert_eq!(resolve_and_send(&lab, 1, (0..5).map(|i| allowed(i).0).collect()), 5);
    // 20 rounds, one denied name each, sent to the moment it is answered.
    let mut answered = 0;
    for i in 0..20 {
        answered += resolve_and_send(&lab, 1, vec![tracker(i).0]);
    }
    settle(&lab, &counter, 1);
    let ok = counter.matching(ip4(1), |b| b.starts_with(b"first 198.18.9."));
    let s = lab.leash_json(&["status"]);
    println!("rounds=20 answered={answered} leaked={} allowed_through={ok} dns_held={}", leaked(&counter, 1), flood::counter(&s, "dns_held"));
    assert_eq!(ok, 5, "the allowed names' datagrams must get through");
    assert_eq!(answered, 20, "every denied name is answered (held, not dropped)");
    assert!(flood::counter(&s, "dns_held") >= 25, "answers were not held: {s}");
    assert_eq!(leaked(&counter, 1), 0, "datagrams to denied names got through\n{}", lab.diagnostics());

    // TCP: the SYN to a denied name's address is dropped; no byte arrives.
    let server = lab.wan_tcp_server(PORT);
    for i in 20..23 {
        let (name, _) = tracker(i);
        let sent = in_netns(&lab.dev(1).name, move || {
            let r = leash_lab::dns::query_here(ip(ROUTER_V4), &name, QType::A, Duration::from_secs(2)).expect("answer");
            let addr: IpAddr = *r.addrs.first().expect("an address");
            match std::net::TcpStream::connect_timeout(&SocketAddr::new(addr, PORT), Duration::from_millis(500)) {
                Ok(mut s) => std::io::Write::write(&mut s, &[0x55; 4096]).unwrap_or(0),
                Err(_) => 0,
            }
        });
        assert_eq!(sent, 0, "device 1 connected to a denied name's address");
    }
    assert_eq!(server.bytes_from(ip4(1)), 0);
}

#[test]
fn three_hundred_denied_names_in_a_burst_get_nothing_through() {
    let lab = held_lab("hold-burst", 1, "");
    let counter = lab.wan_udp_counter(PORT);
    let answered = resolve_and_send(&lab, 1, (0..TRACKERS).map(|i| tracker(i).0).collect());
    settle(&lab, &counter, 1);
    let s = lab.leash_json(&["status"]);
    println!("burst names={TRACKERS} answered={answered} leaked={} dns_held={} blocks_in_kernel={}", leaked(&counter, 1), flood::counter(&s, "dns_held"), s["blocks_in_kernel"]);
    // Every held answer counts against dnsmasq's send buffer (208 KiB, ≈832
    // bytes each: 256 answers) until its verdict: a burst that dnsmasq
    // answers faster than leash releases loses the answers past that
    // (dnsmasq's sendto gets EAGAIN; the device asks again). None leaks.
    assert!(answered >= 250, "only {answered} of {TRACKERS} answered");
    assert_eq!(leaked(&counter, 1), 0, "datagrams to denied names got through\n{}", lab.diagnostics());
    let elems = lab.set_elements("block_v4");
    let placed = (0..TRACKERS).filter(|&i| elems.contains(&format!("{} . {}", mac(1), tracker(i).1))).count();
    assert!(placed >= answered, "{placed} block elements for {answered} answered trackers");
}

/// Device 1 (profile `cam`, `dns_filter = "nxdomain"`) asks for denied
/// names: NXDOMAIN, for A and AAAA and through a CNAME chain, with
/// `dns=nxdomain` on its alert line. Device 2 (profile `iot`, no filter)
/// and device 3 (`cam`, but consented to one name) get the real answers.
#[test]
fn dns_filter_answers_nxdomain_to_the_denied_device_alone() {
    let extra = format!(
        r#"
[profile.cam]
unlisted = "allow"
denied = "block"
deny = ["trackers"]
dns_filter = "nxdomain"

[[device]]
mac = "{}"
profile = "cam"

[[device]]
mac = "{}"
profile = "cam"
consent = ["=t1.tracking.example.com"]
"#,
        mac(1),
        mac(3)
    );
    let lab = held_lab("hold-nx", 3, &extra);
    let ask = |n: u8, name: &str, q: QType| lab.try_resolve(n, ROUTER_V4, name, q).unwrap_or_else(|e| panic!("device {n} {name}: {e}\n{}", lab.diagnostics()));
    for (name, q) in [("t0.tracking.example.com", QType::A), ("t0.tracking.example.com", QType::Aaaa), ("cdn.example.org", QType::A)] {
        let r = ask(1, name, q);
        assert_eq!((r.rcode, r.addrs.len()), (3, 0), "device 1 {name} {q:?}: {r:?}");
        let r = ask(2, name, q);
        assert_eq!(r.rcode, 0, "device 2 {name} {q:?}");
        assert!(!r.addrs.is_empty(), "device 2 {name} {q:?}: {r:?}");
    }
    // Over IPv6 too (ip6tables queues it, the rewrite's checksum is right
    // or the device's stack drops it and this times out).
    let r = lab.try_resolve(1, leash_lab::lab::ROUTER_V6, "t0.tracking.example.com", QType::A).expect("an answer over IPv6");
    assert_eq!((r.rcode, r.addrs.len()), (3, 0), "device 1 over IPv6: {r:?}");
    // Over TCP the answer passes (no rewrite of a stream) and its address
    // is blocked for the device.
    let r = in_netns(&lab.dev(1).name, || leash_lab::dns::query_tcp_here(ip(ROUTER_V4), "t5.tracking.example.com", QType::A, Duration::from_secs(2))).expect("a TCP answer");
    assert_eq!((r.rcode, r.addrs.clone()), (0, vec![ip(&tracker(5).1)]), "{r:?}");
    lab.wait_until(Duration::from_secs(2), "the TCP answer's address blocked", || lab.set_has("block_v4", &format!("{} . {}", mac(1), tracker(5).1)));
    // A consented name is answered; an allowed one too.
    let r = ask(3, "t1.tracking.example.com", QType::A);
    assert_eq!((r.rcode, r.addrs), (0, vec![ip(&tracker(1).1)]));
    assert_eq!(ask(1, "ok1.example.org", QType::A).addrs, vec![ip(&allowed(1).1)]);
    let line = lab.wait_syslog("device 1's alert with dns=nxdomain", |l| l.get("device") == Some(mac(1).as_str()) && l.get("dns") == Some("nxdomain"));
    assert_eq!(line.get("rule"), Some("list:trackers"), "{line:?}");
    assert!(!lab.syslog_parsed().iter().any(|l| l.get("device") == Some(mac(2).as_str()) && l.get("dns").is_some()), "device 2's lines carry no dns=");
    let s = lab.leash_json(&["status"]);
    assert!(flood::counter(&s, "dns_nxdomain") >= 3, "{s}");
}

/// kill -9 while a device resolves in a loop: answers pass while leash is
/// down (the queue's bypass), at most the ones in flight at the kill
/// instant are lost, and after the restart answers are held again.
#[test]
fn answers_pass_while_leash_is_down_and_are_held_again_after_a_restart() {
    let mut lab = held_lab("hold-kill", 1, "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ns, s2) = (lab.dev(1).name.clone(), stop.clone());
    let looper = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                match leash_lab::dns::query_here(ip(ROUTER_V4), &allowed(3).0, QType::A, Duration::from_secs(1)) {
                    Ok(r) if r.rcode == 0 && !r.addrs.is_empty() => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    });
    let held = |lab: &Lab| flood::counter(&lab.leash_json(&["status"]), "dns_held");
    lab.wait_until(Duration::from_secs(5), "answers held", || held(&lab) >= 20);
    lab.kill9();
    // Down: the loop's answers still come (bypass).
    let down_since = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let down_for = down_since.elapsed();
    lab.restart_leash();
    lab.wait_until(Duration::from_secs(5), "queue bound again", || held(&lab) >= 20);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = looper.join().expect("loop");
    println!("loop ok={ok} failed={failed} down_ms={}", down_for.as_millis());
    assert!(failed <= 1, "{failed} answers lost around the kill (only the one in flight may be)");
    assert!(ok >= 40, "the loop got only {ok} answers");
    // And holding works again: no first datagram to a denied name.
    let counter = lab.wan_udp_counter(PORT);
    let answered: usize = (0..10).map(|i| resolve_and_send(&lab, 1, vec![tracker(100 + i).0])).sum();
    settle(&lab, &counter, 1);
    assert_eq!(answered, 10);
    assert_eq!(leaked(&counter, 1), 0, "datagrams to denied names got through after the restart\n{}", lab.diagnostics());
}

/// An outside resolver (a hostile one) answers a device's queries with a
/// truncated header, a datagram that is no DNS at all, and a header that
/// announces 65 535 records it does not carry. Each is held, passes at once
/// to the device and is counted; the daemon goes on.
#[test]
fn hostile_packets_in_the_queue_pass_and_are_counted() {
    let lab = held_lab("hold-hostile", 1, "");
    let responder = in_netns(&lab.wan().name, || UdpSocket::bind(SocketAddr::new(ip(OUTSIDE_RESOLVER), 53))).expect("bind :53 in the WAN");
    responder.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let bodies: Vec<Vec<u8>> = vec![vec![0x12, 0x34, 0x81], b"HTTP/1.1 200 OK\r\n\r\nnot dns".to_vec(), vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]];
    let before = flood::counter(&lab.leash_json(&["status"]), "dns_held_unreadable");
    for body in &bodies {
        let ns = lab.dev(1).name.clone();
        let got = std::thread::spawn(move || {
            in_netns(&ns, move || {
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                s.send_to(&build_query(7, "hostile.example", QType::A), SocketAddr::new(ip(OUTSIDE_RESOLVER), 53)).expect("send");
                let mut buf = [0u8; 512];
                s.recv(&mut buf).map(|n| buf[..n].to_vec())
            })
        });
        let mut buf = [0u8; 512];
        let (_, peer) = responder.recv_from(&mut buf).expect("the query reached the outside resolver");
        responder.send_to(body, peer).expect("answer");
        let got = got.join().expect("device thread").expect("the hostile answer reached the device");
        assert_eq!(&got, body, "passed unchanged");
    }
    let s = lab.leash_json(&["status"]);
    assert!(flood::counter(&s, "dns_held_unreadable") >= before + 3, "{s}");
    assert!(lab.daemon_pid().is_some());
}

/// This kernel has no nft `queue`: `auto` (the default) snoops instead,
/// with one warning, and says so in `status`; `on` refuses to start, with
/// the reason, and leaves no table behind.
#[test]
fn auto_falls_back_to_snooping_and_on_refuses_without_nft_queue() {
    let mut lab = common::lab("hold-auto", 1);
    lab.start_leash(&common::config("enforce", "block", "", ""));
    let s = lab.leash_json(&["status"]);
    assert_eq!(s["dns_answers_path"], "snooped", "{s}");
    let warn = lab.wait_syslog("the fallback warning", |l| l.msg.contains("dns_hold") && l.msg.contains("kmod-nft-queue"));
    assert_eq!(warn.pri & 7, leash_lab::PRI_WARNING & 7, "{warn:?}");
    assert_eq!(lab.syslog_parsed().iter().filter(|l| l.msg.contains("kmod-nft-queue")).count(), 1, "one warning");
    assert!(lab.nft_json().is_some());
    lab.stop_leash();
    let config = lab.write_config(&common::config("enforce", "block", "dns_hold = \"on\"", ""));
    let out = lab.router().try_exec(&[leash_lab::lab::leash_bin().to_str().unwrap_or_default(), "daemon", "--config", config.to_str().unwrap_or_default()]);
    let err = leash_lab::lab::text(&out.stderr);
    assert!(!out.status.success(), "leash started with dns_hold = on on a kernel without nft queue");
    assert!(err.contains("dns_hold") && err.contains("kmod-nft-queue"), "{err}");
    assert!(!lab.table_exists(), "a refused start left its table");
}

/// With answers held, the NFLOG group still carries dns_bypass's cut
/// logs: a device of a blocking profile that tries DNS over TLS is cut and
/// the line names it; its plain DNS to the WAN is answered by the router
/// (held like any answer).
#[test]
fn dns_bypass_lines_come_while_answers_are_held() {
    let extra = format!("\n[profile.strict]\nunlisted = \"allow\"\ndns_bypass = \"block\"\n\n[[device]]\nmac = \"{}\"\nprofile = \"strict\"\n", mac(1));
    let lab = held_lab("hold-bypass", 1, &extra);
    let _dot = lab.wan_tcp_server(853);
    common::assert_dropped(&lab, 1, &tracker(250).1, 853);
    lab.wait_syslog_verb("BLOCK", &[("device", &mac(1)), ("dport", "853"), ("rule", "dns_bypass")]);
    // Asked directly, the WAN's 198.51.100.20 (no resolver runs there):
    // the router's dnsmasq answers instead, and that answer is held.
    let held = flood::counter(&lab.leash_json(&["status"]), "dns_held");
    let r = lab.try_resolve(1, OUTSIDE_RESOLVER, &allowed(2).0, QType::A).expect("redirected to the router's resolver");
    assert_eq!(r.addrs, vec![ip(&allowed(2).1)]);
    assert!(flood::counter(&lab.leash_json(&["status"]), "dns_held") > held);
}

/// A clean stop (SIGTERM) while a device resolves in a loop: the answers
/// held at that moment are let go, not dropped with the queue's socket.
#[test]
fn a_clean_stop_loses_no_answer() {
    let mut lab = held_lab("hold-stop", 1, "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ns, s2) = (lab.dev(1).name.clone(), stop.clone());
    let looper = std::thread::spawn(move || {
        in_netns(&ns, move || {
            // Many small queries in flight, so that some are held at the stop.
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.connect(SocketAddr::new(ip(ROUTER_V4), 53)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(1500))).ok();
            let (mut sent, mut got, mut buf) = (0u32, 0u32, [0u8; 512]);
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..8 {
                    let _ = s.send(&build_query(sent as u16, &allowed(4).0, QType::A));
                    sent += 1;
                }
                for _ in 0..8 {
                    if s.recv(&mut buf).is_ok() {
                        got += 1;
                    }
                }
            }
            (sent, got)
        })
    });
    let held = |lab: &Lab| flood::counter(&lab.leash_json(&["status"]), "dns_held");
    lab.wait_until(Duration::from_secs(5), "answers held", || held(&lab) >= 200);
    lab.stop_leash();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, got) = looper.join().expect("loop");
    println!("clean stop: sent={sent} answered={got}");
    assert_eq!(sent, got, "{} answers lost at the clean stop", sent - got);
}

/// With only the OpenWrt package's capabilities (CAP_NET_ADMIN) and
/// no_new_privs, leash binds the queue and holds answers as well.
#[test]
fn holds_answers_with_the_packaged_capabilities_alone() {
    let lab = held_lab_as("hold-caps", 1, "", true);
    let counter = lab.wan_udp_counter(PORT);
    assert_eq!(resolve_and_send(&lab, 1, (0..3).map(|i| allowed(i).0).collect()), 3);
    let mut answered = 0;
    for i in 0..5 {
        answered += resolve_and_send(&lab, 1, vec![tracker(i).0]);
    }
    settle(&lab, &counter, 1);
    let s = lab.leash_json(&["status"]);
    assert_eq!(answered, 5, "every denied name is answered (held, not dropped)");
    assert_eq!(leaked(&counter, 1), 0, "no datagram reaches a denied name\n{}", lab.diagnostics());
    assert!(flood::counter(&s, "dns_held") >= 8, "answers were not held: {s}");
}
