//! The byte layout of a ring file. Changing anything here changes
//! `LAYOUT_VERSION`, so old rings are refused instead of misread.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::handoff::{RECORDS, RECORD_BYTES};
use crate::slot::MAX_HOLDERS;

pub const MAGIC: [u8; 8] = *b"JRVSRING";
/// Bumped whenever `RingHeader`, `HolderEntry`, `SlotDesc`, `HandoffQueue` or
/// the slot or hand-off protocols change. 2: the hand-off queues. 3: cache
/// lines of 128 bytes on aarch64.
pub const LAYOUT_VERSION: u32 = 3;
/// Bytes of a cache line, which words written by different processes never
/// share: 128 on aarch64 (Apple silicon's lines; other Arm cores fetch lines
/// in pairs), 64 elsewhere. The `repr(align)`s below say the same (an
/// attribute takes no constant), checked at compile time.
pub const CACHE_LINE: usize = if cfg!(target_arch = "aarch64") { 128 } else { 64 };
/// The system's page size (4 KB on x86-64 Linux, 16 KB on Apple silicon): the
/// pixel area and every slot start on a page. A ring records its offsets, so
/// a reader never recomputes them.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            n as usize
        } else {
            4096
        }
    })
}
/// Frame-state counters in the header; their meaning is the protocol module's.
pub const COUNTERS: usize = 32;
/// Hops whose in-flight credits the header carries.
pub const HOPS: usize = 16;
/// Bytes of a holder name, NUL padded.
pub const NAME_BYTES: usize = 32;

/// Holder entry states.
pub const HOLDER_FREE: u32 = 0;
pub const HOLDER_ATTACHED: u32 = 1;

/// Immutable after creation: written before the file becomes visible under its
/// name (create links a fully initialised temporary file into place).
#[repr(C)]
pub struct Geometry {
    pub magic: [u8; 8],
    pub layout_version: u32,
    pub slot_count: u32,
    pub data_offset: u64,
    pub slot_bytes: u64,
    pub total_bytes: u64,
    pub generation: u64,
    pub creator_uid: u32,
    pub creator_pid: u32,
    pub created_wall_ns: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub core_version: [u8; 16],
}

#[repr(C)]
pub struct HolderEntry {
    pub state: AtomicU32,
    pub pid: AtomicU32,
    pub epoch: AtomicU64,
    /// Process start time (clock ticks since boot, Linux) to tell a reused pid apart.
    pub start_time: AtomicU64,
    /// NUL-padded name, as little-endian words so it can be read while written.
    pub name: [AtomicU64; NAME_BYTES / 8],
}

#[repr(C)]
#[cfg_attr(target_arch = "aarch64", repr(align(128)))]
#[cfg_attr(not(target_arch = "aarch64"), repr(align(64)))]
pub struct RingHeader {
    pub geometry: Geometry,
    /// Sequence number of the last frame begun; only the writer increments it.
    pub next_seq: AtomicU64,
    /// Clock for the slots' reuse keys.
    pub free_clock: AtomicU64,
    /// Source of holder epochs: every registration gets a new one.
    pub epoch_clock: AtomicU64,
    pub writer_pid: AtomicU64,
    pub counters: [AtomicU64; COUNTERS],
    pub credits: [AtomicU64; HOPS],
    pub holders: [HolderEntry; MAX_HOLDERS],
    /// One hand-off queue per hop, indexed like `credits`.
    pub handoff: [HandoffQueue; HOPS],
}

/// A hop's hand-off queue (the protocol is in `handoff.rs`). The producer's
/// word and the consumer's words are on cache lines of their own.
#[repr(C)]
#[cfg_attr(target_arch = "aarch64", repr(align(128)))]
#[cfg_attr(not(target_arch = "aarch64"), repr(align(64)))]
pub struct HandoffQueue {
    pub tail: AtomicU64,
    _pad0: [u64; CACHE_LINE / 8 - 1],
    pub head: AtomicU64,
    pub armed: AtomicU64,
    _pad1: [u64; CACHE_LINE / 8 - 2],
    pub records: [HandoffRecord; RECORDS],
}

#[repr(C)]
#[cfg_attr(target_arch = "aarch64", repr(align(128)))]
#[cfg_attr(not(target_arch = "aarch64"), repr(align(64)))]
pub struct HandoffRecord {
    pub len: AtomicU32,
    /// Written by the producer before it publishes the record, read by the
    /// consumer after; the bytes are copied through raw pointers.
    pub bytes: UnsafeCell<[u8; RECORD_BYTES]>,
}

// SAFETY: the record bytes are only accessed by the hand-off protocol, which
// orders the producer's writes before the consumer's reads (handoff.rs).
unsafe impl Sync for HandoffRecord {}

/// Per-slot descriptor: 128 bytes on lines of its own, so neighbouring slots
/// share none (two lines of 64 bytes, or one of 128).
#[repr(C)]
#[cfg_attr(target_arch = "aarch64", repr(align(128)))]
#[cfg_attr(not(target_arch = "aarch64"), repr(align(64)))]
pub struct SlotDesc {
    pub seq: AtomicU64,
    pub holds: AtomicU64,
    pub free_key: AtomicU64,
    pub epoch: AtomicU64,
    pub t_mono_ns: AtomicU64,
    pub t_wall_ns: AtomicU64,
    pub width: AtomicU32,
    pub height: AtomicU32,
    pub stride: AtomicU32,
    pub format: AtomicU32,
    pub monitor: AtomicU32,
    _pad: [u32; 3],
    _pad2: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<SlotDesc>() == 128);
const _: () = {
    use std::mem::align_of;
    assert!(align_of::<RingHeader>() == CACHE_LINE && align_of::<SlotDesc>() == CACHE_LINE);
    assert!(align_of::<HandoffQueue>() == CACHE_LINE && align_of::<HandoffRecord>() == CACHE_LINE);
    assert!(std::mem::offset_of!(HandoffQueue, head) == CACHE_LINE);
};

pub fn align_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Offset of the slot descriptor table.
pub fn slot_table_offset() -> usize {
    align_up(std::mem::size_of::<RingHeader>(), CACHE_LINE)
}

/// Offset of the first slot's pixels: page aligned after the descriptor table.
pub fn data_offset(slot_count: usize) -> usize {
    align_up(slot_table_offset() + slot_count * std::mem::size_of::<SlotDesc>(), page_size())
}

pub fn encode_name(name: &str) -> [u64; NAME_BYTES / 8] {
    let mut bytes = [0u8; NAME_BYTES];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    let mut words = [0u64; NAME_BYTES / 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    }
    words
}

pub fn decode_name(words: [u64; NAME_BYTES / 8]) -> String {
    let mut bytes = Vec::with_capacity(NAME_BYTES);
    for w in words {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(NAME_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_layout_is_page_aligned() {
        for name in ["a", "capture", "a-name-of-exactly-thirty-one-ch"] {
            assert_eq!(decode_name(encode_name(name)), name);
        }
        assert_eq!(data_offset(7) % page_size(), 0);
        assert!(data_offset(MAX_HOLDERS) >= slot_table_offset() + MAX_HOLDERS * std::mem::size_of::<SlotDesc>());
    }
}
