//! The OpenWrt way (SPEC §3): the daemon runs from a UCI file, and a changed
//! file (as `uci commit` leaves it) takes effect on `leash reload`.

mod common;

use std::time::Duration;

use common::*;
use leash_lab::{mac, PRI_WARNING};

const UCI: &str = "config daemon
\toption mode 'enforce'
\tlist lan 'br-lan'

config defaults
\toption profile 'iot'

config profile 'iot'
\toption unlisted 'allow'
\toption denied 'quarantine'
\tlist deny 'bad'

config list 'bad'
\tlist selectors '203.0.113.7'

config device
\toption mac '02:00:00:00:07:01'
\toption name 'camera'
";

#[test]
fn uci_config_drives_the_daemon_and_reloads() {
    let mut lab = lab("uci", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash_uci(UCI);
    let status = lab.leash_json(&["status"]);
    assert!(status["config"].as_str().is_some_and(|c| c.ends_with("/leash")), "{status}");

    let line = trigger(&lab, 1, BAD4, "QUARANTINE", PRI_WARNING, ("list:bad", "iot"));
    assert_eq!(line.get("name"), Some("camera"), "{line:?}");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds the camera", || lab.set_has("quarantine_mac", &mac(1)));

    // As after `uci add_list leash.@device[0].consent=...; uci commit leash`.
    let changed = UCI.replace("\toption name 'camera'\n", "\toption name 'camera'\n\tlist consent '203.0.113.8'\n")
        .replace("list selectors '203.0.113.7'", "list selectors '203.0.113.7'\n\tlist selectors '198.51.100.20'");
    lab.write_uci_config(&changed);
    lab.leash_ok(&["reload"]);
    let x = lab.leash_json(&["explain", "camera", "203.0.113.8"]);
    assert_eq!(x["policy_rule"], "consent:203.0.113.8", "{x}");
    let x = lab.leash_json(&["explain", &mac(2), "198.51.100.20"]);
    assert_eq!((x["verdict"].as_str(), x["rule"].as_str()), (Some("quarantine"), Some("list:bad")), "{x}");
}
