//! luci-app-leash's views (SPEC §7) in headless Chromium. LuCI's runtime is
//! not packaged for Debian (FACTS), so the page is a STAND-IN FOR LuCI
//! (`tests/luci/standin.{html,js}`: LuCI's module loading, view, rpc, ui,
//! poll and a form that lays out sections without UCI). The view files are
//! the package's own; their rpc calls reach the real rpcd plugin, run by
//! `tests/luci/run.js` against the lab daemon. The test asserts what a
//! person sees and that a click changed the kernel. Screenshots are kept
//! in `target/luci-screenshots/`.
//!
//! Needs node, chromium and `npm ci` in tests/luci (scripts/test.sh does
//! both); without them the test says so and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use leash_lab::{mac, PRI_WARNING};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why the browser test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return Some("node not found (apt-get install nodejs)".into());
    }
    if !repo().join("tests/luci/node_modules/playwright-core").exists() {
        return Some("tests/luci/node_modules missing (cd tests/luci && npm ci)".into());
    }
    None
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
}

#[test]
fn views_show_the_daemon_and_their_buttons_act() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED luci browser test: {why}");
        return;
    }
    let mut lab = lab("luci", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "block", "", ""));
    known_device(&lab, 2);
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    let (m1, m2) = (mac(1), mac(2));
    assert!(!lab.set_has("quarantine_mac", &m2), "device 2 starts free");

    let shots = repo().join("target/luci-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let out = Command::new("node")
        .arg(repo().join("tests/luci/run.js"))
        .env("LEASH_RPCD_PLUGIN", repo().join("openwrt-package/leash/files/leash.rpcd"))
        .env("LEASH_BIN", leash_lab::lab::leash_bin())
        .env("LEASH_SOCKET", lab.socket())
        .env("LUCI_HTDOCS", repo().join("openwrt-package/luci-app-leash/htdocs"))
        .env("SHOTS", &shots)
        .env("QUARANTINE_MAC", &m2)
        .env("DST_MAC", &m1)
        .env("DST_ADDR", BAD4)
        .output()
        .expect("run node tests/luci/run.js");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.js failed: {stderr}\n{}", lab.diagnostics());
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("run.js output not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("screenshots in {}", shots.display());

    assert_eq!(seen["page_errors"], serde_json::json!([]), "no script errors on the page");
    assert_eq!(seen["notifications"], "", "no error notifications");

    // Overview: the daemon's mode and device count; the latest alert lines.
    assert_eq!(seen["overview"]["mode"], "enforce", "{seen}");
    assert_eq!(seen["overview"]["devices"], lab.leash_json(&["status"])["devices"].to_string().as_str());
    let alerts = seen["overview"]["alerts"].as_str().unwrap_or_default();
    assert!(alerts.contains("DEVICE action=new") && !alerts.contains("not available"), "{}", seen["overview"]);

    // Devices: a row per device the daemon lists, with MAC, addresses, profile, state.
    let rows = seen["devices"].as_array().expect("device rows");
    let listed: Vec<String> = lab.leash_json(&["devices"]).as_array().unwrap().iter().map(|d| d["mac"].as_str().unwrap().to_string()).collect();
    let shown: Vec<String> = rows.iter().map(|r| r["mac"].as_str().unwrap().to_string()).collect();
    assert_eq!(shown, listed, "the table shows the daemon's devices");
    let row2 = rows.iter().find(|r| r["mac"] == m2.as_str()).expect("device 2 row");
    let cells = strs(&row2["cells"]);
    assert_eq!(cells[1], m2);
    assert!(cells[3].contains("192.168.7.12"), "addresses: {cells:?}");
    assert_eq!(cells[4], "iot");
    assert_ne!(cells[5], "quarantined");

    // The Quarantine click quarantined device 2, in the daemon and the kernel.
    let after = seen["devices_after_quarantine"].as_array().unwrap();
    let row2 = after.iter().find(|r| r["mac"] == m2.as_str()).unwrap();
    assert_eq!(strs(&row2["cells"])[5], "quarantined");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 2", || lab.set_has("quarantine_mac", &m2));
    assert_eq!(lab.device_report(&m2).unwrap()["state"], "quarantined");
    assert!(!lab.set_has("quarantine_mac", &m1), "only the clicked device");

    // Destinations: BAD4 with its verdict and rule; Explain shows the rule.
    let d = strs(&seen["destination"]);
    assert_eq!((d[1].as_str(), d[6].as_str(), d[7].as_str()), (BAD4, "block", "list:bad"), "{d:?}");
    assert_eq!(seen["explain"]["verdict"], "block", "{}", seen["explain"]);
    assert_eq!(seen["explain"]["rule"], "list:bad");
    // Consent at a click: the daemon's explain shows it, the kernel lifts the block.
    let x = &seen["explain_after_consent"];
    assert_eq!((x["verdict"].as_str(), x["rule"].as_str()), (Some("allow"), Some("consent:203.0.113.7")), "{x}");
    lab.wait_until(Duration::from_secs(5), "the consent lifted the block", || !lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_eq!(lab.leash_json(&["explain", &m1, BAD4])["verdict"], "allow");

    // Settings: a form over /etc/config/leash with the sections of SPEC §3.
    assert_eq!(seen["settings_config"], "leash");
    let sections: Vec<&str> = seen["settings"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    for s in ["daemon", "defaults", "geoip", "profile", "list", "notify", "device"] {
        assert!(sections.contains(&s), "settings lack section {s}: {sections:?}");
    }
    let opts = |t: &str| strs(&seen["settings"].as_array().unwrap().iter().find(|s| s["type"] == t).unwrap()["options"]);
    assert!(opts("daemon").contains(&"mode".to_string()));
    assert!(opts("profile").iter().any(|o| o == "deny") && opts("device").iter().any(|o| o == "consent"));

    // Every call the page made went through the plugin.
    let methods: Vec<&str> = seen["calls"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    for m in ["status", "alerts", "devices", "quarantine", "destinations", "explain", "consent"] {
        assert!(methods.contains(&m), "the page never called {m}: {methods:?}");
    }
    for s in ["overview", "devices", "devices-quarantined", "destinations", "explain", "destinations-consented", "settings"] {
        assert!(shots.join(format!("{s}.png")).exists(), "screenshot {s}.png");
    }
}
