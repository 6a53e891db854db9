//! `[notify]` (SPEC §3): a child of `validate`, so it shares the validator's
//! helpers without widening their visibility.

use std::time::Duration;

use super::super::{MqttConfig, NotifyConfig, NOTIFY_VERBS};
use super::{RawSection, Validator};

const NOTIFY_KEYS: &[&str] =
    &["exec", "on", "exec_timeout", "mqtt", "mqtt_user", "mqtt_password", "mqtt_topic", "mqtt_commands"];

/// Longest accepted `exec_timeout`: a stuck notifier must not hold one of
/// the few runner slots for long.
const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(300);

impl Validator<'_> {
    pub(super) fn notify(&mut self, sec: Option<&RawSection>) -> NotifyConfig {
        let f = self.fields("notify".into(), sec, NOTIFY_KEYS);
        let mut n = NotifyConfig::default();
        if let Some((key, opt)) = f.get("exec") {
            n.exec = self.path(&key, opt);
        }
        if let Some((key, opt)) = f.get("on") {
            if let Some(items) = self.list(&key, opt) {
                let mut on = Vec::new();
                for (verb, line) in items {
                    let up = verb.to_ascii_uppercase();
                    if NOTIFY_VERBS.contains(&up.as_str()) {
                        on.push(up);
                    } else {
                        self.err(line, &key, format!("unknown verb {verb:?} (expected some of: {})", NOTIFY_VERBS.join(", ")));
                    }
                }
                n.on = on;
            }
        }
        if let Some((key, opt)) = f.get("exec_timeout") {
            if let Some(d) = self.duration(&key, opt) {
                if d.is_zero() || d > MAX_EXEC_TIMEOUT {
                    self.err(opt.line, &key, "must be between 1s and 5m");
                } else {
                    n.exec_timeout = d;
                }
            }
        }
        let mut mqtt = None;
        if let Some((key, opt)) = f.get("mqtt") {
            if let Some(url) = self.string(&key, opt) {
                match parse_mqtt_url(&url) {
                    Ok((host, port)) => {
                        mqtt = Some(MqttConfig { host, port, user: None, password: None, topic: "leash".into(), commands: false })
                    }
                    Err(e) => self.err(opt.line, &key, e),
                }
            }
        }
        let user = f.get("mqtt_user").and_then(|(key, opt)| self.string(&key, opt));
        let password = f.get("mqtt_password").and_then(|(key, opt)| self.string(&key, opt));
        let mut topic = None;
        if let Some((key, opt)) = f.get("mqtt_topic") {
            if let Some(t) = self.string(&key, opt) {
                if is_topic_root(&t) {
                    topic = Some(t);
                } else {
                    self.err(opt.line, &key, format!("not a usable topic root (no '+', '#', leading or trailing '/'): {t:?}"));
                }
            }
        }
        let commands = f.get("mqtt_commands").and_then(|(key, opt)| self.bool(&key, opt));
        if let Some(m) = &mut mqtt {
            m.user = user.filter(|u| !u.is_empty());
            m.password = password;
            if let Some(t) = topic {
                m.topic = t;
            }
            m.commands = commands.unwrap_or(false);
        }
        n.mqtt = mqtt;
        n
    }
}

/// `mqtt://host[:port]` (1883 by default). No `mqtts://`: leash carries no
/// TLS stack, and the broker a router talks to is on its LAN.
pub(crate) fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let Some(rest) = url.strip_prefix("mqtt://") else {
        return Err(format!("expected mqtt://HOST[:PORT], found {url:?} (no TLS: use a broker on the LAN)"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((h, tail)) = v6.split_once(']') else { return Err(format!("unclosed '[' in {url:?}")) };
        (h, tail.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("no usable host in {url:?}"));
    }
    let port = match port {
        None => 1883,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("bad port in {url:?}")),
        },
    };
    Ok((host.to_string(), port))
}

fn is_topic_root(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && !t.contains(['+', '#', '\0']) && !t.starts_with('/') && !t.ends_with('/')
}

#[cfg(test)]
mod tests {
    use super::parse_mqtt_url;

    #[test]
    fn mqtt_urls() {
        assert_eq!(parse_mqtt_url("mqtt://192.168.1.2:1883"), Ok(("192.168.1.2".into(), 1883)));
        assert_eq!(parse_mqtt_url("mqtt://broker.lan"), Ok(("broker.lan".into(), 1883)));
        assert_eq!(parse_mqtt_url("mqtt://[fd00::2]:1884/"), Ok(("fd00::2".into(), 1884)));
        for bad in ["mqtts://x:8883", "http://x", "mqtt://", "mqtt://x:0", "mqtt://x:99999", "mqtt://u@x", "mqtt://[fd00::2"] {
            assert!(parse_mqtt_url(bad).is_err(), "{bad}");
        }
    }
}
