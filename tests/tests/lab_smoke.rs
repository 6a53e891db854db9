//! The lab itself, without leash: the topology routes as designed, and
//! everything it made is gone after the drop. If this fails, every other
//! lab test fails for a harness reason, not a daemon one.

use std::io::{Read, Write};
use std::time::Duration;

use leash_lab::{ip, ip4, ip6, Lab};

#[test]
fn topology_routes_lan_router_wan_and_cleans_up() {
    let mut lab = Lab::new("topology_routes");
    lab.device(1);
    lab.device(2);
    let names: Vec<String> = [lab.router().name.clone(), lab.wan().name.clone(), lab.dev(1).name.clone(), lab.dev(2).name.clone()].to_vec();
    let wan = lab.wan_tcp_server(443);
    let router = lab.router_tcp_server(8080);
    let dev2 = lab.device_tcp_server(2, 8080);

    // Device → cloud over IPv4 and IPv6, with bytes counted per device address.
    let mut s = lab.tcp_connect(1, ip("203.0.113.7"), 443, Duration::from_secs(2)).expect("dev1 → 203.0.113.7:443");
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    lab.wait_until(Duration::from_secs(2), "server counted dev1's bytes", || wan.bytes_from(ip4(1)) == 5);
    let mut s6 = lab.tcp_connect(1, ip("2001:db8:bad::8"), 443, Duration::from_secs(2)).expect("dev1 → [2001:db8:bad::8]:443");
    s6.write_all(b"v6").unwrap();
    lab.wait_until(Duration::from_secs(2), "server counted dev1's v6 bytes", || wan.bytes_from(ip6(1)) == 2);

    // Device → router, device → device.
    assert!(lab.can_connect(1, ip("192.168.7.1"), 8080));
    assert!(lab.can_connect(1, ip("fd00:7::1"), 8080));
    assert!(lab.can_connect(1, ip4(2), 8080));
    assert!(lab.can_connect(1, ip6(2), 8080));
    lab.wait_until(Duration::from_secs(2), "router and device 2 accepted", || router.accepted() == 2 && dev2.accepted() == 2);

    // The router tracks the forwarded flows once a ct rule exists (FACTS: a
    // fresh namespace tracks nothing until then).
    lab.nft_script("table inet labct {\n chain f {\n type filter hook forward priority 0;\n ct state new counter\n }\n}\n");
    let _ = lab.tcp_connect(2, ip("198.51.100.20"), 443, Duration::from_secs(2)).expect("dev2 → 198.51.100.20");
    lab.wait_until(Duration::from_secs(2), "conntrack entry for dev2's flow", || {
        lab.conntrack_count(&["-s", "192.168.7.12", "-d", "198.51.100.20"]) == 1
    });

    // An unused port is refused (RST), not silently dropped: the lab's
    // "connect times out" assertions mean a drop.
    assert!(lab.tcp_connect(1, ip("203.0.113.8"), 9, Duration::from_secs(2)).is_err());

    drop((s, s6, wan, router, dev2));
    drop(lab);
    let listed = String::from_utf8_lossy(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    for n in names {
        assert!(!listed.split_whitespace().any(|w| w == n), "namespace {n} left behind");
    }
}

#[test]
fn a_panicking_test_still_removes_its_namespaces() {
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let n2 = names.clone();
    let r = std::thread::spawn(move || {
        let mut lab = Lab::new("panicking");
        lab.device(1);
        n2.lock().unwrap().extend([lab.router().name.clone(), lab.wan().name.clone(), lab.dev(1).name.clone()]);
        panic!("deliberate");
    })
    .join();
    assert!(r.is_err());
    let listed = String::from_utf8_lossy(&std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    for n in names.lock().unwrap().iter() {
        assert!(!listed.split_whitespace().any(|w| w == n), "namespace {n} left behind");
    }
}
