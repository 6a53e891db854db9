//! NFLOG codec, pure: packets logged by an nft `log group N` rule in,
//! group bind/unbind requests out (NETLINK_NETFILTER, subsystem ULOG).
//!
//! leash reads DNS answers this way (SPEC §2): the rule copies each reply
//! that crosses the router to our socket, network header first, and the
//! packet itself goes on untouched. Unknown attributes are skipped.

pub use super::nla::DecodeError;
use super::nla::{Msg, NlWriter, NLM_F_ACK, NLM_F_REQUEST};
use super::conntrack::{self, Flow};
use crate::mac::Mac;

pub const NFNL_SUBSYS_ULOG: u8 = 4;

const NFULNL_MSG_PACKET: u8 = 0;
const NFULNL_MSG_CONFIG: u8 = 1;

// Attributes of a logged packet (enum nfulnl_attr_type).
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_HWADDR: u16 = 8;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CT: u16 = 18;
const NFULA_CT_INFO: u16 = 19;

// Attributes of a config request (enum nfulnl_attr_config).
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULA_CFG_FLAGS: u16 = 6;

const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_CFG_CMD_UNBIND: u8 = 2;
const NFULNL_COPY_PACKET: u8 = 2;
/// Config flag: attach the packet's conntrack entry (NFULA_CT, NFULA_CT_INFO).
/// The kernel refuses it (EOPNOTSUPP) without conntrack's netlink glue.
pub const NFULNL_CFG_F_CONNTRACK: u16 = 0x0002;

/// `enum ip_conntrack_info`: a packet of an established flow in its reply
/// direction (IP_CT_ESTABLISHED + IP_CT_IS_REPLY).
pub const IP_CT_ESTABLISHED_REPLY: u32 = 3;

/// Copy whole packets: DNS answers over TCP can be far above 1500 bytes.
const COPY_RANGE: u32 = 0xffff;

const AF_UNSPEC: u8 = 0;

/// One packet handed over by an nft `log group` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NflogPacket<'a> {
    /// The packet from its network header on. Empty when the kernel sent
    /// no payload (a group bound in meta-only copy mode).
    pub payload: &'a [u8],
    /// Protocol family of the hook (NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10;
    /// `inet` tables report the packet's own family).
    pub family: u8,
    /// Ethertype of the packet (0x0800, 0x86dd).
    pub hw_protocol: Option<u16>,
    /// Netfilter hook number (0 prerouting .. 4 postrouting).
    pub hook: Option<u8>,
    /// The rule's `log prefix`; `None` when absent or not UTF-8 (a prefix
    /// only labels the rule, so an odd one must not lose the packet).
    pub prefix: Option<&'a str>,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    /// The link-layer source address, when the packet came in on an
    /// Ethernet-like device (never on the output hook).
    pub hwaddr: Option<Mac>,
    /// With `NFULNL_CFG_F_CONNTRACK`: how the packet relates to its
    /// conntrack entry (`enum ip_conntrack_info`).
    pub ct_info: Option<u32>,
    /// With `NFULNL_CFG_F_CONNTRACK`: the original direction of the
    /// packet's conntrack entry (who opened the flow, to whom).
    pub ct_orig: Option<Flow>,
}

/// Parses one message. `Ok(None)` for anything that is not a logged
/// packet (other subsystems, config echoes, NLMSG_DONE).
pub fn parse_message(msg: &[u8]) -> Result<Option<NflogPacket<'_>>, DecodeError> {
    let m = Msg::parse(msg)?;
    if m.nfnl_subsys() != NFNL_SUBSYS_ULOG || m.nfnl_msg() != NFULNL_MSG_PACKET {
        return Ok(None);
    }
    let (gen, attrs) = m.nfnl()?;
    let mut p = NflogPacket {
        payload: &[],
        family: gen.family,
        hw_protocol: None,
        hook: None,
        prefix: None,
        indev: None,
        outdev: None,
        hwaddr: None,
        ct_info: None,
        ct_orig: None,
    };
    for a in attrs {
        let a = a?;
        match a.ty {
            NFULA_PACKET_HDR => {
                // struct nfulnl_msg_packet_hdr { __be16 hw_protocol; u8 hook; u8 pad; }
                let [p0, p1, hook, _pad] = <[u8; 4]>::try_from(a.value)
                    .map_err(|_| DecodeError::AttrSize { ty: a.ty, len: a.value.len(), want: 4 })?;
                p.hw_protocol = Some(u16::from_be_bytes([p0, p1]));
                p.hook = Some(hook);
            }
            NFULA_IFINDEX_INDEV => p.indev = Some(a.u32_be()?),
            NFULA_IFINDEX_OUTDEV => p.outdev = Some(a.u32_be()?),
            NFULA_HWADDR => {
                // struct nfulnl_msg_packet_hw { __be16 hw_addrlen; u16 pad; u8 hw_addr[8]; }
                let v = <[u8; 12]>::try_from(a.value)
                    .map_err(|_| DecodeError::AttrSize { ty: a.ty, len: a.value.len(), want: 12 })?;
                if u16::from_be_bytes([v[0], v[1]]) == 6 {
                    p.hwaddr = Some(Mac([v[4], v[5], v[6], v[7], v[8], v[9]]));
                }
            }
            NFULA_PAYLOAD => p.payload = a.value,
            NFULA_CT_INFO => p.ct_info = Some(a.u32_be()?),
            NFULA_CT => p.ct_orig = conntrack::orig_tuple(&a)?,
            NFULA_PREFIX => {
                let end = a.value.iter().position(|&b| b == 0).unwrap_or(a.value.len());
                p.prefix = std::str::from_utf8(&a.value[..end]).ok();
            }
            _ => {}
        }
    }
    Ok(Some(p))
}

fn config_msg(w: &mut NlWriter, group: u16, seq: u32) {
    w.begin_msg(u16::from(NFNL_SUBSYS_ULOG) << 8 | u16::from(NFULNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq);
    // The group travels in res_id, big-endian like every nfgenmsg res_id.
    w.nfgenmsg(AF_UNSPEC, group);
}

/// The requests that make `group`'s packets come to the sending socket,
/// whole, one message each with seqs `first_seq..`: bind; copy mode and
/// a queue threshold of 1; the config `flags` (`NFULNL_CFG_F_CONNTRACK`
/// or 0; per-instance sequence numbers stay off).
///
/// The threshold matters: the kernel's default (100 packets or 1 s)
/// batches packets, so an answer would reach leash up to a second after
/// the device, too late to block its first connection (seen in the lab). Send them in order and check each
/// ack: the later two fail with ENODEV unless the bind succeeded.
pub fn bind_requests(group: u16, first_seq: u32, flags: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(3);

    let mut w = NlWriter::new();
    config_msg(&mut w, group, first_seq);
    w.attr_u8(NFULA_CFG_CMD, NFULNL_CFG_CMD_BIND);
    w.end_msg();
    out.push(w.finish());

    let mut w = NlWriter::new();
    config_msg(&mut w, group, first_seq.wrapping_add(1));
    // struct nfulnl_msg_config_mode { __be32 copy_range; u8 copy_mode; u8 pad; } (packed)
    let mut mode = COPY_RANGE.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    w.attr(NFULA_CFG_MODE, &mode);
    w.attr_u32_be(NFULA_CFG_QTHRESH, 1);
    w.end_msg();
    out.push(w.finish());

    let mut w = NlWriter::new();
    config_msg(&mut w, group, first_seq.wrapping_add(2));
    // No NFULA_SEQ attributes: nothing here uses them.
    w.attr_u16_be(NFULA_CFG_FLAGS, flags);
    w.end_msg();
    out.push(w.finish());
    out
}

/// Releases `group` (closing the socket does too).
pub fn unbind_request(group: u16, seq: u32) -> Vec<u8> {
    let mut w = NlWriter::new();
    config_msg(&mut w, group, seq);
    w.attr_u8(NFULA_CFG_CMD, NFULNL_CFG_CMD_UNBIND);
    w.end_msg();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::tests::XorShift;
    use super::super::nla::{Attrs, Messages, NLMSG_DONE};
    use super::*;

    #[test]
    fn output_hook_packet_v4() {
        let p = parse_message(NFLOG_OUTPUT_A_UDP4).unwrap().unwrap();
        assert_eq!(p.family, 2);
        assert_eq!((p.hw_protocol, p.hook), (Some(0x0800), Some(3)));
        assert_eq!(p.prefix, Some("leash-dns"));
        assert_eq!((p.indev, p.outdev, p.hwaddr), (None, Some(2), None));
        // The payload starts at the IPv4 header and holds the whole packet.
        assert_eq!(p.payload.len(), 82);
        assert_eq!(p.payload[0], 0x45);
    }

    #[test]
    fn input_hook_packet_v6_has_hwaddr() {
        let p = parse_message(NFLOG_INPUT_AAAA_UDP6).unwrap().unwrap();
        assert_eq!(p.family, 10);
        assert_eq!((p.hw_protocol, p.hook), (Some(0x86dd), Some(1)));
        // A rule without a prefix still sends an empty NFULA_PREFIX.
        assert_eq!(p.prefix, Some(""));
        assert_eq!((p.indev, p.outdev), (Some(2), None));
        assert_eq!(p.hwaddr, Some("86:9f:17:d7:99:44".parse().unwrap()));
        assert_eq!(p.payload.len(), 108);
        assert_eq!(p.payload[0] >> 4, 6);
    }

    #[test]
    fn tcp_packet() {
        let p = parse_message(NFLOG_OUTPUT_A_TCP4).unwrap().unwrap();
        assert_eq!(p.payload.len(), 121);
        assert_eq!(p.payload[9], 6);
    }

    #[test]
    fn bind_request_bytes() {
        let reqs = bind_requests(5335, 100, NFULNL_CFG_F_CONNTRACK);
        assert_eq!(reqs.len(), 3);
        #[rustfmt::skip]
        let bind: &[u8] = &nfnl([
            0x1c, 0, 0, 0, 0x01, 0x04, 0x05, 0x00, 100, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 28 type ULOG<<8|CONFIG flags REQUEST|ACK seq 100
            0x00, 0x00, 0x14, 0xd7,  // nfgenmsg: AF_UNSPEC, version 0, res_id = group 5335 big-endian
            0x05, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,  // NFULA_CFG_CMD = BIND
        ]);
        #[rustfmt::skip]
        let mode: &[u8] = &nfnl([
            0x28, 0, 0, 0, 0x01, 0x04, 0x05, 0x00, 101, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 40 seq 101
            0x00, 0x00, 0x14, 0xd7,  // nfgenmsg
            0x0a, 0x00, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00,  // NFULA_CFG_MODE: range 0xffff, COPY_PACKET, pad
            0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x01,  // NFULA_CFG_QTHRESH = 1
        ]);
        #[rustfmt::skip]
        let flags: &[u8] = &nfnl([
            0x1c, 0, 0, 0, 0x01, 0x04, 0x05, 0x00, 102, 0, 0, 0, 0, 0, 0, 0,  // nlmsghdr: len 28 seq 102
            0x00, 0x00, 0x14, 0xd7,  // nfgenmsg
            0x06, 0x00, 0x06, 0x00, 0x00, 0x02, 0x00, 0x00,  // NFULA_CFG_FLAGS = CONNTRACK (big-endian)
        ]);
        // Captured little-endian; nfnl puts the netlink headers in host order.
        assert_eq!(reqs[0], bind);
        assert_eq!(reqs[1], mode);
        assert_eq!(reqs[2], flags);
        for (i, r) in reqs.iter().enumerate() {
            let m = Msg::parse(r).unwrap();
            assert_eq!(m.hdr.seq, 100 + i as u32);
            assert_eq!(m.hdr.len as usize, r.len());
            // Config messages are not packets.
            assert_eq!(parse_message(r).unwrap(), None);
        }
        let unbind = unbind_request(5335, 7);
        let m = Msg::parse(&unbind).unwrap();
        let (gen, attrs) = m.nfnl().unwrap();
        assert_eq!((gen.family, gen.res_id), (0, 5335));
        let a: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!((a[0].ty, a[0].u8().unwrap()), (NFULA_CFG_CMD, NFULNL_CFG_CMD_UNBIND));
        // Seqs wrap instead of overflowing.
        assert_eq!(Msg::parse(&bind_requests(1, u32::MAX, 0)[2]).unwrap().hdr.seq, 1);
    }

    #[test]
    fn other_messages_are_none() {
        // NLMSG_DONE, which ends a batch of several packets.
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse_message(&done).unwrap(), None);
        // A conntrack event.
        assert_eq!(parse_message(CT_NEW_TCP4).unwrap(), None);
    }

    #[test]
    fn hostile_attributes() {
        // NFULA_HWADDR with a 4-byte address: no MAC, not an error.
        let mut b = NFLOG_INPUT_AAAA_UDP6.to_vec();
        let at = 20 + 8 + 8 + 8; // PACKET_HDR, PREFIX, INDEV, then HWADDR
        assert_eq!(&b[at..at + 4], &nla_hdr(0x10, 0x08));
        b[at + 5] = 4;
        assert_eq!(parse_message(&b).unwrap().unwrap().hwaddr, None);
        // The same attribute cut to 8 bytes: a size error.
        set_nla_len(&mut b, at, 0x0c);
        assert!(matches!(parse_message(&b), Err(DecodeError::AttrSize { .. })));
        // A prefix that is not UTF-8 is dropped, the packet kept.
        let mut b = NFLOG_OUTPUT_A_UDP4.to_vec();
        assert_eq!(&b[28..32], &nla_hdr(0x0e, 0x0a));
        b[32] = 0xff;
        let p = parse_message(&b).unwrap().unwrap();
        assert_eq!((p.prefix, p.payload.len()), (None, 82));
        // PACKET_HDR of 3 bytes.
        let mut b = NFLOG_OUTPUT_A_UDP4.to_vec();
        set_nla_len(&mut b, 20, 7);
        assert!(parse_message(&b).is_err());
    }

    #[test]
    fn truncations_never_panic() {
        for cap in [NFLOG_OUTPUT_A_UDP4, NFLOG_OUTPUT_A_TCP4, NFLOG_INPUT_AAAA_UDP6] {
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
        let mut rng = XorShift(0x853c49e6748fea9b);
        let caps = [NFLOG_OUTPUT_A_UDP4, NFLOG_OUTPUT_A_TCP4, NFLOG_INPUT_AAAA_UDP6];
        for i in 0..20_000 {
            let mut b = caps[i % caps.len()].to_vec();
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
