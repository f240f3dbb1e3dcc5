//! Hand-off queues: how a stage hands a frame to the next one without a
//! socket in the path. Kept free of the mapping, like `slot.rs`, so that loom
//! model-checks exactly this code (tests/loom_handoff.rs).
//!
//! # The protocol
//!
//! Each hop between two stages has one queue in the ring header: a bounded
//! single-producer single-consumer ring of `RECORDS` records of at most
//! `RECORD_BYTES` bytes each (the hand-off message of `pipeline.protocol`,
//! exactly what would otherwise go over ZeroMQ), and three shared words:
//!
//! * `tail`: records ever published; only the producer (the sending stage)
//!   stores it;
//! * `head`: records ever consumed; only the consumer (the receiving stage)
//!   stores it;
//! * `armed`: 1 while the consumer may be asleep and wants a wake-up; the
//!   consumer sets it, the producer clears it when it wakes the consumer.
//!
//! Record `n` lives at `n % RECORDS`. `tail - head` (wrapping) is the number of
//! records waiting: 0 empty, `RECORDS` full, more is corrupt. The queue holds
//! no frame: the frame's hold was handed over in the slot's `holds` word before
//! its record is published, so everything the ring's accounting promises (one
//! owner, reclaimed with a dead holder) is independent of the queue. A record
//! is a message about a hand-over, and the consumer checks it like any message:
//! a record whose hold was reclaimed (its consumer died and was restarted) no
//! longer matches `accept` and is rejected as stale, never counted twice.
//!
//! One producer and one consumer at a time: a hop's sender and receiver are
//! single processes; a restarted one continues from the shared words its dead
//! predecessor left (a record it half wrote before `tail` moved is never seen;
//! a record it read but whose `head` it did not store is read again by the
//! next incarnation, and rejected as stale if its hold was reclaimed).
//!
//! ## Orderings
//!
//! * Producer `claim`: `head` with `Acquire`, pairing with the consumer's
//!   `Release` store in `consumed`: the consumer's copy of the record that
//!   last used a position happens before the producer overwrites it. `tail`
//!   with `Acquire` too: only the producer stores it, but the last store may
//!   have been made by a predecessor process.
//! * Producer `publish`: `tail` with `Release`, so the record's bytes and
//!   length are visible to a consumer that reads the new `tail` with
//!   `Acquire`.
//! * The wake-up (a Dekker handshake, each side stores then loads the other's
//!   word): the producer stores `tail`, the consumer stores `armed`, each then
//!   runs a `SeqCst` fence and loads the other's word. The two fences are
//!   totally ordered, so at least one side sees the other's store: either the
//!   consumer sees the new record (and does not sleep) or the producer sees
//!   `armed` (and wakes it). No record is left behind a sleeping consumer.
//!   `armed` itself carries no data (the record travels through `tail`), so
//!   its loads, stores and the clearing swap are `Relaxed`; the swap makes
//!   one wake-up per arming, not one per record.
//! * Consumer `next`: `tail` with `Acquire` (see `publish`); `head` with
//!   `Acquire` as only the consumer stores it, perhaps a predecessor.
//! * Consumer `consumed`: `head` with `Release` (see `claim`).
//!
//! Indices and lengths read from shared memory are checked, never trusted: a
//! length over `RECORD_BYTES` skips that record, indices more than `RECORDS`
//! apart skip everything waiting; both are reported to the caller as corrupt.

use crate::sync::{fence, AtomicU64, Ordering};

/// Records per queue: more than twice the largest credit of a hop (frames in
/// flight), so the records of a dead consumer that its successor has not
/// rejected yet never fill the queue for the frames sent to the successor.
pub const RECORDS: usize = 8;
/// Bytes of a record's message: the hand-off message limit of `pipeline.protocol`.
pub const RECORD_BYTES: usize = 512;

/// What the consumer finds at the head of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Empty,
    /// The record at this position (`head`) is published; read it, then `consumed`.
    Record(u64),
    /// `tail` and `head` are more than `RECORDS` apart: not written by this
    /// protocol. `skip_all` drops whatever they claim is waiting.
    Corrupt { head: u64, tail: u64 },
}

/// The shared words of one queue.
pub struct QueueWords<'a> {
    pub tail: &'a AtomicU64,
    pub head: &'a AtomicU64,
    pub armed: &'a AtomicU64,
}

impl QueueWords<'_> {
    /// Producer: the position to write the next record at, or None when full.
    pub fn claim(&self) -> Option<u64> {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        // Corrupt indices (more than RECORDS apart) count as full: the consumer
        // repairs them on its side, the producer never guesses which is right.
        (tail.wrapping_sub(head) < RECORDS as u64).then_some(tail)
    }

    /// Producer: publishes the record written at `pos` (from `claim`); returns
    /// whether the consumer is asleep and must be woken.
    pub fn publish(&self, pos: u64) -> bool {
        self.tail.store(pos.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        self.armed.load(Ordering::Relaxed) != 0 && self.armed.swap(0, Ordering::Relaxed) != 0
    }

    /// Consumer, before it sleeps: asks for a wake-up on the next record and
    /// returns how many are already waiting (then it must not sleep).
    pub fn arm(&self) -> u64 {
        self.armed.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.pending()
    }

    /// Records waiting (a corrupt distance counts as its raw value).
    pub fn pending(&self) -> u64 {
        let head = self.head.load(Ordering::Acquire);
        self.tail.load(Ordering::Acquire).wrapping_sub(head)
    }

    /// Consumer: the next record, if any.
    pub fn next(&self) -> Next {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        match tail.wrapping_sub(head) {
            0 => Next::Empty,
            n if n <= RECORDS as u64 => Next::Record(head),
            _ => Next::Corrupt { head, tail },
        }
    }

    /// Consumer: the record at `pos` is read (or rejected); its place is free.
    pub fn consumed(&self, pos: u64) {
        self.head.store(pos.wrapping_add(1), Ordering::Release);
    }

    /// Consumer: drops everything between `head` and `tail` (after `Next::Corrupt`).
    pub fn skip_all(&self, tail: u64) {
        self.head.store(tail, Ordering::Release);
    }
}

/// Where record `pos` lives in the queue's record array.
pub fn index(pos: u64) -> usize {
    (pos % RECORDS as u64) as usize
}
