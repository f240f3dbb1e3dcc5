//! FrameRingBuffer: a bounded, time-ordered index of recent frames (the plan's
//! sliding window). Entries are either copies (`add_frame`, bounded in bytes) or
//! frames held in a SharedVisionMemory (bounded in count, since each pins a slot);
//! the oldest entry is evicted first, never overwritten in place.

use std::collections::VecDeque;

use crate::error::{RingError, Result};

pub struct FrameRingBuffer<T> {
    capacity_bytes: usize,
    max_entries: usize,
    used_bytes: usize,
    entries: VecDeque<(u64, usize, T)>,
}

impl<T> FrameRingBuffer<T> {
    pub fn new(capacity_bytes: usize, max_entries: usize) -> Result<Self> {
        if capacity_bytes == 0 || max_entries == 0 {
            return Err(RingError::Config("a FrameRingBuffer needs a positive capacity and entry limit".into()));
        }
        Ok(FrameRingBuffer { capacity_bytes, max_entries, used_bytes: 0, entries: VecDeque::new() })
    }

    /// Adds an entry of `bytes` at time `ts` (timestamps must not go backwards).
    /// Returns the evicted entries, oldest first, so the caller can let go of them.
    pub fn push(&mut self, ts: u64, bytes: usize, item: T) -> Result<Vec<T>> {
        if bytes > self.capacity_bytes {
            return Err(RingError::FrameGeometry(format!(
                "a frame of {bytes} bytes does not fit a buffer of {} bytes",
                self.capacity_bytes
            )));
        }
        if let Some(&(last, _, _)) = self.entries.back() {
            if ts < last {
                return Err(RingError::Config(format!(
                    "timestamp {ts} is older than the newest frame ({last}); add frames in time order"
                )));
            }
        }
        let mut evicted = Vec::new();
        while self.used_bytes + bytes > self.capacity_bytes || self.entries.len() >= self.max_entries {
            let (_, b, item) = self.entries.pop_front().expect("non-empty while over budget");
            self.used_bytes -= b;
            evicted.push(item);
        }
        self.used_bytes += bytes;
        self.entries.push_back((ts, bytes, item));
        Ok(evicted)
    }

    /// The newest `n` entries, oldest first.
    pub fn latest(&self, n: usize) -> impl Iterator<Item = (u64, &T)> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).map(|(t, _, i)| (*t, i))
    }

    /// Entries with `start <= ts <= end`, oldest first.
    pub fn between(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &T)> {
        let from = self.entries.partition_point(|(t, _, _)| *t < start);
        self.entries.iter().skip(from).take_while(move |(t, _, _)| *t <= end).map(|(t, _, i)| (*t, i))
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.used_bytes = 0;
        self.entries.drain(..).map(|(_, _, i)| i)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_by_bytes_and_count() {
        let mut b = FrameRingBuffer::new(100, 3).unwrap();
        assert!(b.push(1, 40, 'a').unwrap().is_empty());
        assert!(b.push(2, 40, 'b').unwrap().is_empty());
        assert_eq!(b.push(3, 40, 'c').unwrap(), vec!['a']);
        assert_eq!(b.push(4, 0, 'd').unwrap(), Vec::<char>::new());
        assert_eq!(b.push(5, 0, 'e').unwrap(), vec!['b']);
        assert_eq!(b.latest(2).map(|(t, c)| (t, *c)).collect::<Vec<_>>(), vec![(4, 'd'), (5, 'e')]);
        assert_eq!(b.between(3, 4).map(|(_, c)| *c).collect::<String>(), "cd");
        assert_eq!(b.used_bytes(), 40);
    }

    #[test]
    fn refuses_oversized_and_out_of_order() {
        let mut b = FrameRingBuffer::new(10, 5).unwrap();
        assert!(matches!(b.push(1, 11, ()), Err(RingError::FrameGeometry(_))));
        b.push(5, 1, ()).unwrap();
        assert!(matches!(b.push(4, 1, ()), Err(RingError::Config(_))));
    }
}
