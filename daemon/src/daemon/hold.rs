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
                self.syslog.send(Severity::Warning, &format!("dns_hold: no nft queue in this kernel (kmod-nft-queue); DNS answers are snooped from NFLOG group {group}, not held"));
                self.dns_path = DnsPath::Snoop { group };
            }
        }
        self.rebuild_table().await.context("installing the nftables table")
    }
}
