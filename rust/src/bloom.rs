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

#[derive(Clone)]
pub struct BloomFilter {
    bits: Vec<u64>,
    m: u64,
    k: u32,
    items: u64,
}

impl BloomFilter {
    pub fn new(bits: u64, k: u32) -> Result<Self> {
        if bits < 64 || !(1..=32).contains(&k) {
            return Err(RingError::Config(format!(
                "a Bloom filter needs at least 64 bits and 1-32 hash functions, got {bits} bits and {k}"
            )));
        }
        Ok(BloomFilter { bits: vec![0; bits.div_ceil(64) as usize], m: bits, k, items: 0 })
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

    fn positions(k: u32, m: u64, key: Key) -> impl Iterator<Item = usize> {
        (0..u64::from(k)).map(move |i| ((u128::from(key.h1.wrapping_add(i.wrapping_mul(key.h2))) * u128::from(m)) >> 64) as usize)
    }

    pub fn add(&mut self, key: Key) {
        for p in Self::positions(self.k, self.m, key) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.items += 1;
    }

    pub fn contains(&self, key: Key) -> bool {
        Self::positions(self.k, self.m, key).all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.items = 0;
    }

    pub fn bits(&self) -> u64 {
        self.m
    }
    pub fn hashes(&self) -> u32 {
        self.k
    }
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The false-positive rate the layout predicts after `n` items.
    pub fn predicted_fp_rate(&self, n: u64) -> f64 {
        (1.0 - (-(f64::from(self.k)) * n as f64 / self.m as f64).exp()).powi(self.k as i32)
    }
}

/// Two generations of `capacity` items each: when the current one is full the
/// older is dropped and a fresh one starts, so memory is bounded and the filter
/// remembers at least the last `capacity` items.
pub struct RotatingBloomFilter {
    current: BloomFilter,
    previous: BloomFilter,
    capacity: u64,
    rotations: u64,
}

impl RotatingBloomFilter {
    pub fn new(capacity: u64, p: f64) -> Result<Self> {
        let current = BloomFilter::for_items(capacity, p)?;
        Ok(RotatingBloomFilter { previous: current.clone(), current, capacity, rotations: 0 })
    }

    pub fn add(&mut self, key: Key) {
        if self.current.items() >= self.capacity {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            self.rotations += 1;
        }
        self.current.add(key);
    }

    pub fn contains(&self, key: Key) -> bool {
        self.current.contains(key) || self.previous.contains(key)
    }

    pub fn rotations(&self) -> u64 {
        self.rotations
    }
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    pub fn bits(&self) -> u64 {
        self.current.bits() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_rotation_forgets_old_items() {
        let mut r = RotatingBloomFilter::new(100, 0.01).unwrap();
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
