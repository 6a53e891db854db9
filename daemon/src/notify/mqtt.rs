//! The MQTT adapter (rumqttc, no TLS): one task owns the connection and
//! reconnects with `ha::Backoff`; the daemon only hands it messages with a
//! non-blocking `try_publish` into a bounded request queue (a full queue
//! drops the message, counted) and reads commands from a bounded channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use super::ha::{self, Topics};
use crate::config::MqttConfig;
use crate::counter::Counter;

/// Messages waiting for the broker, at most (while it is down, too).
pub const MAX_QUEUED: usize = 256;
/// Largest packet taken from the broker: commands are a few bytes.
const MAX_INCOMING: usize = 16 * 1024;
const MAX_OUTGOING: usize = 64 * 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Shared {
    pub connected: AtomicBool,
    pub connects: Counter,
    pub published: Counter,
    pub dropped: Counter,
    pub commands: Counter,
    /// Set at each connect: the daemon republishes discovery and states.
    pub announce: AtomicBool,
}

pub struct Mqtt {
    pub cfg: MqttConfig,
    pub topics: Topics,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    pub shared: Arc<Shared>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mqtt {
    pub fn start(cfg: &MqttConfig, hostname: &str, commands: mpsc::Sender<(ha::Command, String)>) -> Mqtt {
        let topics = Topics::new(&cfg.topic, hostname);
        let mut opts = MqttOptions::new(format!("leash-{}", topics.router), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(KEEP_ALIVE);
        opts.set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
        if let Some(user) = &cfg.user {
            opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        opts.set_last_will(LastWill::new(topics.availability(), "offline", QoS::AtLeastOnce, true));
        let (client, eventloop) = AsyncClient::new(opts, MAX_QUEUED);
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(drive(eventloop, client.clone(), topics.clone(), cfg.commands, shared.clone(), commands));
        Mqtt { cfg: cfg.clone(), topics, client, task, shared }
    }

    /// Queues one message; never waits. A full queue drops it (counted).
    pub fn publish(&self, topic: String, payload: String, retain: bool) {
        if self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload).is_err() {
            let n = self.shared.dropped.bump();
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "MQTT queue full (broker unreachable?); dropped a message");
            }
        } else {
            self.shared.published.bump();
        }
    }
}

async fn drive(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    topics: Topics,
    accept_commands: bool,
    shared: Arc<Shared>,
    commands: mpsc::Sender<(ha::Command, String)>,
) {
    let mut backoff = ha::Backoff::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.connected();
                shared.connected.store(true, Ordering::Relaxed);
                let n = shared.connects.bump();
                tracing::info!(connects = n, "connected to the MQTT broker");
                let _ = client.try_publish(topics.availability(), QoS::AtLeastOnce, true, "online");
                if accept_commands {
                    let _ = client.try_subscribe(topics.command_filter(), QoS::AtLeastOnce);
                }
                shared.announce.store(true, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(mac) = topics.command_mac(&p.topic) else { continue };
                if !accept_commands {
                    continue;
                }
                match ha::parse_command(&p.payload) {
                    Some(c) => {
                        shared.commands.bump();
                        if commands.try_send((c, mac.to_string())).is_err() {
                            tracing::warn!(%mac, "MQTT command dropped: the daemon has too many waiting");
                        }
                    }
                    None => tracing::warn!(topic = %p.topic, "MQTT command not understood (expected ON/OFF, quarantine/release)"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was = shared.connected.swap(false, Ordering::Relaxed);
                let wait = backoff.failed();
                if was || wait == ha::BACKOFF_MAX || wait == ha::BACKOFF_MIN {
                    tracing::warn!(error = %e, retry_in = ?wait, "MQTT broker unreachable");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no broker, messages wait up to the cap; the rest are dropped
    /// and counted, and publishing never blocks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        let cfg = MqttConfig { host: "127.0.0.1".into(), port: 1, user: None, password: None, topic: "leash".into(), commands: false };
        let (tx, _rx) = mpsc::channel(1);
        let m = Mqtt::start(&cfg, "gw", tx);
        for i in 0..MAX_QUEUED + 10 {
            m.publish(m.topics.alert(), format!("{{\"n\":{i}}}"), false);
        }
        assert_eq!(m.shared.published.get(), MAX_QUEUED as u64);
        assert_eq!(m.shared.dropped.get(), 10);
        assert!(!m.shared.connected.load(Ordering::Relaxed));
    }
}
