//! ctnetlink codec, pure: conntrack events and dump entries in, dump and
//! delete requests out (NETLINK_NETFILTER, subsystem CTNETLINK).
//!
//! Unknown attributes are skipped: every kernel version adds some (the
//! 6.x kernels send CTA_SYNPROXY even with no synproxy in use).

use std::net::IpAddr;

pub use super::nla::DecodeError;
use super::nla::{
    Attr, Messages, Msg, NlWriter, NLA_TYPE_MASK, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REQUEST,
};

pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
/// Multicast groups of NETLINK_NETFILTER carrying conntrack events.
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

const IPCTNL_MSG_CT_NEW: u8 = 0;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;

const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_COUNTERS32_PACKETS: u16 = 3;
const CTA_COUNTERS32_BYTES: u16 = 4;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One direction of a connection (a flow as leash judges it is its
/// original direction).
///
/// Ports are 0 for protocols without ports. For ICMP and ICMPv6 `sport`
/// holds the echo id and `dport` holds `type << 8 | code`: the kernel
/// needs all three to find an ICMP entry again (delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtKind {
    New,
    Update,
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: CtKind,
    pub orig: Flow,
    pub reply: Option<Flow>,
    pub id: Option<u32>,
    pub zone: u16,
    pub mark: u32,
    pub status: u32,
    /// Counters are present only with `nf_conntrack_acct` on, and the
    /// kernel omits them from NEW events.
    pub bytes_orig: Option<u64>,
    pub packets_orig: Option<u64>,
    pub bytes_reply: Option<u64>,
    pub packets_reply: Option<u64>,
}

/// Where a message came from decides what a CT_NEW means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The multicast event stream: CT_NEW with CREATE|EXCL is a new
    /// entry, without them an update of a known one.
    Events,
    /// A dump reply: every entry is reported as `New`, since to the
    /// reader it is one it did not know of.
    Dump,
}

/// Parses one event message. `Ok(None)` for messages that are not
/// conntrack entries (DONE, errors, other subsystems, GET).
pub fn parse_message(msg: &[u8]) -> Result<Option<CtEvent>, DecodeError> {
    parse(msg, Source::Events)
}

/// Parses one message of a dump reply; entries come out as `New`.
pub fn parse_dump_message(msg: &[u8]) -> Result<Option<CtEvent>, DecodeError> {
    parse(msg, Source::Dump)
}

/// Splits a receive buffer into its netlink messages.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], DecodeError>> {
    Messages::new(buf)
}

pub fn parse(msg: &[u8], source: Source) -> Result<Option<CtEvent>, DecodeError> {
    let m = Msg::parse(msg)?;
    if m.nfnl_subsys() != NFNL_SUBSYS_CTNETLINK {
        return Ok(None);
    }
    let kind = match (m.nfnl_msg(), source) {
        (IPCTNL_MSG_CT_DELETE, _) => CtKind::Destroy,
        (IPCTNL_MSG_CT_NEW, Source::Dump) => CtKind::New,
        (IPCTNL_MSG_CT_NEW, Source::Events) => {
            if m.hdr.flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL {
                CtKind::New
            } else {
                CtKind::Update
            }
        }
        _ => return Ok(None),
    };
    let (_gen, mut attrs) = m.nfnl()?;
    let mut orig = None;
    let mut ev = CtEvent {
        kind,
        orig: Flow { src: IpAddr::from([0u8; 4]), dst: IpAddr::from([0u8; 4]), proto: 0, sport: 0, dport: 0 },
        reply: None,
        id: None,
        zone: 0,
        mark: 0,
        status: 0,
        bytes_orig: None,
        packets_orig: None,
        bytes_reply: None,
        packets_reply: None,
    };
    while let Some(a) = attrs.next_inline() {
        let a = a?;
        match a.ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(&a)?),
            CTA_TUPLE_REPLY => ev.reply = Some(parse_tuple(&a)?),
            CTA_STATUS => ev.status = a.u32_be()?,
            CTA_MARK => ev.mark = a.u32_be()?,
            CTA_ID => ev.id = Some(a.u32_be()?),
            CTA_ZONE => ev.zone = a.u16_be()?,
            CTA_COUNTERS_ORIG => (ev.packets_orig, ev.bytes_orig) = parse_counters(&a)?,
            CTA_COUNTERS_REPLY => (ev.packets_reply, ev.bytes_reply) = parse_counters(&a)?,
            _ => {}
        }
    }
    ev.orig = orig.ok_or(DecodeError::Missing("CTA_TUPLE_ORIG"))?;
    Ok(Some(ev))
}

/// The original tuple inside a nest of conntrack attributes (NFLOG's and
/// NFQUEUE's `NFULA_CT`/`NFQA_CT`); `None` when the nest has none.
pub fn orig_tuple(nest: &Attr) -> Result<Option<Flow>, DecodeError> {
    for a in nest.attrs() {
        let a = a?;
        if a.ty == CTA_TUPLE_ORIG {
            return parse_tuple(&a).map(Some);
        }
    }
    Ok(None)
}

fn parse_counters(a: &Attr) -> Result<(Option<u64>, Option<u64>), DecodeError> {
    let (mut packets, mut bytes) = (None, None);
    for c in a.attrs() {
        let c = c?;
        match c.ty {
            CTA_COUNTERS_PACKETS => packets = Some(c.u64_be()?),
            CTA_COUNTERS_BYTES => bytes = Some(c.u64_be()?),
            CTA_COUNTERS32_PACKETS => packets = Some(c.u32_be()?.into()),
            CTA_COUNTERS32_BYTES => bytes = Some(c.u32_be()?.into()),
            _ => {}
        }
    }
    Ok((packets, bytes))
}

fn parse_tuple(a: &Attr) -> Result<Flow, DecodeError> {
    match tuple_fixed(a.value) {
        Some(f) => Ok(f),
        None => parse_tuple_nested(a),
    }
}

/// A tuple in the layout kernels send for protocols with ports (TCP, UDP,
/// SCTP, …): the address nest (source, destination), then the protocol
/// nest (number, source port, destination port), nothing else. Read at
/// fixed offsets, each header checked, in a tenth of the general walk's
/// instructions; any other layout (ICMP, a zone, another order, another
/// attribute) is `None` and goes the general way, to the same result.
fn tuple_fixed(v: &[u8]) -> Option<Flow> {
    // The length alone decides the family; at a fixed length the offsets
    // are constants, so every read below is checked at compile time.
    match v.len() {
        48 => tuple_at::<4>(v),
        72 => tuple_at::<16>(v),
        _ => None,
    }
}

// Inlined by hand: the release build optimises for size and would call
// each of these, once per header.
#[inline(always)]
fn tuple_at<const W: usize>(v: &[u8]) -> Option<Flow> {
    let (src_ty, dst_ty) = if W == 4 { (CTA_IP_V4_SRC, CTA_IP_V4_DST) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST) };
    let p = 12 + 2 * W;
    if v.len() != p + 28
        || !attr_hdr_is(v, 0, p, CTA_TUPLE_IP)
        || !attr_hdr_is(v, 4, 4 + W, src_ty)
        || !attr_hdr_is(v, 8 + W, 4 + W, dst_ty)
        || !attr_hdr_is(v, p, 28, CTA_TUPLE_PROTO)
        || !attr_hdr_is(v, p + 4, 5, CTA_PROTO_NUM)
        || !attr_hdr_is(v, p + 12, 6, CTA_PROTO_SRC_PORT)
        || !attr_hdr_is(v, p + 20, 6, CTA_PROTO_DST_PORT)
    {
        return None;
    }
    let proto = v[p + 8];
    if is_icmp(proto) {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([v[at], v[at + 1]]);
    Some(Flow { src: addr_at::<W>(v, 8), dst: addr_at::<W>(v, 12 + W), proto, sport: port(p + 16), dport: port(p + 24) })
}

/// Whether the attribute header at `at` has this length and type (its
/// flags ignored): one masked compare of the header's four bytes, in
/// the host's order as the kernel wrote them.
#[inline(always)]
fn attr_hdr_is(v: &[u8], at: usize, len: usize, ty: u16) -> bool {
    let [l0, l1] = (len as u16).to_ne_bytes();
    let [t0, t1] = ty.to_ne_bytes();
    let [m0, m1] = NLA_TYPE_MASK.to_ne_bytes();
    let want = u32::from_ne_bytes([l0, l1, t0, t1]);
    let mask = u32::from_ne_bytes([0xff, 0xff, m0, m1]);
    let mut h = [0u8; 4];
    h.copy_from_slice(&v[at..at + 4]);
    u32::from_ne_bytes(h) & mask == want
}

#[inline(always)]
fn addr_at<const W: usize>(v: &[u8], at: usize) -> IpAddr {
    if W == 4 {
        IpAddr::from([v[at], v[at + 1], v[at + 2], v[at + 3]])
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(&v[at..at + 16]);
        IpAddr::from(b)
    }
}

fn parse_tuple_nested(a: &Attr) -> Result<Flow, DecodeError> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport, mut icmp_id, mut icmp_type, mut icmp_code) = (0, 0, 0, 0u8, 0u8);
    for t in a.attrs() {
        let t = t?;
        match t.ty {
            CTA_TUPLE_IP => {
                for ip in t.attrs() {
                    let ip = ip?;
                    match ip.ty {
                        CTA_IP_V4_SRC => src = Some(IpAddr::V4(ip.ipv4()?)),
                        CTA_IP_V4_DST => dst = Some(IpAddr::V4(ip.ipv4()?)),
                        CTA_IP_V6_SRC => src = Some(IpAddr::V6(ip.ipv6()?)),
                        CTA_IP_V6_DST => dst = Some(IpAddr::V6(ip.ipv6()?)),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in t.attrs() {
                    let p = p?;
                    match p.ty {
                        CTA_PROTO_NUM => proto = Some(p.u8()?),
                        CTA_PROTO_SRC_PORT => sport = p.u16_be()?,
                        CTA_PROTO_DST_PORT => dport = p.u16_be()?,
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => icmp_id = p.u16_be()?,
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => icmp_type = p.u8()?,
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => icmp_code = p.u8()?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let src = src.ok_or(DecodeError::Missing("CTA_IP source"))?;
    let dst = dst.ok_or(DecodeError::Missing("CTA_IP destination"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(DecodeError::Invalid("tuple mixes IPv4 and IPv6"));
    }
    let proto = proto.ok_or(DecodeError::Missing("CTA_PROTO_NUM"))?;
    if is_icmp(proto) {
        sport = icmp_id;
        dport = u16::from(icmp_type) << 8 | u16::from(icmp_code);
    }
    Ok(Flow { src, dst, proto, sport, dport })
}

fn is_icmp(proto: u8) -> bool {
    proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6
}

fn ct_type(msg: u8) -> u16 {
    u16::from(NFNL_SUBSYS_CTNETLINK) << 8 | u16::from(msg)
}

/// Dumps the whole table, IPv4 and IPv6 (family AF_UNSPEC).
pub fn dump_request(seq: u32) -> Vec<u8> {
    let mut w = NlWriter::new();
    w.begin_msg(ct_type(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP, seq);
    w.nfgenmsg(AF_UNSPEC, 0);
    w.end_msg();
    w.finish()
}

/// Deletes the entry whose original tuple is `orig` in `zone`; asks for an
/// ack so that "gone already" (ENOENT) can be told from success.
pub fn delete_request(seq: u32, orig: &Flow, zone: u16) -> Vec<u8> {
    entry_request(IPCTNL_MSG_CT_DELETE, seq, orig, zone)
}

/// Asks for the one entry that has `tuple` in either direction (zone 0):
/// the kernel answers with the entry (a CT_NEW message) and an ack, or
/// ENOENT.
pub fn get_request(seq: u32, tuple: &Flow) -> Vec<u8> {
    entry_request(IPCTNL_MSG_CT_GET, seq, tuple, 0)
}

fn entry_request(msg: u8, seq: u32, orig: &Flow, zone: u16) -> Vec<u8> {
    let mut w = NlWriter::new();
    w.begin_msg(ct_type(msg), NLM_F_REQUEST | NLM_F_ACK, seq);
    // The kernel reads the tuple's addresses by this family.
    w.nfgenmsg(if orig.src.is_ipv4() { AF_INET } else { AF_INET6 }, 0);
    let t = w.begin_nested(CTA_TUPLE_ORIG);
    let ip = w.begin_nested(CTA_TUPLE_IP);
    match orig.src {
        IpAddr::V4(a) => w.attr(CTA_IP_V4_SRC, &a.octets()),
        IpAddr::V6(a) => w.attr(CTA_IP_V6_SRC, &a.octets()),
    }
    match orig.dst {
        IpAddr::V4(a) => w.attr(CTA_IP_V4_DST, &a.octets()),
        IpAddr::V6(a) => w.attr(CTA_IP_V6_DST, &a.octets()),
    }
    w.end_nested(ip);
    let p = w.begin_nested(CTA_TUPLE_PROTO);
    w.attr_u8(CTA_PROTO_NUM, orig.proto);
    match orig.proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let v6 = orig.proto == IPPROTO_ICMPV6;
            let (id, ty, code) = if v6 {
                (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE)
            } else {
                (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
            };
            w.attr_u16_be(id, orig.sport);
            w.attr_u8(ty, (orig.dport >> 8) as u8);
            w.attr_u8(code, orig.dport as u8);
        }
        _ => {
            w.attr_u16_be(CTA_PROTO_SRC_PORT, orig.sport);
            w.attr_u16_be(CTA_PROTO_DST_PORT, orig.dport);
        }
    }
    w.end_nested(p);
    w.end_nested(t);
    if zone != 0 {
        w.attr_u16_be(CTA_ZONE, zone);
    }
    w.end_msg();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::tests::XorShift;
    use super::super::nla::{Attrs, NLMSG_DONE};
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every tuple of the captures: the fixed-offset read gives what the
    /// general walk gives, or leaves it to the walk; TCP and UDP tuples
    /// (with no zone) take the fixed read.
    #[test]
    fn fixed_tuple_read_agrees_with_the_walk() {
        let mut fixed = 0;
        for cap in [CT_NEW_TCP4, CT_NEW_UDP6_ZONE, CT_NEW_ICMP4, CT_DESTROY_UDP4_COUNTERS, CT_DUMP_REPLY] {
            for msg in messages(cap) {
                let m = Msg::parse(msg.unwrap()).unwrap();
                let Ok((_, attrs)) = m.nfnl() else { continue };
                for a in attrs.map(Result::unwrap).filter(|a| a.ty == CTA_TUPLE_ORIG || a.ty == CTA_TUPLE_REPLY) {
                    let walked = parse_tuple_nested(&a).unwrap();
                    if let Some(f) = tuple_fixed(a.value) {
                        assert_eq!(f, walked);
                        fixed += 1;
                    }
                    // A byte changed in any header leaves the fixed read or agrees.
                    for at in 0..a.value.len() {
                        let mut v = a.value.to_vec();
                        v[at] ^= 0x01;
                        let bent = Attr { value: &v, ..a };
                        if let Some(f) = tuple_fixed(&v) {
                            assert_eq!(Some(f), parse_tuple_nested(&bent).ok(), "byte {at}");
                        }
                    }
                }
            }
        }
        assert!(fixed >= 4, "the TCP and UDP tuples read fixed: {fixed}");
    }

    #[test]
    fn new_tcp_v4_event() {
        let ev = parse_message(CT_NEW_TCP4).unwrap().unwrap();
        assert_eq!(ev.kind, CtKind::New);
        assert_eq!(
            ev.orig,
            Flow { src: ip("192.0.2.1"), dst: ip("198.51.100.2"), proto: 6, sport: 1234, dport: 443 }
        );
        assert_eq!(
            ev.reply,
            Some(Flow { src: ip("198.51.100.2"), dst: ip("192.0.2.1"), proto: 6, sport: 443, dport: 1234 })
        );
        assert_eq!(ev.id, Some(0xf385a72a));
        assert_eq!((ev.zone, ev.mark, ev.status), (0, 0, 8));
        assert_eq!((ev.bytes_orig, ev.packets_orig, ev.bytes_reply, ev.packets_reply), (None, None, None, None));
        // Same bytes read as a dump entry are New too.
        assert_eq!(parse_dump_message(CT_NEW_TCP4).unwrap().unwrap().kind, CtKind::New);
    }

    #[test]
    fn new_udp_v6_with_zone_and_mark() {
        let ev = parse_message(CT_NEW_UDP6_ZONE).unwrap().unwrap();
        assert_eq!(ev.kind, CtKind::New);
        assert_eq!(
            ev.orig,
            Flow { src: ip("2001:db8::1"), dst: ip("2001:db8::2"), proto: 17, sport: 5353, dport: 53 }
        );
        assert_eq!((ev.zone, ev.mark), (7, 42));
    }

    #[test]
    fn new_icmp_keeps_id_type_code() {
        let ev = parse_message(CT_NEW_ICMP4).unwrap().unwrap();
        assert_eq!(
            ev.orig,
            Flow { src: ip("192.0.2.5"), dst: ip("198.51.100.6"), proto: 1, sport: 77, dport: 8 << 8 }
        );
        // Reply direction of an echo request is an echo reply (type 0).
        assert_eq!(ev.reply.unwrap().dport, 0);
    }

    #[test]
    fn destroy_with_counters() {
        let ev = parse_message(CT_DESTROY_UDP4_COUNTERS).unwrap().unwrap();
        assert_eq!(ev.kind, CtKind::Destroy);
        assert_eq!(
            ev.orig,
            Flow { src: ip("127.0.0.1"), dst: ip("127.0.0.1"), proto: 17, sport: 40000, dport: 9 }
        );
        assert_eq!((ev.packets_orig, ev.bytes_orig), (Some(3), Some(384)));
        assert_eq!((ev.packets_reply, ev.bytes_reply), (Some(0), Some(0)));
        assert_eq!(ev.status, 0x208);
    }

    #[test]
    fn update_is_new_without_create_excl() {
        let mut b = CT_NEW_TCP4.to_vec();
        b[6..8].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(parse_message(&b).unwrap().unwrap().kind, CtKind::Update);
    }

    #[test]
    fn dump_reply_buffer() {
        let msgs: Vec<&[u8]> = messages(CT_DUMP_REPLY).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 2);
        let ev = parse_dump_message(msgs[0]).unwrap().unwrap();
        assert_eq!(ev.kind, CtKind::New);
        assert_eq!(ev.orig.dport, 443);
        assert_eq!((ev.packets_orig, ev.bytes_orig), (Some(0), Some(0)));
        // The trailing NLMSG_DONE is not an entry.
        assert_eq!(Msg::parse(msgs[1]).unwrap().hdr.ty, NLMSG_DONE);
        assert_eq!(parse_dump_message(msgs[1]).unwrap(), None);
    }

    #[test]
    fn dump_request_bytes() {
        let b = dump_request(0x6b070e90);
        // conntrack sends the same, but with family AF_INET (02).
        let mut want = CT_DUMP_REQUEST_CONNTRACK_D.to_vec();
        want[16] = 0;
        assert_eq!(b, want);
    }

    #[test]
    fn delete_request_round_trips() {
        let t = Flow { src: ip("192.0.2.1"), dst: ip("198.51.100.2"), proto: 6, sport: 1234, dport: 443 };
        let b = delete_request(5, &t, 0);
        let m = Msg::parse(&b).unwrap();
        assert_eq!(m.hdr.ty, 0x0102);
        assert_eq!(m.hdr.flags, NLM_F_REQUEST | NLM_F_ACK);
        let (gen, attrs) = m.nfnl().unwrap();
        assert_eq!(gen.family, AF_INET);
        let attrs: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 1, "no CTA_ZONE for zone 0");
        // The tuple we emit is exactly the kernel's own encoding of it
        // (CTA_TUPLE_ORIG of the captured NEW event).
        let captured = Msg::parse(CT_NEW_TCP4).unwrap();
        let kernel_orig = captured.nfnl().unwrap().1.next().unwrap().unwrap();
        assert_eq!(attrs[0].value, kernel_orig.value);
        assert_eq!(parse_tuple(&attrs[0]).unwrap(), t);

        let t6 = Flow { src: ip("2001:db8::1"), dst: ip("2001:db8::2"), proto: 17, sport: 5353, dport: 53 };
        let b = delete_request(6, &t6, 7);
        let m = Msg::parse(&b).unwrap();
        let (gen, attrs) = m.nfnl().unwrap();
        assert_eq!(gen.family, AF_INET6);
        let attrs: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!(parse_tuple(&attrs[0]).unwrap(), t6);
        assert_eq!((attrs[1].ty, attrs[1].u16_be().unwrap()), (CTA_ZONE, 7));

        let icmp = Flow { src: ip("192.0.2.5"), dst: ip("198.51.100.6"), proto: 1, sport: 77, dport: 8 << 8 };
        let b = delete_request(7, &icmp, 0);
        let attrs: Vec<_> = Msg::parse(&b).unwrap().nfnl().unwrap().1.collect::<Result<_, _>>().unwrap();
        assert_eq!(parse_tuple(&attrs[0]).unwrap(), icmp);
        let kernel = Msg::parse(CT_NEW_ICMP4).unwrap();
        assert_eq!(attrs[0].value, kernel.nfnl().unwrap().1.next().unwrap().unwrap().value);
    }

    #[test]
    fn non_conntrack_messages_are_none() {
        let mut done = CT_DUMP_REPLY[CT_DUMP_REPLY.len() - 20..].to_vec();
        assert_eq!(parse_message(&done).unwrap(), None);
        // A GET (the request echoed) is not an entry either.
        done[4..6].copy_from_slice(&0x0101u16.to_ne_bytes());
        assert_eq!(parse_message(&done).unwrap(), None);
        // Another subsystem (nf_tables = 10).
        done[4..6].copy_from_slice(&0x0a00u16.to_ne_bytes());
        assert_eq!(parse_message(&done).unwrap(), None);
    }

    #[test]
    fn missing_and_bad_tuples_are_errors() {
        // A NEW with only an nfgenmsg: no tuple.
        let mut b = CT_NEW_TCP4[..20].to_vec();
        b[0..4].copy_from_slice(&20u32.to_ne_bytes());
        assert_eq!(parse_message(&b), Err(DecodeError::Missing("CTA_TUPLE_ORIG")));
        // The source address attribute given 3 bytes instead of 4.
        let mut b = CT_NEW_TCP4.to_vec();
        assert_eq!(&b[28..30], &8u16.to_ne_bytes());
        set_nla_len(&mut b, 28, 7);
        assert!(parse_message(&b).is_err());
    }

    #[test]
    fn truncations_of_captured_messages_are_errors() {
        for cap in [CT_NEW_TCP4, CT_NEW_UDP6_ZONE, CT_NEW_ICMP4, CT_DESTROY_UDP4_COUNTERS] {
            for n in 0..cap.len() {
                // Cut bytes but keep the header's claim: must be an error.
                assert!(parse_message(&cap[..n]).is_err(), "cut at {n}");
                // Cut bytes and fix up the header: error or a partial
                // event, never a panic.
                if n >= 16 {
                    let mut b = cap[..n].to_vec();
                    b[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
                    let _ = parse_message(&b);
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = XorShift(0x2545f4914f6cdd1d);
        let caps = [CT_NEW_TCP4, CT_NEW_UDP6_ZONE, CT_NEW_ICMP4, CT_DESTROY_UDP4_COUNTERS, CT_DUMP_REPLY];
        for i in 0..20_000 {
            let mut b = caps[i % caps.len()].to_vec();
            for _ in 0..(rng.next() % 8 + 1) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            for m in messages(&b) {
                let Ok(m) = m else { break };
                let _ = parse_message(m);
                let _ = parse_dump_message(m);
            }
            let n = (rng.next() % 256) as usize;
            let junk = rng.bytes(n);
            let _ = parse_message(&junk);
            let _ = messages(&junk).count();
        }
    }

    #[test]
    fn unknown_attributes_are_ignored() {
        // Append an attribute with a type no kernel uses yet.
        let mut b = CT_NEW_TCP4.to_vec();
        b.extend_from_slice(&nla_hdr(8, 0x7f));
        b.extend_from_slice(&[1, 2, 3, 4]);
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_message(&b).unwrap(), parse_message(CT_NEW_TCP4).unwrap());
        let _ = Attrs::new(&b[20..]).count();
    }
}
