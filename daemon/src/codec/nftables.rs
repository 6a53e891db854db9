//! nf_tables set-element batches, pure: the messages `nft add element` and
//! `nft delete element` send, for long-lived named sets whose elements
//! carry their own timeouts (which the `nftnl` crate cannot express).
//!
//! A batch is NFNL_MSG_BATCH_BEGIN, one NEWSETELEM/DELSETELEM per
//! operation, NFNL_MSG_BATCH_END. The kernel applies it as one
//! transaction: if any message fails, none of them takes effect.

use std::time::Duration;

use super::nla::{NlWriter, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};

pub const NFNL_SUBSYS_NFTABLES: u8 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFT_MSG_NEWSETELEM: u8 = 12;
pub const NFT_MSG_DELSETELEM: u8 = 14;
/// The `inet` family: one table for IPv4 and IPv6.
pub const NFPROTO_INET: u8 = 1;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;

/// What the codec needs of a set element: the set it belongs to, its key
/// bytes, and how `nft` writes it (for error messages). leash's one
/// element type, `nft::Elem`, is one.
pub trait SetElem {
    fn set(&self) -> &str;
    fn key_bytes(&self) -> Vec<u8>;
    fn nft_key(&self) -> String;
}

/// Add (`add: true`) or delete one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOp {
    /// The element's own set, or another one (tests).
    pub set: String,
    pub key: Vec<u8>,
    /// The element as `nft` writes it.
    pub shown: String,
    /// `None`: the element never expires (unless the set has a default).
    pub timeout: Option<Duration>,
    pub add: bool,
}

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Elem(SetOp),
    /// Remove every element of the set (DELSETELEM without elements).
    Flush { set: String },
}

impl BatchOp {
    pub fn set(&self) -> &str {
        match self {
            BatchOp::Elem(op) => &op.set,
            BatchOp::Flush { set } => set,
        }
    }

    pub fn is_delete(&self) -> bool {
        !matches!(self, BatchOp::Elem(SetOp { add: true, .. }))
    }

    /// Short description for error messages: "add aa:..:ff . 192.0.2.1".
    pub fn describe(&self) -> String {
        match self {
            BatchOp::Elem(op) => {
                let key = &op.shown;
                format!("{} {key}", if op.add { "add" } else { "delete" })
            }
            BatchOp::Flush { .. } => "flush".to_string(),
        }
    }
}

/// Set-element operations on one table (family inet), sent as one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemBatch {
    table: String,
    ops: Vec<BatchOp>,
}

impl ElemBatch {
    pub fn new(table: &str) -> Self {
        ElemBatch { table: table.to_string(), ops: Vec::new() }
    }

    /// Adds `elem` to its set (`timeout: None`: until removed).
    pub fn add(&mut self, elem: &impl SetElem, timeout: Option<Duration>) {
        self.add_to(elem.set(), elem, timeout);
    }

    pub fn delete(&mut self, elem: &impl SetElem) {
        self.delete_from(elem.set(), elem);
    }

    /// Adds `elem`'s key to the set named `set` (tests, other tables).
    pub fn add_to(&mut self, set: &str, elem: &impl SetElem, timeout: Option<Duration>) {
        self.ops.push(BatchOp::Elem(SetOp { set: set.to_string(), key: elem.key_bytes(), shown: elem.nft_key(), timeout, add: true }));
    }

    pub fn delete_from(&mut self, set: &str, elem: &impl SetElem) {
        self.ops.push(BatchOp::Elem(SetOp { set: set.to_string(), key: elem.key_bytes(), shown: elem.nft_key(), timeout: None, add: false }));
    }

    pub fn flush_set(&mut self, set: &str) {
        self.ops.push(BatchOp::Flush { set: set.to_string() });
    }

    pub fn push(&mut self, op: BatchOp) {
        self.ops.push(op);
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Sequence number of op `i` when encoded from `first_seq` (the
    /// batch-begin message takes `first_seq` itself).
    pub fn seq_of(first_seq: u32, i: usize) -> u32 {
        first_seq.wrapping_add(1).wrapping_add(i as u32)
    }

    /// Sequence numbers the encoding of this batch uses.
    pub fn seq_span(&self) -> u32 {
        self.ops.len() as u32 + 2
    }

    /// The same table with only the ops `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(usize, &BatchOp) -> bool) -> ElemBatch {
        let ops = self.ops.iter().enumerate().filter(|(i, op)| keep(*i, op)).map(|(_, op)| op.clone()).collect();
        ElemBatch { table: self.table.clone(), ops }
    }

    /// Splits into batches of at most `max` ops (each its own transaction),
    /// so that one sendmsg stays under the socket's send buffer.
    pub fn chunks(&self, max: usize) -> Vec<ElemBatch> {
        self.ops
            .chunks(max.max(1))
            .map(|c| ElemBatch { table: self.table.clone(), ops: c.to_vec() })
            .collect()
    }

    /// Encodes the batch; op `i` gets sequence number `seq_of(first_seq, i)`
    /// and asks for an ack, so that each op's fate is known.
    pub fn encode(&self, first_seq: u32) -> Vec<u8> {
        let mut w = NlWriter::new();
        w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq);
        w.nfgenmsg(0, NFNL_SUBSYS_NFTABLES.into());
        w.end_msg();
        for (i, op) in self.ops.iter().enumerate() {
            let seq = Self::seq_of(first_seq, i);
            let (msg, flags) = match op {
                BatchOp::Elem(SetOp { add: true, .. }) => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
                _ => (NFT_MSG_DELSETELEM, 0),
            };
            w.begin_msg(nft_type(msg), NLM_F_REQUEST | NLM_F_ACK | flags, seq);
            w.nfgenmsg(NFPROTO_INET, 0);
            w.attr_str(NFTA_SET_ELEM_LIST_TABLE, &self.table);
            w.attr_str(NFTA_SET_ELEM_LIST_SET, op.set());
            if let BatchOp::Elem(e) = op {
                let list = w.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
                let elem = w.begin_nested(NFTA_LIST_ELEM);
                if let (true, Some(t)) = (e.add, e.timeout) {
                    w.attr_u64_be(NFTA_SET_ELEM_TIMEOUT, timeout_ms(t));
                }
                let key = w.begin_nested(NFTA_SET_ELEM_KEY);
                w.attr(NFTA_DATA_VALUE, &e.key);
                w.end_nested(key);
                w.end_nested(elem);
                w.end_nested(list);
            }
            w.end_msg();
        }
        w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, Self::seq_of(first_seq, self.ops.len()));
        w.nfgenmsg(0, NFNL_SUBSYS_NFTABLES.into());
        w.end_msg();
        w.finish()
    }
}

/// The netlink message type of nf_tables message `msg`.
pub(crate) fn nft_type(msg: u8) -> u16 {
    u16::from(NFNL_SUBSYS_NFTABLES) << 8 | u16::from(msg)
}

/// Milliseconds for NFTA_SET_ELEM_TIMEOUT. A timeout of 0 means "never
/// expires" to the kernel, so a sub-millisecond one is rounded up to 1.
fn timeout_ms(t: Duration) -> u64 {
    let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 && !t.is_zero() {
        1
    } else {
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::{Attr, Messages, Msg, NLM_F_CREATE};
    use super::*;

    use crate::mac::Mac;
    use crate::nft::Elem;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    /// The messages of an encoded batch, with their attributes.
    fn msgs(buf: &[u8]) -> Vec<(Msg<'_>, Vec<Attr<'_>>)> {
        Messages::new(buf)
            .map(|m| {
                let m = Msg::parse(m.unwrap()).unwrap();
                let attrs = m.nfnl().unwrap().1.collect::<Result<Vec<_>, _>>().unwrap();
                (m, attrs)
            })
            .collect()
    }

    /// Checks that our one-op batch carries the same table, set and element
    /// attributes as nft's. nft adds NFTA_SET_ELEM_LIST_SET_ID (for sets
    /// created in the same batch) and no NLM_F_ACK; we need neither.
    fn same_as_nft(ours: &[u8], nft: &[u8]) {
        let (o, n) = (msgs(ours), msgs(nft));
        assert_eq!(o.len(), 3);
        assert_eq!(n.len(), 3);
        // BATCH_BEGIN / BATCH_END: same bytes apart from sequence numbers.
        for i in [0, 2] {
            assert_eq!(o[i].0.hdr.ty, n[i].0.hdr.ty);
            assert_eq!(o[i].0.payload, n[i].0.payload);
        }
        let ((om, oa), (nm, na)) = (&o[1], &n[1]);
        assert_eq!(om.hdr.ty, nm.hdr.ty);
        assert_eq!(om.hdr.flags & !NLM_F_ACK, nm.hdr.flags);
        assert_eq!(om.payload[..4], nm.payload[..4], "nfgenmsg");
        let na: Vec<_> = na.iter().filter(|a| a.ty != 4).collect();
        assert_eq!(oa.len(), na.len());
        for (a, b) in oa.iter().zip(na) {
            assert_eq!((a.ty, a.nested, a.value), (b.ty, b.nested, b.value));
        }
    }

    #[test]
    fn add_mac_ip4_matches_nft() {
        let mut b = ElemBatch::new("t");
        b.add_to("s", &Elem::Block(mac("aa:bb:cc:dd:ee:ff"), "192.0.2.1".parse().unwrap()), Some(Duration::from_secs(30)));
        same_as_nft(&b.encode(0), NFT_ADD_MACIP4);
    }

    #[test]
    fn add_mac_ip6_matches_nft() {
        let mut b = ElemBatch::new("t");
        b.add_to("s6", &Elem::Block(mac("aa:bb:cc:dd:ee:ff"), "2001:db8::1".parse().unwrap()), Some(Duration::from_secs(3600)));
        same_as_nft(&b.encode(0), NFT_ADD_MACIP6);
    }

    #[test]
    fn delete_mac_ip4_matches_nft() {
        let mut b = ElemBatch::new("t");
        b.delete_from("s", &Elem::Block(mac("aa:bb:cc:dd:ee:ff"), "192.0.2.1".parse().unwrap()));
        same_as_nft(&b.encode(0), NFT_DEL_MACIP4);
    }

    #[test]
    fn add_mac_matches_nft() {
        let mut b = ElemBatch::new("t");
        b.add_to("m", &Elem::QuarantineMac(mac("aa:bb:cc:dd:ee:01")), None);
        same_as_nft(&b.encode(0), NFT_ADD_MAC);
        let mut b = ElemBatch::new("t");
        b.add_to("m", &Elem::QuarantineMac(mac("aa:bb:cc:dd:ee:02")), Some(Duration::from_secs(600)));
        same_as_nft(&b.encode(0), NFT_ADD_MAC_TIMEOUT);
    }

    #[test]
    fn key_lengths() {
        let m = mac("aa:bb:cc:dd:ee:ff");
        assert_eq!(Elem::QuarantineMac(m).key_bytes().len(), 6);
        assert_eq!(Elem::QuarantineAddr("192.0.2.1".parse().unwrap()).key_bytes(), [192, 0, 2, 1]);
        assert_eq!(Elem::QuarantineAddr("2001:db8::1".parse().unwrap()).key_bytes().len(), 16);
        assert_eq!(Elem::Block(m, "192.0.2.1".parse().unwrap()).key_bytes().len(), 12);
        assert_eq!(Elem::Block(m, "2001:db8::1".parse().unwrap()).key_bytes().len(), 24);
    }

    #[test]
    fn batch_layout_and_sequence_numbers() {
        let mut b = ElemBatch::new("leash");
        assert!(b.is_empty());
        b.add_to("qmac", &Elem::QuarantineMac(mac("aa:bb:cc:dd:ee:01")), Some(Duration::from_micros(10)));
        b.delete_from("qaddr4", &Elem::QuarantineAddr("192.0.2.7".parse().unwrap()));
        b.flush_set("block6");
        assert_eq!(b.len(), 3);
        let buf = b.encode(u32::MAX - 1);
        let m = msgs(&buf);
        assert_eq!(m.len(), 5);
        let seqs: Vec<u32> = m.iter().map(|(m, _)| m.hdr.seq).collect();
        assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 0, 1, 2]);
        assert_eq!(ElemBatch::seq_of(u32::MAX - 1, 2), 1);
        assert_eq!(b.seq_span(), 5);
        assert_eq!(m[1].0.hdr.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(m[1].0.nfnl_msg(), NFT_MSG_NEWSETELEM);
        assert_eq!(m[2].0.hdr.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m[2].0.nfnl_msg(), NFT_MSG_DELSETELEM);
        // Sub-millisecond timeout rounds up: 0 would mean "never expires".
        let elem = m[1].1[2].attrs().next().unwrap().unwrap();
        let timeout = elem.attrs().next().unwrap().unwrap();
        assert_eq!((timeout.ty, timeout.u64_be().unwrap()), (NFTA_SET_ELEM_TIMEOUT, 1));
        // Flush: table and set only.
        assert_eq!(m[3].1.len(), 2);
        assert_eq!(m[3].1[1].string(), "block6");
        assert_eq!(m[3].0.nfnl_msg(), NFT_MSG_DELSETELEM);
        assert_eq!(b.ops()[1].describe(), "delete 192.0.2.7");
        assert!(b.ops()[2].is_delete() && !b.ops()[0].is_delete());
    }

    #[test]
    fn retain_and_chunks() {
        let mut b = ElemBatch::new("t");
        for i in 0..5u8 {
            b.delete_from("qaddr4", &Elem::QuarantineAddr([192, 0, 2, i].into()));
        }
        let kept = b.retain(|i, _| i % 2 == 0);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept.table(), "t");
        let c = b.chunks(2);
        assert_eq!(c.iter().map(ElemBatch::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(b.chunks(0).len(), 5);
    }
}
