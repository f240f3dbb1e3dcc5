//! loom model of the slot protocol (run with RUSTFLAGS="--cfg loom").
//! Pixel data is a loom `UnsafeCell`, so loom reports any write by the writer
//! that is not ordered after every read made under a hold.
#![cfg(loom)]

use jarvis_rust_core::slot::{self, free_key, SlotWords};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

struct Slot {
    seq: AtomicU64,
    holds: AtomicU64,
    free_key: AtomicU64,
    pixels: UnsafeCell<u64>,
    /// Pixels as an atomic for the seqlock model (the copy races by design).
    pixels_atomic: AtomicU64,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            seq: AtomicU64::new(0),
            holds: AtomicU64::new(0),
            free_key: AtomicU64::new(free_key::UNUSED),
            pixels: UnsafeCell::new(0),
            pixels_atomic: AtomicU64::new(0),
        })
    }
    fn words(&self) -> SlotWords<'_> {
        SlotWords { seq: &self.seq, holds: &self.holds, free_key: &self.free_key }
    }
    /// Writer: write frame `seq` whose pixels are `seq`, if the slot is free;
    /// `owner` starts out holding and owning it.
    fn write(&self, seq: u64, owner: Option<usize>) -> bool {
        let w = self.words();
        if !w.try_claim() {
            return false;
        }
        w.begin_write(seq);
        self.pixels.with_mut(|p| unsafe { *p = seq });
        self.pixels_atomic.store(seq, Ordering::Relaxed);
        w.publish(seq, owner, free_key::unheld(seq));
        true
    }
}

const A: usize = 0;
const B: usize = 1;

/// A reader holding frame 1 never sees the writer overwrite it.
#[test]
fn hold_excludes_writer() {
    loom::model(|| {
        let slot = Slot::new();
        assert!(slot.write(1, None));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                if slot.words().try_hold(1, A).is_ok() {
                    let v = slot.pixels.with(|p| unsafe { *p });
                    assert_eq!(v, 1, "a held frame changed");
                    slot.words().release(A, free_key::released(9)).unwrap();
                }
            })
        };
        slot.write(2, None);
        reader.join().unwrap();
    });
}

/// A hold handed from A to B keeps the frame alive throughout; B reads it safely
/// while the writer keeps trying to reuse the slot.
#[test]
fn hand_over_never_leaves_frame_unheld() {
    loom::model(|| {
        let slot = Slot::new();
        assert!(slot.write(1, Some(A)));
        let giver = {
            let slot = slot.clone();
            thread::spawn(move || {
                let v = slot.pixels.with(|p| unsafe { *p });
                assert_eq!(v, 1);
                slot.words().hand_over(A, B, false).unwrap();
            })
        };
        let receiver = {
            let slot = slot.clone();
            thread::spawn(move || {
                if slot.words().is_held_by(1, B) {
                    let v = slot.pixels.with(|p| unsafe { *p });
                    assert_eq!(v, 1, "a handed-over frame changed");
                    let r = slot.words().release(B, free_key::released(5)).unwrap();
                    assert!(r.was_owner, "ownership travels with the hand-over");
                }
            })
        };
        // The writer may only succeed once both A and B have let go.
        slot.write(2, None);
        giver.join().unwrap();
        receiver.join().unwrap();
    });
}

/// A hold-free copy is accepted only if it is the frame it asked for.
#[test]
fn seqlock_copy_is_never_torn() {
    loom::model(|| {
        let slot = Slot::new();
        assert!(slot.write(1, None));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                let w = slot.words();
                if w.copy_begin(1) {
                    let v = slot.pixels_atomic.load(Ordering::Relaxed);
                    if w.copy_is_valid(1) {
                        assert_eq!(v, 1, "a validated copy holds another frame's pixels");
                    }
                }
            })
        };
        slot.write(2, None);
        reader.join().unwrap();
    });
}

/// A hold taken on a stale seq fails and leaves no bit behind.
#[test]
fn stale_hold_is_refused_cleanly() {
    loom::model(|| {
        let slot = Slot::new();
        assert!(slot.write(1, None));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                if slot.words().try_hold(1, A).is_ok() {
                    slot.words().release(A, free_key::released(3)).unwrap();
                }
            })
        };
        slot.write(2, None);
        reader.join().unwrap();
        assert_eq!(slot.holds.load(Ordering::Relaxed) & slot::bit(A), 0, "a refused hold left its bit set");
    });
}

/// Ownership is decided exactly once: whichever of a kept hand-over's two
/// holders lets go, exactly one release (or reclaim) reports ownership.
#[test]
fn ownership_is_decided_exactly_once() {
    loom::model(|| {
        let slot = Slot::new();
        assert!(slot.write(1, Some(A)));
        slot.words().hand_over(A, B, true).unwrap();
        let giver = {
            let slot = slot.clone();
            thread::spawn(move || slot.words().release(A, free_key::released(1)).unwrap().was_owner)
        };
        let receiver = {
            let slot = slot.clone();
            thread::spawn(move || slot.words().release(B, free_key::released(2)).unwrap().was_owner)
        };
        let owners = [giver.join().unwrap(), receiver.join().unwrap()];
        assert_eq!(owners, [false, true]);
        assert_eq!(slot.holds.load(Ordering::Relaxed), 0, "both released: the slot is free");
    });
}
