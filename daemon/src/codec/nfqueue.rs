//! NFQUEUE codec, pure: packets held by an `NFQUEUE` rule in, queue
//! bind/unbind requests and verdicts out (NETLINK_NETFILTER, subsystem
//! QUEUE).
//!
//! leash holds DNS answers this way (SPEC §2, `dns_hold`): the kernel keeps
//! each queued packet until a verdict names its id, so the answer reaches
//! the device only after leash has judged it and put the set elements in;
//! a verdict may carry a replacement packet (an NXDOMAIN rewrite). Unknown
//! attributes are skipped.

pub use super::nla::DecodeError;
use super::conntrack::{self, Flow};
use super::nla::{Msg, NlWriter, NLA_HDRLEN, NLM_F_ACK, NLM_F_REQUEST};

pub const NFNL_SUBSYS_QUEUE: u8 = 3;

const NFQNL_MSG_PACKET: u8 = 0;
const NFQNL_MSG_VERDICT: u8 = 1;
const NFQNL_MSG_CONFIG: u8 = 2;

/// Verdicts (`NF_DROP`, `NF_ACCEPT` of linux/netfilter.h).
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

// Attributes of a queued packet and of a verdict (enum nfqnl_attr_type).
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_IFINDEX_INDEV: u16 = 5;
const NFQA_IFINDEX_OUTDEV: u16 = 6;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CT: u16 = 11;
const NFQA_CT_INFO: u16 = 12;
const NFQA_CAP_LEN: u16 = 13;

// Attributes of a config request (enum nfqnl_attr_config).
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;

const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_PACKET: u8 = 2;

/// Config flag: a full queue (or a failed delivery to our socket) lets the
/// packet pass instead of dropping it.
pub const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
/// Config flag: attach the packet's conntrack entry (NFQA_CT, NFQA_CT_INFO).
/// The kernel refuses it (EOPNOTSUPP) without conntrack's netlink glue
/// (CONFIG_NETFILTER_NETLINK_GLUE_CT).
pub const NFQA_CFG_F_CONNTRACK: u32 = 2;
/// The flags `bind_requests` sets or clears; the others keep the kernel's
/// defaults (GSO segmented before queueing, no uid/gid, no secctx).
const MANAGED_FLAGS: u32 = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK;

/// The largest packet a message can carry: an attribute's length is 16
/// bits and counts its 4-byte header (the kernel's NFQNL_MAX_COPY_RANGE).
pub const MAX_PAYLOAD: usize = 0xffff - NLA_HDRLEN;

const AF_UNSPEC: u8 = 0;

/// One packet handed over by an NFQUEUE rule (NFQNL_MSG_PACKET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedPacket<'a> {
    /// The packet's id in its queue, for the verdict.
    pub id: u32,
    /// Ethertype of the packet (0x0800, 0x86dd).
    pub hw_protocol: u16,
    /// Netfilter hook number as the kernel sends it (NF_INET_*: 0
    /// prerouting, 1 input, 2 forward, 3 output, 4 postrouting).
    pub hook: u8,
    /// Protocol family of the hook (NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10).
    pub family: u8,
    /// The packet from its network header on. Empty when the kernel sent
    /// no payload (a queue in meta-only copy mode).
    pub payload: &'a [u8],
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    /// With `NFQA_CFG_F_CONNTRACK`: how the packet relates to its
    /// conntrack entry (`enum ip_conntrack_info`).
    pub ct_info: Option<u32>,
    /// With `NFQA_CFG_F_CONNTRACK`: the original direction of the
    /// packet's conntrack entry.
    pub ct_orig: Option<Flow>,
    /// The packet's real length when `payload` holds only its start (the
    /// copy range was smaller). A truncated packet must not be rewritten
    /// from its copy.
    pub cap_len: Option<u32>,
}

/// Parses one message. `Ok(None)` for anything that is not a queued
/// packet (other subsystems, acks and errors, NLMSG_DONE); an error when
/// a packet message is malformed or lacks its header (no id to answer).
pub fn parse_message(msg: &[u8]) -> Result<Option<QueuedPacket<'_>>, DecodeError> {
    let m = Msg::parse(msg)?;
    if m.nfnl_subsys() != NFNL_SUBSYS_QUEUE || m.nfnl_msg() != NFQNL_MSG_PACKET {
        return Ok(None);
    }
    let (gen, attrs) = m.nfnl()?;
    let mut hdr = None;
    let mut p = QueuedPacket {
        id: 0,
        hw_protocol: 0,
        hook: 0,
        family: gen.family,
        payload: &[],
        indev: None,
        outdev: None,
        ct_info: None,
        ct_orig: None,
        cap_len: None,
    };
    for a in attrs {
        let a = a?;
        match a.ty {
            NFQA_PACKET_HDR => {
                // struct nfqnl_msg_packet_hdr { __be32 packet_id; __be16 hw_protocol; u8 hook; } (packed)
                let [i0, i1, i2, i3, p0, p1, hook] = <[u8; 7]>::try_from(a.value)
                    .map_err(|_| DecodeError::AttrSize { ty: a.ty, len: a.value.len(), want: 7 })?;
                hdr = Some((u32::from_be_bytes([i0, i1, i2, i3]), u16::from_be_bytes([p0, p1]), hook));
            }
            NFQA_IFINDEX_INDEV => p.indev = Some(a.u32_be()?),
            NFQA_IFINDEX_OUTDEV => p.outdev = Some(a.u32_be()?),
            NFQA_PAYLOAD => p.payload = a.value,
            NFQA_CT_INFO => p.ct_info = Some(a.u32_be()?),
            NFQA_CT => p.ct_orig = conntrack::orig_tuple(&a)?,
            NFQA_CAP_LEN => p.cap_len = Some(a.u32_be()?),
            _ => {}
        }
    }
    let (id, hw_protocol, hook) = hdr.ok_or(DecodeError::Missing("NFQA_PACKET_HDR"))?;
    p.id = id;
    p.hw_protocol = hw_protocol;
    p.hook = hook;
    Ok(Some(p))
}

fn queue_msg(w: &mut NlWriter, msg: u8, flags: u16, queue: u16, seq: u32) {
    w.begin_msg(u16::from(NFNL_SUBSYS_QUEUE) << 8 | u16::from(msg), flags, seq);
    // The queue number travels in res_id, big-endian like every nfgenmsg res_id.
    w.nfgenmsg(AF_UNSPEC, queue);
}

fn config(queue: u16, seq: u32, attrs: impl FnOnce(&mut NlWriter)) -> Vec<u8> {
    let mut w = NlWriter::new();
    queue_msg(&mut w, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, queue, seq);
    attrs(&mut w);
    w.end_msg();
    w.finish()
}

/// The requests that make `queue`'s packets come to the sending socket,
/// with seqs `first_seq..`, each asking for an ack: first bind, copy whole
/// packets up to `copy_range` bytes (the kernel caps it at `MAX_PAYLOAD`)
/// and hold at most `maxlen` packets; then the config `flags`
/// (`NFQA_CFG_F_FAIL_OPEN`, `NFQA_CFG_F_CONNTRACK`; the mask covers
/// exactly these two).
///
/// Bind and copy mode share one message: a queue is created in copy mode
/// none, in which the kernel drops its packets even with `--queue-bypass`,
/// so a round trip between the two would lose the answers that came in
/// it. The flags come apart because the kernel checks a message's flags
/// before its command: a refused CONNTRACK flag must not refuse the bind.
pub fn bind_requests(queue: u16, first_seq: u32, copy_range: u32, maxlen: u32, flags: u32) -> Vec<Vec<u8>> {
    vec![
        config(queue, first_seq, |w| {
            // struct nfqnl_msg_config_cmd { u8 command; u8 pad; __be16 pf; } (pf unused since 3.8)
            w.attr(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
            // struct nfqnl_msg_config_params { __be32 copy_range; u8 copy_mode; } (packed)
            let mut params = copy_range.to_be_bytes().to_vec();
            params.push(NFQNL_COPY_PACKET);
            w.attr(NFQA_CFG_PARAMS, &params);
            w.attr_u32_be(NFQA_CFG_QUEUE_MAXLEN, maxlen);
        }),
        config(queue, first_seq.wrapping_add(1), |w| {
            w.attr_u32_be(NFQA_CFG_FLAGS, flags & MANAGED_FLAGS);
            w.attr_u32_be(NFQA_CFG_MASK, MANAGED_FLAGS);
        }),
    ]
}

/// Releases `queue` (closing the socket does too). Packets still held are
/// dropped by the kernel, not passed.
pub fn unbind_request(queue: u16, seq: u32) -> Vec<u8> {
    config(queue, seq, |w| w.attr(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_UNBIND, 0, 0, 0]))
}

/// NFQNL_MSG_VERDICT for one packet; with `payload`, the packet is replaced
/// by it (its checksums must be right: the kernel copies it as it is).
/// No ack is asked for: the kernel answers only a refused verdict, with an
/// NLMSG_ERROR on the queue socket. Several of these may be sent in one
/// datagram.
///
/// `payload` must not exceed `MAX_PAYLOAD` (callers check; a debug build
/// asserts it).
pub fn verdict_message(queue: u16, id: u32, verdict: u32, payload: Option<&[u8]>, seq: u32) -> Vec<u8> {
    let mut w = NlWriter::new();
    queue_msg(&mut w, NFQNL_MSG_VERDICT, NLM_F_REQUEST, queue, seq);
    // struct nfqnl_msg_verdict_hdr { __be32 verdict; __be32 id; }
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    w.attr(NFQA_VERDICT_HDR, &hdr);
    if let Some(p) = payload {
        w.attr(NFQA_PAYLOAD, p);
    }
    w.end_msg();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::tests::XorShift;
    use super::super::nla::{Attrs, Messages, NLMSG_DONE};
    use super::*;

    const CAPTURES: [&[u8]; 4] = [NFQUEUE_OUTPUT_A_UDP4, NFQUEUE_OUTPUT_AAAA_UDP6, NFQUEUE_OUTPUT_A_TCP4, NFQUEUE_INPUT_A_UDP4];

    #[test]
    fn output_hook_packet_v4() {
        let p = parse_message(NFQUEUE_OUTPUT_A_UDP4).unwrap().unwrap();
        assert_eq!((p.id, p.family, p.hw_protocol, p.hook), (1, 2, 0x0800, 3));
        assert_eq!((p.indev, p.outdev), (None, Some(2)));
        // This kernel refused NFQA_CFG_F_CONNTRACK: no entry attached.
        assert_eq!((p.ct_info, p.ct_orig, p.cap_len), (None, None, None));
        assert_eq!(p.payload.len(), 82);
        assert_eq!(p.payload[0], 0x45);
        let a = crate::codec::dns::parse_packet(p.payload).unwrap();
        assert_eq!(a.qname, "tracking.example.com");
        assert_eq!(a.records[0].addr, "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
    }

    #[test]
    fn output_hook_packet_v6_and_tcp() {
        let p = parse_message(NFQUEUE_OUTPUT_AAAA_UDP6).unwrap().unwrap();
        assert_eq!((p.id, p.family, p.hw_protocol, p.hook), (9, 10, 0x86dd, 3));
        assert_eq!(p.payload.len(), 108);
        assert_eq!(p.payload[0] >> 4, 6);
        assert_eq!(crate::codec::dns::parse_packet(p.payload).unwrap().qname, "v6.example.com");
        let p = parse_message(NFQUEUE_OUTPUT_A_TCP4).unwrap().unwrap();
        assert_eq!((p.id, p.hook), (7, 3));
        assert_eq!((p.payload.len(), p.payload[9]), (121, 6));
        assert_eq!(crate::codec::dns::parse_packet(p.payload).unwrap().records.len(), 2);
    }

    #[test]
    fn input_hook_packet_skips_unknown_attributes() {
        // NFQA_HWADDR and NFQA_SKB_INFO come too; neither is needed.
        let p = parse_message(NFQUEUE_INPUT_A_UDP4).unwrap().unwrap();
        assert_eq!((p.id, p.hook, p.indev, p.outdev), (1, 1, Some(2), None));
        assert_eq!(p.payload, parse_message(NFQUEUE_OUTPUT_A_UDP4).unwrap().unwrap().payload);
    }

    /// A packet message built by hand, for the attributes no capture has.
    fn synthetic(attrs: impl FnOnce(&mut NlWriter)) -> Vec<u8> {
        let mut w = NlWriter::new();
        w.begin_msg(u16::from(NFNL_SUBSYS_QUEUE) << 8, 0, 0);
        w.nfgenmsg(2, 5336);
        attrs(&mut w);
        w.end_msg();
        w.finish()
    }

    #[test]
    fn conntrack_and_cap_len_attributes() {
        // NFQA_CT holds the tuples as a conntrack message does.
        let ct = Msg::parse(CT_NEW_TCP4).unwrap();
        let ct_attrs = &ct.payload[4..];
        let b = synthetic(|w| {
            w.attr(NFQA_PACKET_HDR, &[0x80, 0, 0, 0x2a, 0x08, 0x00, 2]);
            w.attr(NFQA_CT, ct_attrs);
            w.attr_u32_be(NFQA_CT_INFO, 3);
            w.attr_u32_be(NFQA_CAP_LEN, 1500);
            w.attr(NFQA_PAYLOAD, &[0x45; 20]);
            w.attr_u32_be(99, 7);
        });
        let p = parse_message(&b).unwrap().unwrap();
        // The id is big-endian on the wire whatever the host.
        assert_eq!((p.id, p.hw_protocol, p.hook), (0x8000_002a, 0x0800, 2));
        assert_eq!((p.ct_info, p.cap_len, p.payload.len()), (Some(3), Some(1500), 20));
        let orig = p.ct_orig.unwrap();
        assert_eq!((orig.sport, orig.dport, orig.proto), (1234, 443, 6));
    }

    #[test]
    fn hostile_attributes() {
        // No packet header: no id to answer, an error.
        let b = synthetic(|w| w.attr(NFQA_PAYLOAD, &[0x45; 20]));
        assert!(matches!(parse_message(&b), Err(DecodeError::Missing(_))));
        // A packet header of 8 bytes (padding counted in): a size error.
        let mut b = NFQUEUE_OUTPUT_A_UDP4.to_vec();
        assert_eq!(&b[20..24], &nla_hdr(0x0b, 0x01));
        set_nla_len(&mut b, 20, 0x0c);
        assert!(matches!(parse_message(&b), Err(DecodeError::AttrSize { want: 7, .. })));
        // An ifindex of 2 bytes.
        let b = synthetic(|w| {
            w.attr(NFQA_PACKET_HDR, &[0, 0, 0, 1, 0x08, 0x00, 2]);
            w.attr(NFQA_IFINDEX_INDEV, &[0, 1]);
        });
        assert!(parse_message(&b).is_err());
        // A payload attribute running past the message.
        let mut b = NFQUEUE_OUTPUT_A_UDP4.to_vec();
        assert_eq!(&b[40..44], &nla_hdr(0x56, 0x0a));
        set_nla_len(&mut b, 40, 0xff);
        assert!(matches!(parse_message(&b), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn other_messages_are_none() {
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse_message(&done).unwrap(), None);
        assert_eq!(parse_message(CT_NEW_TCP4).unwrap(), None);
        // An NFLOG packet (another subsystem) and our own requests.
        assert_eq!(parse_message(NFLOG_OUTPUT_A_UDP4).unwrap(), None);
        assert_eq!(parse_message(&verdict_message(1, 1, NF_ACCEPT, None, 0)).unwrap(), None);
        assert_eq!(parse_message(&unbind_request(1, 0)).unwrap(), None);
    }

    #[test]
    fn bind_request_bytes() {
        let reqs = bind_requests(5336, 100, 0xffff, 1024, NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK);
        assert_eq!(reqs.len(), 2);
        #[rustfmt::skip]
        let want: [&[u8]; 2] = [
            &nfnl([
                0x30, 0, 0, 0, 0x02, 0x03, 0x05, 0x00, 100, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 48 type QUEUE<<8|CONFIG flags REQUEST|ACK seq 100
                0x00, 0x00, 0x14, 0xd8,  // nfgenmsg: AF_UNSPEC, version 0, res_id = queue 5336 big-endian
                0x08, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,  // NFQA_CFG_CMD: BIND, pad, pf 0
                0x09, 0x00, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00,  // NFQA_CFG_PARAMS: range 0xffff, COPY_PACKET, padding
                0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00,  // NFQA_CFG_QUEUE_MAXLEN = 1024 (big-endian)
            ]),
            &nfnl([
                0x24, 0, 0, 0, 0x02, 0x03, 0x05, 0x00, 101, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 36 seq 101
                0x00, 0x00, 0x14, 0xd8,
                0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x03,  // NFQA_CFG_FLAGS = FAIL_OPEN|CONNTRACK
                0x08, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03,  // NFQA_CFG_MASK = the same two
            ]),
        ];
        // Captured little-endian; nfnl puts the netlink headers in host order.
        for (got, want) in reqs.iter().zip(want) {
            assert_eq!(got, want);
        }
        for (i, r) in reqs.iter().enumerate() {
            let m = Msg::parse(r).unwrap();
            assert_eq!((m.hdr.seq, m.hdr.len as usize), (100 + i as u32, r.len()));
        }
        // Flags outside the two managed ones are never sent.
        let r = bind_requests(1, 0, 0xffff, 8, u32::MAX);
        let (_, attrs) = Msg::parse(&r[1]).unwrap().nfnl().unwrap();
        let a: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!((a[0].ty, a[0].u32_be().unwrap()), (NFQA_CFG_FLAGS, 3));
        // Seqs wrap instead of overflowing.
        assert_eq!(Msg::parse(&bind_requests(1, u32::MAX, 0, 0, 0)[1]).unwrap().hdr.seq, 0);
        let unbind = unbind_request(5336, 7);
        let (gen, attrs) = Msg::parse(&unbind).unwrap().nfnl().unwrap();
        assert_eq!((gen.family, gen.res_id), (0, 5336));
        let a: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!((a[0].ty, a[0].value), (NFQA_CFG_CMD, &[NFQNL_CFG_CMD_UNBIND, 0, 0, 0][..]));
    }

    #[test]
    fn verdict_bytes() {
        #[rustfmt::skip]
        let accept: &[u8] = &nfnl([
            0x20, 0, 0, 0, 0x01, 0x03, 0x01, 0x00, 9, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 32 type QUEUE<<8|VERDICT flags REQUEST (no ack) seq 9
            0x00, 0x00, 0x14, 0xd8,  // nfgenmsg: AF_UNSPEC, res_id = queue 5336
            0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04,  // NFQA_VERDICT_HDR: NF_ACCEPT, id 0x01020304
        ]);
        let got = verdict_message(5336, 0x0102_0304, NF_ACCEPT, None, 9);
        assert_eq!(got, accept);
        // With a replacement: the payload attribute follows, padded.
        let got = verdict_message(5336, 7, NF_ACCEPT, Some(&[0x45, 1, 2, 3, 4]), 10);
        let m = Msg::parse(&got).unwrap();
        assert_eq!((m.hdr.len as usize, got.len()), (44, 44));
        let (_, attrs) = m.nfnl().unwrap();
        let a: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!((a[0].ty, a[0].value), (NFQA_VERDICT_HDR, &[0, 0, 0, 1, 0, 0, 0, 7][..]));
        assert_eq!((a[1].ty, a[1].value), (NFQA_PAYLOAD, &[0x45, 1, 2, 3, 4][..]));
        // The largest replacement still fits an attribute's 16-bit length.
        let big = vec![0u8; MAX_PAYLOAD];
        let got = verdict_message(1, 1, NF_DROP, Some(&big), 0);
        let (_, attrs) = Msg::parse(&got).unwrap().nfnl().unwrap();
        assert_eq!(attrs.last().unwrap().unwrap().value.len(), MAX_PAYLOAD);
        // Verdicts concatenate into one datagram.
        let mut batch = verdict_message(1, 1, NF_ACCEPT, None, 0);
        batch.extend(verdict_message(1, 2, NF_ACCEPT, Some(&[1, 2, 3]), 1));
        assert_eq!(Messages::new(&batch).count(), 2);
    }

    #[test]
    fn truncations_never_panic() {
        for cap in CAPTURES {
            for n in 0..cap.len() {
                assert!(parse_message(&cap[..n]).is_err(), "cut at {n}");
                if n >= 16 {
                    let mut b = cap[..n].to_vec();
                    b[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
                    if let Ok(Some(p)) = parse_message(&b) {
                        let _ = crate::codec::dns::parse_packet(p.payload);
                    }
                }
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = XorShift(0x2545f4914f6cdd1d);
        for i in 0..20_000 {
            let mut b = CAPTURES[i % CAPTURES.len()].to_vec();
            for _ in 0..(rng.next() % 8 + 1) {
                let at = (rng.next() as usize) % b.len();
                b[at] = rng.next() as u8;
            }
            for m in Messages::new(&b) {
                let Ok(m) = m else { break };
                if let Ok(Some(p)) = parse_message(m) {
                    let _ = crate::codec::dns::parse_packet(p.payload);
                }
                let _ = Attrs::new(m).count();
            }
        }
    }
}
