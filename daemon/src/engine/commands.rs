//! What the owner commands: consent, revoke, quarantine, release, reload,
//! and which device a command names.

use super::*;

impl Engine {
    /// DEVICE on the command line: a MAC, a configured or DHCP name, or an address.
    pub fn resolve(&self, device: &str) -> Result<Mac, CommandError> {
        if let Ok(mac) = device.parse::<Mac>() {
            return Ok(mac);
        }
        if let Ok(ip) = device.parse::<IpAddr>() {
            return self.devices.mac_of(ip).ok_or_else(|| CommandError::UnknownDevice(device.to_string()));
        }
        let mut found: Vec<Mac> = self
            .policy
            .config
            .devices
            .iter()
            .filter(|d| d.name.as_deref() == Some(device))
            .map(|d| d.mac)
            .collect();
        if found.is_empty() {
            found = self.lease_names.iter().filter(|(_, n)| n.as_str() == device).map(|(m, _)| *m).collect();
        }
        found.sort();
        found.dedup();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(CommandError::UnknownDevice(device.to_string())),
            many => Err(CommandError::Ambiguous(device.to_string(), many.iter().map(Mac::to_string).collect::<Vec<_>>().join(", "))),
        }
    }

    pub fn consent(&mut self, mac: Mac, sel: Selector, now: u64, out: &mut Vec<Effect>) -> bool {
        self.consent_until(mac, sel, None, now, out)
    }

    /// Grants consent until revoked (`until` None) or until unix second
    /// `until` (`consent --for`, expired by `tick`). A consent for ever is
    /// not shortened by a later one for a while; a consent for a while
    /// becomes one for ever, or gets its new expiry.
    pub fn consent_until(&mut self, mac: Mac, sel: Selector, until: Option<u64>, now: u64, out: &mut Vec<Effect>) -> bool {
        let had = self.state.consents.get(&mac).is_some_and(|s| s.contains(&sel));
        let expiry = self.state.consent_expiry.get(&mac).and_then(|m| m.get(&sel)).copied();
        let changed = match until {
            None => !had || expiry.is_some(),
            Some(t) => !had || expiry.is_some_and(|e| e != t),
        };
        if !changed {
            return false;
        }
        self.state.consents.entry(mac).or_default().insert(sel.clone());
        match until {
            Some(t) => {
                self.state.consent_expiry.entry(mac).or_default().insert(sel.clone(), t);
            }
            None => self.forget_expiry(mac, &sel),
        }
        self.refresh_pin(mac);
        out.push(Effect::Persist);
        let mut a = self.device_alert(Verb::Consent, mac).field("consent", &sel).field("action", "grant");
        if let Some(t) = until {
            a = a.field("for", crate::config::units::format_duration(t.saturating_sub(now)));
        }
        out.push(Effect::Log(a));
        self.rejudge(Some(mac), now, out);
        true
    }

    fn forget_expiry(&mut self, mac: Mac, sel: &Selector) {
        if let Some(m) = self.state.consent_expiry.get_mut(&mac) {
            m.remove(sel);
            if m.is_empty() {
                self.state.consent_expiry.remove(&mac);
            }
        }
    }

    pub fn revoke(&mut self, mac: Mac, sel: &Selector, now: u64, out: &mut Vec<Effect>) -> bool {
        self.withdraw(mac, sel, "revoke", now, out)
    }

    /// Removes a run-time consent, logged with `action` (revoke, expire).
    fn withdraw(&mut self, mac: Mac, sel: &Selector, action: &str, now: u64, out: &mut Vec<Effect>) -> bool {
        let removed = self.state.consents.get_mut(&mac).is_some_and(|s| s.remove(sel));
        self.forget_expiry(mac, sel);
        if removed {
            if self.state.consents.get(&mac).is_some_and(|s| s.is_empty()) {
                self.state.consents.remove(&mac);
            }
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.device_alert(Verb::Consent, mac).field("consent", sel).field("action", action);
            out.push(Effect::Log(a));
            self.block_what_it_allowed(mac, sel, now, out);
        }
        removed
    }

    /// After a consent is withdrawn: the device's known destinations that
    /// it allowed are judged again, and those the policy now blocks are
    /// blocked at once (their running flows cut), not at the next flow; a
    /// stream consented for 15 minutes stops when they are up. A verdict of
    /// quarantine waits for the device's next flow: talking under consent
    /// earned none.
    fn block_what_it_allowed(&mut self, mac: Mac, sel: &Selector, now: u64, out: &mut Vec<Effect>) {
        if self.monitor() || self.is_quarantined(mac) {
            return;
        }
        let rule = Rule::Consent(sel.clone());
        let allowed: Vec<(IpAddr, Names)> = self
            .destinations
            .of(mac)
            .into_iter()
            .filter(|r| r.rule == rule)
            .map(|r| (r.addr, Names { list: r.names, via: r.resolvers, trusted: 0 }))
            .collect();
        for (dst, names) in allowed {
            let mut t = self.target(mac, dst, now);
            t.names.merge(&names);
            let j = self.judge(mac, &t);
            self.remember(mac, &t, &j, false, now);
            if j.verdict == Verdict::Block && !self.blocks.contains_key(&(mac, dst)) {
                self.carry_out(mac, &t, None, j, now, out);
            }
        }
    }

    /// Consents granted for a while whose time is up: withdrawn, and the
    /// device's decisions judged again (housekeeping tick).
    pub(super) fn expire_consents(&mut self, now: u64, out: &mut Vec<Effect>) {
        let due: Vec<(Mac, Selector)> = self
            .state
            .consent_expiry
            .iter()
            .flat_map(|(m, sels)| sels.iter().filter(|(_, t)| **t <= now).map(|(s, _)| (*m, s.clone())))
            .collect();
        for (mac, sel) in due {
            self.withdraw(mac, &sel, "expire", now, out);
            self.rejudge(Some(mac), now, out);
        }
    }

    /// Quarantine by hand. Returns false when it was quarantined already.
    pub fn quarantine_manual(&mut self, mac: Mac, now: u64, out: &mut Vec<Effect>) -> bool {
        if self.is_quarantined(mac) {
            return false;
        }
        self.quarantine(mac, Rule::Manual, None, now, None, out);
        let a = self.device_alert(Verb::Quarantine, mac).field("rule", Rule::Manual).field("profile", &self.policy.profile_of(mac).name);
        out.push(Effect::Log(a));
        self.counters.alerts += 1;
        true
    }

    pub fn release(&mut self, mac: Mac, out: &mut Vec<Effect>) -> bool {
        self.release_as(mac, None, out)
    }

    /// A new configuration (already validated and loaded whole).
    pub fn reload(&mut self, policy: Policy, now: u64, out: &mut Vec<Effect>) {
        self.net.set_lan_names(&policy.config.daemon.lan);
        self.policy = policy;
        // Devices configured, or no longer configured.
        let macs: Vec<Mac> = self.devices.iter().map(|d| d.mac).collect();
        for mac in macs {
            self.refresh_pin(mac);
        }
        self.sync_bypass(out);
        self.rejudge(None, now, out);
    }
}
