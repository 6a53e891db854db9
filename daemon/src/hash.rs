//! The hash of the daemon's own tables (devices, names, destinations,
//! blocks, suppression): keyed by MACs, addresses and flows, looked up a
//! dozen times per conntrack event, where std's SipHash-1-3 was a third of
//! the cost of judging one.
//!
//! Keys come from the LAN and the internet, so an attacker picks them: a
//! fixed hash (FxHash) would let a flood of crafted addresses collide into
//! one bucket chain. This one is keyed: 128 random bits per process (drawn
//! through std's `RandomState`, which the OS seeds), and each 64-bit word
//! of a key is folded in with a full 64×64→128-bit multiply by the secret
//! key (the high and low halves xored), so that which keys collide depends
//! on the secret. An attacker sees no hash value, only timing, the same
//! model as ahash's and foldhash's. Maps keyed by what only the owner
//! writes (configuration, lists, state) keep std's SipHash. Written here
//! rather than taken from a crate (foldhash, ahash): thirty lines, no
//! dependency, no flash to speak of.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` with the keyed fast hash.
pub type HashMap<K, V> = std::collections::HashMap<K, V, Seeded>;
/// A `HashSet` with the keyed fast hash.
pub type HashSet<K> = std::collections::HashSet<K, Seeded>;

/// The process's key, drawn once.
fn key() -> [u64; 2] {
    static KEY: OnceLock<[u64; 2]> = OnceLock::new();
    *KEY.get_or_init(|| {
        let s = std::hash::RandomState::new();
        let k0 = s.hash_one(0x6c65_6173_685f_6b30_u64);
        // Odd, so that the multiply never loses the low bit of a word.
        let k1 = s.hash_one(k0) | 1;
        [k0, k1]
    })
}

/// Builds `Fold` hashers with the process's key.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    start: u64,
    mul: u64,
}

impl Default for Seeded {
    fn default() -> Seeded {
        let [start, mul] = key();
        Seeded { start, mul }
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fold;

    #[inline(always)]
    fn build_hasher(&self) -> Fold {
        Fold { acc: self.start, mul: self.mul }
    }
}

/// The hasher: one folded multiply per 64-bit word of the key.
#[derive(Debug, Clone)]
pub struct Fold {
    acc: u64,
    mul: u64,
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for Fold {
    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.acc = fold(self.acc ^ x, self.mul);
    }

    #[inline(always)]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }

    #[inline(always)]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }

    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline(always)]
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }

    #[inline(always)]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline(always)]
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        // The length in the top byte: "ab" and "ab\0" differ.
        self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;
    use std::net::IpAddr;

    fn h<T: Hash>(s: &Seeded, v: T) -> u64 {
        s.hash_one(v)
    }

    #[test]
    fn equal_keys_hash_alike_and_near_keys_apart() {
        let s = Seeded::default();
        let a: IpAddr = "192.168.7.11".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "192.168.7.12".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h(&s, a), h(&s, a));
        assert_ne!(h(&s, a), h(&s, b));
        assert_ne!(h(&s, "ab"), h(&s, "ab\0"));
        assert_ne!(h(&s, [0u8; 0]), h(&s, [0u8; 1]));
    }

    #[test]
    fn the_key_is_the_processs_and_decides_the_hash() {
        assert_eq!(h(&Seeded::default(), 7u64), h(&Seeded::default(), 7u64), "one key per process");
        let other = Seeded { start: 1, mul: 3 };
        assert_ne!(h(&Seeded::default(), 7u64), h(&other, 7u64));
    }

    #[test]
    fn sequential_addresses_spread_over_buckets() {
        // 4 096 consecutive IPv4 addresses into 4 096 buckets by the low
        // bits (what hashbrown uses): no bucket may take a crowd.
        let s = Seeded::default();
        let mut buckets = vec![0u32; 4096];
        for i in 0..4096u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i));
            buckets[(h(&s, ip) & 4095) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n <= 12), "max {:?}", buckets.iter().max());
    }
}
