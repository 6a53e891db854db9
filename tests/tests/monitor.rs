//! (d) Monitor mode: every block and quarantine becomes a notice that says
//! what would have happened; the kernel is never touched (SPEC §3, §5).

mod common;

use common::*;
use leash_lab::{mac, PRI_NOTICE};

#[test]
fn monitor_mode_only_says_what_it_would_do() {
    let mut lab = lab("monitor", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("monitor", "quarantine", "", &device_profile(2, "phone")));

    trigger(&lab, 1, BAD4, "WOULD-QUARANTINE", PRI_NOTICE, ("list:bad", "iot"));
    trigger(&lab, 2, BAD4, "WOULD-BLOCK", PRI_NOTICE, ("list:bad", "phone"));

    let doc = lab.nft_json().expect("monitor mode still owns its table");
    for set in SETS {
        assert!(leash_lab::nft::set_elements(&doc, set).is_empty(), "set {set} must stay empty in monitor mode\n{}", lab.diagnostics());
    }
    // Traffic flows on, denied destination included.
    assert_reaches(&lab, 1, BAD4, HTTPS);
    assert_reaches(&lab, 1, OK4, HTTPS);
    assert_reaches(&lab, 2, BAD4, HTTPS);
    let lines = lab.syslog_parsed();
    assert!(!lines.iter().any(|l| l.verb == "QUARANTINE" || l.verb == "BLOCK"), "monitor mode must not enforce: {lines:?}");
    let d = lab.device_report(&mac(1)).expect("device 1 listed");
    assert_ne!(d["state"], "quarantined", "{d}");
}
