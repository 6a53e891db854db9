//! The daemon's life: crash and restart, a firewall reload beside it, a bad
//! reload, a clean stop (SPEC §3 "bad configuration", §6).

mod common;

use std::time::Duration;

use common::*;
use leash_lab::{mac, PRI_ERR, PRI_WARNING};

/// (f) kill -9: the kernel keeps the table; a restart rebuilds it from the
/// persisted state, even when the table itself is gone (a reboot).
#[test]
fn kill9_then_restart_restores_the_quarantine() {
    let mut lab = lab("kill9", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "", ""));
    quarantine_dev1(&lab);

    lab.kill9();
    assert!(lab.set_has("quarantine_mac", &mac(1)), "the kernel keeps the table after kill -9\n{}", lab.diagnostics());
    assert_dropped(&lab, 1, OK4, HTTPS);

    // As after a reboot: nothing in the kernel, only the state directory.
    lab.nft_script("delete table inet leash\n");
    assert!(!lab.table_exists());
    lab.restart_leash();
    lab.wait_until(Duration::from_secs(5), "quarantine_mac restored", || lab.set_has("quarantine_mac", &mac(1)));
    assert!(lab.set_has("quarantine_v4", "192.168.7.11"), "quarantine_v4 restored\n{}", lab.diagnostics());
    assert_dropped(&lab, 1, OK4, HTTPS);
    assert_eq!(lab.device_report(&mac(1)).expect("device 1 listed")["state"], "quarantined");
}

/// (g) fw4 deletes and recreates its own table on every reload: leash's
/// table, elements and drops are untouched, and win over fw4's accept.
#[test]
fn fw4_table_recreate_leaves_leash_alone() {
    let mut lab = lab("fw4", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "block", "", ""));
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    let before = lab.nft_json().unwrap();

    let fw4 = "table inet fw4 {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state established,related accept\n\t\taccept\n\t}\n}\n";
    lab.nft_script(fw4);
    lab.nft_script("delete table inet fw4\n");
    lab.nft_script(fw4);

    let after = lab.nft_json().expect("leash's table survives fw4's reload");
    for set in SETS {
        assert_eq!(leash_lab::nft::set_elements(&before, set), leash_lab::nft::set_elements(&after, set), "set {set}");
    }
    assert!(lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_dropped(&lab, 1, BAD4, HTTPS);
    assert_reaches(&lab, 1, OK4, HTTPS);
}

/// (h) A broken file on reload: refused with file:line:key, the running
/// policy stays (the block stays), and the daemon says why at err.
#[test]
fn broken_reload_keeps_the_running_policy() {
    let mut lab = lab("badreload", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    let good = config("enforce", "block", "", "");
    lab.start_leash(&good);
    trigger(&lab, 1, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));

    // Would allow everything, if it were (half-)applied; and has a typo.
    let broken = good.replacen("denied = \"block\"\ndeny = [\"bad\"]", "denied = \"allow\"\ndenyed = [\"bad\"]", 1);
    assert_ne!(broken, good);
    let path = lab.write_config(&broken);
    let written = std::fs::read_to_string(&path).unwrap();
    let line = written.lines().position(|l| l.starts_with("denyed")).expect("typo line") + 1;
    let where_ = format!("{}:{line}:", path.display());

    let out = lab.leash(&["reload"]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "reload of a broken file must fail: {said}");
    assert!(said.contains(&where_) && said.contains("denyed"), "reload must name {where_} and the key: {said}");

    let err = lab.wait_syslog("err line saying why the reload was refused", |l| l.pri == PRI_ERR && l.msg.contains("denyed"));
    assert!(err.msg.contains(&where_), "{err:?}");

    // SIGHUP does the same and the daemon lives on.
    lab.sighup();
    lab.leash_json(&["status"]);

    // The running policy is kept: the block stays, and a second device is
    // still blocked by the old policy.
    assert!(lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_dropped(&lab, 1, BAD4, HTTPS);
    trigger(&lab, 2, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "iot"));

    let out = lab.leash_offline(&["check", "--config", &path.display().to_string()]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "check of a broken file must fail: {said}");
    assert!(
        said.lines().any(|l| l.starts_with(&format!("{where_} ")) && l.contains("denyed: ")),
        "check must print `{where_} profile.iot.denyed: message`: {said}"
    );
}

/// (k) A clean stop removes the table...
#[test]
fn clean_stop_removes_the_table() {
    let mut lab = lab("stop", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "keep_on_exit = false", ""));
    quarantine_dev1(&lab);
    let st = lab.stop_leash();
    assert!(st.success(), "clean stop exits 0: {st}\n{}", lab.diagnostics());
    assert!(!lab.table_exists(), "table inet leash must be gone after a clean stop\n{}", lab.diagnostics());
    assert_reaches(&lab, 1, OK4, HTTPS);
}

/// (k) ...unless keep_on_exit = true: then the quarantine stays in force.
#[test]
fn clean_stop_with_keep_on_exit_keeps_quarantines() {
    let mut lab = lab("keep", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    lab.start_leash(&config("enforce", "quarantine", "keep_on_exit = true", ""));
    quarantine_dev1(&lab);
    let st = lab.stop_leash();
    assert!(st.success(), "clean stop exits 0: {st}\n{}", lab.diagnostics());
    assert!(lab.set_has("quarantine_mac", &mac(1)), "keep_on_exit keeps the quarantine\n{}", lab.diagnostics());
    assert_dropped(&lab, 1, OK4, HTTPS);
}

/// (l) The package's procd hardening is enough: with exactly the packaged
/// capability sets and no_new_privs, leash starts (nft, run as a child,
/// makes its table), turns conntrack accounting on, quarantines a device
/// from its conntrack event (the notifier it runs holds no more than it
/// does), releases it on the owner's command and removes its table on a
/// clean stop.
#[test]
fn runs_with_the_packaged_capabilities_alone() {
    let caps = packaged_caps();
    let mut lab = lab("caps", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    // Off, so that the daemon's write of it (which CAP_NET_ADMIN grants) shows.
    lab.router().exec(&["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0"]);
    wrap_as_packaged(&mut lab);
    // A notifier, as the owner's scripts are run: it writes down what it holds.
    let held = lab.dir.join("notifier-caps");
    let notifier = lab.dir.join("notify.sh");
    std::fs::write(&notifier, format!("#!/bin/sh
cat >/dev/null
grep -E '^(Cap|NoNewPrivs)' /proc/self/status >'{}'
", held.display())).expect("write notifier");
    std::fs::set_permissions(&notifier, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod notifier");
    let notify = format!("\n[notify]\nexec = \"{}\"\n", notifier.display());
    lab.start_leash(&config("enforce", "quarantine", "keep_on_exit = false", &notify));

    let pid = lab.daemon_pid().expect("running");
    for (key, set) in [("CapBnd", "bounding"), ("CapEff", "effective"), ("CapPrm", "permitted"), ("CapInh", "inheritable"), ("CapAmb", "ambient")] {
        let held = u64::from_str_radix(&proc_status(pid, key), 16).expect("hex mask");
        assert_eq!(held, cap_mask(&cap_names(&caps, set)), "{key} of the daemon must be the packaged {set} set");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");

    let acct = lab.router().exec(&["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]);
    assert_eq!(leash_lab::lab::text(&acct.stdout).trim(), "1", "the daemon turns conntrack accounting on\n{}", lab.diagnostics());
    quarantine_dev1(&lab);
    assert_dropped(&lab, 1, OK4, HTTPS);
    // What the daemon runs gets no more than it has: root's exec hands a
    // child the bounding set, and no_new_privs is inherited.
    lab.wait_until(Duration::from_secs(5), "the notifier ran", || std::fs::read_to_string(&held).is_ok_and(|t| t.contains("NoNewPrivs")));
    let child = std::fs::read_to_string(&held).unwrap();
    let field = |key: &str| child.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).map(|v| v.trim().to_string());
    for key in ["CapBnd", "CapEff", "CapPrm"] {
        let mask = u64::from_str_radix(&field(key).unwrap_or_default(), 16).unwrap_or(u64::MAX);
        assert_eq!(mask, cap_mask(&cap_names(&caps, "bounding")), "{key} of the notifier the daemon ran: {child}");
    }
    assert_eq!(field("NoNewPrivs").as_deref(), Some("1"), "{child}");
    lab.leash_ok(&["release", &mac(1)]);
    lab.wait_until(Duration::from_secs(5), "quarantine_mac empty", || !lab.set_has("quarantine_mac", &mac(1)));
    assert_reaches(&lab, 1, OK4, HTTPS);
    let st = lab.stop_leash();
    assert!(st.success(), "clean stop exits 0: {st}\n{}", lab.diagnostics());
    assert!(!lab.table_exists(), "table inet leash must be gone after a clean stop\n{}", lab.diagnostics());
}

/// (l) ...and CAP_NET_ADMIN is needed: without it leash refuses to start,
/// saying which kernel socket it could not have, and leaves no table.
#[test]
fn without_cap_net_admin_it_refuses_to_start() {
    let mut lab = lab("nocaps", 1);
    lab.wrap_daemon(&["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--"]);
    let err = lab.try_start_leash(&config("enforce", "quarantine", "", "")).expect_err("leash must not run without CAP_NET_ADMIN");
    let log = lab.daemon_log();
    assert!(
        log.contains("opening netlink sockets (leash needs CAP_NET_ADMIN): Operation not permitted"),
        "the daemon says what it lacks: {err}"
    );
    assert!(!lab.table_exists(), "no table without CAP_NET_ADMIN\n{err}");
}

/// `conntrack_buffer = "auto"` (the default) sizes the event buffer from
/// the RAM: RAM/64 between 1 MiB and 64 MiB, which the kernel grants
/// doubled; status and check say what was chosen, and an explicit size
/// is taken as given.
#[test]
fn conntrack_buffer_auto_follows_the_ram() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).expect("MemTotal");
    let want = (kib * 1024 / 64).clamp(1 << 20, 64 << 20);

    let mut lab = lab("ctbuf", 1);
    let cfg = config("enforce", "block", "", "");
    lab.start_leash(&cfg);
    let st = lab.leash_json(&["status"]);
    assert_eq!(st["conntrack_buffer"], want, "{st}");
    assert_eq!(st["conntrack_buffer_granted"], want * 2, "SO_RCVBUFFORCE as root: the kernel doubles it\n{st}");
    let path = lab.write_config(&cfg);
    let out = lab.leash_offline(&["check", "--config", &path.display().to_string()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("conntrack buffer: auto, ") && said.contains(&format!(" for {} MiB of RAM", kib >> 10)), "{said}");
    let st = lab.stop_leash();
    assert!(st.success(), "{st}");

    lab.start_leash(&config("enforce", "block", r#"conntrack_buffer = "3MiB""#, ""));
    let st = lab.leash_json(&["status"]);
    assert_eq!((st["conntrack_buffer"].as_u64(), st["conntrack_buffer_granted"].as_u64()), (Some(3 << 20), Some(6 << 20)), "{st}");
}
