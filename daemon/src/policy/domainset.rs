//! A compact, immutable set of DNS names for deny lists.
//!
//! Public block lists hold around a million names and a router has 128–512 MB
//! of RAM. Here every name is stored byte-reversed (`example.com` →
//! `moc.elpmaxe`), sorted, and front-coded: each name keeps only what
//! differs from the name before it, in 6-bit codes (a DNS name's letters,
//! digits, `-`, `_` and `.`), in blocks of `BLOCK` names with a small index.
//! That is ≈12 bytes a name where the text alone takes ≈24. Byte-reversal
//! puts a parent domain in front of its children, and sorting makes "is
//! this name or one of its parents listed" one binary search per label,
//! with no allocation.
//!
//! Loading never holds the names as text: they are collected in small
//! chunks, each sorted and front-coded into a run as it fills; runs of like
//! size are merged four at a time as they come, and the rest at the end,
//! page by page, freeing each input page once read. The peak stays near
//! the final size (≈1.1×: no sort of the whole text, no copy).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;

/// Names longer than a DNS name can be are never stored; `normalize_name`
/// already rejects them, this only keeps lengths within a byte for other
/// callers.
const MAX_NAME: usize = 255;
/// Names per block: a lookup walks at most one block after its binary
/// search over the block index.
const BLOCK: usize = 16;
/// The coded names live in pages of this many bytes, so that a merge can
/// free what it has read while it writes.
const PAGE_SHIFT: u32 = 12;
const PAGE: usize = 1 << PAGE_SHIFT;
/// Codes of a block's first name kept in its search key (6 bits each).
const KEY_CODES: usize = 10;
/// The most bits one coded name takes: two numbers and 255 codes.
const MAX_ENTRY_BITS: usize = 2 * 13 + 6 * MAX_NAME;
/// A chunk of raw names is sorted and coded once it takes an eighth of
/// what the runs coded so far take (within these bounds).
const MIN_CHUNK: usize = 32 << 10;
const MAX_CHUNK: usize = 8 << 20;
/// Runs merged at once while loading.
const MERGE_WAYS: usize = 4;

/// A name byte's 6-bit code, in byte order (`-` `.` `0`–`9` `_` `a`–`z`,
/// capitals as small letters); 0: not a DNS name byte.
const CODE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut next = 1;
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c == b'-' || c == b'.' || c.is_ascii_digit() || c == b'_' || c.is_ascii_lowercase() {
            t[b] = next;
            next += 1;
        }
        b += 1;
    }
    let mut b = b'A';
    while b <= b'Z' {
        t[b as usize] = t[b.to_ascii_lowercase() as usize];
        b += 1;
    }
    t
};

/// The byte of each code.
const BYTE: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut b = 0;
    while b < 128 {
        let c = CODE[b];
        if c != 0 && !(b as u8).is_ascii_uppercase() {
            t[c as usize] = b as u8;
        }
        b += 1;
    }
    t
};

/// An immutable set of lower-case DNS names without trailing dots.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainSet {
    /// The coded names: one bit stream cut into pages of `PAGE` bytes (the
    /// last one shorter). A block's first name is its length and codes,
    /// each later one the length of the prefix it shares with the name
    /// before, the length of the rest, and the rest's codes.
    pages: Box<[Box<[u8]>]>,
    /// The bit where each block starts.
    blocks: Box<[u32]>,
    /// The first `KEY_CODES` codes of each block's first name, big-endian
    /// and zero-padded: integer order is name order.
    keys: Box<[u64]>,
    len: usize,
    /// Names with bytes no DNS name has (never from a list file): reversed,
    /// lower-cased, sorted, as they are.
    others: Box<[Box<[u8]>]>,
}

/// Collects names (in any order, with duplicates) for a `DomainSet`.
#[derive(Clone, Default)]
pub struct DomainSetBuilder {
    /// Reversed codes of the names not yet coded, back to back.
    chunk: Vec<u8>,
    chunk_ends: Vec<u32>,
    /// Sorted, deduplicated coded runs (their `others` empty).
    runs: Vec<DomainSet>,
    runs_bytes: usize,
    others: Vec<Box<[u8]>>,
    pushed: usize,
}

impl DomainSetBuilder {
    pub fn new() -> DomainSetBuilder {
        DomainSetBuilder::default()
    }

    /// Adds a name, lower-casing it and dropping one trailing dot. Empty
    /// names and names longer than 255 bytes are ignored; `false` says so.
    /// (Past 512 MiB of coded names, more are dropped.)
    pub fn push(&mut self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        if name.is_empty() || name.len() > MAX_NAME {
            return false;
        }
        self.pushed += 1;
        if self.chunk.capacity() == 0 {
            // Sized once per chunk: growing by doubling would leave freed
            // copies behind, and touch twice the memory.
            let limit = self.chunk_limit();
            self.chunk.reserve_exact(limit);
            self.chunk_ends.reserve_exact(limit / 16);
        }
        let start = self.chunk.len();
        self.chunk.extend(name.iter().rev().map(|&b| CODE[b as usize]));
        if self.chunk[start..].contains(&0) {
            self.chunk.truncate(start);
            self.others.push(name.iter().rev().map(u8::to_ascii_lowercase).collect());
            return true;
        }
        // Cannot overflow: a chunk is flushed long before 4 GiB.
        self.chunk_ends.push(self.chunk.len() as u32);
        if self.chunk.len() + 8 * self.chunk_ends.len() >= self.chunk_limit() {
            self.flush();
        }
        true
    }

    fn chunk_limit(&self) -> usize {
        (self.runs_bytes / 8).clamp(MIN_CHUNK, MAX_CHUNK)
    }

    /// Sorts the chunk's names and codes them into a run.
    fn flush(&mut self) {
        if self.chunk_ends.is_empty() {
            return;
        }
        let (chunk, ends) = (&self.chunk, &self.chunk_ends);
        let slice = |i: u32| -> &[u8] {
            let i = i as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &chunk[start..ends[i] as usize]
        };
        let mut order: Vec<u32> = (0..ends.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| slice(a).cmp(slice(b)));
        let mut enc = Encoder::default();
        for i in order {
            enc.push_dedup(slice(i));
        }
        self.runs.push(enc.finish(Box::default()));
        // Runs of like size are merged four at a time: a few big runs code names more tightly than many small
        // ones, whose names share less with their neighbours, and the
        // final merge has few pages in flight.
        while let [.., a, _, _, d] = self.runs.as_slice() {
            if a.len > 4 * d.len {
                break;
            }
            let last = self.runs.split_off(self.runs.len() - MERGE_WAYS);
            self.runs.push(merge(last, Box::default()));
        }
        self.runs_bytes = self.runs.iter().map(DomainSet::heap_bytes).sum();
        // The next chunk is bigger: allocated afresh at its first name.
        self.chunk = Vec::new();
        self.chunk_ends = Vec::new();
    }

    /// Adds every name of a set, taking its buffers as they are.
    pub fn add_set(&mut self, mut set: DomainSet) {
        self.pushed += set.len();
        self.others.extend(std::mem::take(&mut set.others).into_vec());
        if set.len > 0 {
            self.runs_bytes += set.heap_bytes();
            self.runs.push(set);
        }
    }

    /// Adds every name of a set (copying its buffers).
    pub fn extend_from_set(&mut self, set: &DomainSet) {
        self.add_set(set.clone());
    }

    /// Names pushed (duplicates counted).
    pub fn len(&self) -> usize {
        self.pushed
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Sorts and deduplicates into an exactly sized set.
    pub fn build(mut self) -> DomainSet {
        self.flush();
        let DomainSetBuilder { chunk, chunk_ends, mut runs, mut others, .. } = self;
        // Gone before the merge's output grows.
        drop((chunk, chunk_ends));
        others.sort_unstable();
        others.dedup();
        let others = others.into_boxed_slice();
        if runs.len() <= 1 {
            let mut set = runs.pop().unwrap_or_default();
            set.others = others;
            return set;
        }
        merge(runs, others)
    }
}

/// Merges sorted runs into one set, dropping duplicates and each input
/// page as soon as it has been read.
fn merge(runs: Vec<DomainSet>, others: Box<[Box<[u8]>]>) -> DomainSet {
    let mut cursors: Vec<Cursor> = runs.into_iter().map(Cursor::new).collect();
    let mut heap: Vec<usize> = (0..cursors.len()).filter(|&i| cursors[i].advance()).collect();
    let less = |c: &[Cursor], a: usize, b: usize| c[a].name() < c[b].name();
    for i in (0..heap.len()).rev() {
        sift_down(&mut heap, i, &cursors, less);
    }
    let mut enc = Encoder::default();
    while let Some(&top) = heap.first() {
        enc.push_dedup(cursors[top].name());
        if !cursors[top].advance() {
            heap.swap_remove(0);
        }
        sift_down(&mut heap, 0, &cursors, less);
    }
    enc.finish(others)
}

/// Restores the heap order below `i` (a min-heap of cursor indices).
fn sift_down(heap: &mut [usize], mut i: usize, c: &[Cursor], less: impl Fn(&[Cursor], usize, usize) -> bool) {
    loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut min = i;
        if l < heap.len() && less(c, heap[l], heap[min]) {
            min = l;
        }
        if r < heap.len() && less(c, heap[r], heap[min]) {
            min = r;
        }
        if min == i {
            return;
        }
        heap.swap(i, min);
        i = min;
    }
}

/// Reads `n` ≤ 9 bits at bit `bit` of a byte stream (least significant
/// bit first).
#[inline]
fn read_bits(byte: impl Fn(usize) -> u8, bit: usize, n: u32) -> u32 {
    let i = bit >> 3;
    let w = u32::from(byte(i)) | u32::from(byte(i + 1)) << 8;
    (w >> (bit & 7)) & ((1 << n) - 1)
}

/// A length: 5 bits, or 31 and then 8 bits.
#[inline]
fn read_num(byte: impl Fn(usize) -> u8 + Copy, bit: &mut usize) -> usize {
    let v = read_bits(byte, *bit, 5);
    *bit += 5;
    if v < 31 {
        return v as usize;
    }
    let v = read_bits(byte, *bit, 8);
    *bit += 8;
    v as usize
}

/// Decodes the entry at `bit` into `name` (which holds the name before
/// it), returning the new length.
fn read_entry(byte: impl Fn(usize) -> u8 + Copy, bit: &mut usize, first: bool, name: &mut [u8; MAX_NAME]) -> usize {
    let lcp = if first { 0 } else { read_num(byte, bit) };
    let rest = read_num(byte, bit);
    let end = (lcp + rest).min(MAX_NAME);
    for slot in &mut name[lcp.min(end)..end] {
        *slot = read_bits(byte, *bit, 6) as u8;
        *bit += 6;
    }
    end
}

fn page_byte(pages: &[Box<[u8]>], i: usize) -> u8 {
    pages.get(i >> PAGE_SHIFT).and_then(|p| p.get(i & (PAGE - 1))).copied().unwrap_or(0)
}

/// The search key of a name's codes.
fn key_of(codes: &[u8]) -> u64 {
    let mut k = 0u64;
    for i in 0..KEY_CODES {
        k = k << 6 | u64::from(codes.get(i).copied().unwrap_or(0));
    }
    k
}

/// Writes sorted names as a `DomainSet`.
#[derive(Default)]
struct Encoder {
    pages: Vec<Box<[u8]>>,
    page: Vec<u8>,
    acc: u64,
    pending: u32,
    bits: usize,
    blocks: Vec<u32>,
    keys: Vec<u64>,
    prev: Vec<u8>,
    len: usize,
}

impl Encoder {
    fn put(&mut self, v: u32, n: u32) {
        self.acc |= u64::from(v) << self.pending;
        self.pending += n;
        self.bits += n as usize;
        while self.pending >= 8 {
            self.byte(self.acc as u8);
            self.acc >>= 8;
            self.pending -= 8;
        }
    }

    fn byte(&mut self, b: u8) {
        if self.page.len() == PAGE {
            let full = std::mem::replace(&mut self.page, Vec::with_capacity(PAGE));
            self.pages.push(full.into_boxed_slice());
        } else if self.page.capacity() == 0 {
            self.page.reserve_exact(PAGE);
        }
        self.page.push(b);
    }

    fn put_num(&mut self, v: usize) {
        if v < 31 {
            self.put(v as u32, 5);
        } else {
            self.put(31, 5);
            self.put(v as u32, 8);
        }
    }

    /// Appends a name's codes, unless it equals the last one; names must
    /// come in order.
    fn push_dedup(&mut self, name: &[u8]) {
        if self.len > 0 && self.prev == name {
            return;
        }
        debug_assert!(self.len == 0 || self.prev.as_slice() < name);
        if self.bits + MAX_ENTRY_BITS > u32::MAX as usize {
            return;
        }
        let first = self.len % BLOCK == 0;
        let lcp = if first { 0 } else { self.prev.iter().zip(name).take_while(|(a, b)| a == b).count() };
        if first {
            // Fits: checked just above.
            self.blocks.push(self.bits as u32);
            self.keys.push(key_of(name));
        } else {
            self.put_num(lcp);
        }
        self.put_num(name.len() - lcp);
        for &c in &name[lcp..] {
            self.put(u32::from(c), 6);
        }
        self.prev.clear();
        self.prev.extend_from_slice(name);
        self.len += 1;
    }

    fn finish(mut self, others: Box<[Box<[u8]>]>) -> DomainSet {
        if self.pending > 0 {
            self.byte(self.acc as u8);
        }
        if !self.page.is_empty() {
            self.pages.push(self.page.into_boxed_slice());
        }
        DomainSet {
            pages: self.pages.into_boxed_slice(),
            blocks: self.blocks.into_boxed_slice(),
            keys: self.keys.into_boxed_slice(),
            len: self.len,
            others,
        }
    }
}

/// `DomainSet::block_probe` within the block's bytes; `None` when the key
/// is above every name of the block.
fn walk_block(bytes: &[u8], mut bit: usize, count: usize, key: &[u8]) -> Option<Probe> {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut matched = 0;
    for i in 0..count {
        let lcp = if i == 0 { 0 } else { read_num(byte, &mut bit) };
        let rest = read_num(byte, &mut bit);
        if lcp > matched {
            bit += 6 * rest;
            continue;
        }
        if lcp < matched {
            return Some(Probe::Absent { more: false });
        }
        let mut j = 0;
        while j < rest {
            let Some(&k) = key.get(matched + j) else {
                // The key ends inside this entry: the first name above
                // it starts with it.
                return Some(Probe::Absent { more: true });
            };
            let c = read_bits(byte, bit + 6 * j, 6) as u8;
            if c != k {
                if c > k {
                    return Some(Probe::Absent { more: false });
                }
                break;
            }
            j += 1;
        }
        if j == rest && matched + j == key.len() {
            return Some(Probe::Found);
        }
        matched += j;
        bit += 6 * rest;
    }
    None
}

/// What a lookup of one key found.
enum Probe {
    Found,
    /// `more`: some name in the set may start with the key and a dot:
    /// `false` rules out every child of the key.
    Absent { more: bool },
}

/// The code of `.`; only `-` comes before it.
const DOT: u8 = CODE[b'.' as usize];

/// Reads a run's names in order, dropping each page once past it.
struct Cursor {
    pages: VecDeque<Box<[u8]>>,
    /// Byte offset of `pages[0]` in the stream.
    base: usize,
    bit: usize,
    left: usize,
    read: usize,
    name: [u8; MAX_NAME],
    name_len: usize,
}

impl Cursor {
    fn new(set: DomainSet) -> Cursor {
        // The index is not needed to read in order.
        Cursor { pages: set.pages.into_vec().into(), base: 0, bit: 0, left: set.len, read: 0, name: [0; MAX_NAME], name_len: 0 }
    }

    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    /// Moves to the next name; `false` at the end.
    fn advance(&mut self) -> bool {
        if self.left == 0 {
            self.pages.clear();
            return false;
        }
        while self.bit >> 3 >= self.base + PAGE && !self.pages.is_empty() {
            self.pages.pop_front();
            self.base += PAGE;
        }
        let (pages, base) = (&self.pages, self.base);
        let byte = |i: usize| {
            let rel = i - base;
            pages.get(rel >> PAGE_SHIFT).and_then(|p| p.get(rel & (PAGE - 1))).copied().unwrap_or(0)
        };
        self.name_len = read_entry(byte, &mut self.bit, self.read % BLOCK == 0, &mut self.name);
        self.read += 1;
        self.left -= 1;
        true
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

    /// The set as a builder, to add more names.
    pub fn into_builder(self) -> DomainSetBuilder {
        let mut b = DomainSetBuilder::new();
        b.add_set(self);
        b
    }

    pub fn len(&self) -> usize {
        self.len + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap memory held by the set.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.pages.iter().map(|p| p.len()).sum::<usize>()
            + self.pages.len() * size_of::<Box<[u8]>>()
            + self.blocks.len() * size_of::<u32>()
            + self.keys.len() * size_of::<u64>()
            + self.others.iter().map(|o| o.len() + size_of::<Box<[u8]>>()).sum::<usize>()
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
        // The name reversed and coded once, on the stack: the key of each
        // parent is then a prefix of it, ending before a dot. Only the last
        // MAX_NAME bytes matter, longer suffixes are never stored. Keys
        // past a byte that has no code can only be among `others`.
        let mut rev = [0u8; MAX_NAME];
        let mut raw = [0u8; MAX_NAME];
        let tail = &name[name.len().saturating_sub(MAX_NAME)..];
        for ((d, r), s) in rev.iter_mut().zip(raw.iter_mut()).zip(tail.iter().rev()) {
            *d = CODE[*s as usize];
            *r = s.to_ascii_lowercase();
        }
        let n = tail.len();
        let coded = rev[..n].iter().position(|&c| c == 0).unwrap_or(n);
        // The keys to try, shortest (the top-level domain) first: a key no
        // listed name starts with rules out every longer one.
        let is_key = |len: usize| {
            len > 0
                && if len < n {
                    parents && tail[n - 1 - len] == b'.'
                } else if len < name.len() {
                    parents && name[name.len() - 1 - len] == b'.'
                } else {
                    true
                }
        };
        let mut from = 0;
        let mut coded_left = true;
        for len in 1..=n {
            if !is_key(len) {
                continue;
            }
            if len <= coded {
                if !coded_left {
                    continue;
                }
                match self.probe(&rev[..len], from) {
                    (Probe::Found, _) => return true,
                    (Probe::Absent { more }, block) => {
                        from = block;
                        coded_left = more;
                    }
                }
            } else if self.others.binary_search_by(|o| o.as_ref().cmp(&raw[..len])).is_ok() {
                return true;
            } else if self.others.is_empty() {
                return false;
            }
        }
        false
    }

    fn byte(&self, i: usize) -> u8 {
        page_byte(&self.pages, i)
    }

    /// Calls `f` with block `b`'s bytes, contiguous (copied when the
    /// block spans two pages), and the bit where the block starts in them.
    fn with_block<R>(&self, b: usize, f: impl FnOnce(&[u8], usize) -> R) -> R {
        let start = self.blocks[b] as usize;
        let end = match self.blocks.get(b + 1) {
            Some(&next) => (next as usize).div_ceil(8),
            // Every page but the last is full.
            None => self.pages.len().saturating_sub(1) * PAGE + self.pages.last().map_or(0, |p| p.len()),
        };
        let first = start >> 3;
        let (page, off) = (first >> PAGE_SHIFT, first & (PAGE - 1));
        if let Some(p) = self.pages.get(page).filter(|p| off + (end - first) <= p.len()) {
            return f(&p[off..off + (end - first)], start & 7);
        }
        let mut buf = [0u8; BLOCK * MAX_ENTRY_BITS / 8 + 2];
        let n = (end - first).min(buf.len());
        for (i, slot) in buf[..n].iter_mut().enumerate() {
            *slot = self.byte(first + i);
        }
        f(&buf[..n], start & 7)
    }

    /// How block `b`'s first name compares with `key`; with `prefix`,
    /// `Equal` also when it starts with the key and then `-` or `.` (it
    /// may be followed by the key's children).
    fn cmp_first(&self, b: usize, key: &[u8], prefix: bool) -> Ordering {
        self.with_block(b, |bytes, mut bit| {
            let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
            let len = read_num(byte, &mut bit);
            for (i, &k) in key.iter().enumerate().take(len) {
                let c = read_bits(byte, bit + 6 * i, 6) as u8;
                if c != k {
                    return c.cmp(&k);
                }
            }
            if prefix && len > key.len() {
                let next = read_bits(byte, bit + 6 * key.len(), 6) as u8;
                if next <= DOT {
                    return Ordering::Equal;
                }
            }
            len.cmp(&key.len())
        })
    }

    /// Looks `key` up from block `from` on (the key is above every name
    /// before it); also says in which block it would be.
    fn probe(&self, key: &[u8], from: usize) -> (Probe, usize) {
        // The last block whose first name is not above the key.
        let k = key_of(key);
        let (mut lo, mut hi) = (from, self.blocks.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let le = match self.keys[mid].cmp(&k) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => self.cmp_first(mid, key, false) != Ordering::Greater,
            };
            if le {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            let more = !self.blocks.is_empty() && self.cmp_first(0, key, true) == Ordering::Equal;
            return (Probe::Absent { more }, 0);
        }
        (self.block_probe(lo - 1, key), lo - 1)
    }

    /// Walks block `b` for `key`, decoding only where an entry can equal
    /// it: `matched` is how much of the key the entry before matched, so
    /// an entry that shares more with that one is below the key, and one
    /// that shares less is above it.
    fn block_probe(&self, b: usize, key: &[u8]) -> Probe {
        let count = if b + 1 == self.blocks.len() { self.len - b * BLOCK } else { BLOCK };
        match self.with_block(b, |bytes, bit| walk_block(bytes, bit, count, key)) {
            Some(found) => found,
            // Above the whole block: the next block's first name is the
            // first above the key.
            None => Probe::Absent { more: b + 1 < self.blocks.len() && self.cmp_first(b + 1, key, true) == Ordering::Equal },
        }
    }

    /// The names, in the set's order (by reversed bytes: a parent domain
    /// comes right before the names below it), then any with bytes no DNS
    /// name has.
    pub fn iter(&self) -> impl Iterator<Item = String> + '_ {
        let mut name = [0u8; MAX_NAME];
        let mut bit = 0;
        let coded = (0..self.len).map(move |i| {
            let len = read_entry(|b| self.byte(b), &mut bit, i % BLOCK == 0, &mut name);
            name[..len].iter().rev().map(|&c| BYTE[c as usize] as char).collect::<String>()
        });
        let others = self.others.iter().map(|o| {
            let forward: Vec<u8> = o.iter().rev().copied().collect();
            // Valid: ASCII lower-casing and a double reversal keep UTF-8 intact.
            String::from_utf8_lossy(&forward).into_owned()
        });
        coded.chain(others)
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
        // 18 bytes of text: 5 + 6×9 bits for the first name, 5 + 5 + 6
        // for the second (8 shared, 1 more), a page pointer (16 bytes on
        // 64-bit targets, 8 on 32-bit ones) and the index.
        assert_eq!(s.heap_bytes(), 10 + std::mem::size_of::<Box<[u8]>>() + 4 + 8);
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
    fn names_without_a_code_are_kept_apart() {
        let s = set(&["ä.example", "x.äB.example", "b.example", "Ä.example", "a b", "\u{0}"]);
        // Only ASCII is lower-cased, as lists are ASCII.
        assert_eq!(s.len(), 6);
        assert!(s.matches("ä.example") && s.matches("sub.Ä.example.") && s.matches_exact("Ä.EXAMPLE"));
        assert!(s.matches("x.äb.example") && !s.matches("äb.example") && !s.matches("ä.example.org"));
        assert!(s.matches("c.b.example") && s.matches("a b") && !s.matches("b"));
        let mut m = s.clone().into_builder();
        m.add_set(set(&["ä.example", "c.example"]));
        let m = m.build();
        let mut want = vec!["ä.example", "x.äb.example", "b.example", "Ä.example", "a b", "\u{0}", "c.example"];
        want.sort_unstable();
        assert_eq!(sorted(&m), want);
    }

    #[test]
    fn long_lengths_and_shared_prefixes() {
        // Lengths past 30 take the long form of the numbers; names that
        // share 10+ codes give blocks equal search keys.
        let base = "x".repeat(40);
        let names: Vec<String> = (0..200).map(|i| format!("{}.{base}.example", "a".repeat(i % 70 + 1))).collect();
        let s = DomainSet::from_names(&names);
        assert_eq!(s.len(), 70);
        for i in 0..80 {
            let q = format!("{}.{base}.example", "a".repeat(i + 1));
            assert_eq!(s.matches_exact(&q), i < 70, "{i}");
            assert_eq!(s.matches(&format!("z.{q}")), i < 70, "{i}");
        }
        assert!(!s.matches(&format!("{base}.example")) && !s.matches("example"));
        let max = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63));
        let s = set(&[max.as_str(), "b.c"]);
        assert!(s.matches_exact(&max) && s.matches(&format!("x.{max}")) && s.matches("a.b.c"));
        assert_eq!(sorted(&s), [max.clone(), "b.c".into()]);
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

    /// The plain form: every name in a hash set, each query's parents
    /// looked up one by one.
    struct Oracle(std::collections::HashSet<String>);
    impl Oracle {
        fn new(names: &[String]) -> Oracle {
            Oracle(names.iter().map(|n| n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase()).filter(|n| !n.is_empty()).collect())
        }
        fn matches(&self, q: &str, exact: bool) -> bool {
            let q = q.strip_suffix('.').unwrap_or(q).to_ascii_lowercase();
            let mut rest = q.as_str();
            loop {
                if !rest.is_empty() && self.0.contains(rest) {
                    return true;
                }
                match rest.split_once('.') {
                    Some((_, parent)) if !exact => rest = parent,
                    _ => return false,
                }
            }
        }
    }

    fn big_name(r: &mut Lcg) -> String {
        const TLDS: &[&str] = &["com", "net", "org", "co.uk", "io", "x-y"];
        const WORDS: &[&str] = &["ads", "ad", "a", "track", "t", "cdn", "metrics", "m", "0", "9z", "_srv", "x--y"];
        let mut s = String::new();
        for _ in 0..r.next(4) {
            s.push_str(WORDS[r.next(WORDS.len() as u64) as usize]);
            s.push('.');
        }
        for _ in 0..1 + r.next(3) {
            s.push((b'a' + r.next(6) as u8) as char);
        }
        if r.next(3) == 0 {
            s.push_str(&r.next(500).to_string());
        }
        s.push('.');
        s.push_str(TLDS[r.next(TLDS.len() as u64) as usize]);
        s
    }

    /// Sets big enough to be built from many coded runs, merged (and so
    /// many blocks): every query, its parents and near-misses agree with
    /// the hash set, and the names come back in order.
    #[test]
    fn agrees_with_a_hash_set_on_big_sets() {
        let mut r = Lcg(11);
        for round in 0..3 {
            let n = [5_000, 40_000, 120_000][round];
            let mut names: Vec<String> = (0..n).map(|_| big_name(&mut r)).collect();
            names.push("com".into());
            let s = DomainSet::from_names(&names);
            let oracle = Oracle::new(&names);
            assert_eq!(s.len(), oracle.0.len());
            for _ in 0..20_000 {
                let q = match r.next(4) {
                    0 => names[r.next(names.len() as u64) as usize].clone(),
                    1 => format!("{}.{}", big_name(&mut r), names[r.next(names.len() as u64) as usize]),
                    2 => format!("x{}", names[r.next(names.len() as u64) as usize]),
                    _ => big_name(&mut r).replace("com", "org"),
                };
                assert_eq!(s.matches(&q), oracle.matches(&q, false), "round {round}: {q:?}");
                assert_eq!(s.matches_exact(&q), oracle.matches(&q, true), "round {round}: ={q:?}");
            }
            let listed: Vec<String> = s.iter().collect();
            let mut want: Vec<String> = oracle.0.iter().cloned().collect();
            want.sort_by(|a, b| a.bytes().rev().cmp(b.bytes().rev()));
            assert_eq!(listed, want);
            // Built in one go or file by file, the set is the same.
            let (a, b) = names.split_at(n / 3);
            let mut builder = DomainSet::from_names(a).into_builder();
            builder.add_set(DomainSet::from_names(b));
            assert!(builder.build() == s, "round {round}");
        }
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
