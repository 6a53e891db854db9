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
        let added = self.state.consents.entry(mac).or_default().insert(sel.clone());
        if added {
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.device_alert(Verb::Consent, mac).field("consent", &sel).field("action", "grant");
            out.push(Effect::Log(a));
            self.rejudge(Some(mac), now, out);
        }
        added
    }

    pub fn revoke(&mut self, mac: Mac, sel: &Selector, out: &mut Vec<Effect>) -> bool {
        let removed = self.state.consents.get_mut(&mac).is_some_and(|s| s.remove(sel));
        if removed {
            if self.state.consents.get(&mac).is_some_and(|s| s.is_empty()) {
                self.state.consents.remove(&mac);
            }
            self.refresh_pin(mac);
            out.push(Effect::Persist);
            let a = self.device_alert(Verb::Consent, mac).field("consent", sel).field("action", "revoke");
            out.push(Effect::Log(a));
        }
        removed
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
        self.rejudge(None, now, out);
    }
}
