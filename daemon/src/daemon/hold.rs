//! Holding DNS answers (SPEC §2, `dns_hold`): which path answers take to
//! leash, and installing the table with it — falling back from a held
//! queue to a snooped copy where the kernel has no nft `queue`.

use super::*;
use crate::config::{DaemonConfig, DnsHold};
use nft::DnsPath;

/// The path `dns_hold` asks for; `auto` starts by trying to hold.
pub(super) fn initial_dns_path(cfg: &DaemonConfig) -> DnsPath {
    match cfg.dns_hold {
        DnsHold::Off => DnsPath::Snoop { group: cfg.dns_nflog_group },
        DnsHold::Auto | DnsHold::On => DnsPath::Hold { queue: cfg.dns_queue },
        DnsHold::External => DnsPath::External,
    }
}

impl Daemon {
    pub(super) fn layout(&self) -> nft::Layout<'_> {
        let cfg = &self.engine.policy().config.daemon;
        // The bypass cuts log to the NFLOG group whatever path answers take.
        let bypass = self.engine.bypass_layout().map(|doh| nft::Bypass { group: cfg.dns_nflog_group, doh });
        nft::Layout { table: &cfg.nft_table, lan: &cfg.lan, dns: self.dns_path, bypass }
    }

    /// Installs the table at start. With `dns_hold = "auto"`, a kernel that
    /// refuses a `queue` rule (no kmod-nft-queue) gets the snooping table
    /// instead, with one warning; with `"on"` leash refuses to start.
    pub(super) async fn install_table(&mut self) -> anyhow::Result<()> {
        if let DnsPath::Hold { queue } = self.dns_path {
            let cfg = &self.engine.policy().config.daemon;
            let (hold, group) = (cfg.dns_hold, cfg.dns_nflog_group);
            if let Err(e) = nft::apply::run_script("queue probe", &nft::queue_probe(&cfg.nft_table, queue)) {
                if hold == DnsHold::On {
                    return Err(e).context(format!("dns_hold = \"on\": this kernel cannot queue DNS answers to NFQUEUE {queue} (nft queue: kmod-nft-queue)"));
                }
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                tracing::warn!(queue, group, error = %first, "this kernel has no nft queue (kmod-nft-queue): DNS answers are snooped from NFLOG, not held; a device's first UDP packet may beat the verdict");
                let filtering: Vec<&str> = self.engine.policy().config.profiles.values().filter(|p| p.dns_filter == crate::config::DnsFilter::Nxdomain).map(|p| p.name.as_str()).collect();
                if !filtering.is_empty() {
                    tracing::warn!(profiles = ?filtering, "dns_filter = \"nxdomain\" needs held answers: these profiles' denied names are answered (and their addresses blocked) until kmod-nft-queue is installed");
                }
                self.syslog.send(Severity::Warning, &format!("dns_hold: no nft queue in this kernel (kmod-nft-queue); DNS answers are snooped from NFLOG group {group}, not held"));
                self.dns_path = DnsPath::Snoop { group };
            }
        }
        self.rebuild_table().await.context("installing the nftables table")
    }
}

/// Held answers judged per batch: one flow lookup, one set update and one
/// verdict datagram for all of them.
const MAX_HELD_BATCH: usize = 64;

/// A held answer on its way out: its queue id and what replaces it.
struct Release {
    id: u32,
    /// The packet, kept for an NXDOMAIN rewrite; empty when unreadable.
    packet: Vec<u8>,
    /// Index into the batch's readable answers.
    answer: Option<usize>,
}

impl Daemon {
    /// Binds the queue `dns_hold` reads (`hold` or `external`); a queue
    /// that cannot be bound turns a held table into a snooping one, so
    /// answers are at least seen.
    pub(super) async fn bind_queue(&mut self, queue: u16) {
        match self.kernel.bind_dns_queue(queue).await {
            Ok(()) => {
                tracing::info!(queue, "holding DNS answers until they are judged");
            }
            Err(e) => {
                tracing::error!(error = %e, queue, "cannot read the DNS answer queue");
                self.syslog.send(Severity::Err, &format!("cannot hold DNS answers in NFQUEUE {queue}: {e:#}"));
                if let DnsPath::Hold { .. } = self.dns_path {
                    let group = self.engine.policy().config.daemon.dns_nflog_group;
                    self.dns_path = DnsPath::Snoop { group };
                    if self.rebuild_table().await.is_ok() {
                        tracing::warn!(group, "DNS answers are snooped from NFLOG instead");
                    }
                }
            }
        }
    }

    /// A datagram of held answers (and those queued behind it): judged,
    /// their elements acknowledged by the kernel, and only then let go —
    /// rewritten to NXDOMAIN where `dns_filter` says so. Whatever cannot
    /// be read or judged passes at once.
    pub(super) async fn on_held(&mut self, r: anyhow::Result<(Vec<crate::kernel::Held>, u64)>, buf: &mut Vec<u8>) {
        let (mut held, mut bad) = match r {
            Ok(x) => x,
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "reading held DNS answers");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        while held.len() < MAX_HELD_BATCH {
            match self.kernel.try_read_held(buf) {
                Ok(Some((more, b))) => {
                    held.extend(more);
                    bad += b;
                }
                Ok(None) => break,
                Err(e) => {
                    self.engine.counters.kernel_errors += 1;
                    tracing::error!(error = %e, "reading held DNS answers");
                    break;
                }
            }
        }
        self.judge_held(held, bad).await;
    }

    async fn judge_held(&mut self, held: Vec<crate::kernel::Held>, bad: u64) {
        let began = std::time::Instant::now();
        let queue = self.engine.policy().config.daemon.dns_queue;
        let now = now();
        let mut answers = Vec::with_capacity(held.len());
        let mut out = Vec::with_capacity(held.len());
        for h in held {
            self.engine.counters.dns_held += 1;
            match h.answer {
                Ok(a) => {
                    out.push(Release { id: h.id, packet: h.packet, answer: Some(answers.len()) });
                    answers.push((a, h.prov));
                }
                Err(e) => {
                    self.engine.counters.dns_held_unreadable += 1;
                    tracing::debug!(error = %e, "held packet is not a readable DNS answer: passed");
                    out.push(Release { id: h.id, packet: Vec::new(), answer: None });
                }
            }
        }
        // Held, the answer waits for its flow's lookup whatever resolver
        // sent it: no race to lose.
        self.kernel.look_up_flows(&mut answers).await;
        let t_lookup = began.elapsed().as_micros() as u64;
        // What dns_filter reads after judging consumed the answers: copied
        // only when some profile filters (the copy is per answer).
        let filters = self.engine.policy().config.profiles.values().any(|p| p.dns_filter == crate::config::DnsFilter::Nxdomain);
        let facts: Vec<_> = if filters { answers.iter().map(|(a, p)| (a.client, a.qname.clone(), a.records.clone(), self.engine.vouch(a, p))).collect() } else { Vec::new() };
        let mut fx = Vec::new();
        let unknown = self.take_answers(answers, bad, &mut fx);
        if !unknown.is_empty() {
            self.identify(unknown, &mut fx).await;
        }
        let t_judged = began.elapsed().as_micros() as u64;
        let mut verdicts: Vec<(u32, Option<Vec<u8>>)> = Vec::with_capacity(out.len());
        let mut filtered = Vec::new();
        for r in out {
            let judged = r.answer.and_then(|i| {
                let (client, qname, records, via) = facts.get(i)?;
                self.engine.dns_filter(*client, qname, records, (*via)?, now).map(|j| (*client, j))
            });
            let replacement = match judged {
                Some((client, j)) => match crate::codec::dns_rewrite::nxdomain_packet(&r.packet) {
                    Ok(p) => {
                        self.engine.counters.dns_nxdomain += 1;
                        filtered.push(client);
                        tracing::debug!(%client, rule = %j.rule, "denied name answered NXDOMAIN");
                        Some(p)
                    }
                    // A TCP answer passes: its addresses are blocked.
                    Err(e) => {
                        tracing::debug!(error = %e, %client, "denied answer not rewritable: passed, its addresses judged");
                        None
                    }
                },
                None => None,
            };
            verdicts.push((r.id, replacement));
        }
        mark_nxdomain(&mut fx, &filtered, &self.engine);
        // Elements first (acknowledged, with their journal and state), then
        // the answers go. Alert lines and flow cuts (a dump, for a
        // quarantine) after: nothing of the device's can pass meanwhile,
        // and every held answer counts against its resolver's send buffer
        // (dnsmasq's 208 KiB hold ≈ 256 answers), so release comes first.
        let (later, first): (Vec<Effect>, Vec<Effect>) = fx.into_iter().partition(|e| matches!(e, Effect::Cut(_) | Effect::Log(_)));
        let enforced = self.execute(first).await;
        let t_acked = began.elapsed().as_micros() as u64;
        let v: Vec<(u32, Option<&[u8]>)> = verdicts.iter().map(|(id, p)| (*id, p.as_deref())).collect();
        if let Err(e) = self.kernel.send_verdicts(queue, &v) {
            self.engine.counters.kernel_errors += 1;
            tracing::error!(error = %e, answers = v.len(), "releasing held DNS answers failed");
        }
        tracing::debug!(answers = v.len(), t_lookup, t_judged, t_acked, us = began.elapsed().as_micros() as u64, "released held DNS answers");
        let mut later = later;
        if !enforced {
            Self::mark_unenforced(&mut later);
        }
        self.execute(later).await;
    }
}

impl Daemon {
    /// At a stop: every answer still queued passes as it is (the kernel
    /// would drop them when the socket closes), until the queue is empty.
    pub(super) fn release_all_held(&mut self) {
        if !self.kernel.dns_queue_bound() {
            return;
        }
        let queue = self.engine.policy().config.daemon.dns_queue;
        let mut buf = Vec::new();
        let mut released = 0usize;
        // Bounded: answers keep coming while the table queues them.
        for _ in 0..64 {
            let Ok(Some((held, _))) = self.kernel.try_read_held(&mut buf) else { break };
            let v: Vec<(u32, Option<&[u8]>)> = held.iter().map(|h| (h.id, None)).collect();
            released += v.len();
            if let Err(e) = self.kernel.send_verdicts(queue, &v) {
                tracing::warn!(error = %e, "releasing held DNS answers at stop failed");
                break;
            }
        }
        // At once: what comes now passes unheld instead of being dropped
        // with the socket later, while the table is cleaned up.
        self.kernel.close_dns_queue();
        tracing::debug!(released, "released the held DNS answers at stop");
    }
}

/// The alert lines a rewritten answer caused say so (`dns=nxdomain`).
fn mark_nxdomain(fx: &mut [Effect], clients: &[std::net::IpAddr], engine: &Engine) {
    if clients.is_empty() {
        return;
    }
    let macs: Vec<String> = clients.iter().filter_map(|c| engine.devices.mac_of(*c)).map(|m| m.to_string()).collect();
    for e in fx {
        if let Effect::Log(a) = e {
            if a.get("device").is_some_and(|d| macs.iter().any(|m| m == d)) && a.get("rule").is_some_and(|r| r.starts_with("list:")) {
                a.set("dns", "nxdomain");
            }
        }
    }
}
