//! Alerts beyond syslog (SPEC §3 `[notify]`, §7): a program run per alert
//! (`exec`). Pure: `message` (the JSON) and `queue` (what runs, what is
//! dropped, what is logged); the adapter `exec` runs the programs.

pub mod exec;
pub mod message;
pub mod queue;

use crate::alert::Alert;
use crate::config::NotifyConfig;

pub struct Notify {
    exec: exec::ExecRunner,
    /// This router's name in messages (several routers may share a broker).
    router: String,
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

impl Notify {
    pub fn new() -> Notify {
        Notify { exec: exec::ExecRunner::default(), router: hostname() }
    }

    /// Hands one alert line to the configured notifiers; never waits.
    pub fn alert(&mut self, cfg: &NotifyConfig, a: &Alert, now: u64) {
        let verb = a.verb.as_str();
        if !cfg.wants(verb) {
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

    /// The counters `leash status --json` shows.
    pub fn status(&self, o: &mut serde_json::Map<String, serde_json::Value>) {
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
