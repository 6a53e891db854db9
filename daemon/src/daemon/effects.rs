//! Carrying out the engine's effects through the adapters, in the order
//! that keeps decisions and alerts truthful: the decision on disk first (a
//! `kill -9` at any later point loses nothing: a restart re-installs it),
//! then the drop in the kernel, then the line that says so. A refused
//! element write rebuilds the table first; if even that fails, the lines
//! say `enforced=no`.

use super::*;
use crate::alert::Verb;

/// Destination cuts that wait for the sweep; beyond this many, sweep now.
const MAX_SWEEP: usize = 4096;

impl Daemon {
    /// Carries out effects: the block journal and the state saved first,
    /// then set changes, then flows cut, and the alert lines last.
    /// Carries out effects; false when a set write failed (its repair
    /// may not have put the elements in), so that alert lines sent later
    /// can say `enforced=no` too.
    pub(super) async fn execute(&mut self, fx: Vec<Effect>) -> bool {
        if fx.is_empty() {
            return true;
        }
        let mut sets: Vec<SetChange> = Vec::new();
        let mut cuts: Vec<Cut> = Vec::new();
        let mut persist = false;
        let mut logs = Vec::new();
        let mut journal = Vec::new();
        for e in fx {
            match e {
                Effect::Set(c) => sets.push(c),
                Effect::Cut(c) => cuts.push(c),
                Effect::Log(a) => logs.push(a),
                Effect::Persist => persist = true,
                Effect::Journal(l) => journal.push(l),
            }
        }
        // One small append, no fsync (the page cache outlives a kill -9;
        // the tick syncs it for power cuts).
        if let Err(e) = self.journal.append(&journal) {
            tracing::error!(error = %e, "appending to the block journal failed");
            self.syslog.send(Severity::Err, &format!("saving blocks failed: {e}"));
        }
        if persist {
            if let Err(e) = self.store.save(self.engine.state()) {
                tracing::error!(error = %e, "saving state failed");
                self.syslog.send(Severity::Err, &format!("saving state failed: {e}"));
            }
        }
        let mut enforced = true;
        if !sets.is_empty() {
            let table = self.engine.policy().config.daemon.nft_table.clone();
            let applied = self.kernel.apply_sets(&table, &sets).await;
            self.timing.acked = Some(std::time::Instant::now());
            self.timing.last_acked_monotonic_us = monotonic_us();
            if let Err(e) = applied {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, changes = sets.len(), "nftables set update failed; rebuilding the table");
                // The engine already holds these decisions: a rebuild installs them.
                enforced = self.repair_after_failed_write(&e).await;
            }
        }
        // One flow is deleted by its tuple; wider cuts need one dump for all.
        let (single, wide): (Vec<Cut>, Vec<Cut>) = cuts.into_iter().partition(|c| matches!(c, Cut::Flow(_)));
        for c in &single {
            let Cut::Flow(f) = c else { continue };
            match self.kernel.cut_flow(f).await {
                Ok(gone) => self.engine.counters.flows_cut += u64::from(gone),
                Err(e) => {
                    self.engine.counters.kernel_errors += 1;
                    tracing::error!(error = %e, src = %f.src, dst = %f.dst, "cutting a flow failed");
                }
            }
        }
        // A device's flows (quarantine) go at once; a destination's flows
        // (a block given when its answer passed, mostly before any flow)
        // wait for the next sweep: one table dump a second at most, however
        // many answers are denied, and their packets are dropped meanwhile.
        let (now_cuts, later): (Vec<Cut>, Vec<Cut>) = wide.into_iter().partition(|c| matches!(c, Cut::Device(_)));
        self.sweep.extend(later);
        if !now_cuts.is_empty() || self.sweep.len() >= MAX_SWEEP {
            let mut all = now_cuts;
            all.append(&mut self.sweep);
            self.cut_wide(&all).await;
        }
        for a in logs {
            let a = if !enforced && claims_enforcement(a.verb) { a.field("enforced", "no") } else { a };
            self.recent.push(&a, now());
            self.syslog.send(a.severity(), &a.to_string());
            self.notify.alert(&self.engine.policy().config.notify, &a, now(), || self.engine.device_reports(now()));
        }
        enforced
    }

    /// Marks alert lines whose enforcement failed (see `execute`).
    pub(super) fn mark_unenforced(fx: &mut [Effect]) {
        for e in fx {
            if let Effect::Log(a) = e {
                if claims_enforcement(a.verb) {
                    a.set("enforced", "no");
                }
            }
        }
    }

    /// Cuts the flows the deferred destination cuts select (housekeeping).
    pub(super) async fn sweep_cuts(&mut self) {
        if !self.sweep.is_empty() {
            let all = std::mem::take(&mut self.sweep);
            self.cut_wide(&all).await;
        }
    }

    /// One conntrack dump, deleting every entry one of `cuts` selects.
    async fn cut_wide(&mut self, cuts: &[Cut]) {
        let engine = &self.engine;
        match self.kernel.cut_flows(|orig, reply| cuts.iter().any(|c| engine.cut_matches(c, orig, reply))).await {
            Ok(n) => self.engine.counters.flows_cut += n,
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "cutting flows failed");
            }
        }
    }
}

/// Lines that say the kernel now drops (or no longer drops) something.
fn claims_enforcement(v: Verb) -> bool {
    matches!(v, Verb::Block | Verb::Quarantine | Verb::Release)
}
