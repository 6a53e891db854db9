//! What the kernel reports: neighbours, leases, new flows, DNS answers
//! (vouched for first) and flow counters.

use super::*;

impl Engine {
    /// A neighbour entry (IP ↔ MAC) on interface `ifindex`.
    pub fn on_neighbour(&mut self, ifindex: u32, ip: IpAddr, mac: Option<Mac>, gone: bool, now: u64, out: &mut Vec<Effect>) {
        if !self.net.is_lan_if(ifindex) {
            return;
        }
        let Some(mac) = mac.filter(|m| !m.is_zero() && !m.is_multicast()) else {
            if gone {
                self.devices.forget_addr(ip);
            }
            return;
        };
        if gone {
            self.devices.forget_addr(ip);
            return;
        }
        let pin = self.wants_pin(mac);
        self.devices.observe(mac, ip, now, pin);
        self.sync_bypass_one(mac, out);
        if !self.state.first_seen.contains_key(&mac) {
            self.first_sight(mac, ip, now, out);
        }
        // A quarantined device that shows up with a new address: drop inbound to it too.
        if let Some(q) = self.state.quarantines.get_mut(&mac) {
            if q.addrs.insert(ip) {
                out.push(Effect::Set(SetChange::Add { elem: Elem::QuarantineAddr(ip), timeout: None }));
                out.push(Effect::Persist);
            }
        }
    }

    /// A MAC never seen before: remembered (persisted, so that a restart
    /// does not announce it again) and announced with one `DEVICE
    /// action=new` line, at most `MAX_ANNOUNCED_PER_MINUTE` a minute so
    /// that a flood of made-up MACs floods neither the log nor the flash
    /// (the rest are counted, and saved with the next write). The vendor
    /// is the daemon's to fill in (a file lookup).
    fn first_sight(&mut self, mac: Mac, ip: IpAddr, now: u64, out: &mut Vec<Effect>) {
        if self.state.first_seen.len() >= MAX_FIRST_SEEN {
            if let Some(oldest) = self.state.first_seen.iter().min_by_key(|(_, t)| **t).map(|(m, _)| *m) {
                self.state.first_seen.remove(&oldest);
                self.counters.first_seen_evicted += 1;
            }
        }
        self.state.first_seen.insert(mac, now);
        if now >= self.announced.0.saturating_add(60) {
            self.announced = (now, 0);
        }
        if self.announced.1 >= MAX_ANNOUNCED_PER_MINUTE {
            // Kept in memory, written with the next save: a flood of MACs
            // must not rewrite the state file (flash) once per MAC.
            self.counters.devices_new_unannounced += 1;
            return;
        }
        self.announced.1 += 1;
        out.push(Effect::Persist);
        self.counters.devices_new += 1;
        let learn = self.policy.config.defaults.learn.as_secs();
        let a = Alert::new(Verb::Device)
            .field("action", "new")
            .field("device", mac)
            .opt("name", self.device_name(mac))
            .field("ip", ip)
            .field("vendor", "unknown")
            .field("profile", &self.policy.profile_of(mac).name)
            .field("learn", if learn > 0 { crate::config::units::format_duration(learn) } else { "off".into() });
        out.push(Effect::Log(a));
    }

    pub fn set_leases(&mut self, leases: &[Lease], now: u64, out: &mut Vec<Effect>) {
        self.lease_names = crate::names::leases::names(leases);
        for l in leases {
            if self.net.is_lan_addr(l.ip) || self.devices.get(l.mac).is_some() {
                let pin = self.wants_pin(l.mac);
                self.devices.observe(l.mac, l.ip, now, pin);
                self.sync_bypass_one(l.mac, out);
            }
        }
        for (mac, name) in &self.lease_names {
            self.devices.set_lease_name(*mac, Some(name.clone()));
        }
    }

    /// Whether a flow is LAN → internet, and from which device.
    pub fn classify(&self, flow: &Flow) -> Result<Mac, FlowOutcome> {
        if !self.net.is_internet(flow.dst) {
            return Err(FlowOutcome::Ignored);
        }
        match self.devices.mac_of(flow.src) {
            Some(mac) => Ok(mac),
            None if self.net.is_lan_addr(flow.src) => Err(FlowOutcome::Unidentified),
            None => Err(FlowOutcome::Ignored),
        }
    }

    /// A new flow (conntrack NEW event, or an entry found by a dump).
    pub fn on_flow(&mut self, flow: &Flow, now: u64, out: &mut Vec<Effect>) -> FlowOutcome {
        let mac = match self.classify(flow) {
            Ok(mac) => mac,
            Err(o) => {
                match o {
                    FlowOutcome::Unidentified => self.counters.flows_unidentified += 1,
                    _ => self.counters.flows_ignored += 1,
                }
                return o;
            }
        };
        self.devices.touch(mac, now);
        self.counters.flows_judged += 1;
        if let Some(done) = self.bypass_flow(mac, flow, now, out) {
            return done;
        }
        if self.is_quarantined(mac) {
            // Its packets are dropped already; a flow seen now predates the
            // quarantine (a dump) or slipped in before it: cut it.
            if !self.monitor() {
                out.push(Effect::Cut(Cut::Flow(*flow)));
            }
            return FlowOutcome::Quarantined;
        }
        if self.blocks.contains_key(&(mac, flow.dst)) {
            // A flow got past the set: its element is missing from the
            // kernel (a dropped packet never makes a conntrack entry). Put
            // it back, renewed.
            self.renew_block(mac, flow.dst, now, out);
            out.push(Effect::Cut(Cut::Flow(*flow)));
            return FlowOutcome::Judged(Verdict::Block);
        }
        let t = self.target(mac, flow.dst, now);
        let j = self.judge(mac, &t);
        let verdict = j.verdict;
        if verdict > Verdict::Allow && self.learning(mac, now) {
            self.learn(mac, &t, flow, now, out);
            return FlowOutcome::Judged(Verdict::Allow);
        }
        self.remember(mac, &t, &j, true, now);
        self.carry_out(mac, &t, Some(flow), j, now, out);
        FlowOutcome::Judged(verdict)
    }

    /// Whether a snooped answer counts (SPEC §2 "Which answers count"):
    /// only a reply of a flow the device itself opened to that resolver.
    /// `None`: unsolicited (spoofed, unasked), counted and ignored.
    pub fn vouch(&mut self, a: &DnsAnswer, p: &Provenance) -> Option<Resolver> {
        match trust::vouch(a, p) {
            Ok(r) => Some(r),
            Err(why) => {
                self.counters.dns_unsolicited += 1;
                if self.counters.dns_unsolicited.is_power_of_two() {
                    tracing::warn!(client = %a.client, server = %a.server, reason = %why, unsolicited = self.counters.dns_unsolicited, "DNS answer nobody asked for ignored");
                }
                None
            }
        }
    }

    /// A DNS answer that crossed the router, sent to `client` by `via`
    /// (already vouched for): remember the names, and put a block or
    /// quarantine in place before the device's first packet to a denied
    /// address. Returns false, judging nothing, when the client's MAC is
    /// not known (yet): the caller learns the neighbours and tries again.
    pub fn on_dns(&mut self, client: IpAddr, records: &[AddrRecord], via: Resolver, now: u64, out: &mut Vec<Effect>) -> bool {
        let Some(mac) = self.devices.mac_of(client) else {
            return false;
        };
        self.counters.dns_answers += 1;
        for r in records {
            if !self.net.is_internet(r.addr) {
                continue;
            }
            self.names.insert(mac, r.addr, &r.names, via, r.ttl, now);
            if self.is_quarantined(mac) || self.blocks.contains_key(&(mac, r.addr)) || self.learning(mac, now) {
                continue;
            }
            let t = self.target(mac, r.addr, now);
            let j = self.judge(mac, &t);
            if j.verdict >= Verdict::Block {
                self.counters.dns_judged_deny += 1;
                self.remember(mac, &t, &j, false, now);
                self.carry_out(mac, &t, None, j, now, out);
            }
        }
        true
    }

    /// Byte counters of a flow (a periodic dump, or its DESTROY event):
    /// accounts the bytes since the last reading to its destination and
    /// raises the upload alert of the device's profile.
    pub fn on_counters(&mut self, c: &FlowCounters, destroyed: bool, now: u64, out: &mut Vec<Effect>) {
        let Ok(mac) = self.classify(&c.orig) else { return };
        let key = (c.id, c.orig);
        let (up, down) = if destroyed {
            match self.counted.remove(&key) {
                Some(last) => (c.up.saturating_sub(last.0), c.down.saturating_sub(last.1)),
                None => (c.up, c.down),
            }
        } else {
            // The flow least recently read goes when full: its next reading
            // counts from zero again, so bytes are counted at least once.
            match self.counted.insert(key, (c.up, c.down)) {
                Insert::Replaced(last) => (c.up.saturating_sub(last.0), c.down.saturating_sub(last.1)),
                Insert::Evicted(..) => {
                    self.counters.counted_evicted += 1;
                    if self.counters.counted_evicted.is_power_of_two() {
                        tracing::warn!(cap = MAX_COUNTED, evicted = self.counters.counted_evicted, "flow counter table full, forgot the flow read longest ago");
                    }
                    (c.up, c.down)
                }
                Insert::Added | Insert::Refused(..) => (c.up, c.down),
            }
        };
        let limit = self.policy.profile_of(mac).upload_alert;
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        let consented = self.destinations.get(mac, c.orig.dst).is_some_and(|r| matches!(r.rule, Rule::Consent(_)));
        let limit = if consented { None } else { limit };
        if let Some(sent) = self.destinations.add_bytes(mac, c.orig.dst, up, down, now, interval, limit) {
            let t = self.target(mac, c.orig.dst, now);
            let profile = self.policy.profile_of(mac).name.clone();
            let a = self
                .flow_alert(Verb::Alert, mac, &t, Some(&c.orig))
                .field("bytes_up", sent)
                .field("rule", "upload_alert")
                .field("profile", profile);
            self.counters.alerts += 1;
            out.push(Effect::Log(a));
        }
    }
}
