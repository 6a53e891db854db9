//! What the owner reads: `explain`, `devices`, `status`.

use super::*;

impl Engine {
    pub fn explain(&self, mac: Mac, destination: &str, now: u64) -> Result<Explanation, CommandError> {
        let (addr, names, geo) = match destination.parse::<IpAddr>() {
            Ok(ip) => {
                let mut names = self.names.names(mac, ip, now);
                if let Some(b) = self.blocks.get(&(mac, ip)) {
                    names.merge(&b.names);
                }
                (Some(ip), names, self.policy.geo.lookup(ip))
            }
            Err(_) => {
                let n = crate::policy::selector::normalize_name(destination).ok_or_else(|| CommandError::BadDestination(destination.to_string()))?;
                (None, Names::given(vec![n]), GeoInfo::default())
            }
        };
        let d = Destination { addr, names: &names.list, trusted: names.trusted, country: geo.country, asn: geo.asn };
        let j = self.policy.judge(mac, self.granted(mac), &d);
        let quarantine = self.state.quarantines.get(&mac);
        let (verdict, rule) = match quarantine {
            Some(q) => (Verdict::Quarantine, format!("quarantined ({})", q.rule)),
            None => (j.verdict, j.rule.to_string()),
        };
        Ok(Explanation {
            device: mac,
            name: self.device_name(mac).map(str::to_string),
            profile: j.profile.to_string(),
            destination: destination.to_string(),
            names: names.list,
            resolvers: names.via,
            country: geo.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
            asn: geo.asn,
            verdict,
            rule,
            policy_verdict: j.verdict,
            policy_rule: j.rule.to_string(),
            mode: self.policy.config.daemon.mode,
            blocked_now: addr.is_some_and(|a| self.blocks.contains_key(&(mac, a))),
        })
    }

    pub fn device_reports(&self, now: u64) -> Vec<DeviceReport> {
        let mut macs: Vec<Mac> = self.devices.iter().map(|d| d.mac).collect();
        macs.extend(self.policy.config.devices.iter().map(|d| d.mac));
        macs.extend(self.state.quarantines.keys());
        macs.sort();
        macs.dedup();
        macs.into_iter()
            .map(|mac| {
                let d = self.devices.get(mac);
                let state = if self.is_quarantined(mac) {
                    "quarantined"
                } else if self.learning(mac, now) {
                    "learning"
                } else {
                    "enforced"
                };
                DeviceReport {
                    mac,
                    name: self.device_name(mac).map(str::to_string),
                    vendor: None,
                    addrs: d.map(|d| d.addrs.clone()).unwrap_or_default(),
                    profile: self.policy.profile_of(mac).name.clone(),
                    state,
                    last_seen: d.map(|d| d.last_seen),
                    flows: d.map_or(0, |d| d.flows),
                }
            })
            .collect()
    }

    pub fn status(&self, now: u64) -> Status {
        let quarantine_elements = self.persisted_elements().len();
        Status {
            mode: self.policy.config.daemon.mode,
            uptime: now.saturating_sub(self.started),
            config: self.policy.config.source.display().to_string(),
            devices: self.devices.len(),
            flows_judged: self.counters.flows_judged,
            events_lost: self.counters.events_lost,
            resyncs: self.counters.resyncs,
            rules_in_kernel: self.blocks.len() + quarantine_elements,
            devices_evicted: self.devices.evicted,
            devices_pinned: self.devices.pinned_len(),
            devices_refused: self.devices.refused,
            device_pins_refused: self.devices.pins_refused,
            quarantined: self.state.quarantines.len(),
            learning: self.devices.iter().filter(|d| !self.is_quarantined(d.mac) && self.learning(d.mac, now)).count(),
            consents_timed: self.state.consent_expiry.values().map(|m| m.len()).sum(),
            blocks_in_kernel: self.blocks.len(),
            quarantine_elements,
            destinations: self.destinations.len(),
            destinations_evicted: self.destinations.evicted,
            name_cache: self.names.stats(),
            counters: self.counters.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub device: Mac,
    pub name: Option<String>,
    pub profile: String,
    pub destination: String,
    /// DNS names the device resolved to this address (or the name asked about).
    pub names: Vec<String>,
    /// Which resolver gave each of `names`: "router" (may grant consent)
    /// or an outside resolver's address (may only deny).
    pub resolvers: Vec<Resolver>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    /// What happens to traffic now (a quarantine overrides the policy).
    pub verdict: Verdict,
    pub rule: String,
    /// What the policy alone says.
    pub policy_verdict: Verdict,
    pub policy_rule: String,
    pub mode: Mode,
    pub blocked_now: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub mac: Mac,
    pub name: Option<String>,
    pub vendor: Option<String>,
    #[serde(rename = "addresses")]
    pub addrs: Vec<IpAddr>,
    pub profile: String,
    pub state: &'static str,
    pub last_seen: Option<u64>,
    pub flows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub mode: Mode,
    pub uptime: u64,
    pub config: String,
    pub devices: usize,
    /// The headline figures of SPEC §4; `counters` has them all.
    pub flows_judged: u64,
    pub events_lost: u64,
    pub resyncs: u64,
    /// Set elements leash holds in the kernel (blocks and quarantines).
    pub rules_in_kernel: usize,
    pub devices_evicted: u64,
    /// Devices kept whatever comes (configured, consented, quarantined, blocked).
    pub devices_pinned: usize,
    /// New devices not tracked: the table was full of pinned ones.
    pub devices_refused: u64,
    /// Pins not granted: pinned devices had taken their share of the table.
    pub device_pins_refused: u64,
    pub quarantined: usize,
    /// Devices within their learning window (`defaults.learn`).
    pub learning: usize,
    /// Consents granted for a while (`consent --for`), not yet expired.
    pub consents_timed: usize,
    pub blocks_in_kernel: usize,
    pub quarantine_elements: usize,
    pub destinations: usize,
    pub destinations_evicted: u64,
    pub name_cache: crate::names::cache::NameCacheStats,
    pub counters: Counters,
}
