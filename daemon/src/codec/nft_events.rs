//! nf_tables notifications, pure: what the kernel multicasts on
//! NFNLGRP_NFTABLES after each committed transaction, so that leash sees
//! its table being deleted, flushed or edited by someone else. Also the
//! NFT_MSG_GETTABLE request of the once-a-second existence check.
//!
//! Facts checked on kernel 6.18 (`scripts/nft_events_lab.py`, captures in
//! `captured`):
//! - a transaction's notifications come in commit order, then one
//!   NFT_MSG_NEWGEN whose NFTA_GEN_PROC_PID/NAME name the process that
//!   committed it (PROC_PID is the committing thread's id in the initial
//!   pid namespace: the pid of a single-threaded `nft`);
//! - every notification's `nlmsg_pid` is the netlink port of the socket
//!   that sent the request (for `nft`, usually its pid), so the daemon's
//!   own element updates carry its nf_tables socket's port;
//! - the nfgenmsg `res_id` of each notification holds the low 16 bits of
//!   the generation the change committed in (NFTA_GEN_ID of its NEWGEN);
//! - deleting a table notifies each of its rules, sets and chains, then the
//!   table; flushing a set notifies one DELSETELEM per element; elements
//!   that expire are not notified;
//! - a DESTROY request (`nft destroy`, kernel 6.3+) is notified with the
//!   DEL* types.

use super::nla::{DecodeError, Msg, NlWriter, NLM_F_ACK, NLM_F_REQUEST};
use super::nftables::{nft_type, NFNL_SUBSYS_NFTABLES, NFT_MSG_DELSETELEM, NFT_MSG_NEWSETELEM};

/// Multicast group of NETLINK_NETFILTER carrying nf_tables notifications.
pub const NFNLGRP_NFTABLES: u32 = 7;

pub const NFT_MSG_NEWTABLE: u8 = 0;
pub const NFT_MSG_GETTABLE: u8 = 1;
pub const NFT_MSG_DELTABLE: u8 = 2;
pub const NFT_MSG_NEWCHAIN: u8 = 3;
pub const NFT_MSG_DELCHAIN: u8 = 5;
pub const NFT_MSG_NEWRULE: u8 = 6;
pub const NFT_MSG_DELRULE: u8 = 8;
pub const NFT_MSG_NEWSET: u8 = 9;
pub const NFT_MSG_DELSET: u8 = 11;
pub const NFT_MSG_NEWGEN: u8 = 15;
/// `destroy` requests (kernel 6.3+). 6.18 notifies them as DEL*; decoded
/// as deletions too in case another kernel passes the type through.
pub const NFT_MSG_DESTROYTABLE: u8 = 26;
pub const NFT_MSG_DESTROYCHAIN: u8 = 27;
pub const NFT_MSG_DESTROYRULE: u8 = 28;
pub const NFT_MSG_DESTROYSET: u8 = 29;
pub const NFT_MSG_DESTROYSETELEM: u8 = 30;

/// Attribute 1 of table, chain, rule, set and set-element-list messages
/// alike: NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
/// NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE.
const ATTR_TABLE: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USE: u16 = 3;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// NFT_TABLE_F_DORMANT: the table is there but none of its hooks run.
pub const NFT_TABLE_F_DORMANT: u32 = 1;

/// The kind of object a change notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    Table,
    Chain,
    Rule,
    Set,
    /// Elements of one set (one notification may list several).
    SetElems,
}

/// One change to one object, as notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub object: Object,
    /// Added or updated (NEW*), else deleted (DEL*, DESTROY*).
    pub new: bool,
    /// nfgenmsg family: NFPROTO_INET (1) for `inet` tables.
    pub family: u8,
    pub table: String,
    /// The chain or set; for a rule its chain, for elements their set;
    /// `None` for a table (or when the kernel left it out).
    pub name: Option<String>,
    /// Netlink port of the socket that asked for the change (`nlmsg_pid`).
    pub port: u32,
    /// Low 16 bits of the generation it committed in (nfgenmsg `res_id`).
    pub gen16: u16,
}

/// The end of one committed transaction (NFT_MSG_NEWGEN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub id: u32,
    /// The thread that committed it (NFTA_GEN_PROC_PID, in the initial pid
    /// namespace): the pid of a single-threaded process such as `nft`.
    pub pid: Option<u32>,
    pub proc_name: Option<String>,
    pub port: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftEvent {
    Change(Change),
    Generation(Generation),
}

fn change(msg: u8) -> Option<(Object, bool)> {
    Some(match msg {
        NFT_MSG_NEWTABLE => (Object::Table, true),
        NFT_MSG_DELTABLE | NFT_MSG_DESTROYTABLE => (Object::Table, false),
        NFT_MSG_NEWCHAIN => (Object::Chain, true),
        NFT_MSG_DELCHAIN | NFT_MSG_DESTROYCHAIN => (Object::Chain, false),
        NFT_MSG_NEWRULE => (Object::Rule, true),
        NFT_MSG_DELRULE | NFT_MSG_DESTROYRULE => (Object::Rule, false),
        NFT_MSG_NEWSET => (Object::Set, true),
        NFT_MSG_DELSET | NFT_MSG_DESTROYSET => (Object::Set, false),
        NFT_MSG_NEWSETELEM => (Object::SetElems, true),
        NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => (Object::SetElems, false),
        _ => return None,
    })
}

/// Decodes one notification. `Ok(None)`: not nf_tables, or a kind leash
/// does not follow (objects, flowtables, traces).
pub fn parse_event(buf: &[u8]) -> Result<Option<NftEvent>, DecodeError> {
    let m = Msg::parse(buf)?;
    if m.nfnl_subsys() != NFNL_SUBSYS_NFTABLES {
        return Ok(None);
    }
    let (gen, attrs) = m.nfnl()?;
    let port = m.hdr.pid;
    if m.nfnl_msg() == NFT_MSG_NEWGEN {
        let mut g = Generation { id: 0, pid: None, proc_name: None, port };
        let mut id = None;
        for a in attrs {
            let a = a?;
            match a.ty {
                NFTA_GEN_ID => id = Some(a.u32_be()?),
                NFTA_GEN_PROC_PID => g.pid = Some(a.u32_be()?),
                NFTA_GEN_PROC_NAME => g.proc_name = Some(a.string()),
                _ => {}
            }
        }
        g.id = id.ok_or(DecodeError::Missing("NFTA_GEN_ID"))?;
        return Ok(Some(NftEvent::Generation(g)));
    }
    let Some((object, new)) = change(m.nfnl_msg()) else { return Ok(None) };
    let name_attr = match object {
        Object::Table => None,
        Object::Chain => Some(NFTA_CHAIN_NAME),
        Object::Rule => Some(NFTA_RULE_CHAIN),
        Object::Set => Some(NFTA_SET_NAME),
        Object::SetElems => Some(NFTA_SET_ELEM_LIST_SET),
    };
    let mut table = None;
    let mut name = None;
    for a in attrs {
        let a = a?;
        if a.ty == ATTR_TABLE {
            table = Some(a.string());
        } else if Some(a.ty) == name_attr {
            name = Some(a.string());
        }
    }
    let table = table.ok_or(DecodeError::Missing("table name"))?;
    Ok(Some(NftEvent::Change(Change { object, new, family: gen.family, table, name, port, gen16: gen.res_id })))
}

/// What the kernel says of one table (the reply to `get_table_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub flags: u32,
    /// Chains, sets and other objects in the table.
    pub used: u32,
}

impl TableInfo {
    pub fn dormant(&self) -> bool {
        self.flags & NFT_TABLE_F_DORMANT != 0
    }
}

/// NFT_MSG_GETTABLE for one table, with an ack: answered by a NEWTABLE
/// message, or ENOENT when there is no such table.
pub fn get_table_request(seq: u32, family: u8, table: &str) -> Vec<u8> {
    let mut w = NlWriter::new();
    w.begin_msg(nft_type(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_ACK, seq);
    w.nfgenmsg(family, 0);
    w.attr_str(ATTR_TABLE, table);
    w.end_msg();
    w.finish()
}

/// Decodes the NEWTABLE message that answers `get_table_request`.
pub fn parse_table(buf: &[u8]) -> Result<TableInfo, DecodeError> {
    let m = Msg::parse(buf)?;
    if m.nfnl_subsys() != NFNL_SUBSYS_NFTABLES || m.nfnl_msg() != NFT_MSG_NEWTABLE {
        return Err(DecodeError::Invalid("not an nf_tables table message"));
    }
    let (_, attrs) = m.nfnl()?;
    let mut t = TableInfo { name: String::new(), flags: 0, used: 0 };
    let mut named = false;
    for a in attrs {
        let a = a?;
        match a.ty {
            ATTR_TABLE => {
                t.name = a.string();
                named = true;
            }
            NFTA_TABLE_FLAGS => t.flags = a.u32_be()?,
            NFTA_TABLE_USE => t.used = a.u32_be()?,
            _ => {}
        }
    }
    if !named {
        return Err(DecodeError::Missing("NFTA_TABLE_NAME"));
    }
    Ok(t)
}

/// Every event in one datagram, in order; undecodable messages come back as
/// errors in place (a bad length ends the datagram: no boundary is left).
pub fn events(buf: &[u8]) -> impl Iterator<Item = Result<NftEvent, DecodeError>> + '_ {
    super::nla::Messages::new(buf).filter_map(|m| match m.and_then(parse_event) {
        Ok(Some(ev)) => Some(Ok(ev)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::captured::*;
    use super::super::nla::{tests::walk_all, tests::XorShift, Messages, NlMsgHdr};
    use super::*;

    fn all(buf: &[u8]) -> Vec<NftEvent> {
        events(buf).collect::<Result<Vec<_>, _>>().unwrap()
    }

    fn changes(buf: &[u8]) -> Vec<(Object, bool, String, Option<String>)> {
        all(buf)
            .into_iter()
            .filter_map(|e| match e {
                NftEvent::Change(c) => Some((c.object, c.new, c.table, c.name)),
                _ => None,
            })
            .collect()
    }

    fn generation(buf: &[u8]) -> Generation {
        all(buf)
            .into_iter()
            .find_map(|e| match e {
                NftEvent::Generation(g) => Some(g),
                _ => None,
            })
            .expect("a NEWGEN")
    }

    fn attrs_of(buf: &[u8]) -> Vec<super::super::nla::Attr<'_>> {
        Msg::parse(buf).unwrap().nfnl().unwrap().1.collect::<Result<Vec<_>, _>>().unwrap()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn delete_table_notifies_its_rules_sets_chains_then_the_table() {
        use Object::*;
        assert_eq!(
            changes(NFT_EV_DELETE_TABLE),
            [
                (Rule, false, "leash".into(), s("lan_out")),
                (Set, false, "leash".into(), s("quarantine_mac")),
                (Set, false, "leash".into(), s("block_v4")),
                (Chain, false, "leash".into(), s("lan_out")),
                (Table, false, "leash".into(), None),
            ]
        );
        let evs = all(NFT_EV_DELETE_TABLE);
        let NftEvent::Change(first) = &evs[0] else { panic!() };
        let g = generation(NFT_EV_DELETE_TABLE);
        // nlmsg_pid is nft's port (its pid), the same on NEWGEN; res_id is
        // the generation's low bits; NEWGEN names the committing process.
        assert_eq!((first.family, first.port, first.gen16), (1, 18415, 3));
        assert_eq!(g, Generation { id: 3, pid: Some(18415), proc_name: s("nft"), port: 18415 });
    }

    #[test]
    fn flush_set_chain_and_hand_edits() {
        use Object::*;
        assert_eq!(changes(NFT_EV_FLUSH_SET), [(SetElems, false, "leash".into(), s("quarantine_mac"))]);
        assert_eq!(changes(NFT_EV_FLUSH_CHAIN), [(Rule, false, "leash".into(), s("lan_out"))]);
        assert_eq!(changes(NFT_EV_ADD_RULE), [(Rule, true, "leash".into(), s("lan_out"))]);
        assert_eq!(changes(NFT_EV_DELETE_SET), [(Set, false, "leash".into(), s("block_v4"))]);
        assert_eq!(changes(NFT_EV_ADD_ELEMENT), [(SetElems, true, "leash".into(), s("block_v4"))]);
        for c in [NFT_EV_FLUSH_SET, NFT_EV_FLUSH_CHAIN, NFT_EV_ADD_RULE, NFT_EV_DELETE_SET, NFT_EV_ADD_ELEMENT] {
            let g = generation(c);
            assert_eq!(g.proc_name.as_deref(), Some("nft"));
            assert_eq!(g.pid, Some(g.port), "nft's port is its pid");
        }
    }

    #[test]
    fn flush_ruleset_deletes_every_table() {
        let c = changes(NFT_EV_FLUSH_RULESET);
        let tables: Vec<_> = c.iter().filter(|x| x.0 == Object::Table).map(|x| x.2.as_str()).collect();
        assert_eq!(tables, ["leash", "fw4"]);
        assert_eq!(c.iter().filter(|x| x.2 == "fw4").count(), 2);
    }

    #[test]
    fn destroy_is_notified_as_delete_with_the_senders_port_and_pid() {
        let evs = all(NFT_EV_DESTROY_TABLE);
        let NftEvent::Change(c) = &evs[4] else { panic!("{evs:?}") };
        assert_eq!((c.object, c.new, c.table.as_str()), (Object::Table, false, "leash"));
        // A socket whose port is not its pid: NEWGEN still names the process.
        let g = generation(NFT_EV_DESTROY_TABLE);
        assert_eq!(c.port, 2938146063);
        assert_eq!((g.port, g.pid, g.proc_name.as_deref()), (2938146063, Some(18370), Some("python3")));
    }

    #[test]
    fn get_table_request_layout() {
        let req = get_table_request(7, 1, "leash");
        let m = Msg::parse(&req).unwrap();
        assert_eq!(m.hdr.len as usize, req.len());
        assert_eq!((m.hdr.ty, m.hdr.flags, m.hdr.seq), (0x0a01, NLM_F_REQUEST | NLM_F_ACK, 7));
        assert_eq!(m.payload[..4], [1, 0, 0, 0]);
        let a = attrs_of(&req);
        assert_eq!((a.len(), a[0].ty, a[0].value), (1, 1, &b"leash\0"[..]));
    }

    #[test]
    fn table_reply_and_dormant_flag() {
        // The NEWTABLE of a deletion has the same layout as a GETTABLE reply.
        let first = Messages::new(NFT_EV_FLUSH_RULESET).map(Result::unwrap).find(|m| Msg::parse(m).unwrap().nfnl_msg() == NFT_MSG_DELTABLE).unwrap();
        // As a GETTABLE reply: same attributes, type NEWTABLE.
        let mut reply = first.to_vec();
        reply[4..6].copy_from_slice(&nft_type(NFT_MSG_NEWTABLE).to_ne_bytes());
        let t = parse_table(&reply).unwrap();
        assert_eq!((t.name.as_str(), t.flags, t.used, t.dormant()), ("leash", 0, 0, false));
        assert!(parse_table(first).is_err(), "a DELTABLE is not a reply");
        let mut w = NlWriter::new();
        w.begin_msg(nft_type(NFT_MSG_NEWTABLE), 0, 1);
        w.nfgenmsg(1, 0);
        w.attr_str(1, "leash");
        w.attr_u32_be(2, NFT_TABLE_F_DORMANT);
        w.attr_u32_be(3, 9);
        w.end_msg();
        let t = parse_table(&w.finish()).unwrap();
        assert!(t.dormant());
        assert_eq!(t.used, 9);
    }

    #[test]
    fn other_subsystems_and_kinds_are_skipped() {
        // A conntrack event is not an nf_tables event.
        assert_eq!(parse_event(CT_NEW_TCP4).unwrap(), None);
        // NFT_MSG_NEWOBJ (18): not followed.
        let mut w = NlWriter::new();
        w.begin_msg(nft_type(18), 0, 1);
        w.nfgenmsg(1, 0);
        w.attr_str(1, "leash");
        w.end_msg();
        assert_eq!(parse_event(&w.finish()).unwrap(), None);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        // A change without its table name.
        let mut w = NlWriter::new();
        w.begin_msg(nft_type(NFT_MSG_DELCHAIN), 0, 1);
        w.nfgenmsg(1, 0);
        w.attr_str(3, "lan_out");
        w.end_msg();
        assert_eq!(parse_event(&w.finish()), Err(DecodeError::Missing("table name")));
        // NEWGEN without its id, and with a pid of the wrong size.
        let mut w = NlWriter::new();
        w.begin_msg(nft_type(NFT_MSG_NEWGEN), 0, 1);
        w.nfgenmsg(0, 0);
        w.end_msg();
        assert_eq!(parse_event(&w.finish()), Err(DecodeError::Missing("NFTA_GEN_ID")));
        let mut w = NlWriter::new();
        w.begin_msg(nft_type(NFT_MSG_NEWGEN), 0, 1);
        w.nfgenmsg(0, 0);
        w.attr_u32_be(1, 5);
        w.attr_u8(2, 1);
        w.end_msg();
        assert!(matches!(parse_event(&w.finish()), Err(DecodeError::AttrSize { .. })));
        // nfgenmsg cut short.
        let mut b = Vec::new();
        NlMsgHdr { len: 18, ty: nft_type(NFT_MSG_DELTABLE), ..Default::default() }.emit(&mut b);
        b.extend_from_slice(&[1, 0]);
        assert!(parse_event(&b).is_err());
        // Every truncation of a real capture: an error or a clean decode.
        for cut in 0..NFT_EV_DELETE_TABLE.len() {
            for e in events(&NFT_EV_DELETE_TABLE[..cut]) {
                let _ = e;
            }
            let _ = parse_event(&NFT_EV_DELETE_TABLE[..cut]);
            let _ = parse_table(&NFT_EV_DELETE_TABLE[..cut]);
        }
        let mut rng = XorShift(0x5eed_1e45);
        for i in 0..20_000 {
            let mut buf = if i % 2 == 0 { NFT_EV_FLUSH_RULESET.to_vec() } else { rng.bytes(200) };
            // Flip a few bytes: lengths and types go wrong in every way.
            for _ in 0..4 {
                let at = (rng.next() as usize) % buf.len();
                buf[at] = rng.next() as u8;
            }
            walk_all(&buf);
            let _ = events(&buf).count();
            let _ = parse_table(&buf);
        }
    }
}
