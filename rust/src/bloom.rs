//! Bloom filters for dedup's cheap first look: a plain one and a rotating one
//! whose memory stays bounded however long the pipeline runs. A hit is only
//! "maybe": dedup confirms it against its exact set, so a false positive never
//! drops a real change.
//!
//! Layout: one array of m bits, k positions per item by double hashing
//! (Kirsch-Mitzenmacher) from the two halves of the item's xxh3-128, each
//! 64-bit g_i = h1 + i h2 mapped to 0..m by a multiply-shift (g_i m / 2^64)
//! rather than a division. The false-positive rate after n items is then close
//! to (1 - e^(-kn/m))^k.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_128;

use crate::error::{RingError, Result};

/// An item's two base hashes, computed once per item whatever the number of
/// filters asked.
#[derive(Clone, Copy)]
pub struct Key {
    h1: u64,
    h2: u64,
}

impl Key {
    pub fn of(item: &[u8]) -> Key {
        let h = xxh3_128(item);
        Key { h1: h as u64, h2: ((h >> 64) as u64) | 1 }
    }
}

/// The bits are atomics so that the filters work through `&self`: the Python
/// classes are then frozen and skip PyO3's borrow flag (two atomic
/// read-modify-writes) on every call. Lookups are plain loads; an add only
/// writes the words whose bit is not yet set.
pub struct BloomFilter {
    bits: Box<[AtomicU64]>,
    m: u64,
    k: u32,
    items: AtomicU64,
}

impl BloomFilter {
    pub fn new(bits: u64, k: u32) -> Result<Self> {
        if bits < 64 || !(1..=32).contains(&k) {
            return Err(RingError::Config(format!(
                "a Bloom filter needs at least 64 bits and 1-32 hash functions, got {bits} bits and {k}"
            )));
        }
        let words = (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(BloomFilter { bits: words, m: bits, k, items: AtomicU64::new(0) })
    }

    /// Sized for `items` at false-positive rate `p`: m = -n ln p / (ln 2)^2,
    /// k = round(m/n ln 2).
    pub fn for_items(items: u64, p: f64) -> Result<Self> {
        if items == 0 || !(p > 0.0 && p < 1.0) {
            return Err(RingError::Config(format!("need items > 0 and 0 < p < 1, got {items} and {p}")));
        }
        let ln2 = std::f64::consts::LN_2;
        let m = (-(items as f64) * p.ln() / (ln2 * ln2)).ceil().max(64.0) as u64;
        let k = ((m as f64 / items as f64) * ln2).round().clamp(1.0, 32.0) as u32;
        BloomFilter::new(m, k)
    }

    fn positions(&self, key: Key) -> impl Iterator<Item = (&AtomicU64, u64)> + '_ {
        (0..u64::from(self.k)).map(move |i| {
            let p = ((u128::from(key.h1.wrapping_add(i.wrapping_mul(key.h2))) * u128::from(self.m)) >> 64) as usize;
            (&self.bits[p / 64], 1u64 << (p % 64))
        })
    }

    pub fn add(&self, key: Key) {
        for (word, bit) in self.positions(key) {
            if word.load(Relaxed) & bit == 0 {
                word.fetch_or(bit, Relaxed);
            }
        }
        self.items.fetch_add(1, Relaxed);
    }

    pub fn contains(&self, key: Key) -> bool {
        self.positions(key).all(|(word, bit)| word.load(Relaxed) & bit != 0)
    }

    pub fn clear(&self) {
        self.bits.iter().for_each(|w| w.store(0, Relaxed));
        self.items.store(0, Relaxed);
    }

    pub fn bits(&self) -> u64 {
        self.m
    }
    pub fn hashes(&self) -> u32 {
        self.k
    }
    pub fn items(&self) -> u64 {
        self.items.load(Relaxed)
    }

    /// The false-positive rate the layout predicts after `n` items.
    pub fn predicted_fp_rate(&self, n: u64) -> f64 {
        (1.0 - (-(f64::from(self.k)) * n as f64 / self.m as f64).exp()).powi(self.k as i32)
    }
}

/// Two generations of `capacity` items each: when the current one is full the
/// older is cleared and becomes the current one, so memory is bounded and the
/// filter remembers at least the last `capacity` items.
pub struct RotatingBloomFilter {
    generations: [BloomFilter; 2],
    current: AtomicUsize,
    capacity: u64,
    rotations: AtomicU64,
    rotating: Mutex<()>,
}

impl RotatingBloomFilter {
    pub fn new(capacity: u64, p: f64) -> Result<Self> {
        Ok(RotatingBloomFilter {
            generations: [BloomFilter::for_items(capacity, p)?, BloomFilter::for_items(capacity, p)?],
            current: AtomicUsize::new(0),
            capacity,
            rotations: AtomicU64::new(0),
            rotating: Mutex::new(()),
        })
    }

    pub fn add(&self, key: Key) {
        let mut cur = self.current.load(Acquire);
        if self.generations[cur].items() >= self.capacity {
            // One rotation at a time; an add from another thread racing it
            // lands in either generation, both of which are still looked at.
            let _once = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
            cur = self.current.load(Acquire);
            if self.generations[cur].items() >= self.capacity {
                self.generations[1 - cur].clear();
                cur = 1 - cur;
                self.current.store(cur, Release);
                self.rotations.fetch_add(1, Relaxed);
            }
        }
        self.generations[cur].add(key);
    }

    pub fn contains(&self, key: Key) -> bool {
        let cur = self.current.load(Relaxed);
        self.generations[cur].contains(key) || self.generations[1 - cur].contains(key)
    }

    pub fn rotations(&self) -> u64 {
        self.rotations.load(Relaxed)
    }
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    pub fn bits(&self) -> u64 {
        self.generations[0].bits() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_rotation_forgets_old_items() {
        let r = RotatingBloomFilter::new(100, 0.01).unwrap();
        for i in 0u64..100 {
            r.add(Key::of(&i.to_le_bytes()));
        }
        assert!((0u64..100).all(|i| r.contains(Key::of(&i.to_le_bytes()))));
        for i in 100u64..300 {
            r.add(Key::of(&i.to_le_bytes()));
        }
        assert_eq!(r.rotations(), 2);
        assert!((200u64..300).all(|i| r.contains(Key::of(&i.to_le_bytes()))));
        let old_hits = (0u64..100).filter(|i| r.contains(Key::of(&i.to_le_bytes()))).count();
        assert!(old_hits < 10, "items two generations old are forgotten: {old_hits}");
    }
}
