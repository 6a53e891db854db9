//! The rpcd exec plugin protocol (SPEC §7): `/usr/libexec/rpcd/leash` is a
//! one-line shell script that runs `leash rpcd list` and `leash rpcd call
//! METHOD`, so that the plugin needs none of OpenWrt's shell helpers
//! (jshn, jsonfilter) and runs the same in the lab as on the router.
//!
//! rpcd runs `PLUGIN list` once and reads one JSON object: method name →
//! argument signature, where a string value (`"str"`) declares a string
//! argument. For `PLUGIN call METHOD` it writes the arguments as one JSON
//! object on stdin, closes it, and turns stdout into the ubus reply. rpcd
//! ignores the exit status (rpcd plugin.c: a JSON object is the reply,
//! empty output is UBUS_STATUS_NO_DATA, anything else
//! UBUS_STATUS_INVALID_ARGUMENT), so an error is an object too,
//! `{"error": "…"}`, which `ubus call` prints and LuCI can show; the exit
//! status (2: bad call, 1: the daemon failed or refused) is for shells.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use crate::control::client;
use crate::control::protocol::{Request, MAX_REQUEST};

/// Every method of the ubus object `leash` with its (string) arguments,
/// in SPEC §7's order. Optional arguments are marked `?` here only.
pub const METHODS: &[(&str, &[&str])] = &[
    ("status", &[]),
    ("devices", &[]),
    ("destinations", &["device"]),
    ("explain", &["device", "destination"]),
    ("alerts", &["since?"]),
    ("lists", &[]),
    ("consent", &["device", "selector", "for?"]),
    ("revoke", &["device", "selector"]),
    ("quarantine", &["device"]),
    ("release", &["device"]),
    ("reload", &[]),
];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("unknown method {0:?} (leash rpcd list shows the methods)")]
    UnknownMethod(String),
    #[error("{method}: {why}")]
    BadArguments { method: String, why: String },
    /// The method is part of the ubus object but the daemon cannot answer it yet.
    #[error("{0}")]
    NotSupported(String),
}

/// What `list` prints: `{"status":{},"destinations":{"device":"str"},…}`.
pub fn signatures() -> Value {
    let mut m = Map::new();
    for (name, args) in METHODS {
        let sig: Map<String, Value> = args.iter().map(|a| (a.trim_end_matches('?').to_string(), json!("str"))).collect();
        m.insert(name.to_string(), Value::Object(sig));
    }
    Value::Object(m)
}

/// The control-socket request for `call METHOD` with `input` on stdin (the
/// JSON object rpcd writes; empty input means no arguments).
pub fn request(method: &str, input: &[u8]) -> Result<Request, CallError> {
    let (_, spec) = METHODS.iter().find(|(n, _)| *n == method).ok_or_else(|| CallError::UnknownMethod(method.to_string()))?;
    let bad = |why: String| CallError::BadArguments { method: method.to_string(), why };
    let args: Map<String, Value> = if input.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(input) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad("the arguments must be one JSON object".into())),
            Err(e) => return Err(bad(format!("the arguments are not JSON: {e}"))),
        }
    };
    if let Some(k) = args.keys().find(|k| !spec.iter().any(|a| a.trim_end_matches('?') == k.as_str())) {
        return Err(bad(format!("unknown argument {k:?} (takes: {})", names(spec))));
    }
    // A declared argument: a string; required ones non-empty.
    let arg = |name: &str| -> Result<String, CallError> {
        match args.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::String(_)) | None => Err(bad(format!("missing argument {name:?} (takes: {})", names(spec)))),
            Some(v) => Err(bad(format!("argument {name:?} must be a string, not {v}"))),
        }
    };
    let optional = |name: &str| -> Result<Option<String>, CallError> {
        match args.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(_) => arg(name).map(Some),
        }
    };
    Ok(match method {
        "status" => Request::Status,
        "devices" => Request::Devices,
        "destinations" => Request::Destinations { device: arg("device")? },
        "explain" => Request::Explain { device: arg("device")?, destination: arg("destination")? },
        "consent" => Request::Consent { device: arg("device")?, selector: arg("selector")?, duration: optional("for")? },
        "revoke" => Request::Revoke { device: arg("device")?, selector: arg("selector")? },
        "quarantine" => Request::Quarantine { device: arg("device")? },
        "release" => Request::Release { device: arg("device")? },
        "reload" => Request::Reload,
        "alerts" => Request::Alerts { since: optional("since")? },
        "lists" => Request::Lists,
        _ => return Err(CallError::UnknownMethod(method.to_string())),
    })
}

fn names(spec: &[&str]) -> String {
    if spec.is_empty() {
        return "no arguments".into();
    }
    spec.iter().map(|a| a.strip_suffix('?').map_or_else(|| a.to_string(), |o| format!("{o} (optional)"))).collect::<Vec<_>>().join(", ")
}

/// The reply object for the daemon's answer `data` to `method`: what the
/// CLI's `--json` prints, wrapped where it is not an object (ubus replies
/// are objects): `devices` → `{"devices": […]}`.
pub fn reply(method: &str, data: Value) -> Value {
    match data {
        Value::Object(_) => data,
        other => json!({ method: other }),
    }
}

fn error(msg: impl std::fmt::Display) -> Value {
    json!({ "error": msg.to_string() })
}

/// `leash rpcd list` / `leash rpcd call METHOD`: prints exactly one JSON
/// object on stdout, whatever happens.
pub fn run(words: &[&str], socket: &Path) -> ExitCode {
    let (out, code) = match words {
        ["list"] => (signatures(), 0),
        ["call", method] => call(method, socket),
        _ => (error("usage: leash rpcd list | leash rpcd call METHOD (arguments as JSON on stdin)"), 2),
    };
    println!("{out}");
    if let Some(e) = out.get("error").and_then(Value::as_str).filter(|_| code != 0) {
        eprintln!("leash: {e}");
    }
    ExitCode::from(code)
}

fn call(method: &str, socket: &Path) -> (Value, u8) {
    let input = match read_input() {
        Ok(i) => i,
        Err(e) => return (error(e), 2),
    };
    let req = match request(method, &input) {
        Ok(r) => r,
        Err(e @ CallError::NotSupported(_)) => return (error(e), 1),
        Err(e) => return (error(e), 2),
    };
    match client::call(socket, &req) {
        Ok(resp) if resp.ok => (reply(method, resp.data), 0),
        Ok(resp) => (error(resp.error.unwrap_or_else(|| "the daemon refused".into())), 1),
        Err(e) => (error(e), 1),
    }
}

/// stdin up to the control protocol's request limit. rpcd closes stdin
/// after writing the arguments; a terminal (someone trying the plugin by
/// hand) is not read, so that a call without arguments never waits.
fn read_input() -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Vec::new());
    }
    let mut buf = Vec::new();
    stdin.lock().take(MAX_REQUEST as u64 + 1).read_to_end(&mut buf).map_err(|e| format!("reading the arguments on stdin: {e}"))?;
    if buf.len() > MAX_REQUEST {
        return Err(format!("arguments larger than {MAX_REQUEST} bytes"));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(method: &str, input: &str) -> String {
        match request(method, input.as_bytes()) {
            Err(CallError::BadArguments { why, .. }) => why,
            other => panic!("{method} {input}: expected bad arguments, got {other:?}"),
        }
    }

    #[test]
    fn list_declares_every_method_with_string_arguments() {
        let s = signatures();
        let m = s.as_object().unwrap();
        assert_eq!(m.len(), 11);
        assert_eq!(s["status"], json!({}));
        assert_eq!(s["explain"], json!({"device": "str", "destination": "str"}));
        assert_eq!(s["consent"], json!({"device": "str", "selector": "str", "for": "str"}));
        assert_eq!(s["alerts"], json!({"since": "str"}));
        assert!(METHODS.iter().all(|(n, _)| m.contains_key(*n)));
    }

    #[test]
    fn calls_map_to_the_cli_requests() {
        assert_eq!(request("status", b"{ }"), Ok(Request::Status));
        assert_eq!(request("devices", b""), Ok(Request::Devices));
        assert_eq!(request("reload", b"\n"), Ok(Request::Reload));
        assert_eq!(request("destinations", br#"{"device":"cam"}"#), Ok(Request::Destinations { device: "cam".into() }));
        assert_eq!(
            request("explain", br#"{"device":"cam","destination":"a.example"}"#),
            Ok(Request::Explain { device: "cam".into(), destination: "a.example".into() })
        );
        assert_eq!(
            request("consent", br#"{"device":"cam","selector":"ring.com","for":""}"#),
            Ok(Request::Consent { device: "cam".into(), selector: "ring.com".into(), duration: None })
        );
        assert_eq!(
            request("consent", br#"{"device":"cam","selector":"ring.com","for":"15m"}"#),
            Ok(Request::Consent { device: "cam".into(), selector: "ring.com".into(), duration: Some("15m".into()) })
        );
        assert_eq!(request("alerts", br#"{"since":"1h"}"#), Ok(Request::Alerts { since: Some("1h".into()) }));
        assert_eq!(request("alerts", b"{}"), Ok(Request::Alerts { since: None }));
        assert_eq!(request("status", b""), Ok(Request::Status));
        assert_eq!(request("revoke", br#"{"device":"cam","selector":"ring.com"}"#), Ok(Request::Revoke { device: "cam".into(), selector: "ring.com".into() }));
        assert_eq!(request("quarantine", br#"{"device":"cam"}"#), Ok(Request::Quarantine { device: "cam".into() }));
        assert_eq!(request("release", br#"{"device":"cam"}"#), Ok(Request::Release { device: "cam".into() }));
        assert_eq!(request("lists", b""), Ok(Request::Lists));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(bad("destinations", "{}").contains("missing argument \"device\""));
        assert!(bad("destinations", r#"{"device":""}"#).contains("missing"));
        assert!(bad("destinations", r#"{"device":7}"#).contains("must be a string"));
        assert!(bad("explain", r#"{"device":"cam"}"#).contains("\"destination\""));
        assert!(bad("status", r#"{"device":"cam"}"#).contains("unknown argument"));
        assert!(bad("quarantine", "[1]").contains("one JSON object"));
        assert!(bad("quarantine", "{\"device\":").contains("not JSON"));
        assert!(bad("consent", r#"{"device":"cam","selector":"x","for":5}"#).contains("must be a string"));
        assert_eq!(request("format-disk", b"{}"), Err(CallError::UnknownMethod("format-disk".into())));
    }

    #[test]
    fn what_the_daemon_cannot_do_yet_is_said() {
    }

    #[test]
    fn replies_are_objects() {
        assert_eq!(reply("devices", json!([{"mac": "x"}])), json!({"devices": [{"mac": "x"}]}));
        assert_eq!(reply("status", json!({"mode": "enforce"})), json!({"mode": "enforce"}));
        assert_eq!(reply("reload", Value::Null), json!({"reload": null}));
    }
}
