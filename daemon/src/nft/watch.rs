//! Watching leash's table (SPEC §6: "if the table, or any of its sets or
//! chains, is removed or altered by someone else, leash notices and
//! rebuilds it from its state within a second"). Pure: it is fed the
//! nf_tables notifications, the once-a-second existence check and failed
//! element writes, and says whether and when to rebuild; the daemon runs
//! the rebuild and tells it so.
//!
//! Whose change is it? The daemon's own element updates carry its
//! nf_tables socket's port (`nlmsg_pid`). Its own rebuilds are `nft -f`
//! children: everything queued until the NEWGEN naming that child's pid is
//! covered by the rebuild (it replaced the whole table after it), and if
//! that NEWGEN never shows (leash in a pid namespace: NEWGEN carries
//! initial-namespace pids), all that was queued when the child exited is.

use std::fmt;
use std::time::{Duration, Instant};

use crate::codec::nft_events::{Change, Generation, NftEvent, Object, TableInfo};
use crate::codec::nftables::NFPROTO_INET;

/// Rebuild this long after the first sign of damage, not at once: a burst
/// of commands (a script deleting table after table, `fw4 flush` then
/// `fw4 start`) then costs one rebuild. The damaging transaction itself,
/// however large, is read whole before any rebuild anyway.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Least time between two rebuilds. Doubled for each further rebuild while
/// the damage keeps coming (another program fighting over the table), up
/// to `MAX_GAP`, so such a fight costs little and logs little.
pub const MIN_GAP: Duration = Duration::from_millis(250);
pub const MAX_GAP: Duration = Duration::from_secs(8);
/// A rebuild this long after the previous one starts again at `MIN_GAP`.
pub const QUIET: Duration = Duration::from_secs(10);

/// What happened to the table, worst first in `rank`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Harm {
    TableDeleted,
    TableMissing,
    Dormant,
    SetDeleted(String),
    ChainDeleted(String),
    RulesDeleted(String),
    ElementsDeleted(String),
    ChainChanged(String),
    SetChanged(String),
    RuleAdded(String),
    TableChanged,
    /// The notification socket overran: changes may have gone unseen.
    EventsLost,
    /// An element update of ours was refused.
    WriteFailed(String),
}

impl Harm {
    fn rank(&self) -> u8 {
        match self {
            Harm::TableDeleted => 12,
            Harm::TableMissing => 11,
            Harm::Dormant => 10,
            Harm::SetDeleted(_) => 9,
            Harm::ChainDeleted(_) => 8,
            Harm::RulesDeleted(_) => 7,
            Harm::ElementsDeleted(_) => 6,
            Harm::ChainChanged(_) => 5,
            Harm::SetChanged(_) => 4,
            Harm::RuleAdded(_) => 3,
            Harm::TableChanged => 2,
            Harm::EventsLost => 1,
            Harm::WriteFailed(_) => 0,
        }
    }

    /// Set by someone else, as opposed to found or suspected by us.
    fn is_foreign_change(&self) -> bool {
        !matches!(self, Harm::TableMissing | Harm::Dormant | Harm::EventsLost | Harm::WriteFailed(_))
    }

    fn of(c: &Change) -> Option<Harm> {
        let name = || c.name.clone().unwrap_or_else(|| "?".into());
        Some(match (c.object, c.new) {
            (Object::Table, false) => Harm::TableDeleted,
            (Object::Table, true) => Harm::TableChanged,
            (Object::Chain, false) => Harm::ChainDeleted(name()),
            (Object::Chain, true) => Harm::ChainChanged(name()),
            (Object::Rule, false) => Harm::RulesDeleted(name()),
            (Object::Rule, true) => Harm::RuleAdded(name()),
            (Object::Set, false) => Harm::SetDeleted(name()),
            (Object::Set, true) => Harm::SetChanged(name()),
            (Object::SetElems, false) => Harm::ElementsDeleted(name()),
            // A hand-added element takes no decision away.
            (Object::SetElems, true) => return None,
        })
    }
}

impl fmt::Display for Harm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Harm::TableDeleted => write!(f, "was deleted"),
            Harm::TableMissing => write!(f, "was found missing"),
            Harm::Dormant => write!(f, "was found dormant (none of its chains ran)"),
            Harm::SetDeleted(s) => write!(f, "lost its set {s}"),
            Harm::ChainDeleted(c) => write!(f, "lost its chain {c}"),
            Harm::RulesDeleted(c) => write!(f, "lost rules of its chain {c}"),
            Harm::ElementsDeleted(s) => write!(f, "lost elements of its set {s}"),
            Harm::ChainChanged(c) => write!(f, "had its chain {c} added or changed"),
            Harm::SetChanged(s) => write!(f, "had its set {s} added or changed"),
            Harm::RuleAdded(c) => write!(f, "had a rule added to its chain {c}"),
            Harm::TableChanged => write!(f, "was changed"),
            Harm::EventsLost => write!(f, "may have been changed unseen (nftables notifications were lost)"),
            Harm::WriteFailed(e) => write!(f, "refused an element update ({e})"),
        }
    }
}

/// Who made the change, as far as the notifications tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    pub port: u32,
    pub pid: Option<u32>,
    pub proc_name: Option<String>,
}

/// Damage seen and not yet repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The worst of what was seen.
    pub harm: Harm,
    pub by: Option<Culprit>,
    /// Signs of damage seen (notifications, failed checks).
    pub signs: u64,
    pub since: Instant,
    /// Generation (low bits) of the worst harm's transaction, to find its NEWGEN.
    gen16: Option<u16>,
}

impl Damage {
    /// "nftables table inet leash was deleted by another process (pid 812, nft)".
    pub fn describe(&self, table: &str) -> String {
        let by = match &self.by {
            Some(Culprit { pid: Some(pid), proc_name: Some(n), .. }) => format!(" by another process (pid {pid}, {n})"),
            Some(Culprit { pid: Some(pid), .. }) => format!(" by another process (pid {pid})"),
            Some(Culprit { port, .. }) => format!(" by another process (netlink port {port})"),
            None => String::new(),
        };
        format!("nftables table inet {table} {}{by}", self.harm)
    }
}

#[derive(Debug)]
pub struct Watch {
    table: String,
    own_port: u32,
    damage: Option<Damage>,
    /// The nft child of our last rebuild, until its NEWGEN is read.
    own_rebuild: Option<u32>,
    own_seen: bool,
    last_rebuild: Option<Instant>,
    /// Rebuilds in a row, each within `QUIET` of the one before.
    streak: u32,
}

impl Watch {
    /// `own_port`: the port of the socket the daemon writes elements with.
    pub fn new(table: &str, own_port: u32) -> Watch {
        Watch { table: table.to_string(), own_port, damage: None, own_rebuild: None, own_seen: false, last_rebuild: None, streak: 0 }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// After a reload renamed the table.
    pub fn set_table(&mut self, table: &str) {
        self.table = table.to_string();
    }

    pub fn pending(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// Feeds one notification, in the order read.
    pub fn observe(&mut self, ev: &NftEvent, now: Instant) {
        match ev {
            NftEvent::Change(c) => {
                // Until our rebuild's NEWGEN: committed before it, so repaired by it.
                if self.own_rebuild.is_some() || c.family != NFPROTO_INET || c.table != self.table || c.port == self.own_port {
                    return;
                }
                if let Some(h) = Harm::of(c) {
                    self.note(h, Some(Culprit { port: c.port, pid: None, proc_name: None }), Some(c.gen16), now);
                }
            }
            NftEvent::Generation(g) => self.generation(g),
        }
    }

    fn generation(&mut self, g: &Generation) {
        if let Some(pid) = self.own_rebuild {
            if g.pid == Some(pid) {
                self.own_rebuild = None;
                self.own_seen = true;
            }
            return;
        }
        let Some(d) = &mut self.damage else { return };
        if let Some(by) = &mut d.by {
            if by.port == g.port && by.pid.is_none() && d.gen16 == Some(g.id as u16) {
                by.pid = g.pid;
                by.proc_name = g.proc_name.clone();
            }
        }
    }

    /// The notification socket overran. Ignored while our own rebuild's
    /// notifications are read (they are what overran it; the next check
    /// still looks at the table).
    pub fn lost(&mut self, now: Instant) {
        if self.own_rebuild.is_none() {
            self.note(Harm::EventsLost, None, None, now);
        }
    }

    /// The periodic check: the table as GETTABLE found it (`None`: absent).
    pub fn checked(&mut self, table: Option<&TableInfo>, now: Instant) {
        match table {
            None => self.note(Harm::TableMissing, None, None, now),
            Some(t) if t.dormant() => self.note(Harm::Dormant, None, None, now),
            Some(_) => {}
        }
    }

    /// An element update was refused.
    pub fn write_failed(&mut self, error: String, now: Instant) {
        self.note(Harm::WriteFailed(error), None, None, now);
    }

    fn note(&mut self, harm: Harm, by: Option<Culprit>, gen16: Option<u16>, now: Instant) {
        match &mut self.damage {
            None => self.damage = Some(Damage { harm, by, signs: 1, since: now, gen16 }),
            Some(d) => {
                d.signs += 1;
                if harm.rank() > d.harm.rank() {
                    // Keep who did it when the worse sign names nobody (a
                    // failed check after a notified deletion).
                    if by.is_some() || harm.is_foreign_change() {
                        d.by = by;
                        d.gen16 = gen16;
                    }
                    d.harm = harm;
                }
            }
        }
    }

    fn gap(&self) -> Duration {
        MIN_GAP.saturating_mul(1u32 << self.streak.min(6)).min(MAX_GAP)
    }

    /// The earliest a rebuild may start, as far as the rate limit goes.
    fn next_allowed(&self) -> Option<Instant> {
        self.last_rebuild.map(|t| t + self.gap())
    }

    /// Whether a rebuild may start now (the rate limit; settling aside).
    pub fn may_rebuild(&self, now: Instant) -> bool {
        !matches!(self.next_allowed(), Some(t) if t > now)
    }

    /// When the pending damage should be repaired; `None` when there is none.
    pub fn due(&self) -> Option<Instant> {
        let d = self.damage.as_ref()?;
        let settled = d.since + SETTLE;
        Some(self.next_allowed().map_or(settled, |t| t.max(settled)))
    }

    /// A rebuild starts: takes the damage it repairs (if any) and counts it
    /// against the rate limit. Rebuilds without damage (start, reload) are
    /// not limited.
    pub fn start_rebuild(&mut self, now: Instant) -> Option<Damage> {
        let d = self.damage.take()?;
        self.streak = match self.last_rebuild {
            Some(t) if now.saturating_duration_since(t) < QUIET => self.streak + 1,
            _ => 0,
        };
        self.last_rebuild = Some(now);
        Some(d)
    }

    /// Our rebuild was committed by the nft child `pid`: the notifications
    /// read next, up to its NEWGEN, are ours.
    pub fn rebuilt(&mut self, pid: u32) {
        self.own_rebuild = Some(pid);
        self.own_seen = false;
    }

    /// Everything queued when the rebuild's child exited has been read.
    /// Returns whether its NEWGEN was among it.
    pub fn settled(&mut self) -> bool {
        self.own_rebuild = None;
        std::mem::take(&mut self.own_seen)
    }

    /// The rebuild failed: the damage stays, to be retried after the gap.
    pub fn rebuild_failed(&mut self, d: Damage) {
        self.own_rebuild = None;
        match &mut self.damage {
            None => self.damage = Some(d),
            Some(now) => {
                // Seen while the rebuild ran: keep the worse, the older time.
                now.signs += d.signs;
                now.since = now.since.min(d.since);
                if d.harm.rank() >= now.harm.rank() {
                    now.harm = d.harm;
                    now.by = d.by;
                    now.gen16 = d.gen16;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::captured::*;
    use crate::codec::nft_events;

    const OWN_PORT: u32 = 4242;
    /// nft's pid in the captures (NFTA_GEN_PROC_PID of their NEWGEN).
    const NFT_PID_DELETE_TABLE: u32 = 18415;

    fn evs(buf: &[u8]) -> Vec<NftEvent> {
        nft_events::events(buf).collect::<Result<_, _>>().unwrap()
    }

    fn feed(w: &mut Watch, buf: &[u8], now: Instant) {
        for e in evs(buf) {
            w.observe(&e, now);
        }
    }

    fn watch() -> Watch {
        Watch::new("leash", OWN_PORT)
    }

    fn change(object: Object, new: bool, table: &str, name: Option<&str>, port: u32) -> NftEvent {
        NftEvent::Change(Change { object, new, family: NFPROTO_INET, table: table.into(), name: name.map(Into::into), port, gen16: 9 })
    }

    fn gen(id: u32, pid: u32, port: u32) -> NftEvent {
        NftEvent::Generation(Generation { id, pid: Some(pid), proc_name: Some("nft".into()), port })
    }

    #[test]
    fn our_own_element_updates_are_not_damage() {
        let mut w = watch();
        let t = Instant::now();
        w.observe(&change(Object::SetElems, true, "leash", Some("block_v4"), OWN_PORT), t);
        w.observe(&change(Object::SetElems, false, "leash", Some("block_v4"), OWN_PORT), t);
        w.observe(&gen(9, 1, OWN_PORT), t);
        assert_eq!(w.pending(), None);
        assert_eq!(w.due(), None);
    }

    #[test]
    fn delete_table_by_nft_is_one_damage_naming_the_process() {
        let mut w = watch();
        let t = Instant::now();
        feed(&mut w, NFT_EV_DELETE_TABLE, t);
        let d = w.pending().expect("damage").clone();
        assert_eq!(d.harm, Harm::TableDeleted);
        assert_eq!(d.signs, 5, "rule, two sets, chain, table");
        assert_eq!(d.by, Some(Culprit { port: NFT_PID_DELETE_TABLE, pid: Some(NFT_PID_DELETE_TABLE), proc_name: Some("nft".into()) }));
        assert_eq!(d.describe("leash"), "nftables table inet leash was deleted by another process (pid 18415, nft)");
        assert_eq!(w.due(), Some(t + SETTLE));
        // One rebuild repairs all of it.
        assert_eq!(w.start_rebuild(t + SETTLE), Some(d));
        assert_eq!(w.start_rebuild(t + SETTLE), None);
        assert_eq!(w.due(), None);
    }

    #[test]
    fn each_kind_of_damage_from_the_captures() {
        let cases: [(&[u8], Option<Harm>); 7] = [
            (NFT_EV_FLUSH_SET, Some(Harm::ElementsDeleted("quarantine_mac".into()))),
            (NFT_EV_FLUSH_CHAIN, Some(Harm::RulesDeleted("lan_out".into()))),
            (NFT_EV_ADD_RULE, Some(Harm::RuleAdded("lan_out".into()))),
            (NFT_EV_DELETE_SET, Some(Harm::SetDeleted("block_v4".into()))),
            (NFT_EV_FLUSH_RULESET, Some(Harm::TableDeleted)),
            (NFT_EV_DESTROY_TABLE, Some(Harm::TableDeleted)),
            // Someone adding an element takes nothing away.
            (NFT_EV_ADD_ELEMENT, None),
        ];
        for (buf, want) in cases {
            let mut w = watch();
            feed(&mut w, buf, Instant::now());
            assert_eq!(w.pending().map(|d| d.harm.clone()), want);
            if let Some(d) = w.pending() {
                assert!(d.by.as_ref().is_some_and(|b| b.pid.is_some()), "NEWGEN names the process: {d:?}");
            }
        }
    }

    #[test]
    fn new_chains_sets_and_table_changes_are_damage() {
        for (object, harm) in [
            (Object::Chain, Harm::ChainChanged("x".into())),
            (Object::Set, Harm::SetChanged("x".into())),
            (Object::Table, Harm::TableChanged),
            (Object::Chain, Harm::ChainChanged("x".into())),
        ] {
            let mut w = watch();
            w.observe(&change(object, true, "leash", Some("x"), 77), Instant::now());
            assert_eq!(w.pending().unwrap().harm, harm);
            // Without its NEWGEN the port is all that is known.
            assert!(w.pending().unwrap().describe("leash").ends_with("by another process (netlink port 77)"));
        }
    }

    #[test]
    fn other_tables_and_families_are_ignored() {
        let mut w = watch();
        let t = Instant::now();
        w.observe(&change(Object::Table, false, "fw4", None, 77), t);
        w.observe(&change(Object::Chain, false, "leash2", Some("c"), 77), t);
        let mut ip = change(Object::Table, false, "leash", None, 77);
        if let NftEvent::Change(c) = &mut ip {
            c.family = 2;
        }
        w.observe(&ip, t);
        assert_eq!(w.pending(), None);
        // A reload that renames the table follows the new name.
        w.set_table("fw4");
        w.observe(&change(Object::Table, false, "fw4", None, 77), t);
        assert_eq!(w.pending().unwrap().harm, Harm::TableDeleted);
        assert_eq!(w.table(), "fw4");
    }

    #[test]
    fn our_rebuilds_notifications_are_ours_up_to_its_newgen() {
        let mut w = watch();
        let t = Instant::now();
        // A foreign flush committed before our rebuild is repaired by it...
        feed(&mut w, NFT_EV_FLUSH_CHAIN, t);
        let d = w.start_rebuild(t).unwrap();
        assert_eq!(d.harm, Harm::RulesDeleted("lan_out".into()));
        // ...and so were any more before it.
        w.rebuilt(NFT_PID_DELETE_TABLE);
        feed(&mut w, NFT_EV_ADD_RULE, t);
        // Our child's own transaction (its table delete, then the rest).
        feed(&mut w, NFT_EV_DELETE_TABLE, t);
        assert_eq!(w.pending(), None);
        // What comes after our NEWGEN is someone else's again.
        feed(&mut w, NFT_EV_FLUSH_SET, t);
        assert!(w.settled(), "our NEWGEN was read");
        assert_eq!(w.pending().unwrap().harm, Harm::ElementsDeleted("quarantine_mac".into()));
    }

    #[test]
    fn without_our_newgen_everything_queued_by_then_is_ours() {
        // In a pid namespace NEWGEN names pids we cannot match.
        let mut w = watch();
        w.rebuilt(1);
        feed(&mut w, NFT_EV_DELETE_TABLE, Instant::now());
        w.lost(Instant::now());
        assert!(!w.settled());
        assert_eq!(w.pending(), None);
        // Afterwards changes count again.
        feed(&mut w, NFT_EV_DELETE_SET, Instant::now());
        assert_eq!(w.pending().unwrap().harm, Harm::SetDeleted("block_v4".into()));
    }

    #[test]
    fn lost_notifications_and_failed_checks_are_damage() {
        let t = Instant::now();
        let mut w = watch();
        w.lost(t);
        assert_eq!(w.pending().unwrap().harm, Harm::EventsLost);
        assert_eq!(w.pending().unwrap().describe("leash"), "nftables table inet leash may have been changed unseen (nftables notifications were lost)");
        let mut w = watch();
        let ok = TableInfo { name: "leash".into(), flags: 0, used: 9 };
        w.checked(Some(&ok), t);
        assert_eq!(w.pending(), None);
        w.checked(Some(&TableInfo { flags: 1, ..ok }), t);
        assert_eq!(w.pending().unwrap().harm, Harm::Dormant);
        w.checked(None, t);
        assert_eq!(w.pending().unwrap().harm, Harm::TableMissing);
        assert_eq!(w.pending().unwrap().signs, 2);
        // A check that finds the table gone after a notified delete keeps the culprit.
        let mut w = watch();
        feed(&mut w, NFT_EV_DELETE_SET, t);
        w.checked(None, t);
        let d = w.pending().unwrap();
        assert_eq!(d.harm, Harm::TableMissing);
        assert!(d.by.is_some());
    }

    #[test]
    fn a_flood_is_one_rebuild_and_a_fight_backs_off() {
        let t0 = Instant::now();
        let mut w = watch();
        // Hundreds of notifications in one go: still one rebuild.
        for i in 0..500 {
            w.observe(&change(Object::Rule, false, "leash", Some("lan_out"), 77), t0 + Duration::from_micros(i));
        }
        assert_eq!(w.pending().unwrap().signs, 500);
        assert_eq!(w.due(), Some(t0 + SETTLE));
        let mut at = t0 + SETTLE;
        assert!(w.start_rebuild(at).is_some());
        // Someone keeps deleting it at once: gaps 250 ms, 500 ms, 1 s, ... 8 s.
        let mut gaps = Vec::new();
        for _ in 0..8 {
            w.observe(&change(Object::Table, false, "leash", None, 77), at);
            let due = w.due().unwrap();
            assert!(!w.may_rebuild(at));
            gaps.push(due - at);
            at = due;
            assert!(w.may_rebuild(at));
            assert!(w.start_rebuild(at).is_some());
        }
        let ms: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // After a quiet spell, damage is repaired within SETTLE again.
        let later = at + QUIET;
        w.observe(&change(Object::Table, false, "leash", None, 77), later);
        assert_eq!(w.due(), Some(later + SETTLE));
        w.start_rebuild(later + SETTLE);
        // And the first rebuild after that waits only the base gap.
        w.observe(&change(Object::Table, false, "leash", None, 77), later + SETTLE);
        assert_eq!(w.due(), Some(later + SETTLE + MIN_GAP));
    }

    #[test]
    fn a_failed_rebuild_is_retried_after_the_gap() {
        let t = Instant::now();
        let mut w = watch();
        feed(&mut w, NFT_EV_DELETE_TABLE, t);
        let d = w.start_rebuild(t + SETTLE).unwrap();
        w.rebuild_failed(d.clone());
        assert_eq!(w.pending(), Some(&d));
        assert_eq!(w.due(), Some(t + SETTLE + MIN_GAP));
        // A write failing meanwhile does not hide what happened first.
        w.write_failed("ENOENT".into(), t + SETTLE);
        assert_eq!(w.pending().unwrap().harm, Harm::TableDeleted);
        let mut w = watch();
        w.write_failed("No such file or directory".into(), t);
        assert!(w.may_rebuild(t));
        assert_eq!(w.pending().unwrap().describe("leash"), "nftables table inet leash refused an element update (No such file or directory)");
    }
}
