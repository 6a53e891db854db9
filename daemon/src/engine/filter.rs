//! `dns_filter` (SPEC §2): which held DNS answers a device gets as
//! NXDOMAIN instead. Pure: the daemon rewrites the packet.

use super::*;
use crate::config::DnsFilter;
use crate::names::trust::Resolver;

impl Engine {
    /// The judgement that makes this answer NXDOMAIN for the device at
    /// `client`, if any: its profile has `dns_filter = "nxdomain"`, and the
    /// question name or a name of its CNAME chain is on one of the
    /// profile's deny lists with a verdict of block or worse, and not
    /// consented. Never in monitor mode (nothing touches traffic) nor while
    /// the device learns (its destinations become consents).
    pub fn dns_filter(&self, client: IpAddr, qname: &str, records: &[AddrRecord], via: Resolver, now: u64) -> Option<Judgement> {
        if self.monitor() {
            return None;
        }
        let mac = self.devices.mac_of(client)?;
        if self.policy.profile_of(mac).dns_filter != DnsFilter::Nxdomain || self.learning(mac, now) {
            return None;
        }
        let trusted = usize::from(via.vouches_for_consent());
        let chain = std::iter::once(qname).chain(records.iter().flat_map(|r| r.names.iter().map(String::as_str)));
        // A hostile answer may repeat names (64 records × 17 names): each is judged once.
        let mut seen = std::collections::HashSet::new();
        for name in chain {
            if !seen.insert(name) {
                continue;
            }
            let names = [name.to_string()];
            let d = Destination { addr: None, names: &names, trusted, country: None, asn: None };
            let j = self.policy.judge(mac, self.granted(mac), &d);
            if j.verdict >= Verdict::Block && matches!(j.rule, Rule::List(_)) {
                return Some(j);
            }
        }
        None
    }
}
