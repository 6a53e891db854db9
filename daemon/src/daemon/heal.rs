//! Keeping leash's table in the kernel (SPEC §6): nf_tables notifications
//! and a once-a-second existence check feed `nft::watch`, which decides;
//! this adapter rebuilds the table from the engine's state when it says so
//! and reports it in one err line.

use std::time::Instant;

use super::*;
use crate::kernel::NftRead;
use crate::nft::apply::NftError;

/// Datagrams read at most in one go: a process flooding nf_tables with
/// changes must not hold the event loop.
const MAX_QUEUED: usize = 1 << 16;

impl Daemon {
    /// A datagram of notifications arrived: reads all that is queued
    /// behind it too, so that one transaction is judged whole.
    pub(super) async fn on_nft_events(&mut self, first: NftRead, buf: &mut Vec<u8>) {
        self.take_nft(first);
        self.read_queued_nft(buf);
        self.heal().await;
    }

    fn read_queued_nft(&mut self, buf: &mut Vec<u8>) {
        for _ in 0..MAX_QUEUED {
            match self.kernel.try_read_nft_events(buf) {
                Some(r) => self.take_nft(r),
                None => return,
            }
        }
    }

    fn take_nft(&mut self, r: NftRead) {
        let now = Instant::now();
        match r {
            NftRead::Events(evs) => {
                for e in &evs {
                    self.watch.observe(e, now);
                }
            }
            NftRead::Lost => {
                tracing::warn!(table = %self.watch.table(), "nf_tables notifications lost (receive buffer overrun)");
                self.watch.lost(now);
            }
            NftRead::Failed(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "reading nf_tables notifications");
            }
        }
    }

    /// Rebuilds the table if the watch says it is time.
    pub(super) async fn heal(&mut self) {
        if self.watch.due().is_some_and(|t| t <= Instant::now()) {
            let _ = self.rebuild_table().await;
        }
    }

    /// The safety net beside the notifications: one GETTABLE a second.
    pub(super) async fn check_table(&mut self) {
        let table = self.watch.table().to_string();
        match self.kernel.nft_table(&table).await {
            Ok(t) => self.watch.checked(t.as_ref(), Instant::now()),
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::warn!(error = %e, table = %table, "checking the nftables table failed");
            }
        }
    }

    /// An element write was refused: the table is likely damaged. Rebuilds
    /// it now from the engine's state, which already holds the decisions
    /// of that write, so that the alerts that follow tell the truth.
    /// Returns whether those decisions are in the kernel.
    pub(super) async fn repair_after_failed_write(&mut self, e: &anyhow::Error) -> bool {
        // Notifications explaining the failure (a deletion) may be queued.
        let mut buf = Vec::new();
        self.read_queued_nft(&mut buf);
        let now = Instant::now();
        self.watch.write_failed(format!("{e:#}"), now);
        if !self.watch.may_rebuild(now) {
            let msg = format!(
                "nftables set update failed: {e:#}; a rebuild was tried moments ago, so the next one waits (rate limit) and decisions are not enforced until then"
            );
            tracing::error!("{msg}");
            self.syslog.send(Severity::Err, &msg);
            return false;
        }
        self.rebuild_table().await.is_ok()
    }

    /// Replaces the whole table, in one `nft -f` transaction, with what the
    /// engine holds now: quarantines and blocks, each with the time it has
    /// left. Repairs the watch's pending damage, if any, with an err line
    /// naming it and a count; at start and on reload there is none.
    pub(super) async fn rebuild_table(&mut self) -> Result<(), NftError> {
        let damage = self.watch.start_rebuild(Instant::now());
        let table = self.engine.policy().config.daemon.nft_table.clone();
        let elements = self.engine.all_elements(now());
        let script = nft::ruleset(&self.layout(), &elements);
        let blocks = elements.iter().filter(|(e, _)| matches!(e, Elem::Block(..))).count();
        let quarantines = elements.iter().filter(|(e, _)| matches!(e, Elem::QuarantineMac(_) | Elem::QuarantineAddr(_))).count();
        match nft::apply::run_script("table", &script) {
            Ok(pid) => {
                // Its notifications are queued by now (the kernel sends them
                // before nft's ack): read them as ours.
                self.watch.rebuilt(pid);
                let mut buf = Vec::new();
                self.read_queued_nft(&mut buf);
                let saw_own = self.watch.settled();
                tracing::debug!(table = %table, nft_pid = pid, saw_own, quarantines, blocks, "nftables table installed");
                if let Some(d) = damage {
                    self.engine.counters.table_rebuilds += 1;
                    let msg = format!("{}; rebuilt with {quarantines} quarantine and {blocks} block elements", d.describe(&table));
                    tracing::error!(harm = ?d.harm, signs = d.signs, rebuilds = self.engine.counters.table_rebuilds, "{msg}");
                    self.syslog.send(Severity::Err, &msg);
                }
                Ok(())
            }
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                match damage {
                    Some(d) => {
                        // nft repeats its complaint for every line it could not
                        // apply: syslog gets the first, the daemon log all.
                        let first = e.to_string().lines().next().unwrap_or_default().to_string();
                        let msg = format!("{}; rebuilding it failed: {first}", d.describe(&table));
                        tracing::error!(harm = ?d.harm, error = %e, "{msg}");
                        self.syslog.send(Severity::Err, &msg);
                        self.watch.rebuild_failed(d);
                    }
                    None => tracing::error!(error = %e, table = %table, "installing the nftables table failed"),
                }
                Err(e)
            }
        }
    }
}
