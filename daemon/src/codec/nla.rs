//! Netlink framing, pure: message headers (`nlmsghdr`), the netfilter
//! header (`nfgenmsg`), attributes (NLAs) and the kernel's ack/error/done
//! messages, read and written over byte buffers.
//!
//! Readers never panic and never index past a buffer: every length comes
//! from the kernel (or from a hostile peer), so each is checked and a bad
//! one is an error. Netlink uses host byte order for its own headers and
//! for most attribute payloads; netfilter attributes are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const NLMSG_HDRLEN: usize = 16;
pub const NLA_HDRLEN: usize = 4;
pub const NFGENMSG_LEN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
/// Types below this are netlink control messages, not protocol messages.
pub const NLMSG_MIN_TYPE: u16 = 0x10;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original message was cut to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Extended ack attribute carrying the kernel's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

pub const NFNETLINK_V0: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("{what} declares length {len}, below its header size")]
    BadLength { what: &'static str, len: usize },
    #[error("attribute {ty} has {len} bytes, expected {want}")]
    AttrSize { ty: u16, len: usize, want: usize },
    #[error("missing attribute {0}")]
    Missing(&'static str),
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn take<const N: usize>(buf: &[u8], at: usize, what: &'static str) -> Result<[u8; N], DecodeError> {
    buf.get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(DecodeError::Truncated { what, need: at.saturating_add(N), have: buf.len() })
}

/// `struct nlmsghdr`, host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NlMsgHdr {
    pub len: u32,
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl NlMsgHdr {
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let w = "netlink header";
        Ok(NlMsgHdr {
            len: u32::from_ne_bytes(take(buf, 0, w)?),
            ty: u16::from_ne_bytes(take(buf, 4, w)?),
            flags: u16::from_ne_bytes(take(buf, 6, w)?),
            seq: u32::from_ne_bytes(take(buf, 8, w)?),
            pid: u32::from_ne_bytes(take(buf, 12, w)?),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_ne_bytes());
        out.extend_from_slice(&self.ty.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&self.pid.to_ne_bytes());
    }
}

/// `struct nfgenmsg`: the netfilter header after `nlmsghdr`. `res_id` is
/// big-endian on the wire (it carries a subsystem id in batch messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NfGenMsg {
    pub family: u8,
    pub version: u8,
    pub res_id: u16,
}

impl NfGenMsg {
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let [family, version, a, b] = take::<4>(buf, 0, "nfgenmsg")?;
        Ok(NfGenMsg { family, version, res_id: u16::from_be_bytes([a, b]) })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.family);
        out.push(self.version);
        out.extend_from_slice(&self.res_id.to_be_bytes());
    }
}

/// One netlink message: its header and the payload after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub hdr: NlMsgHdr,
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// Parses exactly one message; bytes past `nlmsg_len` are ignored.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let hdr = NlMsgHdr::parse(buf)?;
        let len = hdr.len as usize;
        if len < NLMSG_HDRLEN {
            return Err(DecodeError::BadLength { what: "netlink message", len });
        }
        let payload = buf
            .get(NLMSG_HDRLEN..len)
            .ok_or(DecodeError::Truncated { what: "netlink message", need: len, have: buf.len() })?;
        Ok(Msg { hdr, payload })
    }

    /// Subsystem id of a netfilter message type (`type >> 8`).
    pub fn nfnl_subsys(&self) -> u8 {
        (self.hdr.ty >> 8) as u8
    }

    /// Message id within a netfilter subsystem (`type & 0xff`).
    pub fn nfnl_msg(&self) -> u8 {
        (self.hdr.ty & 0xff) as u8
    }

    /// For netfilter messages: the `nfgenmsg` and the attributes after it.
    pub fn nfnl(&self) -> Result<(NfGenMsg, Attrs<'a>), DecodeError> {
        let gen = NfGenMsg::parse(self.payload)?;
        Ok((gen, Attrs::new(self.payload.get(NFGENMSG_LEN..).unwrap_or(&[]))))
    }
}

/// Splits a receive buffer into messages. After the first error it stops,
/// because a bad length leaves no trustworthy boundary for the next one.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { buf, failed: false }
    }
}

impl<'a> Iterator for Messages<'a> {
    /// The whole message, header included.
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        match Msg::parse(self.buf) {
            Ok(m) => {
                let len = m.hdr.len as usize;
                let (msg, _) = self.buf.split_at(len);
                // The last message may lack its alignment padding.
                self.buf = self.buf.get(align4(len)..).unwrap_or(&[]);
                Some(Ok(msg))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One attribute; `ty` has the nested/byte-order flags masked off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub ty: u16,
    pub nested: bool,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    fn exact<const N: usize>(&self) -> Result<[u8; N], DecodeError> {
        <[u8; N]>::try_from(self.value).map_err(|_| DecodeError::AttrSize {
            ty: self.ty,
            len: self.value.len(),
            want: N,
        })
    }
    pub fn u8(&self) -> Result<u8, DecodeError> {
        Ok(self.exact::<1>()?[0])
    }
    pub fn u16_be(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.exact()?))
    }
    pub fn u32_be(&self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.exact()?))
    }
    pub fn u64_be(&self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.exact()?))
    }
    pub fn u16_ne(&self) -> Result<u16, DecodeError> {
        Ok(u16::from_ne_bytes(self.exact()?))
    }
    pub fn u32_ne(&self) -> Result<u32, DecodeError> {
        Ok(u32::from_ne_bytes(self.exact()?))
    }
    pub fn ipv4(&self) -> Result<Ipv4Addr, DecodeError> {
        Ok(Ipv4Addr::from(self.exact::<4>()?))
    }
    pub fn ipv6(&self) -> Result<Ipv6Addr, DecodeError> {
        Ok(Ipv6Addr::from(self.exact::<16>()?))
    }
    /// An address of either family, told apart by length.
    pub fn ip(&self) -> Result<IpAddr, DecodeError> {
        match self.value.len() {
            4 => self.ipv4().map(IpAddr::V4),
            _ => self.ipv6().map(IpAddr::V6),
        }
    }
    /// A NUL-terminated (or unterminated) string, lossily decoded.
    pub fn string(&self) -> String {
        let v = self.value;
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    }
    /// The attributes nested in this one. The kernel does not always set
    /// NLA_F_NESTED, so this does not require it.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }
}

/// Iterates the attributes of a buffer; stops after the first error.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { buf, failed: false }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_inline()
    }
}

impl<'a> Attrs<'a> {
    /// `next`, inlined into a loop that walks many attributes (each
    /// conntrack event's): the size-optimised build would call it for each.
    #[inline(always)]
    pub fn next_inline(&mut self) -> Option<Result<Attr<'a>, DecodeError>> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        // The header read by hand, not with `take`: this runs for every
        // attribute of every event.
        let r = match *self.buf {
            [l0, l1, t0, t1, ..] => {
                let len = usize::from(u16::from_ne_bytes([l0, l1]));
                let ty = u16::from_ne_bytes([t0, t1]);
                if len < NLA_HDRLEN {
                    Err(DecodeError::BadLength { what: "attribute", len })
                } else if let Some(value) = self.buf.get(NLA_HDRLEN..len) {
                    self.buf = self.buf.get(align4(len)..).unwrap_or(&[]);
                    return Some(Ok(Attr { ty: ty & NLA_TYPE_MASK, nested: ty & NLA_F_NESTED != 0, value }));
                } else {
                    Err(DecodeError::Truncated { what: "attribute", need: len, have: self.buf.len() })
                }
            }
            _ => Err(DecodeError::Truncated {
                what: "attribute header",
                need: if self.buf.len() < 2 { 2 } else { NLA_HDRLEN },
                have: self.buf.len(),
            }),
        };
        self.failed = true;
        Some(r)
    }
}

/// A kernel NLMSG_ERROR: `errno` 0 is an ack, otherwise a positive errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlErrorMsg {
    pub errno: i32,
    /// Header of the request this answers (its `seq` says which).
    pub orig: NlMsgHdr,
    /// The extended-ack message, when the kernel gave one.
    pub ext_msg: Option<String>,
}

/// Parses the payload of an NLMSG_ERROR message whose header flags are
/// `flags` (they say whether the echo is capped and TLVs follow).
pub fn parse_error(flags: u16, payload: &[u8]) -> Result<NlErrorMsg, DecodeError> {
    let err = i32::from_ne_bytes(take(payload, 0, "netlink error")?);
    let orig_buf = payload.get(4..).unwrap_or(&[]);
    let orig = NlMsgHdr::parse(orig_buf)?;
    let mut ext_msg = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if flags & NLM_F_CAPPED != 0 { NLMSG_HDRLEN } else { orig.len as usize };
        let tlvs = orig_buf.get(align4(echoed)..).unwrap_or(&[]);
        for a in Attrs::new(tlvs).flatten() {
            if a.ty == NLMSGERR_ATTR_MSG {
                ext_msg = Some(a.string());
            }
        }
    }
    Ok(NlErrorMsg { errno: err.checked_neg().unwrap_or(i32::MAX), orig, ext_msg })
}

/// Parses the payload of NLMSG_DONE: the dump's final status (0 or a
/// positive errno). Old kernels may send it without the status word.
pub fn parse_done(payload: &[u8]) -> i32 {
    take::<4>(payload, 0, "done").map(|b| -i32::from_ne_bytes(b)).unwrap_or(0)
}

/// Builds netlink messages into one buffer (so a batch is just several
/// messages in a row). Lengths are patched when a message or nest ends.
#[derive(Debug, Default, Clone)]
pub struct NlWriter {
    buf: Vec<u8>,
    msg_start: usize,
}

/// Token for an open nested attribute; give it back to `end_nested`.
#[must_use]
#[derive(Debug)]
pub struct Nest(usize);

impl NlWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a message; `pid` 0 lets the kernel fill in our port.
    pub fn begin_msg(&mut self, ty: u16, flags: u16, seq: u32) {
        self.msg_start = self.buf.len();
        NlMsgHdr { len: 0, ty, flags, seq, pid: 0 }.emit(&mut self.buf);
    }

    pub fn nfgenmsg(&mut self, family: u8, res_id: u16) {
        NfGenMsg { family, version: NFNETLINK_V0, res_id }.emit(&mut self.buf);
    }

    /// Raw bytes right after the header (a fixed protocol header).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    pub fn end_msg(&mut self) {
        let len = (self.buf.len() - self.msg_start) as u32;
        self.buf[self.msg_start..self.msg_start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    pub fn attr(&mut self, ty: u16, value: &[u8]) {
        // Values come from our own encoders and are small; an attribute
        // over 64 KiB would be a programming error caught in tests.
        debug_assert!(value.len() + NLA_HDRLEN <= u16::MAX as usize);
        let len = (value.len() + NLA_HDRLEN) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    pub fn attr_u8(&mut self, ty: u16, v: u8) {
        self.attr(ty, &[v]);
    }
    pub fn attr_u16_be(&mut self, ty: u16, v: u16) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub fn attr_u32_be(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub fn attr_u64_be(&mut self, ty: u16, v: u64) {
        self.attr(ty, &v.to_be_bytes());
    }
    /// A NUL-terminated string, as nf_tables names are sent.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    /// Opens a nested attribute (NLA_F_NESTED is set, as the kernel's
    /// strict policies for newer attributes require).
    pub fn begin_nested(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        Nest(at)
    }

    pub fn end_nested(&mut self, nest: Nest) {
        let len = self.buf.len() - nest.0;
        debug_assert!(len <= u16::MAX as usize);
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift64: a tiny deterministic PRNG for hostile-input loops.
    pub(crate) struct XorShift(pub u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Walks every message and attribute, recursing into anything that
    /// parses as nested; only checks that nothing panics.
    pub(crate) fn walk_all(buf: &[u8]) {
        fn walk_attrs(buf: &[u8], depth: usize) {
            for a in Attrs::new(buf) {
                let Ok(a) = a else { break };
                let _ = (a.u8(), a.u16_be(), a.u32_be(), a.u64_be(), a.ip(), a.string());
                if depth < 8 {
                    walk_attrs(a.value, depth + 1);
                }
            }
        }
        for m in Messages::new(buf) {
            let Ok(m) = m else { break };
            if let Ok(m) = Msg::parse(m) {
                let _ = parse_error(m.hdr.flags, m.payload);
                let _ = parse_done(m.payload);
                walk_attrs(m.payload, 0);
                walk_attrs(m.payload.get(4..).unwrap_or(&[]), 0);
            }
        }
    }

    #[test]
    fn writer_round_trip_with_nesting() {
        let mut w = NlWriter::new();
        w.begin_msg(0x0a0c, NLM_F_REQUEST | NLM_F_ACK, 7);
        w.nfgenmsg(1, 0);
        w.attr_str(1, "t");
        let outer = w.begin_nested(3);
        let inner = w.begin_nested(1);
        w.attr_u64_be(4, 30_000);
        w.end_nested(inner);
        w.end_nested(outer);
        w.end_msg();
        let buf = w.finish();
        assert_eq!(buf.len() % 4, 0);

        let msgs: Vec<_> = Messages::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let m = Msg::parse(msgs[0]).unwrap();
        assert_eq!(m.hdr.len as usize, buf.len());
        assert_eq!((m.hdr.ty, m.hdr.flags, m.hdr.seq), (0x0a0c, 5, 7));
        let (gen, attrs) = m.nfnl().unwrap();
        assert_eq!(gen, NfGenMsg { family: 1, version: 0, res_id: 0 });
        let attrs: Vec<_> = attrs.collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].string(), "t");
        assert_eq!(attrs[0].value, b"t\0");
        assert!(attrs[1].nested);
        let elem = attrs[1].attrs().next().unwrap().unwrap();
        assert!(elem.nested);
        let t = elem.attrs().next().unwrap().unwrap();
        assert_eq!((t.ty, t.u64_be().unwrap()), (4, 30_000));
    }

    #[test]
    fn batch_of_messages_splits() {
        let mut w = NlWriter::new();
        for seq in 0..3 {
            w.begin_msg(0x10, NLM_F_REQUEST, seq);
            w.nfgenmsg(0, 10);
            w.end_msg();
        }
        let buf = w.finish();
        let seqs: Vec<u32> = Messages::new(&buf)
            .map(|m| Msg::parse(m.unwrap()).unwrap().hdr.seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
        // res_id is big-endian on the wire: subsystem 10 is 00 0a.
        assert_eq!(&buf[16..20], &[0, 0, 0, 10]);
    }

    use crate::codec::captured::nla_hdr;

    #[test]
    fn error_and_done_messages() {
        // An NLMSG_ERROR with errno -ENOENT, capped echo, and an
        // extended-ack message TLV, as the kernel sends with CAP_ACK and
        // EXT_ACK enabled.
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-2i32).to_ne_bytes());
        NlMsgHdr { len: 84, ty: 0x0a0e, flags: 5, seq: 9, pid: 0 }.emit(&mut payload);
        payload.extend_from_slice(&nla_hdr(12, 1));
        payload.extend_from_slice(b"no such\0");
        let e = parse_error(NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload).unwrap();
        assert_eq!(e.errno, 2);
        assert_eq!(e.orig.seq, 9);
        assert_eq!(e.ext_msg.as_deref(), Some("no such"));
        // An ack: errno 0.
        let mut ack = 0i32.to_ne_bytes().to_vec();
        NlMsgHdr { len: 20, ty: 0x0102, flags: 5, seq: 3, pid: 0 }.emit(&mut ack);
        let a = parse_error(0, &ack).unwrap();
        assert_eq!((a.errno, a.orig.seq, a.ext_msg), (0, 3, None));
        // Too short to hold the echoed header.
        assert!(parse_error(0, &ack[..10]).is_err());
        assert_eq!(parse_done(&0i32.to_ne_bytes()), 0);
        assert_eq!(parse_done(&(-16i32).to_ne_bytes()), 16);
        assert_eq!(parse_done(&[]), 0);
        // i32::MIN has no positive counterpart: must not overflow.
        let mut weird = i32::MIN.to_ne_bytes().to_vec();
        NlMsgHdr::default().emit(&mut weird);
        assert_eq!(parse_error(0, &weird).unwrap().errno, i32::MAX);
    }

    #[test]
    fn hostile_attributes_are_errors() {
        // Header cut short.
        assert!(matches!(Attrs::new(&8u16.to_ne_bytes()).next(), Some(Err(DecodeError::Truncated { .. }))));
        // Zero length: would loop forever if accepted.
        let zero = [&nla_hdr(0, 1)[..], &[0; 4]].concat();
        let mut it = Attrs::new(&zero);
        assert!(matches!(it.next(), Some(Err(DecodeError::BadLength { .. }))));
        assert!(it.next().is_none());
        // Length past the end.
        assert!(matches!(
            Attrs::new(&[&nla_hdr(200, 1)[..], &[1, 2, 3, 4]].concat()).next(),
            Some(Err(DecodeError::Truncated { .. }))
        ));
        // Misaligned final attribute without padding is accepted.
        let one = [&nla_hdr(5, 1)[..], &[9]].concat();
        let a: Vec<_> = Attrs::new(&one).collect::<Result<_, _>>().unwrap();
        assert_eq!(a[0].u8().unwrap(), 9);
        // Wrong size for the requested type.
        assert!(matches!(a[0].u32_be(), Err(DecodeError::AttrSize { want: 4, .. })));
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(Msg::parse(&[0; 10]).is_err());
        // nlmsg_len below the header size.
        let mut b = Vec::new();
        NlMsgHdr { len: 4, ..Default::default() }.emit(&mut b);
        assert!(matches!(Msg::parse(&b), Err(DecodeError::BadLength { .. })));
        let mut it = Messages::new(&b);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        // nlmsg_len past the buffer.
        let mut b = Vec::new();
        NlMsgHdr { len: 400, ..Default::default() }.emit(&mut b);
        assert!(matches!(Msg::parse(&b), Err(DecodeError::Truncated { .. })));
        // Huge length must not overflow anything.
        let mut b = Vec::new();
        NlMsgHdr { len: u32::MAX, ..Default::default() }.emit(&mut b);
        assert!(Msg::parse(&b).is_err());
        // A netfilter message too short for its nfgenmsg.
        let mut b = Vec::new();
        NlMsgHdr { len: 18, ..Default::default() }.emit(&mut b);
        b.extend_from_slice(&[2, 0]);
        assert!(Msg::parse(&b).unwrap().nfnl().is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        for i in 0..20_000 {
            let n = (rng.next() % 300) as usize;
            let mut buf = rng.bytes(n);
            // Half the time, plant a plausible length so parsing goes deeper.
            if i % 2 == 0 && buf.len() >= 4 {
                buf[..4].copy_from_slice(&(n as u32).to_ne_bytes());
            }
            walk_all(&buf);
        }
    }
}
