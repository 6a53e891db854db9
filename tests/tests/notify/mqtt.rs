//! MQTT and Home Assistant (SPEC §7) against a real mosquitto, run on the
//! loopback of the lab's router namespace (never on a real network): alerts
//! as JSON, retained device states, discovery configs, commands only with
//! `mqtt_commands = true`, and alerts queued while the broker is down.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use leash_lab::{mac, netns, Lab};
use serde_json::Value;

const LOOPBACK: &str = "127.0.0.1";
/// Each lab has its own router namespace, so the usual port is free in it.
const PORT: u16 = 1883;

/// A process in the router namespace, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_router(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.router().name]).args(args);
    c
}

fn mosquitto_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// mosquitto on 127.0.0.1:port in the router namespace, accepting connections.
fn broker(lab: &Lab, port: u16) -> Proc {
    let conf = lab.dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(&conf, format!("listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n")).expect("mosquitto.conf");
    let child = in_router(lab, &[mosquitto_bin(), "-c", conf.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto (apt-get install mosquitto)");
    let p = Proc(child);
    let lo: IpAddr = LOOPBACK.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    lab.wait_until(Duration::from_secs(5), "mosquitto listens", || {
        netns::tcp_connect(&lab.router().name, lo, port, Duration::from_millis(200)).is_ok()
    });
    p
}

/// `mosquitto_sub -v` on leash's and Home Assistant's topics; the lines it
/// printed so far (`topic payload`).
struct Sub {
    _p: Proc,
    lines: Arc<Mutex<Vec<(String, String)>>>,
}

fn subscribe(lab: &Lab, port: u16) -> Sub {
    let port_s = port.to_string();
    let mut child = in_router(lab, &["mosquitto_sub", "-h", LOOPBACK, "-p", &port_s, "-v", "-t", "leash/#", "-t", "homeassistant/#"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto_sub (apt-get install mosquitto-clients)");
    let out = child.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let (t, p) = line.split_once(' ').map_or((line.as_str(), ""), |(t, p)| (t, p));
            l2.lock().unwrap_or_else(|e| e.into_inner()).push((t.to_string(), p.to_string()));
        }
    });
    // mosquitto_sub has subscribed once a retained or new message could reach it.
    std::thread::sleep(Duration::from_millis(300));
    Sub { _p: Proc(child), lines }
}

impl Sub {
    fn all(&self) -> Vec<(String, String)> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// The last payload on a topic matching `pred`, as JSON.
    fn last_json(&self, pred: impl Fn(&str) -> bool) -> Option<(String, Value)> {
        self.all().into_iter().rev().find(|(t, _)| pred(t)).and_then(|(t, p)| Some((t, serde_json::from_str(&p).ok()?)))
    }
}

fn mqtt_config(port: u16, commands: bool) -> String {
    format!("\n[notify]\nmqtt = \"mqtt://{LOOPBACK}:{port}\"\nmqtt_commands = {commands}\n")
}

/// The router's level in topics, from its availability message.
fn router_level(lab: &Lab, sub: &Sub) -> String {
    lab.wait_until(Duration::from_secs(10), "leash/<router>/status online", || {
        sub.all().iter().any(|(t, p)| t.starts_with("leash/") && t.ends_with("/status") && p == "online")
    });
    let all = sub.all();
    let (t, _) = all.iter().find(|(t, p)| t.starts_with("leash/") && t.ends_with("/status") && p == "online").cloned().unwrap_or_default();
    t.trim_start_matches("leash/").trim_end_matches("/status").to_string()
}

fn pub_command(lab: &Lab, port: u16, topic: &str, payload: &str) {
    let out = in_router(lab, &["mosquitto_pub", "-h", LOOPBACK, "-p", &port.to_string(), "-t", topic, "-m", payload])
        .output()
        .expect("mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

/// What a new subscriber gets retained on one topic.
fn retained(lab: &Lab, port: u16, topic: &str) -> Option<Value> {
    let out = in_router(lab, &["mosquitto_sub", "-h", LOOPBACK, "-p", &port.to_string(), "-t", topic, "-C", "1", "-W", "3"])
        .output()
        .expect("mosquitto_sub");
    serde_json::from_slice(&out.stdout).ok()
}

fn device_state(lab: &Lab, n: u8) -> String {
    lab.device_report(&mac(n)).map(|d| d["state"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

/// Alerts, retained states and discovery; commands quarantine and release.
#[test]
fn alerts_states_discovery_and_commands() {
    let mut lab = lab("mqtt-cmd", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let port = PORT;
    let _broker = broker(&lab, port);
    let sub = subscribe(&lab, port);
    lab.start_leash(&config("enforce", "quarantine", "", &mqtt_config(port, true)));
    let r = router_level(&lab, &sub);
    let m = mac(1);

    quarantine_dev1(&lab);
    let alert_topic = format!("leash/{r}/alert");
    lab.wait_until(Duration::from_secs(5), "the QUARANTINE alert on MQTT", || {
        sub.last_json(|t| t == alert_topic).is_some_and(|(_, v)| v["verb"] == "QUARANTINE")
    });
    let (_, a) = sub.last_json(|t| t == alert_topic).unwrap_or_default();
    assert_eq!(a["device"], m, "{a}");
    assert_eq!(a["dst"], BAD4, "{a}");
    assert_eq!(a["rule"], "list:bad", "{a}");
    let dev_topic = format!("leash/{r}/device/{m}");
    lab.wait_until(Duration::from_secs(5), "device state quarantined", || {
        sub.last_json(|t| t == dev_topic).is_some_and(|(_, v)| v["state"] == "quarantined")
    });
    let (_, d) = sub.last_json(|t| t == dev_topic).unwrap_or_default();
    assert_eq!(d["quarantined"], true, "{d}");
    assert_eq!(d["profile"], "iot", "{d}");
    assert!(d["last_alert"].as_str().is_some_and(|l| l.starts_with("QUARANTINE ")), "{d}");
    let kept = retained(&lab, port, &dev_topic).unwrap_or_else(|| panic!("no retained state on {dev_topic}"));
    assert_eq!(kept["state"], "quarantined", "{kept}");

    // Home Assistant discovery: binary sensor, last alert, and the switch.
    let id = format!("leash_{r}_{}", m.replace(':', ""));
    for (kind, key) in [("binary_sensor", "quarantined"), ("sensor", "last_alert"), ("switch", "quarantine")] {
        let topic = format!("homeassistant/{kind}/{id}/{key}/config");
        let (_, c) = sub.last_json(|t| t == topic).unwrap_or_else(|| panic!("no discovery config on {topic}: {:?}", sub.all()));
        assert_eq!(c["state_topic"], dev_topic, "{c}");
        assert!(c["unique_id"].as_str().is_some_and(|u| u.starts_with(&id)), "{c}");
        let kept = retained(&lab, port, &topic).unwrap_or_else(|| panic!("discovery config {topic} not retained"));
        assert_eq!(kept["unique_id"], c["unique_id"]);
    }
    let (_, sw) = sub.last_json(|t| t.starts_with("homeassistant/switch/")).unwrap_or_default();
    let cmd_topic = sw["command_topic"].as_str().unwrap_or_default().to_string();
    assert_eq!(cmd_topic, format!("{dev_topic}/set"));

    // Home Assistant's switch: OFF releases, ON quarantines again.
    pub_command(&lab, port, &cmd_topic, "OFF");
    lab.wait_until(Duration::from_secs(5), "released by MQTT", || device_state(&lab, 1) != "quarantined");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac no longer holds device 1", || !lab.set_has("quarantine_mac", &m));
    lab.wait_until(Duration::from_secs(5), "released state published", || {
        sub.last_json(|t| t == dev_topic).is_some_and(|(_, v)| v["quarantined"] == false)
    });
    pub_command(&lab, port, &cmd_topic, "ON");
    lab.wait_until(Duration::from_secs(5), "quarantined by MQTT", || device_state(&lab, 1) == "quarantined");
    lab.wait_until(Duration::from_secs(5), "quarantine_mac holds device 1", || lab.set_has("quarantine_mac", &m));
    // Garbage and other routers' topics change nothing.
    pub_command(&lab, port, &cmd_topic, "toggle");
    pub_command(&lab, port, &format!("leash/other-router/device/{m}/set"), "OFF");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(device_state(&lab, 1), "quarantined");
    let s = lab.leash_json(&["status"]);
    assert_eq!(s["notify_mqtt_connected"], true, "{s}");
    assert_eq!(s["notify_mqtt_commands"], 2, "{s}");
}

/// Without `mqtt_commands`, no switch and commands are ignored.
#[test]
fn commands_are_ignored_without_mqtt_commands() {
    let mut lab = lab("mqtt-nocmd", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let port = PORT;
    let _broker = broker(&lab, port);
    let sub = subscribe(&lab, port);
    lab.start_leash(&config("enforce", "quarantine", "", &mqtt_config(port, false)));
    let r = router_level(&lab, &sub);
    let m = mac(1);
    quarantine_dev1(&lab);
    let dev_topic = format!("leash/{r}/device/{m}");
    lab.wait_until(Duration::from_secs(5), "device state quarantined", || {
        sub.last_json(|t| t == dev_topic).is_some_and(|(_, v)| v["state"] == "quarantined")
    });
    let id = format!("leash_{r}_{}", m.replace(':', ""));
    let switch = format!("homeassistant/switch/{id}/quarantine/config");
    assert!(sub.all().iter().all(|(t, p)| t != &switch || p.is_empty() || p == "(null)"), "no switch without mqtt_commands: {:?}", sub.all());
    assert!(retained(&lab, port, &switch).is_none(), "no retained switch config");
    // mosquitto_sub prints an empty payload as "(null)".

    pub_command(&lab, port, &format!("{dev_topic}/set"), "OFF");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(device_state(&lab, 1), "quarantined", "a command without mqtt_commands must do nothing");
    assert!(lab.set_has("quarantine_mac", &m));
}

/// Broker down: the alert waits in leash's queue; broker back: leash
/// reconnects (with backoff) and delivers it; the daemon answers throughout.
#[test]
fn alerts_wait_for_a_broker_that_is_down() {
    let mut lab = lab("mqtt-down", 1);
    let _wan = lab.wan_tcp_server(HTTPS);
    let port = PORT;
    let broker1 = broker(&lab, port);
    let sub1 = subscribe(&lab, port);
    lab.start_leash(&config("enforce", "quarantine", "", &mqtt_config(port, false)));
    let r = router_level(&lab, &sub1);
    drop(sub1);
    drop(broker1);
    lab.wait_until(Duration::from_secs(10), "leash sees the broker gone", || lab.leash_json(&["status"])["notify_mqtt_connected"] == false);

    quarantine_dev1(&lab);
    let s = lab.leash_json(&["status"]);
    assert_eq!(s["notify_mqtt_connected"], false, "{s}");
    assert_eq!(s["notify_mqtt_dropped"], 0, "{s}");

    let _broker2 = broker(&lab, port);
    let sub2 = subscribe(&lab, port);
    let alert_topic = format!("leash/{r}/alert");
    lab.wait_until(Duration::from_secs(70), "the queued alert delivered after the reconnect", || {
        sub2.last_json(|t| t == alert_topic).is_some_and(|(_, v)| v["verb"] == "QUARANTINE" && v["device"] == mac(1))
    });
    let s = lab.leash_json(&["status"]);
    assert_eq!(s["notify_mqtt_connected"], true, "{s}");
    assert!(s["notify_mqtt_connects"].as_u64().unwrap_or(0) >= 2, "{s}");
    let kept = retained(&lab, port, &format!("leash/{r}/device/{}", mac(1)));
    assert_eq!(kept.map(|v| v["state"].clone()), Some(Value::from("quarantined")));
}
