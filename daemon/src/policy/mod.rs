//! The policy: which verdict a device's profile gives a destination, and the
//! rule that gave it (SPEC §3 precedence: consent > deny lists > unlisted).


pub mod cidr;
pub mod domainset;
pub mod geoip;
pub mod lists;
pub mod netset;
pub mod refresh;
pub mod selector;
pub mod verdict;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::config::{Config, Profile};
use crate::policy::geoip::GeoIp;
use crate::policy::lists::LoadedList;
use crate::mac::Mac;
use crate::policy::selector::{Destination, Selector};
use crate::policy::verdict::Verdict;

/// What produced a verdict; printed as `rule=` in alerts and by `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// A consent of the device (configured or granted by CLI).
    Consent(Selector),
    /// A deny list of the profile.
    List(String),
    /// Neither consented nor denied: the profile's `unlisted` verdict.
    Unlisted,
    /// Quarantined by hand (`leash quarantine`).
    Manual,
    /// DNS around the router's resolver (`dns_bypass`): another resolver's
    /// port 53, DNS over TLS/QUIC (853), a DoH endpoint of `dns_bypass_lists`.
    DnsBypass,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Consent(s) => write!(f, "consent:{s}"),
            Rule::List(l) => write!(f, "list:{l}"),
            Rule::Unlisted => f.write_str("unlisted"),
            Rule::Manual => f.write_str("manual"),
            Rule::DnsBypass => f.write_str("dns_bypass"),
        }
    }
}

impl Rule {
    /// Appends what `Display` writes; by hand but for a consent, since
    /// alert lines name a rule each.
    pub fn push_to(&self, s: &mut String) {
        match self {
            Rule::Consent(_) => {
                use std::fmt::Write;
                let _ = write!(s, "{self}");
            }
            Rule::List(l) => {
                s.push_str("list:");
                s.push_str(l);
            }
            Rule::Unlisted => s.push_str("unlisted"),
            Rule::Manual => s.push_str("manual"),
            Rule::DnsBypass => s.push_str("dns_bypass"),
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = crate::policy::selector::BadSelector;

    /// The inverse of `Display` (persisted blocks name their rule).
    fn from_str(s: &str) -> Result<Rule, Self::Err> {
        Ok(match s {
            "unlisted" => Rule::Unlisted,
            "manual" => Rule::Manual,
            "dns_bypass" => Rule::DnsBypass,
            _ => match s.split_once(':') {
                Some(("consent", sel)) => Rule::Consent(sel.parse()?),
                Some(("list", name)) => Rule::List(name.to_string()),
                _ => return Err(crate::policy::selector::BadSelector::Name(s.to_string())),
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub rule: Rule,
    /// Shared with the policy: every flow is judged, and a copy of the
    /// name was an allocation each.
    pub profile: Arc<str>,
}

/// The configuration with its list files loaded: immutable, swapped whole on
/// reload so that a bad file never leaves a half-applied policy. Lists and
/// databases are shared, so that a policy with one list replaced (a
/// refreshed download) costs no copy of the others.
#[derive(Debug)]
pub struct Policy {
    /// Not to be changed once built: `profiles` is resolved from it.
    pub config: Config,
    pub lists: BTreeMap<String, Arc<LoadedList>>,
    /// Country and AS databases of `[geoip]` (none configured: no lookups).
    pub geo: Arc<GeoIp>,
    profiles: Profiles,
}

/// Each configured device's profile resolved once, when the policy is
/// built, not by name on every flow.
#[derive(Debug)]
struct Profiles {
    /// Same order as `config.devices` (a few; each holds its own copy).
    devices: Vec<Resolved>,
    default: Resolved,
}

#[derive(Debug)]
struct Resolved {
    profile: Profile,
    /// Shared with judgements.
    name: Arc<str>,
    /// Its deny lists that are loaded, in the profile's order.
    deny: Vec<(String, Arc<LoadedList>)>,
}

impl Profiles {
    fn resolve(config: &Config, lists: &BTreeMap<String, Arc<LoadedList>>) -> Profiles {
        let by_name = |name: &str| {
            let p = config.profiles.get(name).or_else(|| config.profiles.get(&config.defaults.profile)).unwrap_or(&IMPLICIT_PROFILE);
            let deny = p.deny.iter().filter_map(|n| Some((n.clone(), Arc::clone(lists.get(n)?)))).collect();
            Resolved { profile: p.clone(), name: Arc::from(p.name.as_str()), deny }
        };
        let default = &config.defaults.profile;
        Profiles {
            devices: config.devices.iter().map(|d| by_name(d.profile.as_deref().unwrap_or(default))).collect(),
            default: by_name(default),
        }
    }
}

impl Policy {
    pub fn new<L: Into<Arc<LoadedList>>>(config: Config, lists: BTreeMap<String, L>) -> Policy {
        let lists = lists.into_iter().map(|(n, l)| (n, l.into())).collect();
        let profiles = Profiles::resolve(&config, &lists);
        Policy { config, lists, geo: Arc::new(GeoIp::none()), profiles }
    }

    pub fn with_geo(mut self, geo: GeoIp) -> Policy {
        self.geo = Arc::new(geo);
        self
    }

    /// The same policy with one configured list replaced; `None` when the
    /// configuration has no such list (it was reloaded away meanwhile).
    pub fn with_list(&self, list: LoadedList) -> Option<Policy> {
        if !self.lists.contains_key(&list.name) || !self.config.lists.contains_key(&list.name) {
            return None;
        }
        let mut lists = self.lists.clone();
        lists.insert(list.name.clone(), Arc::new(list));
        let profiles = Profiles::resolve(&self.config, &lists);
        Some(Policy { config: self.config.clone(), lists, geo: Arc::clone(&self.geo), profiles })
    }

    pub fn device_config(&self, mac: Mac) -> Option<&crate::config::DeviceConfig> {
        self.config.devices.iter().find(|d| d.mac == mac)
    }

    /// The device's configuration (if any) and its profile, with the
    /// profile's name: one search of the configured devices.
    fn device(&self, mac: Mac) -> (Option<&crate::config::DeviceConfig>, &Resolved) {
        let i = self.config.devices.iter().position(|d| d.mac == mac);
        let p = i.and_then(|i| self.profiles.devices.get(i)).unwrap_or(&self.profiles.default);
        (i.and_then(|i| self.config.devices.get(i)), p)
    }

    pub fn profile_of(&self, mac: Mac) -> &Profile {
        &self.device(mac).1.profile
    }

    /// `granted` are the consents given at run time (persisted state); the
    /// configured ones are looked up here.
    pub fn judge<'s>(&self, mac: Mac, granted: impl IntoIterator<Item = &'s Selector>, dst: &Destination<'_>) -> Judgement {
        let (device, resolved) = self.device(mac);
        let profile = &resolved.profile;
        let configured = device.map(|d| d.consent.as_slice()).unwrap_or(&[]);
        let verdict_of = |verdict, rule| Judgement { verdict, rule, profile: Arc::clone(&resolved.name) };
        // Names from an outside resolver count for the deny lists below,
        // never for a consent.
        let asked = dst.for_consent();
        let consent = match configured.iter().find(|s| s.matches(&asked)) {
            Some(s) => Some(s.clone()),
            None => granted.into_iter().find(|s| s.matches(&asked)).cloned(),
        };
        if let Some(s) = consent {
            return verdict_of(Verdict::Allow, Rule::Consent(s));
        }
        for (name, list) in &resolved.deny {
            if list.matches(dst) {
                return verdict_of(profile.denied, Rule::List(name.clone()));
            }
        }
        verdict_of(profile.unlisted, Rule::Unlisted)
    }
}

/// Used only when a configuration names no profile at all: allow everything.
static IMPLICIT_PROFILE: Profile = Profile::DEFAULTS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lists::{parse_list, LoadedList};

    fn policy() -> Policy {
        let text = "[profile.p]\ndenied = \"block\"\ndeny = [\"sub\", \"other\"]\n[defaults]\nprofile = \"p\"\n\
                    [list.sub]\nurls = [\"https://example.org/l\"]\n[list.other]\nselectors = [\"192.0.2.0/24\"]\n";
        let config = crate::config::parse_toml(std::path::Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        let lists = crate::policy::lists::load_all(&config).unwrap_or_else(|e| panic!("{e}"));
        Policy::new(config, lists)
    }

    fn verdict(p: &Policy, addr: &str) -> (Verdict, Rule) {
        let names: Vec<String> = vec![];
        let dst = Destination { addr: addr.parse().ok(), names: &names, trusted: 0, country: None, asn: None };
        let j = p.judge(Mac([2, 0, 0, 0, 0, 1]), [], &dst);
        (j.verdict, j.rule)
    }

    #[test]
    fn with_list_replaces_one_list_and_shares_the_rest() {
        let p = policy();
        assert_eq!(verdict(&p, "203.0.113.7"), (Verdict::Allow, Rule::Unlisted), "nothing fetched yet");
        let def = &p.config.lists["sub"];
        let fetched = LoadedList::build(def, [parse_list("203.0.113.7\n")]);
        let q = p.with_list(fetched).expect("a configured list");
        assert_eq!(verdict(&q, "203.0.113.7"), (Verdict::Block, Rule::List("sub".into())));
        assert_eq!(verdict(&q, "192.0.2.9"), (Verdict::Block, Rule::List("other".into())));
        assert!(Arc::ptr_eq(&p.lists["other"], &q.lists["other"]), "the other list is shared, not copied");
        assert!(Arc::ptr_eq(&p.geo, &q.geo));
        assert_eq!(q.config, p.config);
        // The old policy is untouched: whoever holds it sees no half swap.
        assert_eq!(verdict(&p, "203.0.113.7"), (Verdict::Allow, Rule::Unlisted));
        let stray = LoadedList { name: "gone".into(), ..LoadedList::default() };
        assert!(p.with_list(stray).is_none(), "a list reloaded away is not brought back");
    }
}
