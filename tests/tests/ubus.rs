//! The rpcd exec plugin `/usr/libexec/rpcd/leash` (SPEC §7): the real
//! script from the package, run as rpcd runs it (`list`; `call METHOD`
//! with the arguments on stdin, stdin then closed) against the lab daemon.
//! Every method answers what the CLI's `--json` answers; bad arguments and
//! a stopped daemon answer `{"error": …}` promptly. rpcd and ubus are not
//! packaged for Debian (FACTS), so the test plays rpcd's part.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use leash_lab::{mac, Lab};
use serde_json::{json, Value};

fn plugin_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../openwrt-package/leash/files/leash.rpcd")
}

/// One run of the plugin: its stdout as JSON, its exit code, how long it took.
struct Run {
    out: Value,
    code: i32,
    took: Duration,
}

/// Runs the plugin with `args`, `input` on stdin, against `socket`; kills it
/// after 20 s (a hang fails the test rather than blocking it).
fn plugin(socket: &Path, args: &[&str], input: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(plugin_path())
        .args(args)
        .env("LEASH_BIN", leash_lab::lab::leash_bin())
        .env("LEASH_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the rpcd plugin");
    // As rpcd does: write the arguments, then close stdin.
    let _ = child.stdin.take().expect("stdin").write_all(input.as_bytes());
    let done = leash_lab::wait::poll_until(Duration::from_secs(20), || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("plugin output");
    assert!(done, "plugin {args:?} hung (killed after 20 s)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "plugin {args:?} must print one JSON line: {text:?}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("plugin {args:?}: not JSON ({e}): {text}"));
    assert!(v.is_object(), "plugin {args:?}: rpcd needs an object: {v}");
    Run { out: v, code: out.status.code().unwrap_or(-1), took: start.elapsed() }
}

/// `call METHOD` with `args`; asserts success and returns the reply.
fn call(lab: &Lab, method: &str, args: Value) -> Value {
    let r = plugin(&lab.socket(), &["call", method], &args.to_string());
    assert_eq!(r.code, 0, "call {method} {args}: {}\n{}", r.out, lab.diagnostics());
    assert!(r.out.get("error").is_none(), "call {method} {args}: {}", r.out);
    r.out
}

/// `call METHOD` expected to fail with exit `code` and an error naming `needle`.
fn call_err(socket: &Path, method: &str, input: &str, code: i32, needle: &str) -> Run {
    let r = plugin(socket, &["call", method], input);
    assert_eq!(r.code, code, "call {method} {input}: exit {} {}", r.code, r.out);
    let e = r.out["error"].as_str().unwrap_or_else(|| panic!("call {method} {input}: no error: {}", r.out));
    assert!(e.contains(needle), "call {method} {input}: error {e:?} lacks {needle:?}");
    assert_eq!(r.out.as_object().map(|o| o.len()), Some(1), "an error object holds only the error: {}", r.out);
    r
}

/// The top-level keys of an object.
fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn list_declares_every_method_of_spec_7() {
    // `list` needs no daemon: rpcd runs it once at its start.
    let r = plugin(Path::new("/nonexistent/leash.sock"), &["list"], "");
    assert_eq!(r.code, 0);
    assert_eq!(
        r.out,
        json!({
            "status": {}, "devices": {}, "destinations": {"device": "str"},
            "explain": {"device": "str", "destination": "str"}, "alerts": {"since": "str"},
            "lists": {}, "consent": {"device": "str", "selector": "str", "for": "str"},
            "revoke": {"device": "str", "selector": "str"}, "quarantine": {"device": "str"},
            "release": {"device": "str"}, "reload": {}
        })
    );
}

#[test]
fn every_method_answers_what_the_cli_answers() {
    let mut lab = lab("ubus", 2);
    let _wan = lab.wan_tcp_server(HTTPS);
    // Profile iot blocks BAD4: device 1 gets a destination with a verdict.
    lab.start_leash(&config("enforce", "block", "", ""));
    known_device(&lab, 2);
    trigger(&lab, 1, BAD4, "BLOCK", leash_lab::PRI_WARNING, ("list:bad", "iot"));
    lab.wait_until(Duration::from_secs(5), "block_v4 holds the block", || lab.set_has("block_v4", &block_elem(1, BAD4)));
    let m1 = mac(1);

    // Queries: the same JSON as the CLI, lists wrapped in an object.
    let s = call(&lab, "status", json!({}));
    let cli = lab.leash_json(&["status"]);
    assert_eq!(keys(&s), keys(&cli), "status keys: {s} vs {cli}");
    assert_eq!(s["mode"], cli["mode"], "{s}");
    assert_eq!(call(&lab, "devices", json!({})), json!({"devices": lab.leash_json(&["devices"])}));
    let d = call(&lab, "destinations", json!({"device": m1}));
    assert_eq!(d, json!({"destinations": lab.leash_json(&["destinations", &m1])}));
    assert!(d["destinations"].as_array().is_some_and(|a| a.iter().any(|x| x["address"] == BAD4)), "BAD4 listed: {d}");
    let e = call(&lab, "explain", json!({"device": m1, "destination": BAD4}));
    assert_eq!(e, lab.leash_json(&["explain", &m1, BAD4]));
    assert_eq!(e["verdict"], "block", "{e}");
    // A device named by its address, as the CLI accepts it.
    assert_eq!(call(&lab, "destinations", json!({"device": "192.168.7.11"})), d);

    // Consent and revoke: the answer, then the effect in the kernel.
    let c = call(&lab, "consent", json!({"device": m1, "selector": BAD4}));
    assert_eq!((c["device"].as_str(), c["changed"].as_bool()), (Some(m1.as_str()), Some(true)), "{c}");
    lab.wait_until(Duration::from_secs(5), "the consent lifts the block", || !lab.set_has("block_v4", &block_elem(1, BAD4)));
    assert_eq!(call(&lab, "explain", json!({"device": m1, "destination": BAD4}))["verdict"], "allow");
    // Granted again: both say nothing changed, in the same words.
    assert_eq!(call(&lab, "consent", json!({"device": m1, "selector": BAD4, "for": ""})), lab.leash_json(&["consent", &m1, BAD4]));
    let r = call(&lab, "revoke", json!({"device": m1, "selector": BAD4}));
    assert_eq!((r["revoked"].as_str(), r["changed"].as_bool()), (Some(BAD4), Some(true)), "{r}");
    assert_eq!(call(&lab, "explain", json!({"device": m1, "destination": BAD4}))["verdict"], "block");
    // A revoke of what is not granted is the daemon's refusal, as on the CLI.
    let cli = lab.leash(&["revoke", &m1, BAD4, "--json"]);
    if cli.status.success() {
        assert_eq!(call(&lab, "revoke", json!({"device": m1, "selector": BAD4})), serde_json::from_slice::<Value>(&cli.stdout).unwrap());
    } else {
        let msg = leash_lab::lab::text(&cli.stderr);
        let r = call_err(&lab.socket(), "revoke", &json!({"device": m1, "selector": BAD4}).to_string(), 1, "");
        assert!(msg.contains(r.out["error"].as_str().unwrap()), "CLI said {msg:?}, plugin {}", r.out);
    }

    // Quarantine and release of device 2, seen in the kernel's sets.
    let m2 = mac(2);
    let q = call(&lab, "quarantine", json!({"device": m2}));
    assert_eq!(q, json!({"device": m2, "quarantined": true, "changed": true}));
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 2", || lab.set_has("quarantine_mac", &m2));
    assert_eq!(lab.device_report(&m2).expect("device 2")["state"], "quarantined");
    assert_eq!(call(&lab, "quarantine", json!({"device": m2})), lab.leash_json(&["quarantine", &m2]));
    let rel = call(&lab, "release", json!({"device": m2}));
    assert_eq!(rel, json!({"device": m2, "quarantined": false, "changed": true}));
    lab.wait_until(Duration::from_secs(5), "quarantine_mac no longer holds device 2", || !lab.set_has("quarantine_mac", &m2));
    assert_eq!(call(&lab, "release", json!({"device": m2})), lab.leash_json(&["release", &m2]));

    assert_eq!(call(&lab, "reload", json!({})), lab.leash_json(&["reload"]));
    let l = call(&lab, "lists", json!({}));
    assert_eq!(l, json!({"lists": lab.leash_json(&["lists"])}));
    assert!(l["lists"].as_array().is_some_and(|a| a.iter().any(|x| x["name"] == "bad")), "{l}");

    // Alerts: what the CLI lists, the block of device 1 among them.
    let sock = lab.socket();
    let a = call(&lab, "alerts", json!({"since": "1h"}));
    assert_eq!(a, json!({"alerts": lab.leash_json(&["alerts", "--since", "1h"])}));
    assert!(a["alerts"].as_array().is_some_and(|l| l.iter().any(|x| x["verb"] == "BLOCK" && x["fields"]["dst"] == BAD4)), "{a}");
    assert_eq!(call(&lab, "alerts", json!({}))["alerts"].as_array().map(Vec::len), a["alerts"].as_array().map(Vec::len));
    call_err(&sock, "alerts", r#"{"since":"soon"}"#, 1, "--since");
    // A consent for a while: its expiry in the answer; a bad duration grants nothing.
    call_err(&sock, "consent", &json!({"device": m1, "selector": BAD4, "for": "a while"}).to_string(), 1, "--for");
    assert_eq!(call(&lab, "explain", json!({"device": m1, "destination": BAD4}))["verdict"], "block", "a refused timed consent grants nothing");
    let c = call(&lab, "consent", json!({"device": m1, "selector": BAD4, "for": "15m"}));
    assert!(c["until"].as_u64().is_some() && c["changed"] == true, "{c}");
    assert_eq!(call(&lab, "explain", json!({"device": m1, "destination": BAD4}))["verdict"], "allow");
    call(&lab, "revoke", json!({"device": m1, "selector": BAD4}));

    // Bad calls: exit 2 and an error naming what is wrong; the daemon is untouched.
    call_err(&sock, "destinations", "{ }", 2, "missing argument \"device\"");
    call_err(&sock, "explain", &json!({"device": m1}).to_string(), 2, "\"destination\"");
    call_err(&sock, "quarantine", r#"{"device": 2}"#, 2, "must be a string");
    call_err(&sock, "quarantine", r#"{"device": ""}"#, 2, "missing argument");
    call_err(&sock, "status", r#"{"verbose": true}"#, 2, "unknown argument");
    call_err(&sock, "release", "not json", 2, "not JSON");
    call_err(&sock, "release", "[]", 2, "one JSON object");
    call_err(&sock, "format-disk", "{ }", 2, "unknown method");
    let r = plugin(&sock, &["call"], "");
    assert_eq!((r.code, r.out["error"].as_str().is_some()), (2, true), "{}", r.out);
    // An unknown device is the daemon's refusal, passed on.
    let r = call_err(&sock, "quarantine", r#"{"device":"no-such-device"}"#, 1, "");
    assert!(!r.out["error"].as_str().unwrap().is_empty());
    assert!(lab.set_elements("quarantine_mac").is_empty(), "bad calls quarantined nothing");
}

#[test]
fn a_stopped_daemon_is_an_error_at_once() {
    let mut lab = lab("ubusstop", 1);
    lab.start_leash(&config("enforce", "block", "", ""));
    assert_eq!(call(&lab, "status", json!({}))["mode"], "enforce");
    lab.stop_leash();
    for (method, args) in [("status", json!({})), ("devices", json!({})), ("quarantine", json!({"device": mac(1)}))] {
        let r = call_err(&lab.socket(), method, &args.to_string(), 1, "cannot reach the leash daemon");
        assert!(r.took < Duration::from_secs(3), "{method} took {:?}", r.took);
    }
}
