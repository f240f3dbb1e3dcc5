//! The per-slot state machine: every transition of a slot's `seq` and `holds`
//! words, each with its memory ordering. The protocol as a whole is described at
//! the top of `ring.rs`; this module is kept free of the mapping so that loom can
//! model-check exactly this code (tests/loom_slot.rs).

use crate::sync::{fence, AtomicU64, Ordering};

/// `holds` word layout: bits 0..55 say which holders hold the frame; bits
/// 56..61 name its **owner** (holder index + 1, 0 = none): the one holder
/// responsible for deciding the frame's terminal state. Keeping bits and owner
/// in one word makes every transition a single RMW, so a crash can never leave
/// a frame owned by someone who does not hold it, or held by nobody but owned.
/// Bit 62 is unused; bit 63 (`WRITER_BIT`) marks a slot the writer is filling.
pub const WRITER_BIT: u64 = 1 << 63;
/// Number of holder bits.
pub const MAX_HOLDERS: usize = 56;
const HOLDER_BITS: u64 = (1 << MAX_HOLDERS) - 1;
const OWNER_SHIFT: u32 = 56;
const OWNER_FIELD: u64 = 0x3f << OWNER_SHIFT;
/// `seq` flag: the slot is being written, its pixels and metadata are not a frame.
pub const WRITING: u64 = 1 << 63;
/// `seq` of a slot that holds no frame (never written, aborted or recovered).
pub const EMPTY: u64 = 0;

pub fn bit(holder: usize) -> u64 {
    debug_assert!(holder < MAX_HOLDERS);
    1 << holder
}

/// The owner recorded in a `holds` word.
pub fn owner(holds: u64) -> Option<usize> {
    match (holds & OWNER_FIELD) >> OWNER_SHIFT {
        0 => None,
        o => Some(o as usize - 1),
    }
}

fn with_owner(holds: u64, owner: Option<usize>) -> u64 {
    (holds & !OWNER_FIELD) | owner.map_or(0, |i| (i as u64 + 1) << OWNER_SHIFT)
}

/// Holder indices whose bit is set in a `holds` word.
pub fn holders(holds: u64) -> impl Iterator<Item = usize> {
    (0..MAX_HOLDERS).filter(move |&i| holds & bit(i) != 0)
}

/// What giving up a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Nobody holds the frame any more: the writer may reuse the slot.
    pub freed: bool,
    /// The holder owned the frame: its terminal state is decided by this release.
    pub was_owner: bool,
}

/// Reuse preference keys stored in a slot's `free_key` word; the writer takes the
/// free slot with the largest key. A hint only: a stale key costs cache locality,
/// never correctness, so it is written with `Relaxed`.
pub mod free_key {
    const CLOCK_MASK: u64 = (1 << 60) - 1;
    /// A slot whose last hold was just released: most recently freed first, its
    /// pixels are likely still in the CPU cache.
    pub fn released(clock: u64) -> u64 {
        (3 << 60) | (clock & CLOCK_MASK)
    }
    /// A slot that never held a frame.
    pub const UNUSED: u64 = 2 << 60;
    /// A frame published with no hold: oldest first, so that readers taking no
    /// hold see the most recent frames for as long as possible.
    pub fn unheld(clock: u64) -> u64 {
        (2 << 60) - 1 - (clock & CLOCK_MASK)
    }
}

/// Why a hold could not be taken or given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldError {
    /// The slot no longer carries the frame (overwritten, being written or empty).
    Expired,
    /// The caller's bit was not set on the slot.
    NotHeld,
}

/// The shared words of one slot.
pub struct SlotWords<'a> {
    pub seq: &'a AtomicU64,
    pub holds: &'a AtomicU64,
    pub free_key: &'a AtomicU64,
}

impl SlotWords<'_> {
    /// Writer: take a slot nobody holds. `Acquire` pairs with the `Release` of
    /// the last hold's release (or hand-over chain), so every read of the old
    /// frame happens before the writer overwrites it.
    pub fn try_claim(&self) -> bool {
        self.holds
            .compare_exchange(0, WRITER_BIT, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Writer, after `try_claim`: mark the slot as being written. The `Release`
    /// fence orders this store before the pixel stores that follow, so a
    /// hold-free reader (`copy_is_valid`) that sees any new pixel also sees the
    /// `WRITING` mark (or a later seq) when it re-reads `seq`.
    pub fn begin_write(&self, new_seq: u64) {
        self.seq.store(new_seq | WRITING, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Writer: publish the frame written since `begin_write`. The `Release` store
    /// of `seq` makes pixels and metadata visible to whoever reads the new seq
    /// with `Acquire`. `owner` is the holder that starts out holding and owning
    /// the frame (the writer's own entry), or none; the `Release` store of
    /// `holds` is what a reader's `Acquire` in `try_hold` synchronises with.
    /// Only the writer touches `holds` while `WRITER_BIT` is set (every other
    /// transition refuses or needs a bit that cannot be set), so a plain store
    /// is enough.
    pub fn publish(&self, new_seq: u64, holder: Option<usize>, unheld_key: u64) {
        self.seq.store(new_seq, Ordering::Release);
        let holds = holder.map_or(0, |o| with_owner(bit(o), Some(o)));
        if holds == 0 {
            self.free_key.store(unheld_key, Ordering::Relaxed);
        }
        self.holds.store(holds, Ordering::Release);
    }

    /// Writer: give up a claimed slot without publishing. `seq` goes to `EMPTY`
    /// first, so no ref can ever match what was partly written.
    pub fn abort(&self, key: u64) {
        self.seq.store(EMPTY, Ordering::Release);
        self.free_key.store(key, Ordering::Relaxed);
        self.holds.store(0, Ordering::Release);
    }

    /// Holder: take a (non-owning) hold on frame `seq` for `holder`. Fails while the writer
    /// owns the slot. The `Acquire` RMW reads the writer's `publish` store (or a
    /// later RMW in its release sequence), so the frame's pixels are visible.
    /// Once our bit is set the writer cannot claim the slot, so `seq` is stable
    /// and the re-check below decides: the frame we hold is the frame we asked
    /// for, or we let go at once. `Relaxed` suffices for that load because the
    /// RMW already ordered us after the publish of whatever seq is current.
    pub fn try_hold(&self, seq: u64, holder: usize) -> Result<(), HoldError> {
        let bit = bit(holder);
        if self.seq.load(Ordering::Relaxed) != seq {
            return Err(HoldError::Expired);
        }
        let prev = self
            .holds
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |h| {
                (h & WRITER_BIT == 0).then_some(h | bit)
            })
            .map_err(|_| HoldError::Expired)?;
        if self.seq.load(Ordering::Relaxed) != seq {
            if prev & bit == 0 {
                self.holds.fetch_and(!bit, Ordering::Release);
            }
            return Err(HoldError::Expired);
        }
        Ok(())
    }

    /// Holder: drop the hold of `holder`; an owner's release also ends its
    /// ownership (the frame's fate is decided). `Release` orders every read of
    /// the pixels before the writer's `Acquire` claim of the then free slot. If
    /// the slot became free, its `free_key` is set to `key`.
    pub fn release(&self, holder: usize, key: u64) -> Result<Released, HoldError> {
        let bit = bit(holder);
        let prev = self
            .holds
            .fetch_update(Ordering::Release, Ordering::Relaxed, |h| {
                if h & bit == 0 {
                    return None;
                }
                let h = h & !bit;
                Some(if owner(h) == Some(holder) { with_owner(h, None) } else { h })
            })
            .map_err(|_| HoldError::NotHeld)?;
        let freed = prev & HOLDER_BITS == bit;
        if freed {
            self.free_key.store(key, Ordering::Relaxed);
        }
        Ok(Released { freed, was_owner: owner(prev) == Some(holder) })
    }

    /// Holder: pass the hold of `from` to `to` in one step, so the frame is never
    /// unheld in between; ownership travels with it. With `keep_from` the giver
    /// keeps a (now non-owning) hold too. `Release`: the giver's reads must happen
    /// before the writer's eventual claim, which synchronises through the release
    /// sequence of later RMWs on `holds`.
    pub fn hand_over(&self, from: usize, to: usize, keep_from: bool) -> Result<(), HoldError> {
        let (from_bit, to_bit) = (bit(from), bit(to));
        self.holds
            .fetch_update(Ordering::Release, Ordering::Relaxed, |h| {
                if h & from_bit == 0 {
                    return None;
                }
                let mut n = h | to_bit;
                if !keep_from {
                    n &= !from_bit;
                }
                Some(if owner(h) == Some(from) { with_owner(n, Some(to)) } else { n })
            })
            .map(|_| ())
            .map_err(|_| HoldError::NotHeld)
    }

    /// Holder: undo a `hand_over(keep_from = true)` whose message never left:
    /// clear `to`'s bit and take ownership back. Safe because `to` cannot have
    /// seen the frame without the message. `Relaxed`: `me` still holds the slot,
    /// so this transition can never free it.
    pub fn withdraw(&self, me: usize, to: usize) -> Result<(), HoldError> {
        let (me_bit, to_bit) = (bit(me), bit(to));
        self.holds
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                if h & me_bit == 0 || h & to_bit == 0 {
                    return None;
                }
                let n = h & !to_bit;
                Some(if owner(h) == Some(to) { with_owner(n, Some(me)) } else { n })
            })
            .map(|_| ())
            .map_err(|_| HoldError::NotHeld)
    }

    /// Whether `holder` holds the slot and the slot still carries frame `seq`
    /// (the receiving side of a hand-over checks this before using the frame).
    /// `Acquire` on `holds` pairs with the giver's `Release` hand-over.
    pub fn is_held_by(&self, seq: u64, holder: usize) -> bool {
        self.holds.load(Ordering::Acquire) & bit(holder) != 0 && self.seq.load(Ordering::Relaxed) == seq
    }

    /// Reader without a hold, step 1: is frame `seq` current? `Acquire` pairs with
    /// the `publish` store, so the pixels of that frame are visible to the copy.
    pub fn copy_begin(&self, seq: u64) -> bool {
        self.seq.load(Ordering::Acquire) == seq
    }

    /// Reader without a hold, step 2 (after copying): was the copy untouched by a
    /// writer? The `Acquire` fence orders the pixel loads before this re-read of
    /// `seq`; if any loaded pixel came from a newer write, the writer's
    /// `begin_write` (fenced before its pixel stores) is visible here.
    pub fn copy_is_valid(&self, seq: u64) -> bool {
        fence(Ordering::Acquire);
        self.seq.load(Ordering::Relaxed) == seq
    }
}
