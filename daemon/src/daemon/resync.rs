//! Resynchronising with the conntrack table, at start and after the kernel
//! dropped events: stale events drained and the table dumped a piece per
//! loop turn, so that a table of a quarter million flows neither sits in
//! memory whole nor holds the loop (and the control socket) for seconds.

use super::*;
use crate::kernel::FlowDump;

/// One datagram's worth of the dump: flows (original, reply), or the end.
pub(super) type FlowBatch = anyhow::Result<Option<Vec<(Flow, Option<Flow>)>>>;

/// Queued event datagrams dropped per loop turn before the dump.
const DRAIN_PER_TURN: usize = 1024;

pub(super) enum Phase {
    /// Dropping the queued events, which the dump covers: only once the
    /// queue has been empty does the kernel report new losses (netlink's
    /// congested bit), and losses during the dump must be seen.
    Drain,
    Dump(FlowDump),
}

pub(super) struct Resync {
    phase: Phase,
    after_loss: bool,
    flows: u64,
    /// Events were lost again meanwhile: another round once this one ends.
    again: bool,
    began: std::time::Instant,
}

/// The next piece of the dump in progress (never ready without one).
pub(super) async fn next_batch(r: &mut Option<Resync>) -> FlowBatch {
    match r {
        Some(Resync { phase: Phase::Dump(d), .. }) => d.next().await,
        _ => std::future::pending().await,
    }
}

impl Daemon {
    /// Starts judging every flow the kernel holds (or notes that another
    /// round is needed, when one runs already).
    pub(super) fn begin_resync(&mut self, after_loss: bool) {
        if let Some(r) = &mut self.resync {
            r.again |= after_loss;
            return;
        }
        let began = std::time::Instant::now();
        if after_loss {
            self.resync = Some(Resync { phase: Phase::Drain, after_loss, flows: 0, again: false, began });
            return;
        }
        self.start_dump(after_loss, began);
    }

    fn start_dump(&mut self, after_loss: bool, began: std::time::Instant) {
        self.resync = match self.kernel.start_flow_dump() {
            Ok(d) => Some(Resync { phase: Phase::Dump(d), after_loss, flows: 0, again: false, began }),
            Err(e) => {
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "conntrack dump failed; flows may go unjudged until the next resync");
                None
            }
        };
    }

    pub(super) fn resync_draining(&self) -> bool {
        matches!(self.resync, Some(Resync { phase: Phase::Drain, .. }))
    }

    pub(super) fn resync_dumping(&self) -> bool {
        matches!(self.resync, Some(Resync { phase: Phase::Dump(_), .. }))
    }

    /// One piece of the drain; the dump starts once the queue ran empty.
    pub(super) fn drain_turn(&mut self) {
        let (dropped, empty) = self.kernel.drain_ct_some(DRAIN_PER_TURN);
        tracing::trace!(datagrams = dropped, empty, "drained queued conntrack events before the resync dump");
        if empty {
            let Some(r) = self.resync.take() else { return };
            self.start_dump(r.after_loss, r.began);
        }
    }

    /// Judges one piece of the dump; at its end, counts the round and
    /// starts another when events were lost meanwhile.
    pub(super) async fn dump_turn(&mut self, batch: FlowBatch) {
        match batch {
            Ok(Some(flows)) => {
                let now = now();
                let mut fx = Vec::new();
                let mut unknown = Vec::new();
                self.engine.counters.ct_dumped += flows.len() as u64;
                for (f, _) in &flows {
                    if self.engine.on_flow(f, now, &mut fx) == FlowOutcome::Unidentified {
                        self.park(f.src, Parked::Flow(*f), now);
                        unknown.push(f.src);
                    }
                }
                if let Some(r) = &mut self.resync {
                    r.flows += flows.len() as u64;
                }
                if !unknown.is_empty() {
                    self.identify(unknown, &mut fx).await;
                }
                self.execute(fx).await;
            }
            Ok(None) => {
                let Some(r) = self.resync.take() else { return };
                if r.after_loss {
                    self.engine.counters.resyncs += 1;
                }
                let ms = r.began.elapsed().as_millis() as u64;
                tracing::info!(flows = r.flows, after_loss = r.after_loss, ms, "judged the conntrack table");
                if r.again {
                    self.begin_resync(true);
                }
            }
            Err(e) => {
                self.resync = None;
                self.engine.counters.kernel_errors += 1;
                tracing::error!(error = %e, "conntrack dump failed; flows may go unjudged until the next resync");
            }
        }
    }
}
