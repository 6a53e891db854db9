//! DNS answers, pure: the packets an nft `log group` rule hands over
//! (SPEC §2) turned into "this device was told these names are at these
//! addresses".
//!
//! Input is hostile: any LAN device or remote server can shape it. Every
//! length is checked, every loop is capped (records, CNAME chain, name
//! length, compression pointers), and nothing panics.
//!
//! Names keep every byte. Letters are lower-cased; letters, digits, `-`
//! and `_` pass as they are; any other byte in a label (including a `.`
//! inside one) is written `\DDD` (decimal, as in zone files). Such a name
//! can never equal a configured hostname, but its valid suffix still
//! matches a domain rule: failing the whole answer instead would let a
//! tracker hide its addresses behind one odd record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Answer records looked at; the rest are ignored. Real answers hold a
/// handful; 64 covers the largest round-robin pools.
pub const MAX_ANSWERS: usize = 64;
/// CNAMEs followed from the question name before the chain is cut.
pub const MAX_CHAIN: usize = 16;
/// Longest name on the wire (RFC 1035 §2.3.4), length bytes included.
pub const MAX_NAME_WIRE: usize = 255;
/// Compression pointers followed within one name.
pub const MAX_POINTERS: usize = 128;
/// IPv6 extension headers skipped before giving up.
const MAX_EXT_HEADERS: usize = 8;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The packet or message ends before something it announces.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Not IPv4 or IPv6, or an IP header that contradicts itself.
    #[error("bad IP header: {0}")]
    BadIp(&'static str),
    /// A fragment after the first: it carries no DNS header.
    #[error("non-first IP fragment")]
    Fragment,
    /// Neither UDP nor TCP (or an IPv6 header chain we do not walk).
    #[error("transport protocol {0} is not UDP or TCP")]
    Protocol(u8),
    /// A TCP segment with no data (handshake, ack, fin).
    #[error("TCP segment carries no data")]
    NoPayload,
    /// A TCP segment that does not hold one whole length-prefixed message.
    #[error("TCP segment holds {have} of a {want}-byte DNS message")]
    PartialTcp { want: usize, have: usize },
    #[error("DNS message has {0} questions, expected 1")]
    QuestionCount(u16),
    /// A length byte of 64..=191: a label over 63 bytes, or the obsolete
    /// extended label types (0x40, 0x80). Neither is valid today.
    #[error("label length byte {0:#04x} is neither a label (at most 63) nor a pointer")]
    BadLabel(u8),
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// A compression pointer that does not go strictly backwards.
    #[error("compression pointer to {target} from {at} does not point backwards")]
    PointerForward { at: usize, target: usize },
    #[error("more than 128 compression pointers in one name")]
    TooManyPointers,
    /// An A/AAAA/CNAME record whose data does not have its shape.
    #[error("record of type {ty} with {len} bytes of data")]
    BadRdata { ty: u16, len: usize },
}

/// One DNS answer as it crossed the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The reply's destination: the device that asked.
    pub client: IpAddr,
    /// The reply's source: the resolver that answered.
    pub server: IpAddr,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// The reply's destination port: the port the device asked from.
    pub client_port: u16,
    /// The reply's source port (53 for the answers leash's rules log).
    pub server_port: u16,
    /// The question name: lower-case, no trailing dot.
    pub qname: String,
    pub records: Vec<AddrRecord>,
}

/// One address the answer gave, with every name that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrRecord {
    pub addr: IpAddr,
    /// The question name, each CNAME of the chain and the owner of the
    /// A/AAAA record, in chain order; lower-case, no duplicates. A record
    /// the chain does not reach has only its own owner.
    pub names: Vec<String>,
    /// The smallest TTL along the chain, in seconds.
    pub ttl: u32,
}

/// Parses a packet from its network header on (what NFLOG hands over):
/// IPv4 or IPv6, then UDP, or TCP whose segment holds one whole DNS
/// message after its 2-byte length.
pub fn parse_packet(l3: &[u8]) -> Result<DnsAnswer, DnsError> {
    let ip = parse_ip(l3)?;
    let (msg, partial) = match ip.proto {
        PROTO_UDP => udp_payload(ip.l4, ip.partial)?,
        PROTO_TCP => (tcp_payload(ip.l4)?, false),
        p => return Err(DnsError::Protocol(p)),
    };
    let (qname, records) = parse(msg, partial)?;
    let (server_port, client_port) = (u16_at(ip.l4, 0, "ports")?, u16_at(ip.l4, 2, "ports")?);
    Ok(DnsAnswer { client: ip.dst, server: ip.src, proto: ip.proto, client_port, server_port, qname, records })
}

/// The tuple of a TCP or UDP packet from its network header on (a packet
/// cut for `dns_bypass`, logged by NFLOG): source, destination, protocol
/// and ports. Only the first 4 bytes of the transport header are needed,
/// and a fragment after the first has none.
pub fn packet_flow(l3: &[u8]) -> Result<crate::codec::conntrack::Flow, DnsError> {
    let ip = parse_ip(l3)?;
    if !matches!(ip.proto, PROTO_UDP | PROTO_TCP) {
        return Err(DnsError::Protocol(ip.proto));
    }
    let (sport, dport) = (u16_at(ip.l4, 0, "ports")?, u16_at(ip.l4, 2, "ports")?);
    Ok(crate::codec::conntrack::Flow { src: ip.src, dst: ip.dst, proto: ip.proto, sport, dport })
}

/// Parses a DNS message alone: the question name and the addresses of
/// the answer section. Queries and answers with RCODE other than 0 give
/// no records.
pub fn parse_message(msg: &[u8]) -> Result<(String, Vec<AddrRecord>), DnsError> {
    parse(msg, false)
}

struct IpPacket<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: &'a [u8],
    /// The first fragment of several: the payload ends early.
    partial: bool,
}

pub(super) fn bytes<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], DnsError> {
    b.get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(DnsError::Truncated(what))
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, DnsError> {
    Ok(u16::from_be_bytes(bytes(b, at, what)?))
}

fn parse_ip(p: &[u8]) -> Result<IpPacket<'_>, DnsError> {
    let first = *p.first().ok_or(DnsError::Truncated("IP header"))?;
    match first >> 4 {
        4 => parse_ipv4(p),
        6 => parse_ipv6(p),
        _ => Err(DnsError::BadIp("version is not 4 or 6")),
    }
}

fn parse_ipv4(p: &[u8]) -> Result<IpPacket<'_>, DnsError> {
    let hdr: [u8; 20] = bytes(p, 0, "IPv4 header")?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if ihl < 20 || total < ihl {
        return Err(DnsError::BadIp("IPv4 lengths"));
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    if frag & 0x1fff != 0 {
        return Err(DnsError::Fragment);
    }
    // Trim to the IP length: anything after it is link-layer padding.
    let pkt = p.get(..total).ok_or(DnsError::Truncated("IPv4 packet"))?;
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15])),
        dst: IpAddr::V4(Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19])),
        proto: hdr[9],
        l4: pkt.get(ihl..).ok_or(DnsError::Truncated("IPv4 options"))?,
        partial: frag & 0x2000 != 0,
    })
}

fn parse_ipv6(p: &[u8]) -> Result<IpPacket<'_>, DnsError> {
    let hdr: [u8; 40] = bytes(p, 0, "IPv6 header")?;
    let plen = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if plen == 0 {
        // A jumbogram (or nothing): DNS never needs one.
        return Err(DnsError::BadIp("IPv6 payload length 0"));
    }
    let pkt = p.get(..40 + plen).ok_or(DnsError::Truncated("IPv6 packet"))?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&hdr[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let (mut next, mut off, mut partial) = (hdr[6], 40usize, false);
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            // Hop-by-hop, routing, destination options: 8-byte units after the first 8.
            0 | 43 | 60 => {
                let [nh, len] = bytes(pkt, off, "IPv6 extension header")?;
                next = nh;
                off += (usize::from(len) + 1) * 8;
            }
            // Fragment header: 8 bytes; only the first fragment has the UDP header.
            44 => {
                let f: [u8; 8] = bytes(pkt, off, "IPv6 fragment header")?;
                let fo = u16::from_be_bytes([f[2], f[3]]);
                if fo & 0xfff8 != 0 {
                    return Err(DnsError::Fragment);
                }
                partial = fo & 1 != 0;
                next = f[0];
                off += 8;
            }
            // Authentication header: 4-byte units after the first 8.
            51 => {
                let [nh, len] = bytes(pkt, off, "IPv6 AH header")?;
                next = nh;
                off += (usize::from(len) + 2) * 4;
            }
            _ => {
                return Ok(IpPacket {
                    src: addr(8),
                    dst: addr(24),
                    proto: next,
                    l4: pkt.get(off..).ok_or(DnsError::Truncated("IPv6 extension header"))?,
                    partial,
                })
            }
        }
    }
    Err(DnsError::BadIp("too many IPv6 extension headers"))
}

/// The DNS message in a UDP datagram, and whether it may end early (the
/// first fragment of a fragmented datagram).
fn udp_payload(l4: &[u8], partial: bool) -> Result<(&[u8], bool), DnsError> {
    let len = usize::from(u16_at(l4, 4, "UDP header")?);
    if len < 8 {
        return Err(DnsError::Truncated("UDP length below its header"));
    }
    match l4.get(8..len) {
        Some(msg) => Ok((msg, false)),
        None if partial => Ok((l4.get(8..).unwrap_or(&[]), true)),
        None => Err(DnsError::Truncated("UDP datagram")),
    }
}

/// The DNS message in a TCP segment. Only a segment holding a whole
/// message counts: DNS servers write the length and the message at once,
/// so that is what small answers look like; leash does not reassemble
/// streams (a message split over segments is lost, the conntrack path
/// still judges the flow). A second message in the same segment is not
/// read.
fn tcp_payload(l4: &[u8]) -> Result<&[u8], DnsError> {
    let [off, _] = bytes(l4, 12, "TCP header")?;
    let hl = usize::from(off >> 4) * 4;
    if hl < 20 {
        return Err(DnsError::Truncated("TCP data offset below its header"));
    }
    let data = l4.get(hl..).ok_or(DnsError::Truncated("TCP header"))?;
    if data.is_empty() {
        return Err(DnsError::NoPayload);
    }
    let want = usize::from(u16_at(data, 0, "DNS-over-TCP length")?);
    data.get(2..2 + want).ok_or(DnsError::PartialTcp { want, have: data.len() - 2 })
}

/// A record of the answer section, as far as leash cares.
enum Rr {
    Addr(IpAddr),
    Cname(String),
}

fn parse(msg: &[u8], partial: bool) -> Result<(String, Vec<AddrRecord>), DnsError> {
    let hdr: [u8; 12] = bytes(msg, 0, "DNS header")?;
    let flags = u16::from_be_bytes([hdr[2], hdr[3]]);
    let qdcount = u16::from_be_bytes([hdr[4], hdr[5]]);
    let ancount = u16::from_be_bytes([hdr[6], hdr[7]]);
    if qdcount != 1 {
        return Err(DnsError::QuestionCount(qdcount));
    }
    let (qname, mut off) = read_name(msg, 12)?;
    off += 4; // QTYPE, QCLASS
    if off > msg.len() {
        return Err(DnsError::Truncated("question"));
    }
    let is_response = flags & 0x8000 != 0;
    let rcode = flags & 0x000f;
    if !is_response || rcode != 0 {
        return Ok((qname, Vec::new()));
    }
    if usize::from(ancount) > MAX_ANSWERS {
        tracing::debug!(qname = %qname, ancount, max = MAX_ANSWERS, "DNS answer records beyond the cap ignored");
    }
    let mut rrs: Vec<(String, u32, Rr)> = Vec::new();
    for _ in 0..usize::from(ancount).min(MAX_ANSWERS) {
        match read_rr(msg, off) {
            Ok((rr, next)) => {
                off = next;
                if let Some(rr) = rr {
                    rrs.push(rr);
                }
            }
            // A first fragment ends mid-answer: keep the whole records.
            Err(DnsError::Truncated(_)) if partial => break,
            Err(e) => return Err(e),
        }
    }
    let records = resolve(&qname, rrs);
    Ok((qname, records))
}

/// One resource record at `off`: `Some` for A, AAAA and CNAME of class
/// IN, `None` for anything else; and the offset after it.
fn read_rr(msg: &[u8], off: usize) -> Result<(Option<(String, u32, Rr)>, usize), DnsError> {
    let (owner, off) = read_name(msg, off)?;
    let fixed: [u8; 10] = bytes(msg, off, "resource record")?;
    let ty = u16::from_be_bytes([fixed[0], fixed[1]]);
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    // RFC 2181 §8: a TTL with the top bit set means zero.
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let start = off + 10;
    let end = start + rdlen;
    let rdata = msg.get(start..end).ok_or(DnsError::Truncated("record data"))?;
    if class != CLASS_IN {
        return Ok((None, end));
    }
    let bad = || DnsError::BadRdata { ty, len: rdlen };
    let rr = match ty {
        TYPE_A => Rr::Addr(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).map_err(|_| bad())?))),
        TYPE_AAAA => Rr::Addr(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).map_err(|_| bad())?))),
        TYPE_CNAME => {
            // The target may point back into the message, but its own
            // bytes must stay inside the record data.
            let upto = msg.get(..end).ok_or(DnsError::Truncated("record data"))?;
            let (target, after) = read_name(upto, start)?;
            if after != end {
                return Err(bad());
            }
            Rr::Cname(target)
        }
        _ => return Ok((None, end)),
    };
    Ok((Some((owner, ttl, rr)), end))
}

/// Reads a possibly compressed name at `off`; returns it and the offset
/// after its bytes in place.
///
/// Each pointer must go strictly below the start of the label run it
/// ends (the name's start, or the previous pointer's target), so every
/// jump goes further back and no loop is possible; the pointer count and
/// length caps bound the work on top of that.
pub(super) fn read_name(msg: &[u8], off: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let (mut pos, mut run_start) = (off, off);
    let mut end = None;
    let (mut wire, mut jumps) = (1usize, 0usize);
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated("name"))?;
        match len & 0xc0 {
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Truncated("compression pointer"))?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(lo);
                if target >= run_start {
                    return Err(DnsError::PointerForward { at: pos, target });
                }
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return Err(DnsError::TooManyPointers);
                }
                end.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            0x00 if len == 0 => return Ok((name, end.unwrap_or(pos + 1))),
            0x00 => {
                let n = usize::from(len);
                wire += n + 1;
                if wire > MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong);
                }
                let label = msg.get(pos + 1..pos + 1 + n).ok_or(DnsError::Truncated("label"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + n;
            }
            _ => return Err(DnsError::BadLabel(len)),
        }
    }
}

/// Appends a label: lower-case letters, digits, `-` and `_` as they are,
/// any other byte as `\DDD`.
fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            out.push('\\');
            out.push(char::from(b'0' + b / 100));
            out.push(char::from(b'0' + b / 10 % 10));
            out.push(char::from(b'0' + b % 10));
        }
    }
}

/// Turns the answer's records into addresses with the names leading to
/// them: the chain from the question name through its CNAMEs (whatever
/// order the records came in), then every A/AAAA record.
fn resolve(qname: &str, rrs: Vec<(String, u32, Rr)>) -> Vec<AddrRecord> {
    // chain[i] = (name, smallest TTL of the CNAMEs leading to it).
    let mut chain: Vec<(&str, u32)> = vec![(qname, u32::MAX)];
    while chain.len() <= MAX_CHAIN {
        let Some(&(cur, ttl)) = chain.last() else { break };
        let next = rrs.iter().find_map(|(owner, t, rr)| match rr {
            Rr::Cname(target) if owner == cur => Some((target.as_str(), ttl.min(*t))),
            _ => None,
        });
        let Some(next) = next else { break };
        if chain.iter().any(|(n, _)| *n == next.0) {
            tracing::debug!(qname, cname = next.0, "CNAME loop in DNS answer cut");
            break;
        }
        chain.push(next);
    }
    if chain.len() > MAX_CHAIN {
        tracing::debug!(qname, max = MAX_CHAIN, "CNAME chain in DNS answer cut");
    }

    let mut out: Vec<AddrRecord> = Vec::new();
    for (owner, ttl, rr) in &rrs {
        let Rr::Addr(addr) = rr else { continue };
        let (names, ttl) = match chain.iter().position(|(n, _)| n == owner) {
            Some(i) => (
                chain[..=i].iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
                chain[i].1.min(*ttl),
            ),
            None => (vec![owner.clone()], *ttl),
        };
        // One entry per address, even when several records give it.
        match out.iter_mut().find(|r| r.addr == *addr) {
            Some(r) => {
                for n in names {
                    if !r.names.contains(&n) {
                        r.names.push(n);
                    }
                }
                r.ttl = r.ttl.min(ttl);
            }
            None => out.push(AddrRecord { addr: *addr, names, ttl }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dns_captured::*;
    use crate::codec::nla::tests::XorShift;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rec(addr: &str, names: &[&str], ttl: u32) -> AddrRecord {
        AddrRecord { addr: ip(addr), names: names.iter().map(|s| s.to_string()).collect(), ttl }
    }

    /// A name in wire form, uncompressed.
    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A response header (QR=1, RD, RA, `rcode`) with one question `qname` A IN.
    fn response(rcode: u16, qname: &str, ancount: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&(0x8180 | rcode).to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&ancount.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&wire(qname));
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    fn rr(m: &mut Vec<u8>, owner: &[u8], ty: u16, ttl: u32, rdata: &[u8]) {
        m.extend_from_slice(owner);
        m.extend_from_slice(&ty.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }

    /// Wraps a DNS message in IPv4 + UDP from 192.0.2.53:53 to 192.0.2.10.
    fn udp4(msg: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + msg.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 53, 192, 0, 2, 10];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&((8 + msg.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(msg);
        p
    }

    #[test]
    fn packet_flow_reads_the_tuple() {
        let f = packet_flow(DNS_A_UDP4).unwrap();
        assert_eq!((f.src, f.dst, f.proto, f.sport), (ip("10.53.0.1"), ip("10.53.0.2"), 17, 53));
        let t = packet_flow(DNS_A_TCP4).unwrap();
        assert_eq!((t.proto, t.sport), (6, 53));
        let v6 = packet_flow(DNS_AAAA_UDP6).unwrap();
        assert!(v6.src.is_ipv6() && v6.sport == 53);
        let mut icmp = DNS_A_UDP4.to_vec();
        icmp[9] = 1;
        assert_eq!(packet_flow(&icmp), Err(DnsError::Protocol(1)));
        assert!(packet_flow(&DNS_A_UDP4[..21]).is_err(), "no ports");
        assert!(packet_flow(&[]).is_err());
    }

    #[test]
    fn a_over_udp4() {
        let a = parse_packet(DNS_A_UDP4).unwrap();
        assert_eq!((a.client, a.server), (ip("10.53.0.2"), ip("10.53.0.1")));
        assert_eq!(a.qname, "tracking.example.com");
        assert_eq!(a.records, [rec("203.0.113.7", &["tracking.example.com"], 600)]);
    }

    #[test]
    fn aaaa_over_udp4() {
        let a = parse_packet(DNS_AAAA_UDP4).unwrap();
        assert_eq!(a.qname, "v6.example.com");
        assert_eq!(a.records, [rec("2001:db8:bad::7", &["v6.example.com"], 600)]);
    }

    #[test]
    fn cname_chain_lowercased_with_smallest_ttl() {
        let a = parse_packet(DNS_CNAME_UDP4).unwrap();
        // Asked as Alias.Example.NET; the first CNAME has TTL 120.
        assert_eq!(a.qname, "alias.example.net");
        assert_eq!(
            a.records,
            [rec("203.0.113.9", &["alias.example.net", "mid.example.net", "cdn.example.org"], 120)]
        );
    }

    #[test]
    fn nxdomain_has_no_records() {
        let a = parse_packet(DNS_NXDOMAIN_UDP4).unwrap();
        assert_eq!((a.qname.as_str(), a.records.len()), ("nope.example.com", 0));
    }

    #[test]
    fn a_over_tcp4() {
        let a = parse_packet(DNS_A_TCP4).unwrap();
        assert_eq!(a.qname, "multi.example.com");
        assert_eq!(
            a.records,
            [rec("198.51.100.1", &["multi.example.com"], 600), rec("198.51.100.2", &["multi.example.com"], 600)]
        );
    }

    #[test]
    fn aaaa_over_udp6() {
        let a = parse_packet(DNS_AAAA_UDP6).unwrap();
        assert_eq!((a.client, a.server), (ip("fd53::2"), ip("fd53::1")));
        assert_eq!(a.records, [rec("2001:db8:bad::7", &["v6.example.com"], 600)]);
    }

    #[test]
    fn nflog_payloads_parse_like_tcpdump_captures() {
        use crate::codec::captured::*;
        use crate::codec::nflog;
        for (nl, pkt) in [
            (NFLOG_OUTPUT_A_UDP4, DNS_A_UDP4),
            (NFLOG_OUTPUT_A_TCP4, DNS_A_TCP4),
            (NFLOG_INPUT_AAAA_UDP6, DNS_AAAA_UDP6),
        ] {
            let p = nflog::parse_message(nl).unwrap().unwrap();
            assert_eq!(parse_packet(p.payload).unwrap(), parse_packet(pkt).unwrap());
        }
    }

    #[test]
    fn queries_and_errors_have_no_records() {
        // The A answer with QR cleared reads as a query.
        let mut b = DNS_A_UDP4.to_vec();
        b[30] &= 0x7f;
        let a = parse_packet(&b).unwrap();
        assert_eq!((a.qname.as_str(), a.records.len()), ("tracking.example.com", 0));
        // SERVFAIL with an (odd) answer record: still nothing.
        let mut m = response(2, "x.example", 1);
        rr(&mut m, &[0xc0, 12], TYPE_A, 60, &[1, 2, 3, 4]);
        assert_eq!(parse_message(&m).unwrap().1, []);
    }

    #[test]
    fn tcp_segments_without_a_whole_message() {
        let mut b = DNS_A_TCP4.to_vec();
        // Cut to the TCP header (a bare ack): no payload.
        b.truncate(52);
        b[2..4].copy_from_slice(&52u16.to_be_bytes());
        assert_eq!(parse_packet(&b), Err(DnsError::NoPayload));
        // Length prefix and half the message.
        let mut b = DNS_A_TCP4.to_vec();
        b.truncate(90);
        b[2..4].copy_from_slice(&90u16.to_be_bytes());
        assert_eq!(parse_packet(&b), Err(DnsError::PartialTcp { want: 67, have: 36 }));
    }

    #[test]
    fn records_in_any_order_and_unreachable_owners() {
        let mut m = response(0, "www.shop.example", 4);
        // The A record first, then the CNAME chain backwards.
        rr(&mut m, &wire("edge.cdn.example"), TYPE_A, 300, &[198, 51, 100, 7]);
        rr(&mut m, &wire("shop.cdn.example"), TYPE_CNAME, 60, &wire("edge.cdn.example"));
        rr(&mut m, &wire("WWW.shop.example"), TYPE_CNAME, 3600, &wire("shop.cdn.example"));
        // An address whose owner the chain never reaches.
        rr(&mut m, &wire("other.example"), TYPE_AAAA, 30, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        let (q, recs) = parse_message(&m).unwrap();
        assert_eq!(q, "www.shop.example");
        assert_eq!(
            recs,
            [
                rec("198.51.100.7", &["www.shop.example", "shop.cdn.example", "edge.cdn.example"], 60),
                rec("2001:db8::9", &["other.example"], 30),
            ]
        );
    }

    #[test]
    fn same_address_twice_is_one_record() {
        let mut m = response(0, "a.example", 2);
        rr(&mut m, &[0xc0, 12], TYPE_A, 100, &[192, 0, 2, 1]);
        rr(&mut m, &wire("b.example"), TYPE_A, 50, &[192, 0, 2, 1]);
        assert_eq!(parse_message(&m).unwrap().1, [rec("192.0.2.1", &["a.example", "b.example"], 50)]);
    }

    #[test]
    fn cname_loop_and_long_chain_are_cut() {
        // a -> b -> a: the loop stops at the repeat; the A record of b still counts.
        let mut m = response(0, "a.example", 3);
        rr(&mut m, &wire("a.example"), TYPE_CNAME, 10, &wire("b.example"));
        rr(&mut m, &wire("b.example"), TYPE_CNAME, 10, &wire("a.example"));
        rr(&mut m, &wire("b.example"), TYPE_A, 10, &[192, 0, 2, 2]);
        assert_eq!(parse_message(&m).unwrap().1, [rec("192.0.2.2", &["a.example", "b.example"], 10)]);

        // q -> c1 -> ... -> c20, address on c20: only 16 CNAMEs are
        // followed, so the address keeps just its owner.
        let mut m = response(0, "q.example", 21);
        let mut prev = "q.example".to_string();
        for i in 1..=20 {
            let next = format!("c{i}.example");
            rr(&mut m, &wire(&prev), TYPE_CNAME, 10, &wire(&next));
            prev = next;
        }
        rr(&mut m, &wire(&prev), TYPE_A, 10, &[192, 0, 2, 3]);
        assert_eq!(parse_message(&m).unwrap().1, [rec("192.0.2.3", &["c20.example"], 10)]);
        // With the address on c16 the whole chain leads to it.
        let mut m = response(0, "q.example", 17);
        let mut prev = "q.example".to_string();
        for i in 1..=16 {
            let next = format!("c{i}.example");
            rr(&mut m, &wire(&prev), TYPE_CNAME, 10, &wire(&next));
            prev = next;
        }
        rr(&mut m, &wire(&prev), TYPE_A, 10, &[192, 0, 2, 4]);
        assert_eq!(parse_message(&m).unwrap().1[0].names.len(), 17);
    }

    #[test]
    fn answer_count_caps() {
        // 70 addresses: the first 64 are taken.
        let mut m = response(0, "pool.example", 70);
        for i in 0..70u8 {
            rr(&mut m, &[0xc0, 12], TYPE_A, 60, &[10, 0, 0, i]);
        }
        let recs = parse_message(&m).unwrap().1;
        assert_eq!(recs.len(), MAX_ANSWERS);
        assert_eq!(recs[63].addr, ip("10.0.0.63"));
        // A count far above what the message holds.
        let mut m = response(0, "pool.example", 0xffff);
        rr(&mut m, &[0xc0, 12], TYPE_A, 60, &[10, 0, 0, 1]);
        assert!(matches!(parse_message(&m), Err(DnsError::Truncated(_))));
        // No question, or two.
        let mut m = response(0, "x.example", 0);
        m[5] = 0;
        assert_eq!(parse_message(&m), Err(DnsError::QuestionCount(0)));
        m[5] = 2;
        assert_eq!(parse_message(&m), Err(DnsError::QuestionCount(2)));
    }

    #[test]
    fn compression_loops_and_forward_pointers_are_rejected() {
        // The question name is a pointer to itself.
        let mut m = response(0, "", 0);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m), Err(DnsError::PointerForward { at: 12, target: 12 }));
        // A label then a pointer back to that label: a loop that only ever
        // points "backwards" from the pointer's own offset.
        let mut m = response(0, "", 0);
        m.truncate(12);
        m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m), Err(DnsError::PointerForward { at: 14, target: 12 }));
        // A pointer forward.
        let mut m = response(0, "", 0);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(parse_message(&m), Err(DnsError::PointerForward { at: 12, target: 20 }));
        // Two answers pointing at each other's owner names.
        let mut m = response(0, "a.example", 1);
        let at = m.len();
        m.extend_from_slice(&[0xc0, (at + 2) as u8, 0xc0, at as u8]);
        assert!(matches!(parse_message(&m), Err(DnsError::PointerForward { .. })));
    }

    #[test]
    fn pointer_and_length_caps() {
        // 129 pointers, each strictly below the last: legal steps, too many.
        let mut m = response(0, "", 1);
        m.truncate(12);
        m.extend_from_slice(&[0, 0, 1, 0, 1]); // root question
        let base = m.len();
        m.extend_from_slice(&[0]); // root name at `base`
        for i in 0..129 {
            let target = if i == 0 { base } else { base + 1 + 2 * (i - 1) };
            m.extend_from_slice(&[0xc0 | (target >> 8) as u8, target as u8]);
        }
        let last = m.len() - 2;
        m.extend_from_slice(&[0xc0 | (last >> 8) as u8, last as u8, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        // The last name follows 130 pointers.
        assert!(matches!(read_name(&m, last + 2), Err(DnsError::TooManyPointers)));
        assert!(read_name(&m, base + 1 + 2 * 126).is_ok());
        // A name of 5 x 63-byte labels is over 255 bytes.
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(parse_message(&response(0, &long, 0)), Err(DnsError::NameTooLong));
        let ok = vec!["a".repeat(63); 3].join(".") + "." + &"b".repeat(61);
        assert_eq!(parse_message(&response(0, &ok, 0)).unwrap().0.len(), 253);
        // Length bytes 64..=191 are neither labels nor pointers.
        for bad in [0x40u8, 0x7f, 0x80, 0xbf] {
            let mut m = response(0, "", 0);
            m.truncate(12);
            m.extend_from_slice(&[bad, 0, 0, 1, 0, 1]);
            assert_eq!(parse_message(&m), Err(DnsError::BadLabel(bad)));
        }
    }

    #[test]
    fn odd_bytes_are_escaped_not_fatal() {
        let mut m = response(0, "x.example", 1);
        m.truncate(12);
        m.extend_from_slice(&[3, b'A', b' ', 0xff, 4, b'a', b'.', b'_', b'-', 7]);
        m.extend_from_slice(b"example\0");
        m.extend_from_slice(&[0, 1, 0, 1]);
        rr(&mut m, &[0xc0, 12], TYPE_A, 5, &[192, 0, 2, 9]);
        let (q, recs) = parse_message(&m).unwrap();
        assert_eq!(q, "a\\032\\255.a\\046_-.example");
        assert_eq!(recs[0].names, [q.clone()]);
        // Such a name is never taken for a hostname.
        assert_eq!(crate::policy::selector::normalize_name(&q), None);
    }

    #[test]
    fn bad_rdata_and_other_types() {
        let mut m = response(0, "a.example", 1);
        rr(&mut m, &[0xc0, 12], TYPE_A, 5, &[1, 2, 3, 4, 5]);
        assert_eq!(parse_message(&m), Err(DnsError::BadRdata { ty: TYPE_A, len: 5 }));
        // A CNAME whose target runs past its record data.
        let mut m = response(0, "a.example", 1);
        let target = wire("b.example");
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 5, 0, 3]);
        m.extend_from_slice(&target);
        assert!(parse_message(&m).is_err());
        // TXT and a CHAOS-class A are skipped; TTLs above 2^31-1 read as 0.
        let mut m = response(0, "a.example", 3);
        rr(&mut m, &[0xc0, 12], 16, 5, b"\x03abc");
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 3, 0, 0, 0, 5, 0, 4, 1, 1, 1, 1]);
        rr(&mut m, &[0xc0, 12], TYPE_A, 0x8000_0000, &[2, 2, 2, 2]);
        assert_eq!(parse_message(&m).unwrap().1, [rec("2.2.2.2", &["a.example"], 0)]);
    }

    #[test]
    fn ip_layer_variants() {
        let mut m = response(0, "a.example", 1);
        rr(&mut m, &[0xc0, 12], TYPE_A, 5, &[192, 0, 2, 1]);
        let p = udp4(&m);
        assert_eq!(parse_packet(&p).unwrap().records.len(), 1);
        // Ethernet padding after the IP packet is ignored.
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_packet(&padded).unwrap().records.len(), 1);
        // A non-first fragment.
        let mut f = p.clone();
        f[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
        assert_eq!(parse_packet(&f), Err(DnsError::Fragment));
        // The first fragment of a longer datagram: the whole records in it count.
        let mut m2 = response(0, "a.example", 3);
        for i in 1..=3 {
            rr(&mut m2, &[0xc0, 12], TYPE_A, 5, &[192, 0, 2, i]);
        }
        let mut f = udp4(&m2);
        let cut = f.len() - 10; // ends inside the third record
        f.truncate(cut);
        f[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
        f[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert_eq!(parse_packet(&f).unwrap().records.len(), 2);
        // Without the more-fragments flag the same bytes are truncated.
        f[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        assert!(matches!(parse_packet(&f), Err(DnsError::Truncated(_))));
        // ICMP and a bad version.
        let mut x = p.clone();
        x[9] = 1;
        assert_eq!(parse_packet(&x), Err(DnsError::Protocol(1)));
        x[0] = 0x55;
        assert!(matches!(parse_packet(&x), Err(DnsError::BadIp(_))));
    }

    /// The captured IPv6 reply with extension headers put in front of UDP.
    fn v6_with_ext(ext: &[u8], first_next: u8) -> Vec<u8> {
        let mut p = DNS_AAAA_UDP6[..40].to_vec();
        let plen = u16::from_be_bytes([p[4], p[5]]) as usize + ext.len();
        p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        p[6] = first_next;
        p.extend_from_slice(ext);
        p.extend_from_slice(&DNS_AAAA_UDP6[40..]);
        p
    }

    #[test]
    fn ipv6_extension_headers() {
        // Hop-by-hop (8 bytes of padding options), then UDP.
        let hbh = [17, 0, 1, 4, 0, 0, 0, 0];
        let a = parse_packet(&v6_with_ext(&hbh, 0)).unwrap();
        assert_eq!(a.records, [rec("2001:db8:bad::7", &["v6.example.com"], 600)]);
        // Destination options then a first fragment (offset 0, M=0: atomic).
        let ext = [44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(parse_packet(&v6_with_ext(&ext, 60)).unwrap().qname, "v6.example.com");
        // A later fragment.
        let frag = [17, 0, 0, 8, 0, 0, 0, 1];
        assert_eq!(parse_packet(&v6_with_ext(&frag, 44)), Err(DnsError::Fragment));
        // ESP: not walked.
        assert_eq!(parse_packet(&v6_with_ext(&[0; 8], 50)), Err(DnsError::Protocol(50)));
        // Nine hop-by-hop headers in a row: too many.
        let mut many = Vec::new();
        for _ in 0..9 {
            many.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert!(matches!(parse_packet(&v6_with_ext(&many, 0)), Err(DnsError::BadIp(_))));
        // An extension header claiming more than the packet holds.
        assert!(matches!(parse_packet(&v6_with_ext(&[17, 200, 0, 0, 0, 0, 0, 0], 0)), Err(DnsError::Truncated(_))));
    }

    const CAPTURES: [&[u8]; 6] =
        [DNS_A_UDP4, DNS_AAAA_UDP4, DNS_CNAME_UDP4, DNS_NXDOMAIN_UDP4, DNS_A_TCP4, DNS_AAAA_UDP6];

    /// Offset of the DNS message in a captured packet.
    fn dns_offset(p: &[u8]) -> usize {
        match (p[0] >> 4, if p[0] >> 4 == 4 { p[9] } else { p[6] }) {
            (4, 17) => 28,
            (4, _) => 20 + usize::from(p[32] >> 4) * 4 + 2,
            _ => 48,
        }
    }

    #[test]
    fn truncated_at_every_byte() {
        for cap in CAPTURES {
            for n in 0..cap.len() {
                // The IP header still claims the full length: always an error.
                assert!(parse_packet(&cap[..n]).is_err(), "cut at {n}");
                // The DNS message alone, cut: an error or fewer records, never a panic.
                let msg = &cap[dns_offset(cap)..];
                if n < msg.len() {
                    let _ = parse_message(&msg[..n]);
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = XorShift(0xda3e39cb94b95bdb);
        for i in 0..50_000 {
            let cap = CAPTURES[i % CAPTURES.len()];
            let mut b = cap.to_vec();
            for _ in 0..(rng.next() % 6 + 1) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            let _ = parse_packet(&b);
            let _ = parse_message(&b[dns_offset(cap).min(b.len())..]);
            let n = (rng.next() % 128) as usize;
            let _ = parse_message(&rng.bytes(n));
        }
    }
}
