//! A map with a fixed capacity that forgets its least recently used entry to
//! make room, in O(1): the one way the daemon bounds what floods of devices,
//! flows and alerts make it remember.
//!
//! A `HashMap` from key to slot index, and the slots in a `Vec` threaded by
//! an intrusive doubly linked list, oldest first. Freed slots are reused
//! through a free list, so the `Vec` never outgrows the capacity. Entries
//! may be *pinned* (a configured or quarantined device): pinned entries sit
//! outside the list, so eviction never looks at them and stays O(1); their
//! number has its own cap, and when pins fill the map a new entry is
//! refused (and the caller counts it) rather than evicting one.
//!
//! Not `heapless`, though the project prefers it where a fixed capacity
//! fits: these capacities are large (tens of thousands) and chosen at run
//! time, and `heapless` reserves the whole capacity up front, where this map
//! grows with use — an idle router holds a few entries, not 64 Ki of them.

use crate::hash::HashMap;
use std::hash::Hash;

const NIL: u32 = u32::MAX;

/// What a `touch_or_put` did: an insert's outcome without the values.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Put {
    Added,
    Replaced,
    Evicted,
    Refused,
}

/// What an insert did.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert<K, V> {
    /// A new entry; there was room.
    Added,
    /// The key was there: its old value, replaced; the entry is now the most recent.
    Replaced(V),
    /// A new entry; the least recently used one went to make room.
    Evicted(K, V),
    /// Full, and every entry pinned: nothing changed; the entry comes back.
    Refused(K, V),
}

#[derive(Debug)]
struct Slot<K, V> {
    /// `None` for a free slot.
    entry: Option<(K, V)>,
    /// Neighbours in the recency list (older, newer); for a free slot `next`
    /// links the free list. NIL for pinned entries.
    prev: u32,
    next: u32,
    pinned: bool,
}

#[derive(Debug)]
pub struct BoundedMap<K, V> {
    index: HashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    /// Least recently used unpinned entry, and most recently used.
    head: u32,
    tail: u32,
    free: u32,
    cap: usize,
    max_pinned: usize,
    pinned: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// At most `cap` entries (at least 1), any of them pinned.
    pub fn new(cap: usize) -> Self {
        Self::with_max_pinned(cap, cap)
    }

    /// At most `cap` entries, of which at most `max_pinned` pinned.
    pub fn with_max_pinned(cap: usize, max_pinned: usize) -> Self {
        // Slot indexes are u32 and NIL is reserved.
        let cap = cap.clamp(1, NIL as usize - 1);
        BoundedMap {
            index: HashMap::default(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            cap,
            max_pinned: max_pinned.min(cap),
            pinned: 0,
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn pinned_len(&self) -> usize {
        self.pinned
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.index.contains_key(k)
    }

    /// The value, without making it more recent.
    pub fn get(&self, k: &K) -> Option<&V> {
        let &i = self.index.get(k)?;
        self.slots.get(i as usize)?.entry.as_ref().map(|(_, v)| v)
    }

    /// The value, mutable, without making it more recent.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let &i = self.index.get(k)?;
        self.slots.get_mut(i as usize)?.entry.as_mut().map(|(_, v)| v)
    }

    /// The value, mutable, made the most recently used: `touch` and
    /// `get_mut` in one lookup.
    pub fn touch_get_mut(&mut self, k: &K) -> Option<&mut V> {
        let &i = self.index.get(k)?;
        self.touch_index(i);
        self.slots.get_mut(i as usize)?.entry.as_mut().map(|(_, v)| v)
    }

    /// Makes the entry the most recently used; false when absent.
    pub fn touch(&mut self, k: &K) -> bool {
        let Some(&i) = self.index.get(k) else { return false };
        if !self.slots[i as usize].pinned {
            self.unlink(i);
            self.push_back(i);
        }
        true
    }

    /// Inserts or replaces; either way the entry becomes the most recent.
    /// A pinned entry stays pinned when its value is replaced.
    pub fn insert(&mut self, k: K, v: V) -> Insert<K, V> {
        if let Some(&i) = self.index.get(&k) {
            let slot = &mut self.slots[i as usize];
            let old = slot.entry.replace((k, v)).map(|(_, v)| v);
            self.touch_index(i);
            return match old {
                Some(old) => Insert::Replaced(old),
                None => Insert::Added, // unreachable: indexed slots hold entries
            };
        }
        let mut evicted = None;
        if self.index.len() >= self.cap {
            match self.pop_oldest() {
                Some(e) => evicted = Some(e),
                None => return Insert::Refused(k, v),
            }
        }
        let i = self.alloc(k.clone(), v);
        self.index.insert(k, i);
        self.push_back(i);
        match evicted {
            Some((k, v)) => Insert::Evicted(k, v),
            None => Insert::Added,
        }
    }

    /// The value of `k`, made the most recent; or, when absent, a new one
    /// put in its place as `insert` would: one lookup of `k` either way. The
    /// new value is `make`'s, or when full the evicted one turned into it
    /// by `renew` (no value built and moved, its allocations kept).
    /// `Put::Replaced` here means found (kept, neither called); the value
    /// is `None` only when `Refused`.
    pub fn touch_or_put(&mut self, k: K, make: impl FnOnce() -> V, renew: impl FnOnce(&mut V)) -> (Put, Option<&mut V>) {
        use std::collections::hash_map::Entry;
        let full = self.index.len() >= self.cap;
        // The slot a new entry takes, known before the lookup so that the
        // index is searched once.
        let (i, put) = match (full, self.free) {
            (true, _) => (self.head, Put::Evicted),
            (false, NIL) => (self.slots.len() as u32, Put::Added),
            (false, free) => (free, Put::Added),
        };
        match self.index.entry(k) {
            Entry::Occupied(o) => {
                let i = *o.get();
                self.touch_index(i);
                return (Put::Replaced, self.slots.get_mut(i as usize).and_then(|s| s.entry.as_mut()).map(|(_, v)| v));
            }
            Entry::Vacant(_) if i == NIL => return (Put::Refused, None),
            Entry::Vacant(e) => {
                let k = e.key().clone();
                e.insert(i);
                if put == Put::Evicted {
                    self.unlink(i);
                    match &mut self.slots[i as usize].entry {
                        Some((old, v)) => {
                            let old = std::mem::replace(old, k);
                            renew(v);
                            self.index.remove(&old);
                        }
                        e => *e = Some((k, make())),
                    }
                } else if self.free == i {
                    self.free = self.slots[i as usize].next;
                    self.slots[i as usize].entry = Some((k, make()));
                } else {
                    let len = self.slots.len();
                    if len == self.slots.capacity() {
                        self.slots.reserve_exact(len.clamp(1, self.cap - len));
                    }
                    self.slots.push(Slot { entry: Some((k, make())), prev: NIL, next: NIL, pinned: false });
                }
                self.slots[i as usize].pinned = false;
                self.push_back(i);
            }
        }
        (put, self.slots.get_mut(i as usize).and_then(|s| s.entry.as_mut()).map(|(_, v)| v))
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)?;
        self.release(i).map(|(_, v)| v)
    }

    /// Pins (never evicted) or unpins (back in the list, as the most
    /// recent). False when the key is absent, or when pinning it would pass
    /// the cap of pinned entries.
    pub fn pin(&mut self, k: &K, pinned: bool) -> bool {
        let Some(&i) = self.index.get(k) else { return false };
        let was = self.slots[i as usize].pinned;
        match (was, pinned) {
            (false, true) => {
                if self.pinned >= self.max_pinned {
                    return false;
                }
                self.unlink(i);
                self.slots[i as usize].pinned = true;
                self.pinned += 1;
            }
            (true, false) => {
                self.slots[i as usize].pinned = false;
                self.pinned -= 1;
                self.push_back(i);
            }
            _ => {}
        }
        true
    }

    pub fn is_pinned(&self, k: &K) -> bool {
        self.index.get(k).is_some_and(|&i| self.slots[i as usize].pinned)
    }

    /// The least recently used unpinned entry: the next to be evicted.
    pub fn oldest(&self) -> Option<(&K, &V)> {
        self.slots.get(self.head as usize)?.entry.as_ref().map(|(k, v)| (k, v))
    }

    /// Removes and returns the least recently used unpinned entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let i = self.head;
        let k = self.slots.get(i as usize)?.entry.as_ref()?.0.clone();
        self.index.remove(&k);
        self.release(i)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().filter_map(|s| s.entry.as_ref().map(|(k, v)| (k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Unpinned entries, least recently used first.
    pub fn iter_lru(&self) -> impl Iterator<Item = (&K, &V)> {
        let mut i = self.head;
        std::iter::from_fn(move || {
            let s = self.slots.get(i as usize)?;
            i = s.next;
            s.entry.as_ref().map(|(k, v)| (k, v))
        })
    }

    /// Keeps the entries for which `keep` holds (pinned ones too).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for i in 0..self.slots.len() {
            let gone = match &mut self.slots[i].entry {
                Some((k, v)) => !keep(k, v),
                None => false,
            };
            if gone {
                let i = i as u32;
                if let Some((k, _)) = self.release(i) {
                    self.index.remove(&k);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free = NIL;
        self.pinned = 0;
    }

    fn touch_index(&mut self, i: u32) {
        if !self.slots.as_slice()[i as usize].pinned {
            self.unlink(i);
            self.push_back(i);
        }
    }

    fn alloc(&mut self, k: K, v: V) -> u32 {
        let slot = Slot { entry: Some((k, v)), prev: NIL, next: NIL, pinned: false };
        if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            i
        } else {
            // Grow from one slot, doubling, never past the capacity: most
            // maps (a device's destinations) stay tiny, and a full one holds
            // no spare slots (Vec's own growth starts at 4 and overshoots).
            let len = self.slots.len();
            if len == self.slots.capacity() {
                self.slots.reserve_exact(len.clamp(1, self.cap - len));
            }
            // len < cap < NIL, so the index fits.
            self.slots.push(slot);
            len as u32
        }
    }

    /// Takes the entry out of slot `i` (already gone from the index) and
    /// puts the slot on the free list.
    fn release(&mut self, i: u32) -> Option<(K, V)> {
        let pinned = self.slots.get(i as usize)?.pinned;
        if pinned {
            self.pinned -= 1;
        } else {
            self.unlink(i);
        }
        let s = &mut self.slots[i as usize];
        let e = s.entry.take();
        s.pinned = false;
        s.prev = NIL;
        s.next = self.free;
        self.free = i;
        e
    }

    // The list links below index a slice, not the Vec: in the size-optimised
    // build `Vec`'s `Index` is a call each time, a slice's a bounds check.
    fn unlink(&mut self, i: u32) {
        let slots = self.slots.as_mut_slice();
        let (prev, next) = {
            let s = &slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => slots[n as usize].prev = prev,
        }
        let s = &mut slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn push_back(&mut self, i: u32) {
        let slots = self.slots.as_mut_slice();
        let tail = self.tail;
        {
            let s = &mut slots[i as usize];
            s.prev = tail;
            s.next = NIL;
        }
        match tail {
            NIL => self.head = i,
            t => slots[t as usize].next = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<K: Hash + Eq + Clone + Ord, V>(m: &BoundedMap<K, V>) -> Vec<K> {
        let mut v: Vec<K> = m.iter().map(|(k, _)| k.clone()).collect();
        v.sort();
        v
    }

    fn lru<K: Hash + Eq + Clone, V>(m: &BoundedMap<K, V>) -> Vec<K> {
        m.iter_lru().map(|(k, _)| k.clone()).collect()
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut m = BoundedMap::new(3);
        assert_eq!(m.insert(1, "a"), Insert::Added);
        assert_eq!(m.insert(2, "b"), Insert::Added);
        assert_eq!(m.insert(3, "c"), Insert::Added);
        assert!(m.touch(&1));
        assert_eq!(m.insert(4, "d"), Insert::Evicted(2, "b"));
        assert_eq!(lru(&m), [3, 1, 4]);
        assert_eq!(m.insert(3, "C"), Insert::Replaced("c"));
        assert_eq!(lru(&m), [1, 4, 3]);
        assert_eq!(m.get(&3), Some(&"C"));
        assert_eq!(m.get(&2), None);
        assert_eq!(m.len(), 3);
        assert_eq!(m.oldest(), Some((&1, &"a")));
    }

    type Twin = BoundedMap<u32, u32>;

    /// Drives twin maps (cap 8, 3 pins) through 5 000 pseudo-random steps on
    /// 24 keys: removes and pins alike, `step` for every other operation, and
    /// checks after each that both hold the same keys in the same order, with
    /// the same values, in no more slots than the cap.
    fn twin_steps(seed: u32, mut step: impl FnMut(&mut Twin, &mut Twin, u32, u32, u32)) {
        let (mut a, mut b) = (BoundedMap::with_max_pinned(8, 3), BoundedMap::with_max_pinned(8, 3));
        let mut x = seed;
        for n in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let k = x % 24;
            match x % 7 {
                0 => assert_eq!(a.remove(&k), b.remove(&k)),
                1 => assert_eq!(a.pin(&k, x & 8 == 0), b.pin(&k, x & 8 == 0)),
                _ => step(&mut a, &mut b, k, x, n),
            }
            assert_eq!(a.iter_lru().collect::<Vec<_>>(), b.iter_lru().collect::<Vec<_>>(), "step {n}");
            assert_eq!((keys(&a), a.pinned_len()), (keys(&b), b.pinned_len()));
            let mut va: Vec<_> = a.iter().map(|(k, v)| (*k, *v)).collect();
            let mut vb: Vec<_> = b.iter().map(|(k, v)| (*k, *v)).collect();
            va.sort();
            vb.sort();
            assert_eq!(va, vb, "step {n}");
            assert!(a.slots.len() <= 8 && b.slots.len() <= 8);
        }
    }

    /// What `insert` did, without the values.
    fn put_of<K, V>(i: Insert<K, V>) -> Put {
        match i {
            Insert::Added => Put::Added,
            Insert::Replaced(_) => Put::Replaced,
            Insert::Evicted(..) => Put::Evicted,
            Insert::Refused(..) => Put::Refused,
        }
    }

    /// `touch_or_put` is a `touch` of a present key and an `insert` of an
    /// absent one, whatever the sequence.
    #[test]
    fn touch_or_put_is_touch_or_put() {
        twin_steps(11, |a, b, k, _, step| {
            let want = if a.touch(&k) { Put::Replaced } else { put_of(a.insert(k, step)) };
            let (got, v) = b.touch_or_put(k, || step, |v| *v = step);
            assert_eq!(got, want, "step {step}");
            assert_eq!(v.is_none(), got == Put::Refused);
            if let Some(v) = v {
                *v += 1;
                *a.get_mut(&k).unwrap() += 1;
            }
        });
    }

    #[test]
    fn get_does_not_touch() {
        let mut m = BoundedMap::new(2);
        m.insert(1, 10);
        m.insert(2, 20);
        *m.get_mut(&1).unwrap() += 1;
        assert_eq!(m.get(&1), Some(&11));
        assert_eq!(m.insert(3, 30), Insert::Evicted(1, 11));
    }

    #[test]
    fn remove_and_reuse_slots() {
        let mut m = BoundedMap::new(4);
        for i in 0..4 {
            m.insert(i, i);
        }
        assert_eq!(m.remove(&1), Some(1));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.remove(&3), Some(3));
        assert_eq!(lru(&m), [0, 2]);
        m.insert(5, 5);
        m.insert(6, 6);
        assert_eq!(m.slots.len(), 4, "freed slots are reused");
        assert_eq!(lru(&m), [0, 2, 5, 6]);
        assert_eq!(m.pop_oldest(), Some((0, 0)));
        assert_eq!(m.pop_oldest(), Some((2, 2)));
        assert_eq!(m.pop_oldest(), Some((5, 5)));
        assert_eq!(m.pop_oldest(), Some((6, 6)));
        assert_eq!(m.pop_oldest(), None);
        assert!(m.is_empty());
        assert_eq!(m.oldest(), None);
    }

    #[test]
    fn pinned_entries_are_never_evicted() {
        let mut m = BoundedMap::new(3);
        m.insert("cam", 1);
        m.insert("tv", 2);
        m.insert("phone", 3);
        assert!(m.pin(&"cam", true));
        assert!(m.is_pinned(&"cam"));
        assert_eq!(m.insert("x", 4), Insert::Evicted("tv", 2));
        assert_eq!(m.insert("y", 5), Insert::Evicted("phone", 3));
        assert_eq!(lru(&m), ["x", "y"]);
        assert!(m.touch(&"cam"), "touching a pinned entry is fine");
        assert_eq!(m.insert("cam", 9), Insert::Replaced(1));
        assert!(m.is_pinned(&"cam"), "replacing keeps the pin");
        assert!(m.pin(&"x", true) && m.pin(&"y", true));
        assert_eq!(m.pinned_len(), 3);
        assert_eq!(m.insert("z", 6), Insert::Refused("z", 6), "everything pinned");
        assert_eq!(m.len(), 3);
        assert!(m.pin(&"x", false));
        assert_eq!(m.insert("z", 6), Insert::Evicted("x", 4));
        assert!(!m.pin(&"gone", true));
        assert_eq!(m.remove(&"cam"), Some(9));
        assert_eq!(m.pinned_len(), 1);
    }

    #[test]
    fn pins_have_their_own_cap() {
        let mut m = BoundedMap::with_max_pinned(4, 2);
        for i in 0..4 {
            m.insert(i, ());
        }
        assert!(m.pin(&0, true));
        assert!(m.pin(&1, true));
        assert!(!m.pin(&2, true), "third pin refused");
        assert!(m.pin(&1, true), "pinning twice is fine");
        assert!(!m.is_pinned(&2));
        // So there is always room to evict.
        assert_eq!(m.insert(9, ()), Insert::Evicted(2, ()));
    }

    #[test]
    fn retain_and_clear() {
        let mut m = BoundedMap::new(8);
        for i in 0..8 {
            m.insert(i, i * 10);
        }
        m.pin(&4, true);
        m.retain(|k, v| {
            *v += 1;
            k % 2 == 0
        });
        assert_eq!(keys(&m), [0, 2, 4, 6]);
        assert_eq!(lru(&m), [0, 2, 6]);
        assert_eq!(m.get(&4), Some(&41));
        assert_eq!(m.pinned_len(), 1);
        m.retain(|k, _| *k != 4);
        assert_eq!(m.pinned_len(), 0);
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.insert(1, 1), Insert::Added);
    }

    #[test]
    fn memory_grows_with_use_up_to_the_capacity() {
        let mut m = BoundedMap::new(1000);
        m.insert(1, [0u8; 200]);
        assert_eq!(m.slots.capacity(), 1, "a map of one holds one slot");
        for i in 0..5000 {
            m.insert(i, [0u8; 200]);
        }
        assert_eq!(m.slots.capacity(), 1000, "never past the capacity");
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut m = BoundedMap::new(0);
        assert_eq!(m.cap(), 1);
        assert_eq!(m.insert(1, ()), Insert::Added);
        assert_eq!(m.insert(2, ()), Insert::Evicted(1, ()));
    }

    /// The model: a Vec of (key, value, pinned), least recently used first.
    #[derive(Default)]
    struct Model {
        v: Vec<(u8, u32, bool)>,
    }

    impl Model {
        fn pos(&self, k: u8) -> Option<usize> {
            self.v.iter().position(|e| e.0 == k)
        }
        fn make_recent(&mut self, i: usize) {
            let e = self.v.remove(i);
            self.v.push(e);
        }
        fn insert(&mut self, k: u8, val: u32, cap: usize) -> Insert<u8, u32> {
            if let Some(i) = self.pos(k) {
                let old = std::mem::replace(&mut self.v[i].1, val);
                if !self.v[i].2 {
                    self.make_recent(i);
                }
                return Insert::Replaced(old);
            }
            let mut out = Insert::Added;
            if self.v.len() >= cap {
                match self.v.iter().position(|e| !e.2) {
                    Some(i) => {
                        let (k, v, _) = self.v.remove(i);
                        out = Insert::Evicted(k, v);
                    }
                    None => return Insert::Refused(k, val),
                }
            }
            self.v.push((k, val, false));
            out
        }
        fn lru(&self) -> Vec<u8> {
            self.v.iter().filter(|e| !e.2).map(|e| e.0).collect()
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn behaves_like_a_simple_lru_under_random_operations() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let cap = 1 + (rng.next() % 12) as usize;
            let max_pinned = (rng.next() % (cap as u64 + 1)) as usize;
            let mut m = BoundedMap::with_max_pinned(cap, max_pinned);
            let mut model = Model::default();
            for step in 0..3000 {
                let k = (rng.next() % 20) as u8;
                let val = rng.next() as u32;
                match rng.next() % 10 {
                    0..=3 => assert_eq!(m.insert(k, val), model.insert(k, val, cap), "seed {seed} step {step} insert {k}"),
                    4 => {
                        let got = m.touch(&k);
                        let want = match model.pos(k) {
                            Some(i) => {
                                if !model.v[i].2 {
                                    model.make_recent(i);
                                }
                                true
                            }
                            None => false,
                        };
                        assert_eq!(got, want);
                    }
                    5 => {
                        let want = model.pos(k).map(|i| model.v.remove(i).1);
                        assert_eq!(m.remove(&k), want);
                    }
                    6 => {
                        let pinned_now = model.v.iter().filter(|e| e.2).count();
                        let want = match model.pos(k) {
                            Some(i) if model.v[i].2 => true,
                            Some(_) if pinned_now >= max_pinned => false,
                            Some(i) => {
                                model.v[i].2 = true;
                                true
                            }
                            None => false,
                        };
                        assert_eq!(m.pin(&k, true), want, "seed {seed} step {step} pin {k}");
                    }
                    7 => {
                        let want = match model.pos(k) {
                            Some(i) if model.v[i].2 => {
                                model.v[i].2 = false;
                                model.make_recent(i);
                                true
                            }
                            Some(_) => true,
                            None => false,
                        };
                        assert_eq!(m.pin(&k, false), want);
                    }
                    8 => {
                        let want = model.pos(k).map(|i| model.v[i].1);
                        assert_eq!(m.get(&k).copied(), want);
                        if step % 97 == 0 {
                            let odd = |v: &u32| v % 2 == 1;
                            m.retain(|_, v| odd(v));
                            model.v.retain(|e| odd(&e.1));
                        }
                    }
                    _ => {
                        let want = model.v.iter().position(|e| !e.2).map(|i| {
                            let (k, v, _) = model.v.remove(i);
                            (k, v)
                        });
                        assert_eq!(m.pop_oldest(), want);
                    }
                }
                assert_eq!(m.len(), model.v.len(), "seed {seed} step {step}");
                assert!(m.len() <= cap);
                assert!(m.slots.capacity() <= cap, "slots never outgrow the capacity");
                assert_eq!(m.pinned_len(), model.v.iter().filter(|e| e.2).count());
                assert_eq!(lru(&m), model.lru(), "seed {seed} step {step}");
                let mut want: Vec<(u8, u32)> = model.v.iter().map(|e| (e.0, e.1)).collect();
                want.sort();
                let mut got: Vec<(u8, u32)> = m.iter().map(|(k, v)| (*k, *v)).collect();
                got.sort();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn large_maps_stay_fast() {
        // O(1) per operation: a million inserts into a full 64 Ki map.
        let mut m = BoundedMap::new(65_536);
        let mut evicted = 0u32;
        for i in 0..1_000_000u32 {
            if let Insert::Evicted(..) = m.insert(i, i) {
                evicted += 1;
            }
            if i % 3 == 0 {
                m.touch(&(i / 2));
            }
        }
        assert_eq!(m.len(), 65_536);
        assert_eq!(evicted, 1_000_000 - 65_536);
    }
}
