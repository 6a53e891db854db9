//! Enforce mode: a denied destination quarantines or blocks, in the kernel,
//! for IPv4 and IPv6 (SPEC §2 step 5, §5, §6).

mod common;

use std::time::Duration;

use common::*;
use leash_lab::{ip, ip4, mac, netns, PRI_WARNING};

/// (a) Quarantine: the device loses the internet but keeps the LAN and the
/// router; inbound from the WAN to it is dropped; the CLI says so.
#[test]
fn denied_destination_quarantines_the_device() {
    let mut lab = lab("quarantine", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    let _router = lab.router_tcp_server(8080);
    let _dev2 = lab.device_tcp_server(2, 8080);
    let _dev1 = lab.device_tcp_server(1, 8080);
    lab.start_leash(&config("enforce", "quarantine", "", ""));

    // Before: the unlisted host is reachable, and the WAN reaches the device.
    assert_reaches(&lab, 1, OK4, HTTPS);
    assert!(netns::tcp_connect(&lab.wan().name, ip4(1), 8080, Duration::from_secs(2)).is_ok(), "WAN → device 1 before quarantine");

    let line = quarantine_dev1(&lab);
    assert!(line.msg.starts_with(&format!("QUARANTINE device={} ", mac(1))), "{line:?}");

    // No internet at all, no inbound from it; LAN and router still work.
    assert_dropped(&lab, 1, OK4, HTTPS);
    assert_dropped(&lab, 1, "198.51.100.20", HTTPS);
    assert_reaches(&lab, 1, "192.168.7.1", 8080);
    assert_reaches(&lab, 1, "192.168.7.12", 8080);
    let inbound = netns::tcp_connect(&lab.wan().name, ip4(1), 8080, Duration::from_secs(1));
    assert!(inbound.is_err(), "WAN → quarantined device must be dropped");
    // The other device is not affected.
    assert_reaches(&lab, 2, OK4, HTTPS);

    let d = lab.device_report(&mac(1)).expect("device 1 in `leash devices --json`");
    assert_eq!(d["state"], "quarantined", "{d}");
    assert_eq!(d["profile"], "iot", "{d}");
    let text = lab.leash_ok(&["devices"]);
    let row = text.lines().find(|l| l.starts_with(&mac(1))).unwrap_or_else(|| panic!("no row for device 1:\n{text}"));
    assert!(row.contains("quarantined"), "{text}");
    assert!(text.lines().next().unwrap().starts_with("MAC"), "table header: {text}");
}

/// (b) Block: only that destination, only for that device.
#[test]
fn denied_destination_blocks_one_destination_for_one_device() {
    let mut lab = lab("block", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "block", "", &device_profile(2, "trusted")));

    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds device 1 . 203.0.113.7", || lab.set_has("block_v4", &block_elem(1, BAD4)));

    assert_dropped(&lab, 1, BAD4, HTTPS);
    assert_reaches(&lab, 1, OK4, HTTPS);
    // Device 2 (profile trusted) still reaches the blocked host, and stays unblocked.
    assert_reaches(&lab, 2, BAD4, HTTPS);
    assert_reaches(&lab, 2, BAD4, HTTPS);
    assert_eq!(lab.set_elements("block_v4"), [block_elem(1, BAD4)]);
    assert!(lab.set_elements("quarantine_mac").is_empty(), "a block is not a quarantine");
    let d = lab.device_report(&mac(1)).expect("device 1 listed");
    assert_ne!(d["state"], "quarantined", "{d}");
}

/// (i) IPv6: the same decisions land in the v6 sets.
#[test]
fn ipv6_destinations_block_and_quarantine() {
    let mut lab = lab("ipv6", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "", &device_profile(2, "phone")));

    // Device 2 (phone): block.
    trigger(&lab, 2, BAD6, "BLOCK", PRI_WARNING, ("list:bad", "phone"));
    lab.wait_until(Duration::from_secs(5), "block_v6 holds device 2 . 2001:db8:bad::7", || lab.set_has("block_v6", &block_elem(2, BAD6)));
    assert_dropped(&lab, 2, BAD6, HTTPS);
    assert_reaches(&lab, 2, OK6, HTTPS);

    // Device 1 (iot): quarantine, with its IPv6 address held for inbound drops.
    let l = trigger(&lab, 1, BAD6, "QUARANTINE", PRI_WARNING, ("list:bad", "iot"));
    assert_eq!(l.get("ip"), Some("fd00:7::11"), "{l:?}");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 1", || lab.set_has("quarantine_mac", &mac(1)));
    lab.wait_until(Duration::from_secs(5), "quarantine_v6 holds fd00:7::11", || lab.set_has("quarantine_v6", "fd00:7::11"));
    assert_dropped(&lab, 1, OK6, HTTPS);
    assert_dropped(&lab, 1, OK4, HTTPS);
    assert!(lab.can_connect(2, ip(OK6), HTTPS), "device 2 unaffected by device 1's quarantine");
}
