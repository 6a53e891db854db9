//! `dns_bypass` (SPEC §3): which devices' DNS must go through the router's
//! resolver (the `bypass_mac` set), and the lines that say a device tried
//! to go around it — a flow conntrack reports (another resolver's port 53,
//! redirected or not; 853; a DoH endpoint on 443), or a packet the kernel
//! cut and logged (`BYPASS_PREFIX`), which conntrack never reports.
//!
//! The set's elements are no owner's decision: they follow from the
//! configuration and the device table, are never persisted, and are
//! recomputed on every reload.

use crate::hash::HashSet;

use super::*;
use crate::config::DnsBypass;
use crate::policy::netset::NetSet;

/// `bypass_mac` holds at most this many MACs: the device table's and the
/// configured ones, with room for devices evicted since the last sweep.
const MAX_BYPASS: usize = 2 * MAX_DEVICES;
/// Devices evicted from the device table lose their element this often.
const BYPASS_SWEEP_EVERY: u64 = 60;

/// A packet the kernel cut for `dns_bypass` and logged to leash: who sent
/// it (the MAC its frame came from) and where to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BypassAttempt {
    pub mac: Mac,
    pub flow: Flow,
}

/// The bypass state the engine keeps.
#[derive(Debug, Default)]
pub(super) struct BypassState {
    /// The MACs in `bypass_mac` now.
    members: HashSet<Mac>,
    /// DoH endpoints of the block profiles' lists: `doh_v4`/`doh_v6`.
    doh: NetSet,
    /// Whether some profile blocks bypass (the table has the chains).
    any_block: bool,
    swept: u64,
}

/// What a flow is, for `dns_bypass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Plain DNS to a resolver that is not the router.
    Dns,
    /// DNS over TLS or QUIC (853), or a DoH endpoint (443).
    Encrypted,
}

impl Engine {
    /// Whether the table needs the bypass sets and chains, and the DoH
    /// endpoints they cut.
    pub fn bypass_layout(&self) -> Option<&NetSet> {
        self.bypass.any_block.then_some(&self.bypass.doh)
    }

    /// Whether `mac` belongs in `bypass_mac` (never in monitor mode:
    /// monitor never touches traffic).
    fn wants_bypass(&self, mac: Mac) -> bool {
        !self.monitor() && self.policy.profile_of(mac).dns_bypass == DnsBypass::Block
    }

    /// The elements of `bypass_mac`, for a table rebuild.
    pub(super) fn bypass_elements(&self) -> impl Iterator<Item = Elem> + '_ {
        self.bypass.members.iter().map(|m| Elem::BypassMac(*m))
    }

    /// Adds or removes one device's element as its profile says.
    pub(super) fn sync_bypass_one(&mut self, mac: Mac, out: &mut Vec<Effect>) {
        let want = self.wants_bypass(mac);
        if want == self.bypass.members.contains(&mac) {
            return;
        }
        if want {
            if self.bypass.members.len() >= MAX_BYPASS {
                self.sweep_bypass(out);
            }
            self.bypass.members.insert(mac);
            out.push(Effect::Set(SetChange::Add { elem: Elem::BypassMac(mac), timeout: None }));
            self.cut_bypassing(mac, out);
        } else {
            self.bypass.members.remove(&mac);
            out.push(Effect::Set(SetChange::Delete(Elem::BypassMac(mac))));
        }
    }

    /// The device's flows around the router's resolver that its new
    /// element cannot catch: the nat redirect acts on new flows only.
    fn cut_bypassing(&self, mac: Mac, out: &mut Vec<Effect>) {
        let addrs = self.device_addrs(mac, None);
        if !addrs.is_empty() {
            out.push(Effect::Cut(Cut::Bypass(addrs)));
        }
    }

    /// At start: the members' flows from before leash (re)started.
    pub fn cut_bypassing_all(&self, out: &mut Vec<Effect>) {
        for mac in &self.bypass.members {
            self.cut_bypassing(*mac, out);
        }
    }

    /// Whether a flow (original and reply direction) goes around the
    /// router's resolver: DNS to another resolver that was not redirected
    /// (its reply would come from the router), 853, a DoH endpoint.
    pub(super) fn bypasses(&self, orig: &Flow, reply: Option<&Flow>) -> bool {
        if !matches!(orig.proto, 6 | 17) {
            return false;
        }
        match orig.dport {
            53 => reply.map_or(true, |r| self.net.is_internet(r.src)),
            853 => true,
            443 => self.bypass.doh.contains(orig.dst),
            _ => false,
        }
    }

    /// Recomputes everything from the policy (start, reload, list
    /// refresh): the DoH endpoints, and every known device's element.
    pub(super) fn sync_bypass(&mut self, out: &mut Vec<Effect>) {
        let profiles = &self.policy.config.profiles;
        let blocking: Vec<&crate::config::Profile> = profiles.values().filter(|p| p.dns_bypass == DnsBypass::Block).collect();
        self.bypass.any_block = !blocking.is_empty();
        let lists = blocking.iter().flat_map(|p| p.dns_bypass_lists.iter()).filter_map(|n| self.policy.lists.get(n)).map(|l| &l.nets);
        self.bypass.doh = NetSet::union(lists);
        self.sweep_bypass(out);
        let mut macs: Vec<Mac> = self.devices.iter().map(|d| d.mac).collect();
        macs.extend(self.policy.config.devices.iter().map(|d| d.mac));
        for mac in macs {
            self.sync_bypass_one(mac, out);
        }
    }

    /// Drops the elements of devices no longer known (evicted from the
    /// device table and not configured) or no longer in a block profile.
    fn sweep_bypass(&mut self, out: &mut Vec<Effect>) {
        let gone: Vec<Mac> = self
            .bypass
            .members
            .iter()
            .filter(|m| !self.wants_bypass(**m) || (self.devices.get(**m).is_none() && self.policy.device_config(**m).is_none()))
            .copied()
            .collect();
        for mac in gone {
            self.bypass.members.remove(&mac);
            out.push(Effect::Set(SetChange::Delete(Elem::BypassMac(mac))));
        }
    }

    /// The housekeeping part: evicted devices' elements go, now and then.
    pub(super) fn tick_bypass(&mut self, now: u64, out: &mut Vec<Effect>) {
        if now >= self.bypass.swept.saturating_add(BYPASS_SWEEP_EVERY) || now < self.bypass.swept {
            self.bypass.swept = now;
            self.sweep_bypass(out);
        }
    }

    /// What a flow from a device of this profile is, for `dns_bypass`
    /// (its destination is on the internet: `classify` said so).
    fn bypass_kind(&self, p: &crate::config::Profile, flow: &Flow) -> Option<Kind> {
        if p.dns_bypass == DnsBypass::Allow || !matches!(flow.proto, 6 | 17) {
            return None;
        }
        match flow.dport {
            53 => Some(Kind::Dns),
            853 => Some(Kind::Encrypted),
            443 => {
                let listed = match p.dns_bypass {
                    // What the kernel cuts: every block profile's endpoints.
                    DnsBypass::Block => self.bypass.doh.contains(flow.dst),
                    _ => p.dns_bypass_lists.iter().filter_map(|n| self.policy.lists.get(n)).any(|l| l.nets.contains(flow.dst)),
                };
                listed.then_some(Kind::Encrypted)
            }
            _ => None,
        }
    }

    /// A new flow of an identified device, before it is judged: one
    /// `rule=dns_bypass` line when it goes around the router's resolver.
    /// `Some`: the flow is dealt with (redirected to the router, or cut)
    /// and must not be judged as an ordinary destination; `None`: judge it.
    ///
    /// - `alert`: `ALERT`, then judged as usual.
    /// - `block`: DNS to another resolver was redirected to the router's
    ///   (its conntrack entry keeps the outside address): `BLOCK …
    ///   action=redirect`, and it is not judged, since it never left. 853
    ///   and DoH flows are dropped before conntrack sees them; one seen
    ///   anyway got past a missing element: put back, flow cut, `BLOCK`.
    /// - `block` in monitor mode: `WOULD-BLOCK`, then judged as usual.
    pub(super) fn bypass_flow(&mut self, mac: Mac, flow: &Flow, now: u64, out: &mut Vec<Effect>) -> Option<FlowOutcome> {
        let p = self.policy.profile_of(mac);
        let kind = self.bypass_kind(p, flow)?;
        let (mode, profile) = (p.dns_bypass, p.name.clone());
        let verb = match (mode, self.monitor()) {
            (DnsBypass::Block, false) => Verb::Block,
            (DnsBypass::Block, true) => Verb::WouldBlock,
            _ => Verb::Alert,
        };
        let redirected = verb == Verb::Block && kind == Kind::Dns && self.bypass.members.contains(&mac);
        if self.is_quarantined(mac) && !redirected {
            // Dropped by the quarantine already (a redirected query goes
            // to the router, which a quarantined device still reaches).
            return None;
        }
        let t = self.target(mac, flow.dst, now);
        let mut a = self.flow_alert(verb, mac, &t, Some(flow)).field("rule", Rule::DnsBypass).field("profile", profile);
        if verb != Verb::Block {
            self.log_bypass(mac, flow.dst, a, now, out);
            return None;
        }
        if redirected {
            a = a.field("action", "redirect");
        } else {
            // Its element was missing (or just added): put it back, cut the flow.
            if self.bypass.members.contains(&mac) {
                out.push(Effect::Set(SetChange::Add { elem: Elem::BypassMac(mac), timeout: None }));
            } else {
                self.sync_bypass_one(mac, out);
            }
            out.push(Effect::Cut(Cut::Flow(*flow)));
        }
        self.log_bypass(mac, flow.dst, a, now, out);
        Some(FlowOutcome::Judged(Verdict::Block))
    }

    /// A packet the kernel cut for `dns_bypass` (853, a DoH endpoint) and
    /// logged: `BLOCK … rule=dns_bypass`, once per device and destination
    /// within `alert_interval`.
    pub fn on_bypass(&mut self, b: &BypassAttempt, now: u64, out: &mut Vec<Effect>) {
        self.counters.dns_bypass_cut += 1;
        if !self.net.is_internet(b.flow.dst) {
            return;
        }
        self.devices.touch(b.mac, now);
        let profile = self.policy.profile_of(b.mac).name.clone();
        let t = self.target(b.mac, b.flow.dst, now);
        let verb = if self.monitor() { Verb::WouldBlock } else { Verb::Block };
        let a = self.flow_alert(verb, b.mac, &t, Some(&b.flow)).field("rule", Rule::DnsBypass).field("profile", profile);
        self.log_bypass(b.mac, b.flow.dst, a, now, out);
    }

    /// Logs unless this device's bypass to this destination was logged
    /// within `alert_interval`. A table of its own, so that a bypass line
    /// and the flow's ordinary verdict line do not suppress each other.
    fn log_bypass(&mut self, mac: Mac, dst: IpAddr, alert: Alert, now: u64, out: &mut Vec<Effect>) {
        self.counters.dns_bypass += 1;
        let interval = self.policy.config.daemon.alert_interval.as_secs();
        if let Some(last) = self.bypass_suppress.get(&(mac, dst)) {
            if now < last.saturating_add(interval) {
                self.counters.alerts_suppressed += 1;
                return;
            }
        }
        while self.bypass_suppress.oldest().is_some_and(|(_, t)| now >= t.saturating_add(interval)) {
            self.bypass_suppress.pop_oldest();
        }
        if let Insert::Evicted(..) = self.bypass_suppress.insert((mac, dst), now) {
            self.counters.suppress_evicted += 1;
        }
        self.counters.alerts += 1;
        out.push(Effect::Log(alert));
    }
}
