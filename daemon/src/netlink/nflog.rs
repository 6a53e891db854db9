//! NFLOG codec, pure: packets logged by an nft `log group N` rule in,
//! group bind/unbind requests out (NETLINK_NETFILTER, subsystem ULOG).
//!
//! leash reads DNS answers this way (SPEC §2): the rule copies each reply
//! that crosses the router to our socket, network header first, and the
//! packet itself goes on untouched. Unknown attributes are skipped.

pub use super::nla::DecodeError;
use super::nla::{Msg, NlWriter, NLM_F_ACK, NLM_F_REQUEST};
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

// Attributes of a config request (enum nfulnl_attr_config).
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_FLAGS: u16 = 6;

const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_CFG_CMD_UNBIND: u8 = 2;
const NFULNL_COPY_PACKET: u8 = 2;

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
/// whole, one message each with seqs `first_seq..`: bind, copy mode, and
/// per-instance sequence numbers off. Send them in order and check each
/// ack: the later two fail with ENODEV unless the bind succeeded.
pub fn bind_requests(group: u16, first_seq: u32) -> Vec<Vec<u8>> {
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
    w.end_msg();
    out.push(w.finish());

    let mut w = NlWriter::new();
    config_msg(&mut w, group, first_seq.wrapping_add(2));
    // No NFULA_SEQ attributes: nothing here uses them.
    w.attr_u16_be(NFULA_CFG_FLAGS, 0);
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
