//! Alerts beyond syslog (SPEC §3 `[notify]`): `exec` runs a program once per
//! alert whose verb is in `on`, the alert as one JSON object on stdin; a
//! program that hangs is killed at `exec_timeout` and counted. `mqtt`:
//! the MQTT notifier against a real mosquitto.

mod common;
#[path = "notify/mqtt.rs"]
mod mqtt;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use leash_lab::{ip4, mac, Lab, PRI_WARNING};
use serde_json::Value;

/// Writes an executable shell script into the lab directory.
fn script(lab: &Lab, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = lab.dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}

/// A script that appends its stdin (one JSON line) to `out`.
fn appender(lab: &Lab) -> (PathBuf, PathBuf) {
    let out = lab.dir.join("notified.jsonl");
    let s = script(lab, "notify.sh", &format!("cat >> '{}'", out.display()));
    (s, out)
}

fn notify_section(exec: &Path, extra: &str) -> String {
    format!("\n[notify]\nexec = \"{}\"\n{extra}\n", exec.display())
}

fn objects(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {l:?}"))).collect()
}

fn status(lab: &Lab) -> Value {
    lab.leash_json(&["status"])
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A quarantine runs the program once, with one JSON object that carries the
/// verb, time, severity and every field of the line.
#[test]
fn quarantine_runs_the_program_once_with_the_alert_as_json() {
    let mut lab = lab("notify-exec", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let (exec, out) = appender(&lab);
    lab.start_leash(&config("enforce", "quarantine", "", &notify_section(&exec, "")));

    let started = unix_now();
    let line = quarantine_dev1(&lab);
    let quarantines = || objects(&out).into_iter().filter(|o| o["verb"] == "QUARANTINE").collect::<Vec<_>>();
    lab.wait_until(Duration::from_secs(5), "the notifier wrote the quarantine", || !quarantines().is_empty());
    // Anything else would have arrived by now.
    std::thread::sleep(Duration::from_millis(500));
    let all = objects(&out);
    // The device is new, so its announcement goes out too (DEVICE is in the default `on`).
    assert!(all.iter().any(|o| o["verb"] == "DEVICE" && o["action"] == "new" && o["device"] == mac(1)), "{all:?}");
    let q = quarantines();
    assert_eq!(q.len(), 1, "exactly one quarantine notified: {all:?}");
    let o = &q[0];
    assert_eq!(o["verb"], "QUARANTINE", "{o}");
    assert_eq!(o["severity"], "warning", "{o}");
    let t = o["time"].as_u64().unwrap_or_else(|| panic!("time is a number: {o}"));
    assert!(t >= started.saturating_sub(1) && t <= unix_now() + 1, "time {t} is now: {o}");
    assert_eq!(o["device"], mac(1), "{o}");
    assert_eq!(o["ip"], ip4(1).to_string(), "{o}");
    assert_eq!(o["dst"], BAD4, "{o}");
    assert_eq!(o["proto"], "tcp", "{o}");
    assert_eq!(o["dport"], "443", "{o}");
    assert_eq!(o["rule"], "list:bad", "{o}");
    assert_eq!(o["profile"], "iot", "{o}");
    assert_eq!(o["line"], line.msg, "the syslog line as logged: {o}");
    assert!(o["router"].as_str().is_some_and(|r| !r.is_empty()), "{o}");
    // Every field of the syslog line is in the object, with its value.
    for (k, v) in &line.fields {
        assert_eq!(o[k.as_str()].as_str(), Some(v.as_str()), "field {k}: {o}");
    }

    let s = status(&lab);
    assert_eq!(s["notify_exec_sent"].as_u64(), Some(all.len() as u64), "one run per object written (DEVICE and QUARANTINE): {s}");
    assert_eq!(s["notify_exec_failed"], 0, "{s}");
    assert_eq!(s["notify_exec_dropped"], 0, "{s}");
}

/// A verb not in `on` is not notified; one in it is.
#[test]
fn verbs_not_in_on_are_not_notified() {
    let mut lab = lab("notify-on", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    let (exec, out) = appender(&lab);
    let cfg = format!("{}{}", notify_section(&exec, "on = [\"BLOCK\"]"), device_profile(2, "phone"));
    lab.start_leash(&config("enforce", "quarantine", "", &cfg));

    quarantine_dev1(&lab);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(objects(&out).is_empty(), "QUARANTINE is not in `on`: {:?}", objects(&out));

    // Device 2 (phone) is blocked: BLOCK is in `on`.
    trigger(&lab, 2, BAD4, "BLOCK", PRI_WARNING, ("list:bad", "phone"));
    lab.wait_until(Duration::from_secs(5), "the BLOCK notified", || !objects(&out).is_empty());
    let all = objects(&out);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["verb"], "BLOCK");
    assert_eq!(all[0]["device"], mac(2));
    assert_eq!(status(&lab)["notify_exec_sent"], 1);
}

/// Whether a process is gone (or a zombie nobody reaps in this container).
fn dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A program that hangs is killed at `exec_timeout`, with what it started,
/// and counted as a failure; the daemon answers throughout.
#[test]
fn a_hanging_program_is_killed_at_the_timeout_and_counted() {
    let mut lab = lab("notify-hang", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let pids = lab.dir.join("pids");
    let exec = script(&lab, "hang.sh", &format!("sleep 600 &\necho \"$$ $!\" > '{}'\nwait", pids.display()));
    lab.start_leash(&config("enforce", "quarantine", "", &notify_section(&exec, "exec_timeout = \"1s\"\non = [\"QUARANTINE\"]")));

    quarantine_dev1(&lab);
    lab.wait_until(Duration::from_secs(5), "the hanging script started", || {
        std::fs::read_to_string(&pids).is_ok_and(|s| s.split_whitespace().count() == 2)
    });
    let text = std::fs::read_to_string(&pids).unwrap_or_default();
    let ids: Vec<&str> = text.split_whitespace().collect();
    // Still running before its timeout, and the daemon does not wait for it.
    let s = status(&lab);
    assert_eq!(s["notify_exec_running"], 1, "{s}");
    assert!(!dead(ids[0]), "script still runs before the timeout");

    lab.wait_until(Duration::from_secs(5), "the timeout counted", || status(&lab)["notify_exec_timeouts"] == 1);
    let s = status(&lab);
    assert_eq!(s["notify_exec_failed"], 1, "{s}");
    assert_eq!(s["notify_exec_sent"], 0, "{s}");
    assert_eq!(s["notify_exec_running"], 0, "{s}");
    lab.wait_until(Duration::from_secs(2), "the script and its child are gone", || ids.iter().all(|p| dead(p)));
    assert!(lab.daemon_log().contains("notify exec failed"), "failure logged:\n{}", lab.daemon_log());
}
