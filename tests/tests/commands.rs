//! The owner's commands: consent, release, quarantine by hand (SPEC §4).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use leash_lab::{ip, ip4, mac, PRI_INFO, PRI_WARNING};

/// (c) A consent lifts the block at once, and survives a restart.
#[test]
fn consent_by_cli_lifts_a_block_and_persists() {
    let mut lab = lab("consent", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "block", "", ""));
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));

    lab.leash_ok(&["consent", &mac(1), BAD4]);
    lab.wait_until(Duration::from_secs(5), "block_v4 no longer holds the block", || !lab.set_has("block_v4", &block_elem(1, BAD4)));
    let l = lab.wait_syslog_verb("CONSENT", &[("device", &mac(1)), ("consent", BAD4)]);
    assert_eq!(l.pri, PRI_INFO, "{l:?}");
    assert_reaches(&lab, 1, BAD4, HTTPS);

    let e = lab.leash_json(&["explain", &mac(1), BAD4]);
    assert_eq!((e["verdict"].as_str(), e["rule"].as_str()), (Some("allow"), Some("consent:203.0.113.7")), "{e}");

    lab.restart_leash();
    let e = lab.leash_json(&["explain", &mac(1), BAD4]);
    assert_eq!((e["verdict"].as_str(), e["rule"].as_str()), (Some("allow"), Some("consent:203.0.113.7")), "after restart: {e}");
    assert_reaches(&lab, 1, BAD4, HTTPS);
    assert!(lab.set_elements("block_v4").is_empty(), "no block after restart");
}

/// (e) Release: the sets are emptied and the device is back online.
#[test]
fn release_by_cli_ends_a_quarantine() {
    let mut lab = lab("release", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "", ""));
    quarantine_dev1(&lab);
    assert_dropped(&lab, 1, OK4, HTTPS);

    lab.leash_ok(&["release", &mac(1)]);
    lab.wait_until(Duration::from_secs(5), "quarantine sets emptied", || {
        lab.set_elements("quarantine_mac").is_empty() && lab.set_elements("quarantine_v4").is_empty() && lab.set_elements("quarantine_v6").is_empty()
    });
    let l = lab.wait_syslog_verb("RELEASE", &[("device", &mac(1))]);
    assert_eq!(l.pri, PRI_INFO, "{l:?}");
    assert_reaches(&lab, 1, OK4, HTTPS);
    let d = lab.device_report(&mac(1)).expect("device 1 listed");
    assert_ne!(d["state"], "quarantined", "{d}");
}

/// (j) A quarantine cuts the device's established flows: the conntrack
/// entry goes and no further byte reaches the server.
#[test]
fn quarantine_cuts_an_established_flow() {
    let mut lab = lab("flowcut", 1);
    let wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "", ""));

    let mut s = lab.tcp_connect(1, ip(OK4), HTTPS, Duration::from_secs(2)).expect("device 1 → allowed host");
    s.write_all(&[7u8; 1000]).unwrap();
    lab.wait_until(Duration::from_secs(5), "server received 1000 bytes", || wan.bytes_from(ip4(1)) == 1000);
    let flow = ["-p", "tcp", "-s", "192.168.7.11", "-d", OK4, "--dport", "443"];
    lab.wait_until(Duration::from_secs(5), "the flow is tracked", || lab.conntrack_count(&flow) == 1);

    lab.leash_ok(&["quarantine", &mac(1)]);
    let l = lab.wait_syslog_verb("QUARANTINE", &[("device", &mac(1)), ("rule", "manual")]);
    assert_eq!(l.pri, PRI_WARNING, "{l:?}");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 1", || lab.set_has("quarantine_mac", &mac(1)));
    lab.wait_until(Duration::from_secs(5), "the flow's conntrack entry is deleted", || lab.conntrack_count(&flow) == 0);

    // Bytes written now never arrive (the kernel buffers and retransmits them
    // into the drop): the count must stay put for a whole second.
    let _ = s.write_all(&[8u8; 1000]);
    lab.assert_holds_for(Duration::from_secs(1), "server count stays at 1000", || wan.bytes_from(ip4(1)) == 1000);
    assert_eq!(lab.device_report(&mac(1)).expect("device 1 listed")["state"], "quarantined");
}

/// The control socket is root's alone (SPEC §1): mode 0600, and a non-root
/// caller is refused.
#[test]
fn control_socket_is_for_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut lab = lab("rootonly", 1);
    lab.start_leash(&config("enforce", "block", "", ""));
    let mode = std::fs::metadata(lab.socket()).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    // A copy that user nobody can run, wherever the build tree lives.
    let bin = lab.dir.join("leash-for-nobody");
    std::fs::copy(leash_lab::lab::leash_bin(), &bin).expect("copy leash");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = lab.socket();
    let as_nobody = || {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["status", "--socket"])
            .arg(&sock)
            .output()
            .expect("run setpriv")
    };
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got an answer: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    // Past the file mode, the daemon checks the peer's credentials itself.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod socket");
    let out = as_nobody();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody got an answer: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("for root"), "the daemon refused by credentials: {err}");
    assert!(lab.leash_ok(&["status"]).contains("mode"), "root still is answered");
}

/// `consent --for`: the consent lifts the block, expires by itself (one
/// `CONSENT action=expire` line) and the destination is blocked again; a
/// consent for a while survives a restart with its expiry.
#[test]
fn a_consent_for_a_while_expires_by_itself_even_across_a_restart() {
    let mut lab = lab("consentfor", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "block", "", ""));
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));

    lab.leash_ok(&["consent", &mac(1), BAD4, "--for", "2s"]);
    let l = lab.wait_syslog_verb("CONSENT", &[("device", &mac(1)), ("consent", BAD4), ("action", "grant"), ("for", "2s")]);
    assert_eq!(l.pri, PRI_INFO, "{l:?}");
    lab.wait_until(Duration::from_secs(5), "the consent lifts the block", || !lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_reaches(&lab, 1, BAD4, HTTPS);
    lab.wait_syslog_verb("CONSENT", &[("device", &mac(1)), ("consent", BAD4), ("action", "expire")]);
    assert_eq!(lab.leash_json(&["explain", &mac(1), BAD4])["verdict"], "block");
    // Blocked again by itself, without a new flow.
    lab.wait_until(Duration::from_secs(5), "the block is back", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_dropped(&lab, 1, BAD4, HTTPS);

    // A longer one, then a restart before it runs out.
    let net = "203.0.113.0/24";
    let c = lab.leash_json(&["consent", &mac(1), net, "--for", "6s"]);
    assert!(c["until"].as_u64().is_some(), "{c}");
    lab.restart_leash();
    let e = lab.leash_json(&["explain", &mac(1), BAD4]);
    assert_eq!((e["verdict"].as_str(), e["rule"].as_str()), (Some("allow"), Some(format!("consent:{net}").as_str())), "after restart: {e}");
    assert_eq!(lab.leash_json(&["status"])["consents_timed"], 1);
    let expired = [("device", mac(1)), ("consent", net.to_string()), ("action", "expire".to_string())];
    lab.wait_until(Duration::from_secs(15), "CONSENT action=expire after the restart", || {
        lab.syslog_parsed().iter().any(|l| l.verb == "CONSENT" && expired.iter().all(|(k, v)| l.get(k) == Some(v.as_str())))
    });
    assert_eq!(lab.leash_json(&["explain", &mac(1), BAD4])["verdict"], "block");
    // A duration that is none is refused, and grants nothing.
    let out = lab.leash(&["consent", &mac(1), BAD4, "--for", "soon"]);
    assert!(!out.status.success() && leash_lab::lab::text(&out.stderr).contains("--for"), "{out:?}");
    assert_eq!(lab.leash_json(&["explain", &mac(1), BAD4])["verdict"], "block");
}

/// `leash alerts` lists the lines of a quarantine; `leash status` reads
/// at a glance and shows them too.
#[test]
fn alerts_and_status_show_a_quarantine() {
    let mut lab = lab("alerts", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "", ""));
    quarantine_dev1(&lab);

    let a = lab.leash_json(&["alerts"]);
    let q = a.as_array().and_then(|l| l.iter().rev().find(|x| x["verb"] == "QUARANTINE").cloned()).unwrap_or_else(|| panic!("no QUARANTINE in {a}"));
    assert_eq!((q["severity"].as_str(), q["fields"]["device"].as_str(), q["fields"]["dst"].as_str()), (Some("warning"), Some(mac(1).as_str()), Some(BAD4)), "{q}");
    assert!(q["line"].as_str().is_some_and(|l| l.starts_with("QUARANTINE device=")) && q["time"].as_u64().is_some(), "{q}");
    assert_eq!(lab.leash_json(&["alerts", "--since", "1h"]), a);
    let text = lab.leash_ok(&["alerts"]);
    assert!(text.starts_with("TIME") && text.contains(&format!("warning   QUARANTINE device={}", mac(1))), "{text}");
    // Nothing within the last second... once a second has passed.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(lab.leash_json(&["alerts", "--since", "1s"]), serde_json::json!([]));

    let s = lab.leash_ok(&["status"]);
    for want in ["mode:", "enforce", "uptime:", "devices:", "1 quarantined", "flows judged:", "DNS answers:", "events lost:", "rules in kernel:", "table rebuilds:", "last alerts:"] {
        assert!(s.contains(want), "status lacks {want:?}:\n{s}");
    }
    assert!(s.contains(&format!("QUARANTINE device={}", mac(1))), "{s}");
    let j = lab.leash_json(&["status"]);
    assert!(j["counters"]["flows_judged"].as_u64().is_some() && j["recent_alerts"].as_array().is_some_and(|l| !l.is_empty()), "{j}");
}

/// A new device is announced once (`DEVICE action=new`), and not again
/// after a restart.
#[test]
fn a_new_device_is_announced_once() {
    let mut lab = lab("newdev", 1);
    lab.start_leash(&config("enforce", "block", "", ""));
    known_device(&lab, 1);
    let l = lab.wait_syslog_verb("DEVICE", &[("action", "new"), ("device", &mac(1))]);
    assert_eq!(l.pri, PRI_INFO, "{l:?}");
    assert_eq!((l.get("profile"), l.get("learn")), (Some("iot"), Some("off")), "{l:?}");
    assert!(l.get("vendor").is_some(), "{l:?}");
    let count = |lab: &leash_lab::Lab| lab.syslog_parsed().iter().filter(|l| l.verb == "DEVICE" && l.get("device") == Some(mac(1).as_str())).count();
    assert_eq!(count(&lab), 1);
    lab.restart_leash();
    known_device(&lab, 1);
    lab.assert_holds_for(Duration::from_secs(2), "no second DEVICE line", || count(&lab) == 1);
}
