//! The shared frame-state counters and per-hop in-flight credits.

use super::*;

impl Ring {

    /// The counter `count` names, checked before the operation it tallies so
    /// that a bad index never leaves that operation half done.
    pub(super) fn tally_counter(&self, count: Option<usize>) -> Result<Option<&AtomicU64>> {
        count.map(|i| self.counter(i)).transpose()
    }

    fn counter(&self, index: usize) -> Result<&AtomicU64> {
        self.header()
            .counters
            .get(index)
            .ok_or_else(|| RingError::Config(format!("counter index {index} out of range 0..{COUNTERS}")))
    }

    pub fn counter_add(&self, index: usize, n: u64) -> Result<u64> {
        Ok(self.counter(index)?.fetch_add(n, Ordering::Relaxed) + n)
    }

    /// Moves `n` from counter `from` to counter `to` (frames passing from a
    /// pending state into a terminal one); fails without change if `from` holds
    /// less than `n`.
    pub fn counter_move(&self, from: usize, to: usize, n: u64) -> Result<()> {
        let (src, dst) = (self.counter(from)?, self.counter(to)?);
        src.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(n))
            .map_err(|c| RingError::Config(format!("counter {from} holds {c}, cannot move {n} out of it")))?;
        dst.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    pub fn counters(&self) -> Vec<u64> {
        self.header().counters.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn credit(&self, hop: usize) -> Result<&AtomicU64> {
        self.header()
            .credits
            .get(hop)
            .ok_or_else(|| RingError::Config(format!("hop index {hop} out of range 0..{HOPS}")))
    }

    /// Takes one in-flight credit on `hop` if fewer than `limit` are taken.
    pub fn credit_take(&self, hop: usize, limit: u64) -> Result<bool> {
        Ok(self
            .credit(hop)?
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| (c < limit).then_some(c + 1))
            .is_ok())
    }

    /// Gives back one credit on `hop`; returns the credits still out. Saturates
    /// at zero: after the supervisor reset a hop (its receiver died), credits of
    /// frames taken before the reset may still come back.
    pub fn credit_return(&self, hop: usize) -> Result<u64> {
        let prev = self
            .credit(hop)?
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c.saturating_sub(1)))
            .unwrap_or(0);
        Ok(prev.saturating_sub(1))
    }

    pub fn credit_in_flight(&self, hop: usize) -> Result<u64> {
        Ok(self.credit(hop)?.load(Ordering::Relaxed))
    }

    /// Sets `hop`'s credits to zero (after its receiver died); returns the old count.
    pub fn credit_reset(&self, hop: usize) -> Result<u64> {
        Ok(self.credit(hop)?.swap(0, Ordering::Relaxed))
    }
}
