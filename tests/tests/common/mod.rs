//! Shared by the lab tests: the configurations and the few steps most
//! scenarios begin with.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::Duration;

use leash_lab::lab::{ROUTER_V4, ROUTER_V6};
use leash_lab::{ip, ip4, ip6, mac, Lab, LogLine, PRI_WARNING};

pub const BAD4: &str = "203.0.113.7";
pub const OK4: &str = "203.0.113.8";
pub const BAD6: &str = "2001:db8:bad::7";
pub const OK6: &str = "2001:db8:bad::8";
/// Served by the WAN's counting echo server in every test that needs it.
pub const HTTPS: u16 = 443;

pub const SETS: [&str; 5] = ["quarantine_mac", "quarantine_v4", "quarantine_v6", "block_v4", "block_v6"];

/// The lab's usual policy: profile `iot` (the default) sends `BAD4`/`BAD6`
/// to `denied`; `phone` blocks them; `trusted` denies nothing. Everything
/// else is allowed, so that a drop is always leash's doing. `devices` are
/// extra `[[device]]` tables, `daemon_extra` extra `[daemon]` keys.
pub fn config(mode: &str, iot_denied: &str, daemon_extra: &str, devices: &str) -> String {
    format!(
        r#"[daemon]
mode = "{mode}"
lan = ["br-lan"]
{daemon_extra}

[defaults]
profile = "iot"

[profile.iot]
unlisted = "allow"
denied = "{iot_denied}"
deny = ["bad"]

[profile.phone]
unlisted = "allow"
denied = "block"
deny = ["bad"]

[profile.trusted]
unlisted = "allow"
deny = []

[list.bad]
selectors = ["{BAD4}", "{BAD6}"]
{devices}
"#
    )
}

/// `[[device]]` giving device n a profile.
pub fn device_profile(n: u8, profile: &str) -> String {
    format!("\n[[device]]\nmac = \"{}\"\nprofile = \"{profile}\"\n", mac(n))
}

/// A lab with `devices` devices (1..=devices).
pub fn lab(name: &str, devices: u8) -> Lab {
    let mut lab = Lab::new(name);
    for n in 1..=devices {
        lab.device(n);
    }
    lab
}

/// Asserts that device n's connection to addr:port is dropped (times out),
/// not refused and not accepted.
pub fn assert_dropped(lab: &Lab, n: u8, addr: &str, port: u16) {
    match lab.tcp_connect(n, ip(addr), port, Duration::from_secs(1)) {
        Ok(_) => panic!("device {n} reached {addr}:{port}, but it should be dropped\n{}", lab.diagnostics()),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
        Err(e) => panic!("device {n} → {addr}:{port}: expected a drop (timeout), got {e}\n{}", lab.diagnostics()),
    }
}

/// Asserts that device n reaches addr:port.
pub fn assert_reaches(lab: &Lab, n: u8, addr: &str, port: u16) {
    if let Err(e) = lab.tcp_connect(n, ip(addr), port, Duration::from_secs(2)) {
        panic!("device {n} cannot reach {addr}:{port}: {e}\n{}", lab.diagnostics());
    }
}

/// Device n opens a flow to `dst:443` (its first SYN always gets through:
/// leash reacts to the conntrack event) and leash logs `verb` for it at `pri`.
pub fn trigger(lab: &Lab, n: u8, dst: &str, verb: &str, pri: u8, rule_profile: (&str, &str)) -> LogLine {
    let _ = lab.tcp_connect(n, ip(dst), HTTPS, Duration::from_secs(1));
    let l = lab.wait_syslog_verb(verb, &[("device", &mac(n)), ("dst", dst), ("rule", rule_profile.0), ("profile", rule_profile.1)]);
    assert_eq!(l.pri, pri, "{verb} must log at PRI {pri}: {l:?}");
    l
}

/// Device 1 (profile iot, denied = quarantine) talks to BAD4 and is quarantined.
pub fn quarantine_dev1(lab: &Lab) -> LogLine {
    let l = trigger(lab, 1, BAD4, "QUARANTINE", PRI_WARNING, ("list:bad", "iot"));
    assert_eq!(l.get("ip"), Some(ip4(1).to_string().as_str()), "{l:?}");
    assert_eq!(l.get("proto"), Some("tcp"), "{l:?}");
    assert_eq!(l.get("dport"), Some("443"), "{l:?}");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 1", || lab.set_has("quarantine_mac", &mac(1)));
    lab.wait_until(Duration::from_secs(5), "quarantine_v4 holds 192.168.7.11", || lab.set_has("quarantine_v4", "192.168.7.11"));
    l
}

pub fn block_elem(n: u8, dst: &str) -> String {
    format!("{} . {dst}", mac(n))
}

pub fn addr(s: &str) -> IpAddr {
    ip(s)
}
/// Device n is known to leash by its MAC on both address families, as a
/// device is once it has talked to the router (DHCP, router solicitation):
/// one datagram to the router on each family makes the router's neighbour
/// entries, which leash reads.
pub fn known_device(lab: &Lab, n: u8) {
    lab.udp_send(n, ip(ROUTER_V4), 9);
    lab.udp_send(n, ip(ROUTER_V6), 9);
    lab.wait_until(Duration::from_secs(5), &format!("leash knows device {n} by both addresses"), || {
        lab.device_report(&mac(n)).is_some_and(|d| {
            let addrs: Vec<String> = d["addresses"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
            addrs.contains(&ip4(n).to_string()) && addrs.contains(&ip6(n).to_string())
        })
    });
}

/// The capability sets the OpenWrt package gives the daemon
/// (`openwrt-package/leash/files/leash.capabilities`, which procd hands to
/// ujail): each set's capabilities by name.
pub fn packaged_caps() -> serde_json::Map<String, serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openwrt-package/leash/files/leash.capabilities");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read leash.capabilities")).expect("leash.capabilities is JSON");
    v.as_object().expect("an object of sets").clone()
}

pub fn cap_names(caps: &serde_json::Map<String, serde_json::Value>, set: &str) -> Vec<String> {
    caps[set].as_array().unwrap_or_else(|| panic!("set {set}")).iter().map(|n| n.as_str().expect("a name").to_string()).collect()
}

/// A capability's number, from the kernel headers.
fn cap_number(name: &str) -> u32 {
    let h = std::fs::read_to_string("/usr/include/linux/capability.h").expect("linux/capability.h (linux-libc-dev)");
    h.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("#define") && w.next() == Some(name)).then(|| w.next()?.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in linux/capability.h"))
}

pub fn cap_mask(names: &[String]) -> u64 {
    names.iter().fold(0, |m, n| m | 1 << cap_number(n))
}

/// What ujail does with the packaged file, done by setpriv (util-linux): the
/// bounding set cut to the file's, nothing inheritable or ambient, and
/// no_new_privs. As for ujail's root child, the kernel then gives the
/// daemon the bounding set as its effective and permitted sets on exec.
pub fn setpriv_as_packaged(caps: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    for set in ["effective", "permitted"] {
        assert_eq!(cap_names(caps, set), cap_names(caps, "bounding"), "root's exec makes {set} the bounding set");
    }
    for set in ["inheritable", "ambient"] {
        assert!(cap_names(caps, set).is_empty(), "setpriv here clears {set}: the file must too");
    }
    let keep: String = cap_names(caps, "bounding").iter().map(|n| format!(",+{}", n.trim_start_matches("CAP_").to_lowercase())).collect();
    ["setpriv", &format!("--bounding-set=-all{keep}"), "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A line `Key:\tvalue` of /proc/PID/status.
pub fn proc_status(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon's /proc status");
    s.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status")).trim().to_string()
}

/// Runs the lab's daemon as the package runs it (`setpriv_as_packaged`).
pub fn wrap_as_packaged(lab: &mut Lab) {
    let wrap = setpriv_as_packaged(&packaged_caps());
    lab.wrap_daemon(&wrap.iter().map(String::as_str).collect::<Vec<_>>());
}
