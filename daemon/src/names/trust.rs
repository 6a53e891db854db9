//! Which DNS answers count (SPEC §2): only replies of a flow the device
//! itself opened to the resolver that answered. Anything else — a packet
//! from port 53 spoofed from the internet, an answer to a question nobody
//! asked — names nothing and changes no verdict. Pure: the kernel's word on
//! the packet (hook, conntrack entry) comes in, a verdict on it goes out.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::codec::dns::DnsAnswer;
use crate::codec::conntrack::Flow;
use crate::codec::nflog::IP_CT_ESTABLISHED_REPLY;

/// Netfilter hooks (`enum nf_inet_hooks`) the answer rules sit on.
const NF_INET_FORWARD: u8 = 2;
const NF_INET_LOCAL_OUT: u8 = 3;

/// The resolver that gave a name. Only the router's own resolver can
/// vouch for a consent: a device must not talk its way past a denial by
/// picking a resolver that maps a consented name to a denied address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolver {
    /// The router's own resolver (dnsmasq): answers leave on the output hook.
    Router,
    /// A resolver outside the house the device asked directly (8.8.8.8):
    /// its answers cross the forward hook.
    Outside(IpAddr),
}

impl Resolver {
    /// Names from this resolver may grant consent.
    pub fn vouches_for_consent(&self) -> bool {
        matches!(self, Resolver::Router)
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolver::Router => f.write_str("router"),
            Resolver::Outside(a) => write!(f, "{a}"),
        }
    }
}

impl Serialize for Resolver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the kernel said about the packet that carried an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The netfilter hook it was logged on.
    pub hook: Option<u8>,
    /// `enum ip_conntrack_info` of the packet, when conntrack was attached.
    pub ct_info: Option<u32>,
    /// The original direction of its conntrack entry, when attached.
    pub ct_orig: Option<Flow>,
}

/// Why an answer does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsolicited {
    #[error("logged on hook {0:?}, not the output or forward hook")]
    Hook(Option<u8>),
    #[error("no conntrack entry attached")]
    NoConntrack,
    #[error("not a reply of an established flow (ctinfo {0})")]
    NotReply(u32),
    #[error("the flow it answers was not opened by the client to this resolver's port 53")]
    NotAsked,
}

/// Whether leash must look up the flow an answer replies to before it can
/// vouch for it: an answer that crossed the forward hook (anything from the
/// internet could have) and came without its conntrack entry. An answer on
/// the output hook was made by a process of the router — no packet from
/// outside passes that hook — and the rule logged it only as the reply of
/// a flow to the router's port 53: the lookup would add a round trip to
/// the path that races the device's first packet, and check nothing more.
pub fn needs_lookup(p: &Provenance) -> bool {
    p.ct_orig.is_none() && p.hook == Some(NF_INET_FORWARD)
}

/// Whether an answer counts, and from which resolver: it was logged on
/// the output hook (the router's resolver) or the forward hook (an outside
/// one), it is a reply, and its conntrack entry — attached by NFLOG, or
/// looked up by leash where the kernel cannot attach it — was opened by
/// the client, from the port the answer goes to, to the resolver's port 53.
/// The router's own answers need no entry (see `needs_lookup`); one that
/// comes with it is checked all the same.
pub fn vouch(a: &DnsAnswer, p: &Provenance) -> Result<Resolver, Unsolicited> {
    let resolver = match p.hook {
        Some(NF_INET_LOCAL_OUT) => Resolver::Router,
        Some(NF_INET_FORWARD) => Resolver::Outside(a.server),
        other => return Err(Unsolicited::Hook(other)),
    };
    if let Some(info) = p.ct_info {
        if info != IP_CT_ESTABLISHED_REPLY {
            return Err(Unsolicited::NotReply(info));
        }
    }
    let orig = match (p.ct_orig, resolver) {
        (Some(orig), _) => orig,
        (None, Resolver::Router) if a.server_port == 53 => return Ok(resolver),
        (None, _) => return Err(Unsolicited::NoConntrack),
    };
    // A query the router redirected to its own resolver (`dns_bypass =
    // "block"`) keeps the outside resolver as its original destination;
    // on the output hook the answer still comes from the router's own
    // address (the source is turned back into the outside one only at
    // postrouting). Only the router's NAT can make a local process answer
    // a flow sent elsewhere, so there the destination may differ; an
    // answer that crossed the forward hook must come from the resolver asked.
    let to_resolver = orig.dst == a.server || resolver == Resolver::Router;
    let asked = orig.src == a.client
        && to_resolver
        && orig.proto == a.proto
        && orig.sport == a.client_port
        && orig.dport == 53
        && a.server_port == 53;
    if !asked {
        return Err(Unsolicited::NotAsked);
    }
    Ok(resolver)
}

/// The original tuple of the flow an answer would be the reply of: the
/// one leash looks up when NFLOG could not attach the entry.
pub fn asked_flow(a: &DnsAnswer) -> Flow {
    Flow { src: a.client, dst: a.server, proto: a.proto, sport: a.client_port, dport: a.server_port }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(client: &str, server: &str) -> DnsAnswer {
        DnsAnswer { client: ip(client), server: ip(server), proto: 17, client_port: 40000, server_port: 53, qname: "x.example".into(), records: vec![] }
    }

    fn asked(client: &str, server: &str) -> Provenance {
        Provenance {
            hook: Some(NF_INET_FORWARD),
            ct_info: Some(IP_CT_ESTABLISHED_REPLY),
            ct_orig: Some(Flow { src: ip(client), dst: ip(server), proto: 17, sport: 40000, dport: 53 }),
        }
    }

    #[test]
    fn replies_to_the_device_s_own_question_count() {
        let a = answer("192.168.7.12", "192.0.2.53");
        assert_eq!(vouch(&a, &asked("192.168.7.12", "192.0.2.53")), Ok(Resolver::Outside(ip("192.0.2.53"))));
        // Looked up by leash (no ctinfo from NFLOG): the entry alone decides.
        let looked_up = Provenance { ct_info: None, ..asked("192.168.7.12", "192.0.2.53") };
        assert_eq!(vouch(&a, &looked_up), Ok(Resolver::Outside(ip("192.0.2.53"))));
        assert_eq!(asked_flow(&a), looked_up.ct_orig.unwrap());
        let r = answer("192.168.7.12", "192.168.7.1");
        let p = Provenance { hook: Some(NF_INET_LOCAL_OUT), ..asked("192.168.7.12", "192.168.7.1") };
        assert_eq!(vouch(&r, &p), Ok(Resolver::Router));
        assert!(Resolver::Router.vouches_for_consent());
        assert!(!Resolver::Outside(ip("192.0.2.53")).vouches_for_consent());
        assert_eq!(Resolver::Outside(ip("2001:db8::53")).to_string(), "2001:db8::53");
    }

    /// `dns_bypass = "block"`: the device asked 192.0.2.53, the router
    /// redirected the query to its resolver, whose answer leaves on the
    /// output hook from the router's address, before un-NAT.
    #[test]
    fn redirected_queries_answered_by_the_router_count_as_the_router_s() {
        let r = answer("192.168.7.12", "192.168.7.1");
        let p = Provenance { hook: Some(NF_INET_LOCAL_OUT), ..asked("192.168.7.12", "192.0.2.53") };
        assert_eq!(vouch(&r, &p), Ok(Resolver::Router));
        // Still the device's own question: its port, its address, port 53.
        assert_eq!(vouch(&DnsAnswer { client_port: 40001, ..r.clone() }, &p), Err(Unsolicited::NotAsked));
        assert_eq!(vouch(&answer("192.168.7.13", "192.168.7.1"), &p), Err(Unsolicited::NotAsked));
        let mut other_port = p;
        other_port.ct_orig.as_mut().unwrap().dport = 5353;
        assert_eq!(vouch(&r, &other_port), Err(Unsolicited::NotAsked));
        // Never on the forward hook: there the answer must come from the resolver asked.
        let fwd = Provenance { hook: Some(NF_INET_FORWARD), ..p };
        assert_eq!(vouch(&answer("192.168.7.12", "198.51.100.53"), &fwd), Err(Unsolicited::NotAsked));
    }

    #[test]
    fn spoofed_and_unasked_answers_do_not_count() {
        let a = answer("192.168.7.12", "192.0.2.53");
        // A spoofed packet opens a flow of its own: conntrack calls it NEW (2),
        // and a lookup finds that flow, opened by the "resolver".
        let new = Provenance { ct_info: Some(2), ..asked("192.0.2.53", "192.168.7.12") };
        assert_eq!(vouch(&a, &new), Err(Unsolicited::NotReply(2)));
        let spoofer_flow = Provenance { ct_info: None, ..asked("192.0.2.53", "192.168.7.12") };
        assert_eq!(vouch(&a, &spoofer_flow), Err(Unsolicited::NotAsked));
        // A reply of a flow to another resolver, of another device's flow,
        // from another port, or to a flow the device opened to another port.
        assert_eq!(vouch(&answer("192.168.7.12", "198.51.100.53"), &asked("192.168.7.12", "192.0.2.53")), Err(Unsolicited::NotAsked));
        assert_eq!(vouch(&a, &asked("192.168.7.13", "192.0.2.53")), Err(Unsolicited::NotAsked));
        assert_eq!(vouch(&DnsAnswer { client_port: 40001, ..a.clone() }, &asked("192.168.7.12", "192.0.2.53")), Err(Unsolicited::NotAsked));
        let mut p = asked("192.168.7.12", "192.0.2.53");
        p.ct_orig.as_mut().unwrap().dport = 5353;
        assert_eq!(vouch(&a, &p), Err(Unsolicited::NotAsked));
        // Untracked, or on a hook no answer rule uses.
        let bare = Provenance { hook: Some(NF_INET_FORWARD), ..Provenance::default() };
        assert_eq!(vouch(&a, &bare), Err(Unsolicited::NoConntrack));
        assert_eq!(vouch(&a, &Provenance { hook: Some(0), ..asked("192.168.7.12", "192.0.2.53") }), Err(Unsolicited::Hook(Some(0))));
        assert_eq!(vouch(&a, &Provenance::default()), Err(Unsolicited::Hook(None)));
        // The router's own answer needs no lookup; an outside one does.
        let out = Provenance { hook: Some(NF_INET_LOCAL_OUT), ..Provenance::default() };
        assert_eq!(vouch(&answer("192.168.7.12", "192.168.7.1"), &out), Ok(Resolver::Router));
        assert!(!needs_lookup(&out) && needs_lookup(&bare));
        assert!(!needs_lookup(&asked("192.168.7.12", "192.0.2.53")), "attached entries need none");
    }
}
