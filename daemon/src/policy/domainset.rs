//! A compact, immutable set of DNS names for deny lists.
//!
//! Public block lists hold around a million names and a router has 128–512 MB
//! of RAM, so a `Vec<String>` (24 bytes of header plus a heap block per name)
//! is too dear. Here every name is stored byte-reversed (`example.com` →
//! `moc.elpmaxe`) in one contiguous buffer, sorted, with one `u32` end offset
//! per name: about the name's length plus 4 bytes each. Byte-reversal puts a
//! parent domain in front of its children, and sorting makes "is this name
//! or one of its parents listed" one binary search per label, with no
//! allocation.

use std::cmp::Ordering;
use std::fmt;

/// Names longer than a DNS name can be are never stored; `normalize_name`
/// already rejects them, this only keeps offsets small for other callers.
const MAX_NAME: usize = 255;

/// An immutable set of lower-case DNS names without trailing dots.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainSet {
    /// Byte-reversed names, sorted, deduplicated, back to back.
    bytes: Box<[u8]>,
    /// End offset in `bytes` of each name; name `i` starts at `ends[i - 1]`.
    ends: Box<[u32]>,
}

/// Collects names (in any order, with duplicates) for a `DomainSet`.
#[derive(Clone, Default)]
pub struct DomainSetBuilder {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl DomainSetBuilder {
    pub fn new() -> DomainSetBuilder {
        DomainSetBuilder::default()
    }

    /// Adds a name, lower-casing it and dropping one trailing dot. Empty
    /// names, names longer than 255 bytes and names past 4 GiB of total
    /// text are ignored; `false` says so.
    pub fn push(&mut self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return false;
        }
        let Some(end) = u32::try_from(self.bytes.len() + name.len()).ok() else {
            return false;
        };
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let added = &mut self.bytes[start..];
        added.reverse();
        added.make_ascii_lowercase();
        self.ends.push(end);
        true
    }

    /// Adds every name of a set (cheaper than pushing them one by one).
    pub fn extend_from_set(&mut self, set: &DomainSet) {
        let base = self.bytes.len();
        if u32::try_from(base + set.bytes.len()).is_err() {
            return;
        }
        self.bytes.extend_from_slice(&set.bytes);
        // Cannot overflow: checked just above.
        self.ends.extend(set.ends.iter().map(|e| *e + base as u32));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Sorts and deduplicates into an exactly sized set.
    pub fn build(self) -> DomainSet {
        let DomainSetBuilder { bytes, ends } = self;
        let slice = |i: u32| -> &[u8] {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &bytes[start..ends[i] as usize]
        };
        let n = ends.len() as u32;
        let sorted = (1..n).all(|i| slice(i - 1) < slice(i));
        if sorted {
            // Already a set (e.g. one file moved through `into_builder`).
            return DomainSet { bytes: bytes.into_boxed_slice(), ends: ends.into_boxed_slice() };
        }
        // Sorting indices by their names directly costs a cache miss per
        // comparison (~2 s for a million names). Sorting on an inline copy
        // of each name's first 16 bytes touches the names only to break ties.
        let mut keys: Vec<SortKey> = (0..n).map(|i| SortKey::new(slice(i), i)).collect();
        keys.sort_unstable_by(|a, b| a.prefix().cmp(&b.prefix()).then_with(|| slice(a.idx).cmp(slice(b.idx))));
        keys.dedup_by(|a, b| a.prefix() == b.prefix() && slice(a.idx) == slice(b.idx));
        // The 24-byte keys go before the output is allocated: peak memory
        // is names twice plus 4 bytes a name, not plus 24.
        let order: Vec<u32> = keys.iter().map(|k| k.idx).collect();
        drop(keys);

        let total: usize = order.iter().map(|&i| slice(i).len()).sum();
        let mut out = Vec::with_capacity(total);
        let mut out_ends = Vec::with_capacity(order.len());
        for &i in &order {
            out.extend_from_slice(slice(i));
            // At most the builder's length, which fits in u32.
            out_ends.push(out.len() as u32);
        }
        DomainSet { bytes: out.into_boxed_slice(), ends: out_ends.into_boxed_slice() }
    }
}

/// A name's first 16 bytes, big-endian so that integer order is byte order
/// (zero-padded: a shorter name sorts before its extensions, as slices do),
/// and its index. Reversed names share their top-level domain, so fewer
/// bytes leave too many ties, each a cache miss into the names.
struct SortKey {
    prefix: (u64, u64),
    idx: u32,
}

impl SortKey {
    fn new(name: &[u8], idx: u32) -> SortKey {
        let mut buf = [0u8; 16];
        let n = name.len().min(16);
        buf[..n].copy_from_slice(&name[..n]);
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&buf[..8]);
        lo.copy_from_slice(&buf[8..]);
        SortKey { prefix: (u64::from_be_bytes(hi), u64::from_be_bytes(lo)), idx }
    }

    fn prefix(&self) -> (u64, u64) {
        self.prefix
    }
}

impl DomainSet {
    /// A set of the given names (lower-cased, one trailing dot dropped,
    /// empty ones skipped).
    pub fn from_names<I>(names: I) -> DomainSet
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut b = DomainSetBuilder::new();
        for n in names {
            b.push(n.as_ref());
        }
        b.build()
    }

    /// The set's buffers as a builder, to add more names without copying.
    pub fn into_builder(self) -> DomainSetBuilder {
        DomainSetBuilder { bytes: self.bytes.into_vec(), ends: self.ends.into_vec() }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap memory held by the set.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len() + self.ends.len() * std::mem::size_of::<u32>()
    }

    fn reversed(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Whether `name` itself is in the set (case-insensitive, a trailing dot
    /// ignored).
    pub fn matches_exact(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        self.lookup(name, false)
    }

    /// Whether `name` or one of its parent domains is in the set:
    /// `a.b.example.com` matches `example.com`, `badexample.com` does not.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        self.lookup(name, true)
    }

    fn lookup(&self, name: &[u8], parents: bool) -> bool {
        if self.is_empty() || name.is_empty() {
            return false;
        }
        // The name reversed and lower-cased once, on the stack: the key of
        // each parent is then a prefix of it. Only the last MAX_NAME bytes
        // matter, longer suffixes are never stored.
        let mut rev = [0u8; MAX_NAME];
        let tail = &name[name.len().saturating_sub(MAX_NAME)..];
        for (d, s) in rev.iter_mut().zip(tail.iter().rev()) {
            *d = s.to_ascii_lowercase();
        }
        let mut start = 0;
        loop {
            let len = name.len() - start;
            if len > 0 && len <= MAX_NAME && self.contains_reversed(&rev[..len]) {
                return true;
            }
            if !parents {
                return false;
            }
            match name[start..].iter().position(|&b| b == b'.') {
                Some(i) => start += i + 1,
                None => return false,
            }
        }
    }

    fn contains_reversed(&self, key: &[u8]) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.reversed(mid).cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return true,
            }
        }
        false
    }

    /// The names, in the set's order (by reversed bytes: a parent domain
    /// comes right before the names below it).
    pub fn iter(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.len()).map(|i| {
            let forward: Vec<u8> = self.reversed(i).iter().rev().copied().collect();
            // Valid: ASCII lower-casing and a double reversal keep UTF-8 intact.
            String::from_utf8_lossy(&forward).into_owned()
        })
    }
}

impl fmt::Debug for DomainSet {
    /// A list of a million names is not printed whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let mut l = f.debug_list();
        l.entries(self.iter().take(SHOWN));
        if self.len() > SHOWN {
            l.entry(&format_args!("… {} more", self.len() - SHOWN));
        }
        l.finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for DomainSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> DomainSet {
        DomainSet::from_names(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::selector::name_matches;

    fn set(names: &[&str]) -> DomainSet {
        DomainSet::from_names(names)
    }

    fn sorted(s: &DomainSet) -> Vec<String> {
        let mut v: Vec<String> = s.iter().collect();
        v.sort();
        v
    }

    #[test]
    fn parents_match_lookalikes_do_not() {
        let s = set(&["example.com", "tracker.example.net", "com.example"]);
        for (name, want) in [
            ("example.com", true),
            ("a.b.example.com", true),
            ("A.Example.COM.", true),
            ("badexample.com", false),
            ("example.com.evil", false),
            ("com", false),
            ("example.net", false),
            ("x.tracker.example.net", true),
            ("xtracker.example.net", false),
            ("com.example", true),
            ("a.com.example", true),
            ("", false),
            (".", false),
            ("..", false),
            (".example.com", true),
        ] {
            assert_eq!(s.matches(name), want, "{name}");
        }
        assert!(s.matches_exact("example.com"));
        assert!(s.matches_exact("EXAMPLE.com."));
        assert!(!s.matches_exact("a.example.com"));
        assert!(!s.matches_exact(""));
    }

    #[test]
    fn top_level_and_single_label_entries() {
        let s = set(&["com", "localhost."]);
        assert!(s.matches("example.com"));
        assert!(s.matches("com."));
        assert!(!s.matches("example.org"));
        assert!(s.matches("localhost"));
        assert!(s.matches("x.localhost"));
        assert!(!s.matches("localhost.example"));
    }

    #[test]
    fn normalizes_and_dedups() {
        let s = set(&["B.example", "a.example.", "b.example", "", ".", "a.example"]);
        assert_eq!(sorted(&s), ["a.example", "b.example"]);
        assert_eq!(s.len(), 2);
        assert!(!s.is_empty());
        assert_eq!(s.heap_bytes(), 18 + 8);
        let empty = DomainSet::default();
        assert!(empty.is_empty() && !empty.matches("a") && !empty.matches_exact("a"));
        assert_eq!(DomainSet::from_names(Vec::<String>::new()), empty);
    }

    #[test]
    fn parent_sorts_before_children() {
        let s = set(&["b.example.com", "example.com", "a.example.com", "example.co", "xample.com"]);
        let v: Vec<String> = s.iter().collect();
        assert_eq!(v, ["xample.com", "example.com", "a.example.com", "b.example.com", "example.co"]);
    }

    #[test]
    fn overlong_names_are_refused() {
        let long = format!("{}.example", "a".repeat(300));
        let s = set(&[long.as_str(), "ok.example"]);
        assert_eq!(s.len(), 1);
        assert!(!s.matches(&long));
        assert!(s.matches(&format!("{}.ok.example", "b".repeat(400))));
    }

    #[test]
    fn builder_merges_sets() {
        let a = set(&["a.example", "c.example"]);
        let b = set(&["b.example", "a.example"]);
        let mut builder = a.clone().into_builder();
        builder.extend_from_set(&b);
        builder.push("D.example.");
        assert_eq!(builder.len(), 5);
        let m = builder.build();
        assert_eq!(sorted(&m), ["a.example", "b.example", "c.example", "d.example"]);
        // Moving an already sorted set through a builder keeps it as is.
        assert_eq!(a.clone().into_builder().build(), a);
        let mut empty = DomainSetBuilder::new();
        empty.extend_from_set(&b);
        assert_eq!(empty.build(), b);
    }

    #[test]
    fn debug_is_short() {
        let s = DomainSet::from_names((0..100).map(|i| format!("n{i}.example")));
        let d = format!("{s:?}");
        assert!(d.contains("92 more"), "{d}");
    }

    /// A small deterministic generator; the tests need no `rand` crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn random_name(r: &mut Lcg) -> String {
        // Few, short labels from a tiny alphabet, so that random names are
        // often parents, children or near-misses of each other.
        const LABELS: &[&str] = &["a", "b", "ab", "ba", "com", "xcom", "co", "example", "xample", "-", "a-b", "1"];
        let depth = 1 + r.next(4) as usize;
        let labels: Vec<&str> = (0..depth).map(|_| LABELS[r.next(LABELS.len() as u64) as usize]).collect();
        labels.join(".")
    }

    #[test]
    fn agrees_with_naive_reference_on_random_sets() {
        let mut r = Lcg(7);
        for round in 0..200 {
            let entries: Vec<String> = (0..r.next(40)).map(|_| random_name(&mut r)).collect();
            let s = DomainSet::from_names(&entries);
            for _ in 0..100 {
                let mut q = random_name(&mut r);
                if r.next(5) == 0 {
                    q = q.to_ascii_uppercase() + ".";
                }
                let naive = entries.iter().any(|e| name_matches(e, false, &q));
                assert_eq!(s.matches(&q), naive, "round {round}: {q:?} in {entries:?}");
                let naive_exact = entries.iter().any(|e| name_matches(e, true, &q));
                assert_eq!(s.matches_exact(&q), naive_exact, "round {round}: ={q:?} in {entries:?}");
            }
            let mut want: Vec<String> = entries.clone();
            want.sort();
            want.dedup();
            assert_eq!(sorted(&s), want);
        }
    }
}
