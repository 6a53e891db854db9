//! Decisions in force: blocks (bounded, journalled, renewed before they
//! expire) and quarantines, re-judged when consents or the configuration
//! change, and which conntrack entries a cut selects.

use super::*;

impl Engine {
    pub(super) fn add_block(&mut self, mac: Mac, dst: IpAddr, rule: Rule, names: Names, now: u64, out: &mut Vec<Effect>) {
        self.keep_block((mac, dst), BlockInfo { rule, until: 0, names }, out);
        self.counters.blocks += 1;
        self.renew_block(mac, dst, now, out);
    }

    /// Puts a block in the table of blocks, keeping the device pinned for
    /// each block it has. At the cap the least recently given or renewed
    /// block is forgotten (counted): its element still drops until its own
    /// timeout, it is just not renewed or journalled any longer.
    pub(super) fn keep_block(&mut self, key: (Mac, IpAddr), b: BlockInfo, out: &mut Vec<Effect>) {
        match self.blocks.insert(key, b) {
            Insert::Added => self.pin_device(key.0),
            Insert::Replaced(_) => {}
            Insert::Evicted((mac, addr), _) => {
                self.pin_device(key.0);
                self.unpin_device(mac);
                out.push(Effect::Journal(Line::Remove { mac, addr }));
                self.counters.blocks_evicted += 1;
                if self.counters.blocks_evicted.is_power_of_two() {
                    tracing::warn!(cap = MAX_BLOCKS, evicted = self.counters.blocks_evicted, "block table full, forgot the least recently given block (its element expires by itself)");
                }
            }
            // Blocks are never pinned: unreachable, but never lose the count.
            Insert::Refused(..) => self.counters.blocks_evicted += 1,
        }
    }

    /// (Re)installs a block's element with a fresh timeout, journalled.
    pub(super) fn renew_block(&mut self, mac: Mac, dst: IpAddr, now: u64, out: &mut Vec<Effect>) {
        let timeout = block_timeout(mac, dst);
        let Some(b) = self.blocks.touch_get_mut(&(mac, dst)) else { return };
        b.until = now + timeout.as_secs();
        out.push(Effect::Journal(Line::Add(block_entry(mac, dst, b))));
        out.push(Effect::Set(SetChange::Add { elem: Elem::Block(mac, dst), timeout: Some(timeout) }));
    }

    pub(super) fn lift_block(&mut self, mac: Mac, dst: IpAddr, out: &mut Vec<Effect>) {
        if self.blocks.remove(&(mac, dst)).is_some() {
            self.unpin_device(mac);
            out.push(Effect::Journal(Line::Remove { mac, addr: dst }));
            out.push(Effect::Set(SetChange::Delete(Elem::Block(mac, dst))));
        }
    }

    /// The persisted blocks (from the journal) back in memory at start;
    /// their elements go into the table before anything is judged.
    pub fn restore_blocks(&mut self, entries: impl IntoIterator<Item = BlockEntry>, now: u64) -> usize {
        let mut n = 0;
        for e in entries.into_iter().filter(|e| e.until > now) {
            let Ok(rule) = e.rule.parse::<Rule>() else {
                tracing::warn!(device = %e.mac, dst = %e.addr, rule = %e.rule, "persisted block with an unreadable rule skipped");
                continue;
            };
            let names = Names::kept(e.names, e.trusted, e.addr);
            self.keep_block((e.mac, e.addr), BlockInfo { rule, until: e.until, names }, &mut Vec::new());
            n += 1;
        }
        n
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Every block as the journal keeps it (for a compaction).
    pub fn block_entries(&self) -> Vec<BlockEntry> {
        self.blocks.iter().map(|((m, a), b)| block_entry(*m, *a, b)).collect()
    }

    /// `t`: the destination that earned it (none for a manual quarantine),
    /// kept so that the quarantine is judged again when the policy changes.
    pub(super) fn quarantine(&mut self, mac: Mac, rule: Rule, t: Option<&Target>, now: u64, flow: Option<&Flow>, out: &mut Vec<Effect>) {
        let addrs = self.device_addrs(mac, flow);
        let q = Quarantine {
            since: now,
            rule: rule.to_string(),
            addrs: addrs.iter().copied().collect(),
            dst: t.map(|t| t.dst),
            names: t.map(|t| t.names.list.clone()).unwrap_or_default(),
            names_trusted: t.map_or(0, |t| t.names.trusted),
        };
        out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineMac(mac), timeout: None }));
        for a in &q.addrs {
            out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineAddr(*a), timeout: None }));
        }
        self.state.quarantines.insert(mac, q);
        self.refresh_pin(mac);
        self.counters.quarantines += 1;
        out.push(Effect::Persist);
        out.push(Effect::Cut(Cut::Device(addrs)));
    }

    /// Lifts a quarantine; `because`: the rule that now lets the device
    /// out (a re-judgement), else the owner's command.
    pub(super) fn release_as(&mut self, mac: Mac, because: Option<&Rule>, out: &mut Vec<Effect>) -> bool {
        let Some(q) = self.state.quarantines.remove(&mac) else { return false };
        self.refresh_pin(mac);
        out.push(Effect::Set(SetChange::Delete(Elem::QuarantineMac(mac))));
        for a in &q.addrs {
            // Another quarantined device may hold the address now (DHCP reuse).
            if !self.state.quarantines.values().any(|o| o.addrs.contains(a)) {
                out.push(Effect::Set(SetChange::Delete(Elem::QuarantineAddr(*a))));
            }
        }
        out.push(Effect::Persist);
        // Forget suppression so that a relapse is reported at once.
        self.suppress.retain(|(m, _, _), _| *m != mac);
        let mut a = self.device_alert(Verb::Release, mac).field("rule", &q.rule);
        if let Some(r) = because {
            let why = if self.monitor() { "monitor".to_string() } else { r.to_string() };
            a = a.field("because", why);
        }
        out.push(Effect::Log(a));
        true
    }

    /// Judges every block and quarantine again (after a consent, a revoke,
    /// a reload or a mode change) with all that is known of its
    /// destination: the names remembered with the decision and those
    /// cached now, its country and AS. A decision stays while the policy
    /// still gives it; what it no longer gives is lifted.
    pub(super) fn rejudge(&mut self, only: Option<Mac>, now: u64, out: &mut Vec<Effect>) {
        let monitor = self.monitor();
        let keys: Vec<(Mac, IpAddr)> = self.blocks.iter().map(|(k, _)| *k).filter(|(m, _)| only.map_or(true, |o| o == *m)).collect();
        for (mac, ip) in keys {
            let (t, j) = self.judge_block(mac, ip, now);
            // `destinations` shows the verdict of now, not of the last flow.
            self.remember(mac, &t, &j, false, now);
            if monitor || j.verdict < Verdict::Block {
                self.lift_block(mac, ip, out);
            } else if let Some(b) = self.blocks.get_mut(&(mac, ip)) {
                if b.rule != j.rule || b.names != t.names {
                    b.rule = j.rule;
                    b.names = t.names;
                    out.push(Effect::Journal(Line::Add(block_entry(mac, ip, b))));
                }
            }
        }
        let quarantined: Vec<(Mac, IpAddr)> = self
            .state
            .quarantines
            .iter()
            .filter(|(m, q)| only.map_or(true, |o| o == **m) && q.rule != Rule::Manual.to_string())
            .filter_map(|(m, q)| q.dst.map(|d| (*m, d)))
            .collect();
        for (mac, dst) in quarantined {
            let mut t = self.target(mac, dst, now);
            if let Some(q) = self.state.quarantines.get(&mac) {
                t.names.merge(&Names::kept(q.names.clone(), q.names_trusted, dst));
            }
            let j = self.judge(mac, &t);
            if !monitor && j.verdict == Verdict::Quarantine {
                continue;
            }
            self.release_as(mac, Some(&j.rule), out);
            // What the policy gives instead (a block, say) takes its place.
            if !monitor && j.verdict == Verdict::Block {
                self.carry_out(mac, &t, None, j, now, out);
            }
        }
    }

    /// A block judged again with all that is known of its destination: the
    /// names it was given with and those cached now, its country and AS.
    fn judge_block(&self, mac: Mac, ip: IpAddr, now: u64) -> (Target, Judgement) {
        let mut t = self.target(mac, ip, now);
        if let Some(b) = self.blocks.get(&(mac, ip)) {
            t.names.merge(&b.names);
        }
        let j = self.judge(mac, &t);
        (t, j)
    }

    /// Housekeeping: renew the blocks that run out within `RENEW_AHEAD`
    /// and that the policy still gives (lift the others), forget expired
    /// names and stale suppression entries.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Effect>) {
        let due: Vec<(Mac, IpAddr)> = self.blocks.iter().filter(|(_, b)| b.until <= now + RENEW_AHEAD).map(|(k, _)| *k).collect();
        for (mac, ip) in due {
            let (_, j) = self.judge_block(mac, ip, now);
            if self.monitor() || j.verdict < Verdict::Block {
                self.lift_block(mac, ip, out);
            } else {
                self.renew_block(mac, ip, now, out);
            }
        }
        self.expire_consents(now, out);
        self.names.expire(now);
        self.prune_suppress(now);
        self.tick_bypass(now, out);
    }

    /// Whether a conntrack entry (original and reply direction) belongs to a cut.
    pub fn cut_matches(&self, cut: &Cut, orig: &Flow, reply: Option<&Flow>) -> bool {
        match cut {
            Cut::Flow(f) => f == orig,
            Cut::To { addrs, dst } => addrs.contains(&orig.src) && orig.dst == *dst,
            Cut::Device(addrs) => {
                let out = |from: IpAddr, to: IpAddr| addrs.contains(&from) && self.net.is_internet(to);
                // Outbound: device → internet. Inbound (a port forward): the
                // reply comes from the device, or the original goes to it.
                out(orig.src, orig.dst)
                    || reply.is_some_and(|r| out(r.src, r.dst))
                    || addrs.contains(&orig.dst) && self.net.is_internet(orig.src)
            }
            Cut::Bypass(addrs) => addrs.contains(&orig.src) && self.net.is_internet(orig.dst) && self.bypasses(orig, reply),
        }
    }
}

fn block_entry(mac: Mac, addr: IpAddr, b: &BlockInfo) -> BlockEntry {
    let mut rule = String::new();
    b.rule.push_to(&mut rule);
    BlockEntry { mac, addr, until: b.until, rule, names: b.names.list.clone(), trusted: b.names.trusted }
}
