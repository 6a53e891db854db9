//! Alerts beyond syslog (SPEC §3 `[notify]`, §7): a program run per alert
//! (`exec`) and MQTT with Home Assistant discovery. Pure: `message` (the
//! JSON), `queue` (what runs, what is dropped, what is logged) and `ha`
//! (topics, payloads, commands, backoff); adapters `exec` and `mqtt`.

pub mod exec;
pub mod ha;
pub mod message;
pub mod mqtt;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::alert::Alert;
use crate::config::NotifyConfig;
use crate::control::protocol::Request;
use crate::engine::DeviceReport;

/// Devices whose last alert and announcement are remembered, at most;
/// beyond, both are forgotten at once (the next alert announces again).
const MAX_REMEMBERED: usize = 4096;
/// MQTT commands waiting for the event loop, at most.
const MAX_COMMANDS: usize = 16;

pub struct Notify {
    exec: exec::ExecRunner,
    /// This router's name in messages (several routers may share a broker).
    router: String,
    mqtt: Option<mqtt::Mqtt>,
    /// Per device: its last notified line and when.
    last_alert: HashMap<String, (String, u64)>,
    /// Devices whose discovery configs went out on this connection.
    announced: HashSet<String>,
    cmd_tx: mpsc::Sender<(ha::Command, String)>,
    /// Quarantine/release asked over MQTT (only with `mqtt_commands`).
    pub commands: mpsc::Receiver<(ha::Command, String)>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

impl Notify {
    pub fn new() -> Notify {
        let (cmd_tx, commands) = mpsc::channel(MAX_COMMANDS);
        Notify {
            exec: exec::ExecRunner::default(),
            router: hostname(),
            mqtt: None,
            last_alert: HashMap::new(),
            announced: HashSet::new(),
            cmd_tx,
            commands,
        }
    }

    /// Hands one alert line to the configured notifiers; never waits.
    /// `devices` is asked only when MQTT is on (the device's new state).
    pub fn alert(&mut self, cfg: &NotifyConfig, a: &Alert, now: u64, devices: impl FnOnce() -> Vec<DeviceReport>) {
        let verb = a.verb.as_str();
        let wanted = cfg.wants(verb);
        self.configure(cfg);
        if let Some(m) = &self.mqtt {
            if wanted {
                let json = serde_json::Value::Object(message::alert_json(a, now, &self.router)).to_string();
                m.publish(m.topics.alert(), json, false);
            }
            if let Some(mac) = a.get("device") {
                if wanted {
                    self.remember(mac, a.to_string(), now);
                }
                // A RELEASE changes the state even when it is not notified.
                if let Some(r) = devices().into_iter().find(|r| r.mac.to_string() == mac) {
                    self.publish_device(&r);
                }
            }
        }
        if !wanted {
            return;
        }
        if let Some(program) = &cfg.exec {
            let json = message::alert_json(a, now, &self.router);
            let env = vec![
                ("LEASH_VERB", verb.to_string()),
                ("LEASH_SEVERITY", a.severity().as_str().to_string()),
                ("LEASH_ROUTER", self.router.clone()),
                ("LEASH_LINE", a.to_string()),
            ];
            let json = serde_json::Value::Object(json).to_string();
            self.exec.submit(exec::Job { program: program.clone(), timeout: cfg.exec_timeout, json, env });
        }
    }

    /// Housekeeping: follows a reload, and after each connect announces
    /// every device (discovery and retained state) again.
    pub fn tick(&mut self, cfg: &NotifyConfig, devices: impl FnOnce() -> Vec<DeviceReport>) {
        self.configure(cfg);
        let Some(m) = &self.mqtt else { return };
        if m.shared.announce.swap(false, Ordering::Relaxed) {
            self.announced.clear();
            for r in devices() {
                self.publish_device(&r);
            }
        }
    }

    /// The request an MQTT command stands for.
    pub fn request(cmd: ha::Command, mac: String) -> Request {
        match cmd {
            ha::Command::Quarantine => Request::Quarantine { device: mac },
            ha::Command::Release => Request::Release { device: mac },
        }
    }

    /// Starts, restarts or stops the MQTT client to match the configuration.
    fn configure(&mut self, cfg: &NotifyConfig) {
        if self.mqtt.as_ref().map(|m| &m.cfg) == cfg.mqtt.as_ref() {
            return;
        }
        self.announced.clear();
        self.mqtt = cfg.mqtt.as_ref().map(|c| mqtt::Mqtt::start(c, &self.router, self.cmd_tx.clone()));
    }

    fn remember(&mut self, mac: &str, line: String, now: u64) {
        if self.last_alert.len() >= MAX_REMEMBERED && !self.last_alert.contains_key(mac) {
            self.last_alert.clear();
        }
        self.last_alert.insert(mac.to_string(), (line, now));
    }

    fn publish_device(&mut self, r: &DeviceReport) {
        let Some(m) = &self.mqtt else { return };
        let mac = r.mac.to_string();
        let d = ha::DeviceState { mac: &mac, name: r.name.as_deref(), vendor: r.vendor.as_deref(), profile: &r.profile, state: r.state };
        if !self.announced.contains(&mac) {
            if self.announced.len() >= MAX_REMEMBERED {
                self.announced.clear();
            }
            for (topic, payload) in ha::discovery(&m.topics, &d, m.cfg.commands) {
                m.publish(topic, payload, true);
            }
            self.announced.insert(mac.clone());
        }
        let last = self.last_alert.get(&mac);
        let payload = ha::device_payload(&d, last.map(|(l, _)| l.as_str()), last.map(|(_, t)| *t));
        m.publish(m.topics.device(&mac), payload.to_string(), true);
    }

    /// The counters `leash status --json` shows.
    pub fn status(&self, o: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(m) = &self.mqtt {
            let s = &m.shared;
            o.insert("notify_mqtt_connected".into(), s.connected.load(Ordering::Relaxed).into());
            o.insert("notify_mqtt_connects".into(), s.connects.get().into());
            o.insert("notify_mqtt_published".into(), s.published.get().into());
            o.insert("notify_mqtt_dropped".into(), s.dropped.get().into());
            o.insert("notify_mqtt_commands".into(), s.commands.get().into());
        }
        let (c, running, queued) = self.exec.counters();
        o.insert("notify_exec_sent".into(), c.sent.into());
        o.insert("notify_exec_failed".into(), c.failed.into());
        o.insert("notify_exec_timeouts".into(), c.timeouts.into());
        o.insert("notify_exec_dropped".into(), c.dropped.into());
        o.insert("notify_exec_running".into(), running.into());
        o.insert("notify_exec_queued".into(), queued.into());
    }
}

/// The kernel's hostname (what OpenWrt's `system.hostname` sets).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "leash".to_string())
}
