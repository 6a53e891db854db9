//! The NXDOMAIN answer that replaces a held DNS answer (SPEC §2 "Holding
//! the answer", §3 `dns_filter = "nxdomain"`), pure: the packet NFQUEUE
//! holds, from its network header on, in; the packet sent back in its
//! place, for the device that asked, out.
//!
//! The input is as hostile as in `dns`: every length is checked, and a
//! packet is either refused whole or built whole. Only what the device
//! needs to match the reply to its query is carried over: IP addresses,
//! ports, TTL or hop limit, IPv4 options, the DNS id, opcode, RD, RA and CD
//! bits and the question as it was on the wire (its letter case too: a
//! client using 0x20 case randomisation compares it byte for byte).
//!
//! EDNS: the OPT record of the additional section is kept, with its
//! extended RCODE cleared so the whole RCODE reads 3. The client sent EDNS
//! to get it; an answer without OPT tells a stub that its resolver does not
//! speak EDNS, and some (systemd-resolved) then downgrade every later query
//! to that resolver. Keeping it costs walking the records to find it;
//! none of their bytes is copied, so a compression pointer into a dropped
//! record cannot survive. The output is never longer than the input.
//!
//! The original checksums are not trusted or checked: a packet the router
//! sends itself may reach the queue with a partial (offloaded) UDP
//! checksum. Both checksums of the output are computed whole.

use super::dns::{self, DnsError, MAX_NAME_WIRE};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TYPE_OPT: u16 = 41;
const RCODE_NXDOMAIN: u16 = 3;

/// Header flag bits carried over from the answer: opcode, RD, RA, CD.
const FLAGS_KEPT: u16 = 0x7800 | 0x0100 | 0x0080 | 0x0010;
const FLAG_QR: u16 = 0x8000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The packet or message ends before something it announces.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Not IPv4 or IPv6, or an IP header that contradicts itself.
    #[error("bad IP header: {0}")]
    BadIp(&'static str),
    /// Any IPv4 fragment, or an IPv6 fragment header: one fragment alone
    /// cannot be rewritten.
    #[error("IP fragment")]
    Fragment,
    /// SPEC §2: a TCP answer is passed and its addresses blocked instead.
    #[error("TCP answer: passed and its addresses blocked, not rewritten")]
    Tcp,
    #[error("transport protocol {0} is not UDP")]
    Protocol(u8),
    /// IPv6 extension headers are not walked: a routing header would change
    /// the checksum's pseudo-header and an AH would no longer authenticate.
    /// DNS answers do not carry them.
    #[error("IPv6 extension header {0} before UDP")]
    Ipv6Extension(u8),
    #[error("DNS message is a query, not an answer")]
    Query,
    #[error("DNS message has {0} questions, expected 1")]
    QuestionCount(u16),
    /// The question comes first: there is nothing before it to point at.
    #[error("question name holds a compression pointer")]
    CompressedQuestion,
    /// A length byte of 64..=191 in the question name.
    #[error("label length byte {0:#04x} in the question name")]
    BadLabel(u8),
    #[error("question name longer than 255 bytes")]
    NameTooLong,
    /// A record after the question that does not parse: the answer is not
    /// a DNS message leash can vouch for.
    #[error("bad DNS record: {0}")]
    Record(DnsError),
}

impl From<DnsError> for RewriteError {
    fn from(e: DnsError) -> Self {
        match e {
            DnsError::Truncated(what) => RewriteError::Truncated(what),
            e => RewriteError::Record(e),
        }
    }
}

/// The packet `l3` (an IPv4 or IPv6 UDP DNS answer, from its network
/// header on) turned into an NXDOMAIN answer to the same question: same
/// addresses, ports, TTL/hop limit, IPv4 options, DNS id, opcode and RD,
/// RA, CD bits; AA, TC and AD clear; RCODE 3; the question copied byte for
/// byte; no answer or authority records; the OPT record kept (see the
/// module). Lengths and both checksums are computed for the new packet;
/// bytes after the IP length (link padding) are dropped.
pub fn nxdomain_packet(l3: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let ip = ip_parts(l3)?;
    let (udp_hdr, msg) = udp_parts(ip.l4)?;
    let dns = nxdomain_message(msg)?;

    let hl = ip.header.len();
    let udp_len = 8 + dns.len();
    let mut out = Vec::with_capacity(hl + udp_len);
    out.extend_from_slice(ip.header);
    out.extend_from_slice(&udp_hdr[..4]); // ports
    out.extend_from_slice(&(udp_len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // checksum, below
    out.extend_from_slice(&dns);
    // The output is shorter than the input, whose lengths fit their fields.
    let udp_len = udp_len as u16;
    let mut pseudo = Vec::with_capacity(40);
    if ip.v4 {
        out[2..4].copy_from_slice(&((hl + usize::from(udp_len)) as u16).to_be_bytes());
        out[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&out[..hl]]);
        out[10..12].copy_from_slice(&sum.to_be_bytes());
        pseudo.extend_from_slice(&out[12..20]);
        pseudo.extend_from_slice(&[0, PROTO_UDP]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
    } else {
        out[4..6].copy_from_slice(&udp_len.to_be_bytes());
        pseudo.extend_from_slice(&out[8..40]);
        pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, PROTO_UDP]);
    }
    // RFC 768: a computed 0 is sent as all ones (0 means "none", and is
    // not allowed at all over IPv6).
    let sum = match checksum(&[&pseudo, &out[hl..]]) {
        0 => 0xffff,
        s => s,
    };
    out[hl + 6..hl + 8].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// Whether the IPv4 header checksum and the UDP checksum of `l3` (IPv4 or
/// IPv6, UDP right after the fixed header) are right; false for anything
/// else. An IPv4 UDP checksum of 0 (none) passes. Written apart from the
/// builder, word by word, so that a test can catch a wrong builder.
pub fn checksums_ok(l3: &[u8]) -> bool {
    fn word(b: &[u8], i: usize) -> u64 {
        u64::from(u16::from_be_bytes([b[i], b.get(i + 1).copied().unwrap_or(0)]))
    }
    fn sum_words(b: &[u8]) -> u64 {
        (0..b.len()).step_by(2).map(|i| word(b, i)).sum()
    }
    fn all_ones(mut s: u64) -> bool {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s == 0xffff
    }
    let Some(&first) = l3.first() else { return false };
    let (udp, pseudo_sum) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 || l3.len() < ihl {
                return false;
            }
            let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
            let frag = u16::from_be_bytes([l3[6], l3[7]]);
            if total < ihl + 8 || total > l3.len() || l3[9] != PROTO_UDP || frag & 0x3fff != 0 || !all_ones(sum_words(&l3[..ihl])) {
                return false;
            }
            let udp = &l3[ihl..total];
            if udp[6] == 0 && udp[7] == 0 {
                return true;
            }
            (udp, sum_words(&l3[12..20]) + u64::from(PROTO_UDP))
        }
        6 => {
            if l3.len() < 48 || l3[6] != PROTO_UDP {
                return false;
            }
            let plen = usize::from(u16::from_be_bytes([l3[4], l3[5]]));
            if plen < 8 || 40 + plen > l3.len() {
                return false;
            }
            let udp = &l3[40..40 + plen];
            if udp[6] == 0 && udp[7] == 0 {
                return false;
            }
            (udp, sum_words(&l3[8..40]) + u64::from(PROTO_UDP))
        }
        _ => return false,
    };
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if ulen < 8 || ulen > udp.len() {
        return false;
    }
    // The pseudo-header's length (a 16-bit word for IPv4, a 32-bit one for
    // IPv6 that never exceeds 16 bits here) sums the same either way.
    all_ones(pseudo_sum + ulen as u64 + sum_words(&udp[..ulen]))
}

/// The IP header to keep (options included) and the transport bytes it
/// announces.
struct IpParts<'a> {
    v4: bool,
    header: &'a [u8],
    l4: &'a [u8],
}

fn ip_parts(p: &[u8]) -> Result<IpParts<'_>, RewriteError> {
    let first = *p.first().ok_or(RewriteError::Truncated("IP header"))?;
    match first >> 4 {
        4 => {
            let hdr: [u8; 20] = dns::bytes(p, 0, "IPv4 header")?;
            let ihl = usize::from(hdr[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
            if ihl < 20 || total < ihl {
                return Err(RewriteError::BadIp("IPv4 lengths"));
            }
            let pkt = p.get(..total).ok_or(RewriteError::Truncated("IPv4 packet"))?;
            // More fragments, or an offset: either way not the whole datagram.
            if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
                return Err(RewriteError::Fragment);
            }
            transport(hdr[9])?;
            let header = pkt.get(..ihl).ok_or(RewriteError::Truncated("IPv4 options"))?;
            Ok(IpParts { v4: true, header, l4: &pkt[ihl..] })
        }
        6 => {
            let hdr: [u8; 40] = dns::bytes(p, 0, "IPv6 header")?;
            let plen = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
            if plen == 0 {
                return Err(RewriteError::BadIp("IPv6 payload length 0"));
            }
            let pkt = p.get(..40 + plen).ok_or(RewriteError::Truncated("IPv6 packet"))?;
            match hdr[6] {
                44 => return Err(RewriteError::Fragment),
                // Hop-by-hop, routing, ESP, AH, destination options, mobility, HIP, shim6, experiments.
                nh @ (0 | 43 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254) => return Err(RewriteError::Ipv6Extension(nh)),
                nh => transport(nh)?,
            }
            Ok(IpParts { v4: false, header: &pkt[..40], l4: &pkt[40..] })
        }
        _ => Err(RewriteError::BadIp("version is not 4 or 6")),
    }
}

fn transport(proto: u8) -> Result<(), RewriteError> {
    match proto {
        PROTO_UDP => Ok(()),
        PROTO_TCP => Err(RewriteError::Tcp),
        p => Err(RewriteError::Protocol(p)),
    }
}

/// The UDP header and the DNS message it carries (to the UDP length;
/// anything after it inside the IP packet is dropped).
fn udp_parts(l4: &[u8]) -> Result<(&[u8], &[u8]), RewriteError> {
    let hdr: [u8; 8] = dns::bytes(l4, 0, "UDP header")?;
    let len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if len < 8 {
        return Err(RewriteError::Truncated("UDP length below its header"));
    }
    let msg = l4.get(8..len).ok_or(RewriteError::Truncated("UDP datagram"))?;
    Ok((&l4[..8], msg))
}

/// The NXDOMAIN message answering the question of the answer `msg`.
fn nxdomain_message(msg: &[u8]) -> Result<Vec<u8>, RewriteError> {
    let hdr: [u8; 12] = dns::bytes(msg, 0, "DNS header")?;
    let flags = u16::from_be_bytes([hdr[2], hdr[3]]);
    let count = |at: usize| u16::from_be_bytes([hdr[at], hdr[at + 1]]);
    if flags & FLAG_QR == 0 {
        return Err(RewriteError::Query);
    }
    if count(4) != 1 {
        return Err(RewriteError::QuestionCount(count(4)));
    }
    let qend = question_name_end(msg)? + 4; // QTYPE, QCLASS
    let question = msg.get(12..qend).ok_or(RewriteError::Truncated("question"))?;
    let opt = find_opt(msg, qend, count(6), count(8), count(10))?;

    let mut out = Vec::with_capacity(12 + question.len() + opt.map_or(0, |o| 11 + o.rdata.len()));
    out.extend_from_slice(&hdr[..2]); // id
    out.extend_from_slice(&(FLAG_QR | (flags & FLAGS_KEPT) | RCODE_NXDOMAIN).to_be_bytes());
    for n in [1, 0, 0, u16::from(opt.is_some())] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(question);
    if let Some(o) = opt {
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&o.class.to_be_bytes());
        // RFC 6891 §6.1.3: the top byte of the TTL extends the RCODE; zero it
        // so that the RCODE is 3 alone. Version, DO and Z stay.
        out.extend_from_slice(&(o.ttl & 0x00ff_ffff).to_be_bytes());
        out.extend_from_slice(&(o.rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(o.rdata);
    }
    Ok(out)
}

/// The offset after the question name, which must be uncompressed and as
/// valid as `dns::read_name` wants it (so the output parses).
fn question_name_end(msg: &[u8]) -> Result<usize, RewriteError> {
    let mut pos = 12;
    loop {
        let len = *msg.get(pos).ok_or(RewriteError::Truncated("question name"))?;
        match len {
            0 => return Ok(pos + 1),
            1..=63 => pos += 1 + usize::from(len),
            0xc0..=0xff => return Err(RewriteError::CompressedQuestion),
            _ => return Err(RewriteError::BadLabel(len)),
        }
        // Length bytes and the root byte still to come.
        if pos - 12 + 1 > MAX_NAME_WIRE {
            return Err(RewriteError::NameTooLong);
        }
    }
}

/// The EDNS OPT record of the additional section.
#[derive(Clone, Copy)]
struct Opt<'a> {
    /// The requester's UDP payload size.
    class: u16,
    /// Extended RCODE, version, DO and Z.
    ttl: u32,
    rdata: &'a [u8],
}

/// Walks every record after the question (offset `off`) and returns the
/// first OPT record of the additional section with the root as owner.
/// Every record must parse; each takes at least 11 bytes, so the walk ends
/// within the message whatever the counts claim.
fn find_opt(msg: &[u8], mut off: usize, an: u16, ns: u16, ar: u16) -> Result<Option<Opt<'_>>, RewriteError> {
    let before_additional = usize::from(an) + usize::from(ns);
    let mut opt = None;
    for i in 0..before_additional + usize::from(ar) {
        let (owner, after) = dns::read_name(msg, off)?;
        let fixed: [u8; 10] = dns::bytes(msg, after, "resource record")?;
        let ty = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let start = after + 10;
        let rdata = msg.get(start..start + rdlen).ok_or(RewriteError::Truncated("record data"))?;
        if i >= before_additional && ty == TYPE_OPT && owner.is_empty() && opt.is_none() {
            opt = Some(Opt {
                class: u16::from_be_bytes([fixed[2], fixed[3]]),
                ttl: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
                rdata,
            });
        }
        off = start + rdlen;
    }
    Ok(opt)
}

/// The Internet checksum (RFC 1071) of `parts` read as one byte string:
/// the one's complement of the one's complement sum of its 16-bit words.
/// Every part but the last must have an even length.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dns::parse_packet;
    use crate::codec::dns_captured::*;
    use crate::codec::nla::tests::XorShift;

    const UDP_CAPTURES: [&[u8]; 5] = [DNS_A_UDP4, DNS_AAAA_UDP4, DNS_CNAME_UDP4, DNS_NXDOMAIN_UDP4, DNS_AAAA_UDP6];

    /// Offset of the DNS message in a UDP packet without IPv6 extension headers.
    fn dns_at(p: &[u8]) -> usize {
        if p[0] >> 4 == 4 {
            usize::from(p[0] & 0x0f) * 4 + 8
        } else {
            48
        }
    }

    /// Checks `out`, the rewrite of `orig`, as the daemon relies on it and
    /// returns its DNS message.
    fn check(orig: &[u8], out: &[u8]) -> Vec<u8> {
        assert!(checksums_ok(out), "checksums of {out:02x?}");
        let (a, b) = (parse_packet(orig).unwrap(), parse_packet(out).unwrap());
        assert_eq!(
            (b.client, b.server, b.proto, b.client_port, b.server_port, &b.qname),
            (a.client, a.server, a.proto, a.client_port, a.server_port, &a.qname)
        );
        assert_eq!(b.records, []);
        // Lengths: the IP length is the packet, the UDP length its payload.
        let at = dns_at(out);
        let ip_len = if out[0] >> 4 == 4 { u16::from_be_bytes([out[2], out[3]]) as usize } else { 40 + u16::from_be_bytes([out[4], out[5]]) as usize };
        assert_eq!(ip_len, out.len());
        assert_eq!(u16::from_be_bytes([out[at - 4], out[at - 3]]) as usize, out.len() - at + 8);
        // IP header (options too) as it was, but for lengths and checksum.
        let mut hdr = out[..at - 8].to_vec();
        let mut ohdr = orig[..at - 8].to_vec();
        let skip: &[usize] = if out[0] >> 4 == 4 { &[2, 3, 10, 11] } else { &[4, 5] };
        for &i in skip {
            hdr[i] = 0;
            ohdr[i] = 0;
        }
        assert_eq!(hdr, ohdr);
        let msg = out[at..].to_vec();
        let omsg = &orig[dns_at(orig)..];
        assert_eq!(msg[..2], omsg[..2], "id");
        assert_eq!(msg[3] & 0x0f, 3, "RCODE");
        assert_eq!(msg[2] & 0x80, 0x80, "QR");
        assert_eq!(msg[2] & 0x06, 0, "AA, TC");
        assert_eq!(msg[2] & 0x79, omsg[2] & 0x79, "opcode, RD");
        assert_eq!(msg[3] & 0x90, omsg[3] & 0x90, "RA, CD");
        assert_eq!(msg[3] & 0x60, 0, "Z, AD");
        assert_eq!(msg[4..10], [0, 1, 0, 0, 0, 0]);
        msg
    }

    /// The question section (name, type, class) of a message, uncompressed.
    fn question(msg: &[u8]) -> &[u8] {
        let mut i = 12;
        while msg[i] != 0 {
            i += 1 + usize::from(msg[i]);
        }
        &msg[12..i + 5]
    }

    /// A DNS message in IPv4 + UDP from 192.0.2.53:53 to 192.0.2.10:40000,
    /// with `opts` as IPv4 options and `cksum` as the UDP checksum.
    fn udp4(msg: &[u8], opts: &[u8], cksum: u16) -> Vec<u8> {
        let ihl = 20 + opts.len();
        let mut p = vec![0x40 | (ihl / 4) as u8, 0, 0, 0, 0x12, 0x34, 0x40, 0, 63, 17, 0, 0, 192, 0, 2, 53, 192, 0, 2, 10];
        p.extend_from_slice(opts);
        p[2..4].copy_from_slice(&((ihl + 8 + msg.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 53, 0x9c, 0x40]);
        p.extend_from_slice(&((8 + msg.len()) as u16).to_be_bytes());
        p.extend_from_slice(&cksum.to_be_bytes());
        p.extend_from_slice(msg);
        p
    }

    /// A message: header with `flags` and counts, then `rest` as it is.
    fn message(flags: u16, counts: [u16; 4], rest: &[u8]) -> Vec<u8> {
        let mut m = vec![0xbe, 0xef];
        m.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            m.extend_from_slice(&c.to_be_bytes());
        }
        m.extend_from_slice(rest);
        m
    }

    /// Question Mixed.Example A IN.
    const Q: &[u8] = b"\x05Mixed\x07Example\x00\x00\x01\x00\x01";

    #[test]
    fn a_answer_over_udp4() {
        let out = nxdomain_packet(DNS_A_UDP4).unwrap();
        let msg = check(DNS_A_UDP4, &out);
        // id 0x1001, QR RD (opcode 0) then RA and RCODE 3: AA of dnsmasq's answer cleared.
        assert_eq!(msg[..12], [0x10, 0x01, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(msg[12..], *question(&DNS_A_UDP4[28..]));
        // The answer's one record gone: 16 bytes shorter.
        assert_eq!(out.len(), DNS_A_UDP4.len() - 16);
    }

    #[test]
    fn aaaa_answers_over_udp4_and_udp6() {
        for cap in [DNS_AAAA_UDP4, DNS_AAAA_UDP6] {
            let out = nxdomain_packet(cap).unwrap();
            let msg = check(cap, &out);
            assert_eq!(msg[12..], *question(&cap[dns_at(cap)..]));
            assert_eq!(&msg[msg.len() - 4..], [0, 28, 0, 1]);
        }
        // IPv6: traffic class, flow label and hop limit as they were.
        let out = nxdomain_packet(DNS_AAAA_UDP6).unwrap();
        assert_eq!((out[..4].to_vec(), out[7]), (DNS_AAAA_UDP6[..4].to_vec(), 0x40));
    }

    #[test]
    fn cname_chain_answer_keeps_mixed_case_and_edns() {
        let out = nxdomain_packet(DNS_CNAME_UDP4).unwrap();
        let msg = check(DNS_CNAME_UDP4, &out);
        // Alias.Example.NET as asked, then the OPT record (payload size 1232).
        let mut want = b"\x05Alias\x07Example\x03NET\x00\x00\x01\x00\x01".to_vec();
        want.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(msg[12..], want);
        assert_eq!(msg[4..12], [0, 1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn nxdomain_answer_stays_nxdomain() {
        let out = nxdomain_packet(DNS_NXDOMAIN_UDP4).unwrap();
        check(DNS_NXDOMAIN_UDP4, &out);
        // dnsmasq's own NXDOMAIN (no AA) comes out the same, but for the
        // UDP checksum, now computed whole.
        assert_eq!(out[..26], DNS_NXDOMAIN_UDP4[..26]);
        assert_eq!(out[28..], DNS_NXDOMAIN_UDP4[28..]);
    }

    #[test]
    fn nflog_payloads_from_the_lab() {
        use crate::codec::captured::*;
        use crate::codec::nflog;
        for nl in [NFLOG_OUTPUT_A_UDP4, NFLOG_INPUT_AAAA_UDP6] {
            let p = nflog::parse_message(nl).unwrap().unwrap();
            let out = nxdomain_packet(p.payload).unwrap();
            check(p.payload, &out);
        }
        let p = nflog::parse_message(NFLOG_OUTPUT_A_TCP4).unwrap().unwrap();
        assert_eq!(nxdomain_packet(p.payload), Err(RewriteError::Tcp));
    }

    #[test]
    fn captured_checksums_verify_and_a_wrong_byte_does_not() {
        // dnsmasq's answers were captured on the sending side of a veth with
        // checksum offload: their UDP checksum field holds the pseudo-header
        // sum alone (CHECKSUM_PARTIAL), as packets the router sends itself
        // may reach the queue. Not a checksum, so not trusted or reused.
        for cap in UDP_CAPTURES {
            assert!(!checksums_ok(cap));
            let at = dns_at(cap) - 8;
            let mut pseudo = if cap[0] >> 4 == 4 { cap[12..20].to_vec() } else { cap[8..40].to_vec() };
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&cap[at + 4..at + 6]);
            assert_eq!(!checksum(&[&pseudo]), u16::from_be_bytes([cap[at + 6], cap[at + 7]]));
        }
        for cap in UDP_CAPTURES {
            let out = nxdomain_packet(cap).unwrap();
            for i in 0..out.len() {
                // IPv6 traffic class, flow label and hop limit are in no checksum.
                if out[0] >> 4 == 6 && (i < 4 || i == 7) {
                    continue;
                }
                let mut bad = out.clone();
                bad[i] ^= 0x01;
                assert!(!checksums_ok(&bad), "flipped byte {i} of {out:02x?}");
            }
        }
    }

    #[test]
    fn ipv4_options_are_kept() {
        // Record route (7), 7 bytes, then end of options.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0];
        let m = message(0x8180, [1, 1, 0, 0], &[Q, &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]].concat());
        let p = udp4(&m, &opts, 0x1234);
        let out = nxdomain_packet(&p).unwrap();
        let msg = check(&p, &out);
        assert_eq!(out[0], 0x47);
        assert_eq!(out[20..28], opts);
        assert_eq!(msg[12..], *Q);
        assert_eq!(parse_packet(&out).unwrap().qname, "mixed.example");
    }

    #[test]
    fn udp4_without_checksum() {
        let m = message(0x8180, [1, 1, 0, 0], &[Q, &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]].concat());
        let p = udp4(&m, &[], 0);
        // No checksum is a valid IPv4 UDP checksum; the rewrite computes one.
        let out = nxdomain_packet(&p).unwrap();
        check(&p, &out);
        assert_ne!(out[26..28], [0, 0]);
        let mut none = out.clone();
        none[26..28].copy_from_slice(&[0, 0]);
        assert!(checksums_ok(&none));
        // Over IPv6 a zero checksum is never valid.
        let mut v6 = nxdomain_packet(DNS_AAAA_UDP6).unwrap();
        v6[46..48].copy_from_slice(&[0, 0]);
        assert!(!checksums_ok(&v6));
    }

    #[test]
    fn header_bits_carried_and_cleared() {
        // opcode 2 (status), AA, TC, RD; RA, Z, AD, CD, RCODE 2.
        let m = message(0x97f2, [1, 0, 0, 0], Q);
        let p = udp4(&m, &[], 0);
        let out = nxdomain_packet(&p).unwrap();
        assert_eq!(out[30..32], [0x91, 0x93]);
        // Nothing set but QR: QR and RCODE 3 alone.
        let out = nxdomain_packet(&udp4(&message(0x8000, [1, 0, 0, 0], Q), &[], 0)).unwrap();
        assert_eq!(out[30..32], [0x80, 0x03]);
    }

    #[test]
    fn edns_opt_kept_from_additional_only_with_rcode_cleared() {
        // Answer, an authority SOA-ish record, then additional: an A glue record
        // and OPT with extended RCODE 1, version 0, DO, and a cookie option.
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut rest = Q.to_vec();
        rest.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        rest.extend_from_slice(&[0xc0, 18, 0, 6, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        rest.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2]);
        rest.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0x01, 0x00, 0x80, 0x00, 0, 12]);
        rest.extend_from_slice(&cookie);
        let p = udp4(&message(0x8180, [1, 1, 1, 2], &rest), &[], 0);
        let msg = check(&p, &nxdomain_packet(&p).unwrap());
        let mut want = Q.to_vec();
        want.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0x00, 0x00, 0x80, 0x00, 0, 12]);
        want.extend_from_slice(&cookie);
        assert_eq!(msg[10..12], [0, 1]);
        assert_eq!(msg[12..], want);

        // An OPT record in the answer section, or owned by another name: not an OPT.
        let mut rest = Q.to_vec();
        rest.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        rest.extend_from_slice(&[0xc0, 12, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        let p = udp4(&message(0x8180, [1, 1, 0, 1], &rest), &[], 0);
        let msg = check(&p, &nxdomain_packet(&p).unwrap());
        assert_eq!(msg[12..], *Q);
        assert_eq!(msg[10..12], [0, 0]);

        // Two OPT records: the first is kept.
        let mut rest = Q.to_vec();
        rest.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        rest.extend_from_slice(&[0, 0, 41, 0x02, 0x00, 0, 0, 0, 0, 0, 0]);
        let p = udp4(&message(0x8180, [1, 0, 0, 2], &rest), &[], 0);
        let msg = check(&p, &nxdomain_packet(&p).unwrap());
        assert_eq!(msg[msg.len() - 8..msg.len() - 6], [0x10, 0x00]);
    }

    #[test]
    fn refusals() {
        assert_eq!(nxdomain_packet(DNS_A_TCP4), Err(RewriteError::Tcp));
        assert_eq!(nxdomain_packet(&[]), Err(RewriteError::Truncated("IP header")));
        // The A answer with QR cleared is a query.
        let mut q = DNS_A_UDP4.to_vec();
        q[30] &= 0x7f;
        assert_eq!(nxdomain_packet(&q), Err(RewriteError::Query));
        // Two questions, or none.
        for n in [0, 2] {
            let mut b = DNS_A_UDP4.to_vec();
            b[33] = n;
            assert_eq!(nxdomain_packet(&b), Err(RewriteError::QuestionCount(u16::from(n))));
        }
        // A question name that is a pointer, or holds one after a label.
        let p = udp4(&message(0x8180, [1, 0, 0, 0], &[0xc0, 12, 0, 1, 0, 1]), &[], 0);
        assert_eq!(nxdomain_packet(&p), Err(RewriteError::CompressedQuestion));
        let p = udp4(&message(0x8180, [1, 0, 0, 0], &[1, b'a', 0xc0, 12, 0, 1, 0, 1]), &[], 0);
        assert_eq!(nxdomain_packet(&p), Err(RewriteError::CompressedQuestion));
        let p = udp4(&message(0x8180, [1, 0, 0, 0], &[0x40, 0, 0, 1, 0, 1]), &[], 0);
        assert_eq!(nxdomain_packet(&p), Err(RewriteError::BadLabel(0x40)));
        // 255 bytes of name is the most; 257 is refused.
        let name = |labels: &[usize]| {
            let mut n = Vec::new();
            for &l in labels {
                n.push(l as u8);
                n.extend(std::iter::repeat(b'a').take(l));
            }
            n.extend_from_slice(&[0, 0, 1, 0, 1]);
            n
        };
        let ok = udp4(&message(0x8180, [1, 0, 0, 0], &name(&[63, 63, 63, 61])), &[], 0);
        check(&ok, &nxdomain_packet(&ok).unwrap());
        let long = udp4(&message(0x8180, [1, 0, 0, 0], &name(&[63, 63, 63, 63])), &[], 0);
        assert_eq!(nxdomain_packet(&long), Err(RewriteError::NameTooLong));
        // Fragments: the first of several, and a later one.
        for frag in [0x2000u16, 0x0001] {
            let mut f = DNS_A_UDP4.to_vec();
            f[6..8].copy_from_slice(&frag.to_be_bytes());
            assert_eq!(nxdomain_packet(&f), Err(RewriteError::Fragment));
        }
        // ICMP, a bad version.
        let mut x = DNS_A_UDP4.to_vec();
        x[9] = 1;
        assert_eq!(nxdomain_packet(&x), Err(RewriteError::Protocol(1)));
        x[0] = 0x55;
        assert!(matches!(nxdomain_packet(&x), Err(RewriteError::BadIp(_))));
        // An answer record that runs past the message.
        let mut b = DNS_A_UDP4.to_vec();
        b[76..78].copy_from_slice(&[0, 5]);
        assert_eq!(nxdomain_packet(&b), Err(RewriteError::Truncated("record data")));
        // A record whose owner points forward.
        let mut b = DNS_A_UDP4.to_vec();
        b[67] = 0x50;
        assert!(matches!(nxdomain_packet(&b), Err(RewriteError::Record(DnsError::PointerForward { .. }))));
    }

    #[test]
    fn ipv6_extension_headers_are_refused() {
        for (next, err) in [
            (0, RewriteError::Ipv6Extension(0)),
            (43, RewriteError::Ipv6Extension(43)),
            (60, RewriteError::Ipv6Extension(60)),
            (51, RewriteError::Ipv6Extension(51)),
            (44, RewriteError::Fragment),
            (6, RewriteError::Tcp),
            (58, RewriteError::Protocol(58)),
        ] {
            let mut p = DNS_AAAA_UDP6.to_vec();
            p[6] = next;
            assert_eq!(nxdomain_packet(&p), Err(err));
        }
    }

    #[test]
    fn padding_and_bytes_past_the_udp_length_are_dropped() {
        let mut p = DNS_A_UDP4.to_vec();
        p.extend_from_slice(&[0; 6]);
        assert_eq!(nxdomain_packet(&p).unwrap(), nxdomain_packet(DNS_A_UDP4).unwrap());
        // UDP shorter than IP: the DNS message ends at the UDP length.
        let mut p = DNS_A_UDP4.to_vec();
        p.extend_from_slice(&[0xaa; 4]);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        assert_eq!(nxdomain_packet(&p).unwrap(), nxdomain_packet(DNS_A_UDP4).unwrap());
    }

    /// `b` with its IP and UDP lengths made to say it ends where it ends.
    fn relength(b: &[u8]) -> Vec<u8> {
        let mut b = b.to_vec();
        if b.is_empty() {
            return b;
        }
        let (ip_at, ip_len, udp_at) =
            if b[0] >> 4 == 4 { (2, b.len(), usize::from(b[0] & 0x0f) * 4) } else { (4, b.len().saturating_sub(40), 40) };
        if b.len() >= ip_at + 2 {
            b[ip_at..ip_at + 2].copy_from_slice(&(ip_len as u16).to_be_bytes());
        }
        if b.len() >= udp_at + 6 {
            let ul = (b.len() - udp_at) as u16;
            b[udp_at + 4..udp_at + 6].copy_from_slice(&ul.to_be_bytes());
        }
        b
    }

    /// The property the fuzz target checks too.
    fn never_half_built(b: &[u8]) {
        if let Ok(out) = nxdomain_packet(b) {
            assert!(checksums_ok(&out), "{b:02x?}");
            let a = parse_packet(&out).unwrap_or_else(|e| panic!("{e} for {out:02x?} from {b:02x?}"));
            assert_eq!(a.records, []);
            assert_eq!(out[dns_at(&out) + 3] & 0x0f, 3);
        }
    }

    #[test]
    fn truncated_at_every_byte() {
        for cap in UDP_CAPTURES.into_iter().chain([DNS_A_TCP4]) {
            for n in 0..cap.len() {
                // The IP header still claims the whole packet.
                assert!(nxdomain_packet(&cap[..n]).is_err(), "cut at {n}");
                // Lengths that agree with the cut: the cut reaches the DNS
                // message, which must then be refused or rewritten whole.
                let b = relength(&cap[..n]);
                never_half_built(&b);
                if cap == DNS_A_TCP4 || n < dns_at(cap) + question(&cap[dns_at(cap)..]).len() {
                    assert!(nxdomain_packet(&b).is_err(), "relengthed cut at {n}");
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic_or_half_build() {
        let mut rng = XorShift(0x6e78_646f_6d61_696e);
        for i in 0..50_000 {
            let cap = UDP_CAPTURES[i % UDP_CAPTURES.len()];
            let mut b = cap.to_vec();
            for _ in 0..(rng.next() % 4 + 1) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            never_half_built(&b);
            never_half_built(&relength(&b));
            let n = (rng.next() % 96) as usize;
            never_half_built(&rng.bytes(n));
        }
    }
}
