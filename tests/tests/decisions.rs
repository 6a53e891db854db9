//! Nothing decided is lost (SPEC §2 "Decisions are re-judged", §6): blocks
//! are persisted with their remaining timeout and back in force before
//! anything is judged after a restart, a kill -9 or a reboot; a block given
//! by a DNS name stays through an unrelated consent, a reload and SIGHUP,
//! and goes when the policy no longer gives it.

mod common;

use std::time::Duration;

use common::*;
use leash_lab::lab::ROUTER_V4;
use leash_lab::{ip, mac, Lab, QType, Zone};

/// A tracker name on a list file; the address it resolves to (OK4) is on
/// no list, so only the name can deny it.
const TRACKER: &str = "tracking.example.com";

fn name_config(lab: &Lab, mode: &str, extra_devices: &str) -> String {
    let list = lab.dir.join("trackers.txt");
    std::fs::write(&list, format!("{TRACKER}\n")).expect("write list");
    format!(
        r#"[daemon]
mode = "{mode}"
lan = ["br-lan"]

[defaults]
profile = "phone"

[profile.phone]
unlisted = "allow"
denied = "block"
deny = ["trackers"]

[list.trackers]
files = ["{}"]
{extra_devices}
"#,
        list.display()
    )
}

/// Device 1 resolves the tracker through the router and is blocked from
/// OK4 by the name, before it connects.
fn block_by_name(lab: &mut Lab) {
    lab.start_dns(&Zone::new().address(TRACKER, OK4));
    known_device(lab, 1);
    assert_eq!(lab.resolve(1, ROUTER_V4, TRACKER, QType::A), [ip(OK4)]);
    lab.wait_until(Duration::from_secs(2), "block_v4 holds device 1 . OK4 after the answer", || lab.set_has("block_v4", &block_elem(1, OK4)));
    assert_dropped(lab, 1, OK4, HTTPS);
}

/// kill -9, then a reboot's empty kernel: the restarted daemon has the
/// block in its table at once, with its timeout, and the device still
/// cannot reach the address, whose answer it may well have cached.
#[test]
fn blocks_survive_kill9_and_a_reboot() {
    let mut lab = lab("persist_kill9", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let cfg = name_config(&lab, "enforce", "");
    lab.start_leash(&cfg);
    block_by_name(&mut lab);

    lab.kill9();
    lab.nft_script("delete table inet leash\n");
    lab.restart_leash();
    // Checked as soon as the daemon answers: no judging has brought it back.
    assert!(lab.set_has("block_v4", &block_elem(1, OK4)), "the persisted block is in the new table at start\n{}", lab.diagnostics());
    let nft = lab.nft_json().unwrap();
    assert!(nft.to_string().contains("\"timeout\""), "the block keeps a timeout: {nft}");
    assert_dropped(&lab, 1, OK4, HTTPS);
    let x = lab.leash_json(&["explain", &mac(1), OK4]);
    assert_eq!((x["rule"].as_str(), x["blocked_now"].as_bool()), (Some("list:trackers"), Some(true)), "{x}");
    assert_eq!(x["names"], serde_json::json!([TRACKER]), "the block remembers the name that gave it: {x}");
}

/// A clean stop removes the table (keep_on_exit = false); the next start
/// puts the block back.
#[test]
fn blocks_survive_a_clean_restart() {
    let mut lab = lab("persist_stop", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let cfg = name_config(&lab, "enforce", "");
    lab.start_leash(&cfg);
    block_by_name(&mut lab);
    lab.stop_leash();
    assert!(!lab.table_exists());
    lab.restart_leash();
    assert!(lab.set_has("block_v4", &block_elem(1, OK4)), "block back at start\n{}", lab.diagnostics());
    assert_dropped(&lab, 1, OK4, HTTPS);
}

/// The block was given by the name alone: an unrelated consent, a reload
/// and SIGHUP re-judge it with that name and keep it; a consent for the
/// name lifts it, and so does a reload into monitor mode (each trigger
/// checked on its own block).
#[test]
fn a_block_given_by_a_name_stays_through_consent_reload_and_sighup() {
    let mut lab = lab("rejudge", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let cfg = name_config(&lab, "enforce", "");
    lab.start_leash(&cfg);
    block_by_name(&mut lab);
    let held = |lab: &Lab, what: &str| {
        lab.assert_holds_for(Duration::from_millis(400), what, || lab.set_has("block_v4", &block_elem(1, OK4)));
    };

    lab.leash_ok(&["consent", &mac(1), "unrelated.example.net"]);
    held(&lab, "the block stays after an unrelated consent");
    lab.leash_ok(&["revoke", &mac(1), "unrelated.example.net"]);
    held(&lab, "the block stays after a revoke");
    lab.leash_ok(&["reload"]);
    held(&lab, "the block stays after leash reload");
    lab.sighup();
    held(&lab, "the block stays after SIGHUP");
    assert_dropped(&lab, 1, OK4, HTTPS);

    // Consent for the name: the block goes.
    lab.leash_ok(&["consent", &mac(1), TRACKER]);
    lab.wait_until(Duration::from_secs(2), "a consent for the name lifts the block", || !lab.set_has("block_v4", &block_elem(1, OK4)));
    assert_reaches(&lab, 1, OK4, HTTPS);
    lab.leash_ok(&["revoke", &mac(1), TRACKER]);

    // Blocked again by the name; then a mode change to monitor lifts it.
    assert_eq!(lab.resolve(1, ROUTER_V4, TRACKER, QType::A), [ip(OK4)]);
    lab.wait_until(Duration::from_secs(2), "blocked again after the revoke", || lab.set_has("block_v4", &block_elem(1, OK4)));
    lab.write_config(&name_config(&lab, "monitor", ""));
    lab.sighup();
    lab.wait_until(Duration::from_secs(2), "monitor mode lifts the block", || !lab.set_has("block_v4", &block_elem(1, OK4)));
    assert_reaches(&lab, 1, OK4, HTTPS);
}
