//! rtnetlink decoding with `netlink-packet-route`: neighbours (which MAC
//! owns which address), links (interface names) and interface addresses,
//! from multicast events or dumps; plus the dump requests.
//!
//! Pure: bytes in, values out. Messages of other kinds, and neighbour
//! entries that carry no IP address (bridge FDB), decode to `None`.

use std::net::IpAddr;

use netlink_packet_core::{Emitable, ParseableParametrized};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::nla::{self, Attrs, Msg, NlWriter, NLMSG_MIN_TYPE, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::mac::Mac;

/// Multicast groups (`RTNLGRP_*`), for `NlSocket::open`.
pub const RTNLGRP_LINK: u32 = 1;
pub const RTNLGRP_NEIGH: u32 = 3;
pub const RTNLGRP_IPV4_IFADDR: u32 = 5;
pub const RTNLGRP_IPV6_IFADDR: u32 = 9;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;

/// `struct ifinfomsg` is 16 bytes; the interface name is IFLA_IFNAME.
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("malformed netlink framing")]
    Frame(#[from] nla::DecodeError),
    #[error("malformed rtnetlink message type {ty}")]
    Decode {
        ty: u16,
        #[source]
        source: netlink_packet_core::DecodeError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEvent {
    pub ifindex: u32,
    pub ip: IpAddr,
    /// `None` when the kernel has no link-layer address (incomplete,
    /// failed, or a deletion).
    pub mac: Option<Mac>,
    /// NUD_* bits (NUD_REACHABLE 0x02, NUD_STALE 0x04, NUD_PERMANENT 0x80...).
    pub state: u16,
    pub deleted: bool,
}

/// An interface's index and name (the brief's `(ifindex, ifname)`), plus
/// whether it went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifindex: u32,
    pub name: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEvent {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    Neigh(NeighEvent),
    Link(LinkEvent),
    Addr(AddrEvent),
}

pub const NUD_PERMANENT: u16 = 0x80;

/// Decodes one rtnetlink message (event or dump entry).
pub fn parse_message(msg: &[u8]) -> Result<Option<RouteEvent>, RouteError> {
    let m = Msg::parse(msg)?;
    let ty = m.hdr.ty;
    if ty < NLMSG_MIN_TYPE {
        return Ok(None);
    }
    if !matches!(ty, RTM_NEWLINK | RTM_DELLINK | RTM_NEWADDR | RTM_DELADDR | RTM_NEWNEIGH | RTM_DELNEIGH) {
        return Ok(None);
    }
    let parsed = RouteNetlinkMessage::parse_with_param(m.payload, ty);
    let parsed = match parsed {
        Ok(p) => p,
        // Link messages carry the most kernel-version-specific nests; if
        // the crate rejects one, the name alone is still worth having.
        Err(_) if matches!(ty, RTM_NEWLINK | RTM_DELLINK) => {
            return Ok(link_fallback(m.payload, ty == RTM_DELLINK).map(RouteEvent::Link));
        }
        Err(source) => return Err(RouteError::Decode { ty, source }),
    };
    Ok(match parsed {
        RouteNetlinkMessage::NewNeighbour(n) => neigh(&n, false).map(RouteEvent::Neigh),
        RouteNetlinkMessage::DelNeighbour(n) => neigh(&n, true).map(RouteEvent::Neigh),
        RouteNetlinkMessage::NewLink(l) => link(&l, false).map(RouteEvent::Link),
        RouteNetlinkMessage::DelLink(l) => link(&l, true).map(RouteEvent::Link),
        RouteNetlinkMessage::NewAddress(a) => addr(&a, false).map(RouteEvent::Addr),
        RouteNetlinkMessage::DelAddress(a) => addr(&a, true).map(RouteEvent::Addr),
        _ => None,
    })
}

fn neigh(n: &NeighbourMessage, deleted: bool) -> Option<NeighEvent> {
    let mut ip = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(IpAddr::V6(*a)),
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice()).ok().map(Mac);
            }
            _ => {}
        }
    }
    Some(NeighEvent { ifindex: n.header.ifindex, ip: ip?, mac, state: n.header.state.into(), deleted })
}

fn link(l: &LinkMessage, deleted: bool) -> Option<LinkEvent> {
    let name = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(LinkEvent { ifindex: l.header.index, name, deleted })
}

fn link_fallback(payload: &[u8], deleted: bool) -> Option<LinkEvent> {
    let index = payload.get(4..8)?;
    let ifindex = u32::from_ne_bytes(index.try_into().ok()?);
    let attrs = Attrs::new(payload.get(IFINFOMSG_LEN..)?);
    let name = attrs.map_while(Result::ok).find(|a| a.ty == IFLA_IFNAME)?.string();
    Some(LinkEvent { ifindex, name, deleted })
}

fn addr(a: &AddressMessage, deleted: bool) -> Option<AddrEvent> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links and equals IFA_LOCAL otherwise (IPv6 sends only
    // IFA_ADDRESS).
    let (mut local, mut address) = (None, None);
    for attr in &a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Some(AddrEvent {
        ifindex: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
        deleted,
    })
}

fn dump(ty: u16, seq: u32, msg: RouteNetlinkMessage) -> Vec<u8> {
    let mut body = vec![0u8; msg.buffer_len()];
    msg.emit(&mut body);
    let mut w = NlWriter::new();
    w.begin_msg(ty, NLM_F_REQUEST | NLM_F_DUMP, seq);
    w.raw(&body);
    w.end_msg();
    w.finish()
}

/// Dumps every neighbour entry (IPv4 ARP and IPv6 ND: family AF_UNSPEC).
pub fn dump_neighbours_request(seq: u32) -> Vec<u8> {
    dump(RTM_GETNEIGH, seq, RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()))
}

/// `struct ndmsg`: family, 3 bytes pad, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;

/// Asks for one neighbour entry: the address on that interface (the
/// kernel's `neigh_get`, Linux ≥ 5.0; `ip neigh get ADDR dev IF`). The
/// kernel answers with one RTM_NEWNEIGH and, as asked, an ack; or with
/// ENOENT when it has no entry. The header must carry nothing but family
/// and ifindex, and NDA_DST is the only attribute it accepts.
pub fn get_neighbour_request(seq: u32, ifindex: u32, ip: IpAddr) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match ip {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    let mut ndmsg = [0u8; NDMSG_LEN];
    ndmsg[0] = family;
    ndmsg[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut w = NlWriter::new();
    w.begin_msg(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_ACK, seq);
    w.raw(&ndmsg);
    w.attr(NDA_DST, &addr);
    w.end_msg();
    w.finish()
}

pub fn dump_links_request(seq: u32) -> Vec<u8> {
    dump(RTM_GETLINK, seq, RouteNetlinkMessage::GetLink(LinkMessage::default()))
}

/// Dumps the addresses of every interface, both families.
pub fn dump_addrs_request(seq: u32) -> Vec<u8> {
    dump(RTM_GETADDR, seq, RouteNetlinkMessage::GetAddress(AddressMessage::default()))
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::tests::XorShift;
    use super::super::nla::Messages;
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn neighbour_events() {
        let Some(RouteEvent::Neigh(n)) = parse_message(RT_NEWNEIGH4).unwrap() else { panic!() };
        assert_eq!(
            n,
            NeighEvent { ifindex: 3, ip: ip("192.0.2.9"), mac: Some("aa:bb:cc:00:00:09".parse().unwrap()), state: NUD_PERMANENT, deleted: false }
        );
        let Some(RouteEvent::Neigh(n)) = parse_message(RT_NEWNEIGH6).unwrap() else { panic!() };
        assert_eq!((n.ip, n.mac.unwrap().to_string()), (ip("2001:db8::9"), "aa:bb:cc:00:00:0a".into()));
        let Some(RouteEvent::Neigh(n)) = parse_message(RT_DELNEIGH4).unwrap() else { panic!() };
        assert_eq!((n.ip, n.mac, n.deleted), (ip("192.0.2.9"), None, true));
    }

    #[test]
    fn link_event() {
        let Some(RouteEvent::Link(l)) = parse_message(RT_NEWLINK_VETH).unwrap() else { panic!() };
        assert_eq!(l, LinkEvent { ifindex: 3, name: "vcap0".into(), deleted: false });
        // The fallback decoder agrees with the crate.
        assert_eq!(link_fallback(&RT_NEWLINK_VETH[16..], false), Some(l));
    }

    #[test]
    fn address_events() {
        let Some(RouteEvent::Addr(a)) = parse_message(RT_NEWADDR4).unwrap() else { panic!() };
        assert_eq!(a, AddrEvent { ifindex: 3, addr: ip("192.0.2.254"), prefix_len: 24, deleted: false });
        let Some(RouteEvent::Addr(a)) = parse_message(RT_NEWADDR6).unwrap() else { panic!() };
        assert_eq!(a, AddrEvent { ifindex: 3, addr: ip("2001:db8::fe"), prefix_len: 64, deleted: false });
    }

    #[test]
    fn dump_requests() {
        // `ip neigh show` sends an ndmsg of 12 bytes; ours is family 0.
        for (b, ty, body) in [
            (dump_neighbours_request(9), RTM_GETNEIGH, 12),
            (dump_links_request(9), RTM_GETLINK, 16),
            (dump_addrs_request(9), RTM_GETADDR, 8),
        ] {
            let m = Msg::parse(&b).unwrap();
            assert_eq!((m.hdr.ty, m.hdr.flags, m.hdr.seq), (ty, NLM_F_REQUEST | NLM_F_DUMP, 9));
            assert_eq!(m.payload.len(), body);
            assert!(m.payload.iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn get_neighbour_request_asks_for_one_address() {
        // As `ip neigh get 192.0.2.9 dev d0` sends it (seen with strace:
        // ndmsg with family and ifindex only, then NDA_DST), plus NLM_F_ACK.
        let b = get_neighbour_request(7, 3, ip("192.0.2.9"));
        let m = Msg::parse(&b).unwrap();
        assert_eq!((m.hdr.ty, m.hdr.flags, m.hdr.seq, m.hdr.len as usize), (RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_ACK, 7, b.len()));
        assert_eq!(m.payload, [2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 192, 0, 2, 9]);
        let b = get_neighbour_request(8, 3, ip("2001:db8::9"));
        let m = Msg::parse(&b).unwrap();
        assert_eq!(m.payload.len(), NDMSG_LEN + 4 + 16);
        assert_eq!(m.payload[0], libc::AF_INET6 as u8);
        assert_eq!(&m.payload[12..16], [20, 0, 1, 0]);
    }

    #[test]
    fn other_messages_are_none() {
        let mut b = RT_NEWNEIGH4.to_vec();
        b[4..6].copy_from_slice(&24u16.to_ne_bytes()); // RTM_NEWROUTE
        assert_eq!(parse_message(&b).unwrap(), None);
        b[4..6].copy_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
        assert_eq!(parse_message(&b).unwrap(), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        let caps = [RT_NEWNEIGH4, RT_NEWNEIGH6, RT_DELNEIGH4, RT_NEWLINK_VETH, RT_NEWADDR4, RT_NEWADDR6];
        for cap in caps {
            for n in 0..cap.len() {
                assert!(parse_message(&cap[..n]).is_err(), "cut at {n}");
                if n >= 16 {
                    let mut b = cap[..n].to_vec();
                    b[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
                    let _ = parse_message(&b);
                }
            }
        }
        let mut rng = XorShift(0xdeadbeefcafef00d);
        for i in 0..20_000 {
            let mut b = caps[i % caps.len()].to_vec();
            for _ in 0..(rng.next() % 8 + 1) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            for m in Messages::new(&b).map_while(Result::ok) {
                let _ = parse_message(m);
            }
        }
    }
}
