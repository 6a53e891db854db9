//! Alerts are never silently lost (SPEC §5): a burst of alert lines to a
//! syslog daemon that does not keep up waits in leash's queue and arrives
//! whole, each line once, once syslog reads again.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use leash_lab::{mac, Lab, PRI_WARNING};
use serde_json::Value;

/// As many distinct BLOCK lines as under 300 denied names in 60 ms, the
/// burst that lost 19 lines when leash sent without a queue.
const BURST: usize = 300;

/// 203.0.113.1..=254, then 198.51.100.1.. up to `BURST` addresses: all
/// routed to the WAN by the router's default route, all denied.
fn burst_addrs() -> Vec<Ipv4Addr> {
    let a = (1..=254).map(|i| Ipv4Addr::new(203, 0, 113, i));
    let b = (1..=254).map(|i| Ipv4Addr::new(198, 51, 100, i));
    a.chain(b).take(BURST).collect()
}

const CONFIG: &str = r#"[daemon]
mode = "enforce"
lan = ["br-lan"]

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "block"
deny = ["burst"]

[list.burst]
selectors = ["203.0.113.0/24", "198.51.100.0/24"]
"#;

fn status_u64(lab: &Lab, pointer: &str) -> Option<u64> {
    lab.leash_json(&["status"]).pointer(pointer).and_then(Value::as_u64)
}

/// Every BLOCK line of device 1 so far, counted per destination.
fn blocks_per_dst(lab: &Lab) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for l in lab.syslog_parsed() {
        if l.verb == "BLOCK" && l.get("device") == Some(mac(1).as_str()) {
            *seen.entry(l.get("dst").unwrap_or_default().to_string()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn alert_burst_to_a_paused_syslog_arrives_whole() {
    let mut lab = lab("alert-burst", 1);
    lab.start_leash(CONFIG);
    lab.pause_syslog();

    // One datagram to each address from one socket: one new flow each,
    // each judged from its conntrack event and logged as one BLOCK line.
    let addrs = burst_addrs();
    let to = addrs.clone();
    lab.dev(1).run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind UDP");
        for a in to {
            s.send_to(b"leash-lab", SocketAddr::from((a, 9))).expect("send UDP");
        }
    });

    lab.wait_until(Duration::from_secs(10), "leash blocks all 300 destinations", || {
        status_u64(&lab, "/blocks_in_kernel").is_some_and(|n| n >= BURST as u64)
    });
    // The paused reader took a few datagrams at most: the rest must wait
    // in leash's queue, not be dropped.
    let dropped = status_u64(&lab, "/syslog_dropped");
    assert_eq!(dropped, Some(0), "leash dropped syslog lines while syslog was slow\n{}", lab.diagnostics());
    lab.wait_until(Duration::from_secs(5), "status --json reports queued syslog lines", || {
        status_u64(&lab, "/syslog_queued").is_some_and(|n| n > 0)
    });

    lab.resume_syslog();
    lab.wait_until(Duration::from_secs(10), "all 300 BLOCK lines reach syslog", || blocks_per_dst(&lab).len() >= BURST);
    lab.wait_until(Duration::from_secs(5), "leash's syslog queue is empty", || status_u64(&lab, "/syslog_queued") == Some(0));

    let seen = blocks_per_dst(&lab);
    let want: BTreeMap<String, usize> = addrs.iter().map(|a| (a.to_string(), 1)).collect();
    assert_eq!(seen, want, "each destination's BLOCK line exactly once");
    for l in lab.syslog_parsed().iter().filter(|l| l.verb == "BLOCK") {
        assert_eq!(l.pri, PRI_WARNING, "{l:?}");
        assert!(l.has(&[("rule", "list:burst"), ("profile", "iot"), ("proto", "udp")]), "{l:?}");
    }
    assert_eq!(status_u64(&lab, "/syslog_dropped"), Some(0), "{}", lab.diagnostics());
}
