//! Judging one destination for one device, and what the verdict makes
//! happen: learning, alert lines with their suppression, blocks and
//! quarantines.

use super::*;

impl Engine {
    /// Everything known of a destination for one device right now.
    pub(super) fn target(&self, mac: Mac, dst: IpAddr, now: u64) -> Target {
        Target { dst, names: self.names.names(mac, dst, now), geo: self.policy.geo.lookup(dst) }
    }

    pub(super) fn judge(&self, mac: Mac, t: &Target) -> Judgement {
        let d = Destination { addr: Some(t.dst), names: &t.names.list, trusted: t.names.trusted, country: t.geo.country, asn: t.geo.asn };
        self.policy.judge(mac, self.granted(mac), &d)
    }

    pub(super) fn remember(&mut self, mac: Mac, t: &Target, j: &Judgement, flow: bool, now: u64) {
        let seen = Seen { names: &t.names.list, via: &t.names.via, country: t.geo.country, asn: t.geo.asn };
        self.destinations.record(mac, t.dst, &seen, j.verdict, &j.rule, flow, now);
    }

    pub(super) fn granted(&self, mac: Mac) -> impl Iterator<Item = &Selector> {
        self.state.consents.get(&mac).into_iter().flatten()
    }

    /// Trust on first use: the destination becomes a consent, by the name
    /// the device resolved when there is one (addresses of a service move),
    /// else by address. Capped per device, since a learning device decides
    /// how many it makes.
    pub(super) fn learn(&mut self, mac: Mac, t: &Target, flow: &Flow, now: u64, out: &mut Vec<Effect>) {
        // Only a name the router's resolver gave may become a consent.
        let sel = match t.names.list[..t.names.trusted].first() {
            Some(n) => Selector::Domain { name: n.clone(), exact: true },
            None => Selector::Net(crate::policy::cidr::Cidr::host(flow.dst)),
        };
        let consents = self.state.consents.entry(mac).or_default();
        if consents.len() >= MAX_LEARNED_PER_DEVICE && !consents.contains(&sel) {
            self.counters.learn_capped += 1;
            if self.counters.learn_capped.is_power_of_two() {
                tracing::warn!(device = %mac, cap = MAX_LEARNED_PER_DEVICE, capped = self.counters.learn_capped, "device has too many consents to learn more; allowed, not remembered");
            }
            return;
        }
        if consents.insert(sel.clone()) {
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.flow_alert(Verb::Learned, mac, t, Some(flow)).field("consent", &sel);
            self.log(mac, Some(flow.dst), a, now, out);
        }
    }

    /// The alert line's fields in SPEC §5 order (rule and profile follow).
    pub(super) fn flow_alert(&self, verb: Verb, mac: Mac, t: &Target, flow: Option<&Flow>) -> Alert {
        let ip = flow.map(|f| f.src).or_else(|| self.devices.get(mac).and_then(|d| d.addrs.first().copied()));
        let mut a = Alert::new(verb).mac("device", mac).text("name", self.device_name(mac).unwrap_or_default());
        if let Some(ip) = ip {
            a = a.addr("ip", ip);
        }
        a = a
            .addr("dst", t.dst)
            .text("host", t.names.list.first().map(String::as_str).unwrap_or_default())
            .opt("country", t.geo.country.map(|c| String::from_utf8_lossy(&c).into_owned()))
            .opt("asn", t.geo.asn);
        if let Some(f) = flow {
            a = a.text("proto", &proto_name(f.proto));
            if f.dport != 0 && matches!(f.proto, 6 | 17 | 132 | 136) {
                a = a.num("dport", f.dport.into());
            }
        }
        a
    }

    /// An owner's command about a device (no destination).
    pub(super) fn device_alert(&self, verb: Verb, mac: Mac) -> Alert {
        Alert::new(verb)
            .field("device", mac)
            .opt("name", self.device_name(mac))
            .opt("ip", self.devices.get(mac).and_then(|d| d.addrs.first()))
    }

    /// Logs unless the same (device, destination, verb) was logged within
    /// `alert_interval`.
    pub(super) fn log(&mut self, mac: Mac, dst: Option<IpAddr>, alert: Alert, now: u64, out: &mut Vec<Effect>) {
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        let key = (mac, dst, alert.verb);
        if let Some(last) = self.suppress.get(&key) {
            if now < last.saturating_add(interval) {
                self.counters.alerts_suppressed += 1;
                return;
            }
        }
        if self.suppress.len() >= MAX_SUPPRESS {
            // Entries are in the order they were logged: an expired head goes
            // first, uncounted, since forgetting it loses nothing.
            self.prune_suppress(now);
        }
        // Found (expired) or put: one search either way.
        let (put, last) = self.suppress.touch_or_put(key, || now, |t| *t = now);
        if let Some(last) = last {
            *last = now;
        }
        if put == crate::bounded::Put::Evicted {
            self.counters.suppress_evicted += 1;
            if self.counters.suppress_evicted.is_power_of_two() {
                tracing::warn!(cap = MAX_SUPPRESS, evicted = self.counters.suppress_evicted, "alert suppression table full, forgot the oldest entry");
            }
        }
        self.counters.alerts += 1;
        out.push(Effect::Log(alert));
    }

    pub(super) fn carry_out(&mut self, mac: Mac, t: &Target, flow: Option<&Flow>, j: Judgement, now: u64, out: &mut Vec<Effect>) {
        let verb = match (j.verdict, self.monitor()) {
            (Verdict::Allow, _) => return,
            (Verdict::Alert, _) => Verb::Alert,
            (Verdict::Block, false) => Verb::Block,
            (Verdict::Block, true) => Verb::WouldBlock,
            (Verdict::Quarantine, false) => Verb::Quarantine,
            (Verdict::Quarantine, true) => Verb::WouldQuarantine,
        };
        match verb {
            Verb::Block => {
                self.add_block(mac, t.dst, j.rule.clone(), t.names.clone(), now, out);
                let cut = match flow {
                    Some(f) => Cut::Flow(*f),
                    None => Cut::To { addrs: self.device_addrs(mac, None), dst: t.dst },
                };
                out.push(Effect::Cut(cut));
            }
            Verb::Quarantine => {
                self.quarantine(mac, j.rule.clone(), Some(t), now, flow, out);
            }
            _ => {}
        }
        let alert = self.flow_alert(verb, mac, t, flow).with("rule", |s| j.rule.push_to(s)).text("profile", &j.profile);
        self.log(mac, Some(t.dst), alert, now, out);
    }

    pub(super) fn device_addrs(&self, mac: Mac, flow: Option<&Flow>) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self.devices.get(mac).map(|d| d.addrs.clone()).unwrap_or_default();
        if let Some(f) = flow {
            if !addrs.contains(&f.src) {
                addrs.push(f.src);
            }
        }
        addrs
    }

    /// Forgets expired suppression entries from the oldest on: O(expired).
    /// (After the clock steps back an expired entry may sit behind a live
    /// one for a while; lookups treat it as expired all the same.)
    pub(super) fn prune_suppress(&mut self, now: u64) {
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        while self.suppress.oldest().is_some_and(|(_, t)| now >= t.saturating_add(interval)) {
            self.suppress.pop_oldest();
        }
    }
}
