//! What leash publishes on MQTT (SPEC §7), pure: topics, the device state,
//! Home Assistant discovery configs, the reconnect backoff, and what a
//! command message asks for.

use std::time::Duration;

use serde_json::{json, Value};

/// Topic roots: `<root>/<router>/…`; `router` is the hostname made safe
/// for a topic level and for Home Assistant ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub root: String,
    pub router: String,
}

/// A hostname as one topic level / id part: `[A-Za-z0-9_-]`, others `_`.
pub fn safe_id(s: &str) -> String {
    let out: String = s.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if out.is_empty() {
        "leash".into()
    } else {
        out
    }
}

impl Topics {
    pub fn new(root: &str, hostname: &str) -> Topics {
        Topics { root: root.to_string(), router: safe_id(hostname) }
    }
    fn base(&self) -> String {
        format!("{}/{}", self.root, self.router)
    }
    pub fn alert(&self) -> String {
        format!("{}/alert", self.base())
    }
    /// `online`/`offline` (retained; `offline` is the broker's last will).
    pub fn availability(&self) -> String {
        format!("{}/status", self.base())
    }
    pub fn device(&self, mac: &str) -> String {
        format!("{}/device/{mac}", self.base())
    }
    pub fn command(&self, mac: &str) -> String {
        format!("{}/set", self.device(mac))
    }
    /// What leash subscribes to with `mqtt_commands = true`.
    pub fn command_filter(&self) -> String {
        format!("{}/device/+/set", self.base())
    }
    /// The MAC of a command topic, if it is one of ours.
    pub fn command_mac<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic.strip_prefix(&self.base())?.strip_prefix("/device/")?;
        let mac = rest.strip_suffix("/set")?;
        (!mac.is_empty() && !mac.contains('/')).then_some(mac)
    }
    fn object_id(&self, mac: &str) -> String {
        format!("leash_{}_{}", self.router, mac.replace(':', ""))
    }
}

/// A device as leash reports it on MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState<'a> {
    pub mac: &'a str,
    pub name: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub profile: &'a str,
    /// `learning`, `enforced`, `quarantined` (as `leash devices`).
    pub state: &'a str,
}

/// The retained state message: what a dashboard shows of the device.
pub fn device_payload(d: &DeviceState<'_>, last_alert: Option<&str>, last_alert_time: Option<u64>) -> Value {
    json!({
        "mac": d.mac,
        "name": d.name,
        "vendor": d.vendor,
        "profile": d.profile,
        "state": d.state,
        "quarantined": d.state == "quarantined",
        "last_alert": last_alert,
        "last_alert_time": last_alert_time,
    })
}

/// Home Assistant discovery: (topic, retained payload) per entity. The
/// switch only with commands; without, its config is published empty, which
/// removes a switch left from an earlier configuration.
pub fn discovery(t: &Topics, d: &DeviceState<'_>, commands: bool) -> Vec<(String, String)> {
    let id = t.object_id(d.mac);
    let label = d.name.unwrap_or(d.mac);
    let device = json!({
        "identifiers": [id],
        "connections": [["mac", d.mac]],
        "name": label,
        "manufacturer": d.vendor,
        "model": format!("seen by leash on {}", t.router),
    });
    let state_topic = t.device(d.mac);
    let common = |name: &str, key: &str| {
        json!({
            "name": name,
            "unique_id": format!("{id}_{key}"),
            "object_id": format!("{id}_{key}"),
            "state_topic": state_topic,
            "availability_topic": t.availability(),
            "device": device,
        })
    };
    let mut quarantined = common("Quarantined", "quarantined");
    quarantined["value_template"] = "{{ 'ON' if value_json.quarantined else 'OFF' }}".into();
    quarantined["device_class"] = "problem".into();
    let mut last = common("Last alert", "last_alert");
    // Home Assistant refuses a state longer than 255 characters.
    last["value_template"] = "{{ (value_json.last_alert or 'none')[:255] }}".into();
    last["icon"] = "mdi:shield-alert".into();
    let mut out = vec![
        (format!("homeassistant/binary_sensor/{id}/quarantined/config"), quarantined.to_string()),
        (format!("homeassistant/sensor/{id}/last_alert/config"), last.to_string()),
    ];
    let switch_topic = format!("homeassistant/switch/{id}/quarantine/config");
    if commands {
        let mut sw = common("Quarantine", "quarantine");
        sw["value_template"] = "{{ 'ON' if value_json.quarantined else 'OFF' }}".into();
        sw["command_topic"] = t.command(d.mac).into();
        sw["payload_on"] = "ON".into();
        sw["payload_off"] = "OFF".into();
        sw["icon"] = "mdi:lan-disconnect".into();
        out.push((switch_topic, sw.to_string()));
    } else {
        out.push((switch_topic, String::new()));
    }
    out
}

/// What a command message asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quarantine,
    Release,
}

/// `ON`/`quarantine` or `OFF`/`release` (any case, surrounding space
/// ignored); anything else (or more than a few bytes) is no command.
pub fn parse_command(payload: &[u8]) -> Option<Command> {
    if payload.len() > 32 {
        return None;
    }
    let s = std::str::from_utf8(payload).ok()?.trim();
    if s.eq_ignore_ascii_case("on") || s.eq_ignore_ascii_case("quarantine") {
        Some(Command::Quarantine)
    } else if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("release") {
        Some(Command::Release)
    } else {
        None
    }
}

/// Reconnect delays: 1 s doubling to 60 s; back to 1 s once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait before the next attempt; each failure doubles the next.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
    pub fn connected(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(state: &'static str) -> DeviceState<'static> {
        DeviceState { mac: "aa:bb:cc:dd:ee:ff", name: Some("cam"), vendor: None, profile: "iot", state }
    }

    #[test]
    fn topics() {
        let t = Topics::new("leash", "gw.lan");
        assert_eq!(t.router, "gw_lan");
        assert_eq!(t.alert(), "leash/gw_lan/alert");
        assert_eq!(t.device("aa:bb:cc:dd:ee:ff"), "leash/gw_lan/device/aa:bb:cc:dd:ee:ff");
        assert_eq!(t.command_filter(), "leash/gw_lan/device/+/set");
        assert_eq!(t.command_mac("leash/gw_lan/device/aa:bb:cc:dd:ee:ff/set"), Some("aa:bb:cc:dd:ee:ff"));
        for not in ["leash/other/device/x/set", "leash/gw_lan/device//set", "leash/gw_lan/device/a/b/set", "leash/gw_lan/alert"] {
            assert_eq!(t.command_mac(not), None, "{not}");
        }
        assert_eq!(safe_id(""), "leash");
        assert_eq!(safe_id("a+b#c/d"), "a_b_c_d");
    }

    #[test]
    fn device_state_and_discovery() {
        let t = Topics::new("leash", "gw");
        let p = device_payload(&dev("quarantined"), Some("QUARANTINE device=aa:bb:cc:dd:ee:ff"), Some(7));
        assert_eq!(p["quarantined"], true);
        assert_eq!(p["state"], "quarantined");
        assert_eq!(p["last_alert_time"], 7);
        let d = discovery(&t, &dev("enforced"), false);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].0, "homeassistant/binary_sensor/leash_gw_aabbccddeeff/quarantined/config");
        let bs: Value = serde_json::from_str(&d[0].1).expect("json");
        assert_eq!(bs["state_topic"], "leash/gw/device/aa:bb:cc:dd:ee:ff");
        assert_eq!(bs["device"]["identifiers"][0], "leash_gw_aabbccddeeff");
        assert_eq!(d[1].0, "homeassistant/sensor/leash_gw_aabbccddeeff/last_alert/config");
        assert_eq!(d[2], ("homeassistant/switch/leash_gw_aabbccddeeff/quarantine/config".to_string(), String::new()), "no switch");
        let with = discovery(&t, &dev("enforced"), true);
        let sw: Value = serde_json::from_str(&with[2].1).expect("switch json");
        assert_eq!(sw["command_topic"], "leash/gw/device/aa:bb:cc:dd:ee:ff/set");
    }

    #[test]
    fn commands() {
        assert_eq!(parse_command(b"ON"), Some(Command::Quarantine));
        assert_eq!(parse_command(b" quarantine\n"), Some(Command::Quarantine));
        assert_eq!(parse_command(b"off"), Some(Command::Release));
        assert_eq!(parse_command(b"Release"), Some(Command::Release));
        for bad in [&b""[..], b"toggle", b"\xff\xfe", &[b'o'; 100]] {
            assert_eq!(parse_command(bad), None);
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.connected();
        assert_eq!(b.failed(), BACKOFF_MIN);
    }
}
