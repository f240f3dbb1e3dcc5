//! Atomics used by the slot state machine: std's normally, loom's under `--cfg loom`
//! so the same code is model-checked (see tests/loom_slot.rs).

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU64};

pub use std::sync::atomic::Ordering;
