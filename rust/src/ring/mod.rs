//! SharedVisionMemory: one memory-mapped ring of frame slots shared by all stages.
//!
//! # The protocol
//!
//! The ring file (`<dir>/jarvis-<uid>/<name>.ring`, 0600, in a 0700 directory)
//! holds a header, a table of slot descriptors and `slot_count` page-aligned
//! slots of `slot_bytes` each. The header's geometry is written once, before the
//! file is linked under its name, so nobody ever maps a half-made ring; its
//! magic, layout version and owner are checked on attach.
//!
//! Roles:
//! * exactly one **writer** (enforced by an flock on `<name>.writer.lock`) puts
//!   frames into slots;
//! * up to `slot::MAX_HOLDERS` (56) **holders** (each a registered entry of the
//!   header's holder table with its own bit) keep frames alive while they use
//!   them. A holder proves it is alive by an flock on `<name>.hNN.lock`; the
//!   kernel drops it when the process dies, so liveness never depends on pids
//!   (which are reused). Registration and reclaiming take `<name>.reg.lock`.
//! * readers without a hold (taps) copy frames and validate the copy.
//!
//! Each slot has three shared words (see `slot.rs` for every transition and
//! the ordering it uses):
//! * `seq`: the sequence number of the frame in the slot (unique in the ring,
//!   increasing), `EMPTY`, or `seq | WRITING` while the writer fills it;
//! * `holds`: one bit per holder holding the frame; the frame's **owner** (the
//!   one holder whose job it is to decide the frame's terminal state); and
//!   `WRITER_BIT` while the writer fills the slot;
//! * `free_key`: which free slot the writer should reuse first (a hint).
//!
//! The invariants that make it safe:
//! 1. The writer only writes a slot it claimed with CAS `holds: 0 -> WRITER_BIT`.
//!    A slot with any hold is never overwritten, so a view taken under a hold
//!    never changes underneath its reader.
//! 2. A hold is taken with a CAS that fails while `WRITER_BIT` is set, then
//!    `seq` is re-checked: a holder holds exactly the frame its ref names or
//!    nothing (`FrameExpired`).
//! 3. A frame is published by the `Release` store of its even `seq`, after all
//!    its pixels and metadata; a writer killed before that leaves `WRITING` in
//!    `seq`, which matches no ref. The next writer resets such slots.
//! 4. A hand-over moves a hold (and the ownership) from one holder to another
//!    in one RMW, so a frame in transit between stages is never unheld and
//!    always has exactly one owner until a release by the owner decides it.
//!    Other holds (reference frames, history, taps) never own.
//! 5. Readers without a hold use the slot as a seqlock: `seq` before the copy,
//!    an `Acquire` fence, `seq` again; a changed `seq` means `FrameExpired`.
//!    (The racing pixel loads are plain byte copies of shared memory; a torn copy
//!    is detected and discarded, never returned.)
//! 6. Holds of a dead holder (its flock is free) are reclaimed by clearing its
//!    bit in every slot; that is also how the supervisor reclaims a stage. The
//!    frames it owned come back as `undecided`, so every frame's terminal state
//!    is counted exactly once, crash or not. A hand-over whose message was lost
//!    (the sender died between hand-over and send) is given up by the receiver
//!    after a while (`reclaim_transit`).
//!
//! The writer never waits: without a slot whose `holds` is 0 it fails with
//! `RingFull`. Of the free slots it takes the most recently released one (its
//! pixels are still in the CPU cache), then never-used ones, then frames that
//! were published without a hold, oldest first.
//!
//! The header also carries one hand-off queue per hop, through which a stage
//! tells the next one about the frames it handed over (see `handoff.rs`).
//!
//! The header also carries the pipeline's frame-state counters and per-hop
//! in-flight credits. They protect no memory, and every update is a single RMW,
//! so `Relaxed` is enough for exact totals.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{RingError, Result};
use crate::frame::{ring_stride, FrameMeta, PixelFormat, SourceFrame};
use crate::layout::{self, HolderEntry, RingHeader, SlotDesc, COUNTERS, HOLDER_ATTACHED, HOLDER_FREE, HOPS};
use crate::shm;
use crate::slot::{self, free_key, SlotWords, EMPTY, MAX_HOLDERS, WRITER_BIT, WRITING};

pub use crate::layout::LAYOUT_VERSION;

mod counters;
mod frames;
mod holders;
mod queues;

const MIB: f64 = 1024.0 * 1024.0;
/// Upper bound on slots: scans of the slot table stay in a few cache lines' time.
pub const MAX_SLOTS: usize = 1024;

/// A byte copy handed to the caller to run (the Python binding runs it with the
/// GIL released); pointers travel as addresses so the job is `Sync`.
pub type CopyJob = dyn Fn() + Sync;

/// How to size a new ring.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Total size of the slots in MiB; the slot count is derived from it unless
    /// `slots` is given.
    pub size_mb: f64,
    pub slots: Option<usize>,
    /// Largest frame a slot must take.
    pub max_width: usize,
    pub max_height: usize,
    pub max_format: PixelFormat,
    /// Base directory (the private `jarvis-<uid>` directory goes inside it).
    pub dir: Option<PathBuf>,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions { size_mb: 256.0, slots: None, max_width: 3840, max_height: 2160, max_format: PixelFormat::Bgra, dir: None }
    }
}

/// The mapped file. Views of frames keep an `Arc` of it, so the memory stays
/// mapped for as long as any view exists, whatever happens to the `Ring`.
pub struct Mapping {
    map: MmapRaw,
}

impl Mapping {
    fn header(&self) -> &RingHeader {
        // SAFETY: the mapping is at least as large as the header (checked on
        // create and attach), page aligned, and RingHeader is all atomics and
        // plain data written before the file was published.
        unsafe { &*(self.map.as_ptr() as *const RingHeader) }
    }

    fn slot(&self, index: usize) -> &SlotDesc {
        debug_assert!(index < self.header().geometry.slot_count as usize);
        // SAFETY: the descriptor table lies within the mapping (checked on
        // attach); index is bounded by slot_count by every caller.
        unsafe { &*(self.map.as_ptr().add(layout::slot_table_offset()) as *const SlotDesc).add(index) }
    }

    fn words(&self, index: usize) -> SlotWords<'_> {
        let s = self.slot(index);
        SlotWords { seq: &s.seq, holds: &s.holds, free_key: &s.free_key }
    }

    /// Start of a slot's pixels.
    pub fn slot_ptr(&self, index: usize) -> *mut u8 {
        let g = &self.header().geometry;
        // SAFETY: data_offset + slot_count * slot_bytes == mapping length (checked).
        unsafe { self.map.as_mut_ptr().add(g.data_offset as usize + index * g.slot_bytes as usize) }
    }

    /// Frame metadata of a slot, if it holds a published frame, read as a
    /// seqlock so that a concurrent writer never yields mixed fields.
    fn published_meta(&self, index: usize) -> Option<FrameMeta> {
        let words = self.words(index);
        let s = self.slot(index);
        let seq = s.seq.load(Ordering::Acquire);
        if seq == EMPTY || seq & WRITING != 0 {
            return None;
        }
        let meta = FrameMeta {
            ring_gen: self.header().geometry.generation,
            slot: index as u32,
            seq,
            epoch: s.epoch.load(Ordering::Relaxed),
            monitor: s.monitor.load(Ordering::Relaxed),
            width: s.width.load(Ordering::Relaxed),
            height: s.height.load(Ordering::Relaxed),
            stride: s.stride.load(Ordering::Relaxed),
            format: PixelFormat::from_code(s.format.load(Ordering::Relaxed))?,
            t_mono_ns: s.t_mono_ns.load(Ordering::Relaxed),
            t_wall_ns: s.t_wall_ns.load(Ordering::Relaxed),
        };
        words.copy_is_valid(seq).then_some(meta)
    }
}

struct WriterState {
    _lock: File,
    /// A reserved slot not yet committed or aborted: (slot, seq, epoch-less meta).
    pending: Option<FrameMeta>,
}

struct HolderState {
    index: usize,
    epoch: u64,
    name: String,
    _lock: File,
    /// This handle's holds per slot; the slot's bit is set while the count is > 0.
    counts: Vec<u32>,
    /// What registering reclaimed from a dead predecessor of the same name.
    inherited: Reclaimed,
}

/// What reclaiming a holder's holds released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Holds given up.
    pub released: usize,
    /// Frames the holder owned: nobody decided their terminal state.
    pub undecided: usize,
}

/// A holder entry as seen from outside.
#[derive(Debug, Clone)]
pub struct HolderInfo {
    pub index: usize,
    pub name: String,
    pub pid: u32,
    pub epoch: u64,
    pub alive: bool,
    pub holds: usize,
}

/// A slot as seen from outside (diagnostics and tests).
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub index: usize,
    pub seq: u64,
    pub writing: bool,
    pub holders: Vec<usize>,
    pub owner: Option<usize>,
}

/// What attaching as the writer found left over by a writer that died.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterRecovery {
    /// Slots the dead writer had claimed but not published: emptied.
    pub discarded: usize,
    /// Frames it had published but not yet let go of: now unheld.
    pub released: usize,
}

/// One process's handle on a ring.
pub struct Ring {
    map: Arc<Mapping>,
    name: String,
    dir: PathBuf,
    writer: Mutex<Option<WriterState>>,
    holder: Mutex<Option<HolderState>>,
    owns_files: bool,
    closed: AtomicBool,
    replaced_stale: bool,
    recovery: WriterRecovery,
}

fn check_name(kind: &str, name: &str, extra: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < layout::NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.as_bytes().contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RingError::Config(format!(
            "invalid {kind} name {name:?}: use 1-31 characters from A-Z a-z 0-9 _ -{extra}"
        )))
    }
}

fn lock_guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; the
    // shared state is atomics only, so continuing is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Paths<'a> {
    dir: &'a Path,
    name: &'a str,
}

impl Paths<'_> {
    fn ring(&self) -> PathBuf {
        self.dir.join(format!("{}.ring", self.name))
    }
    fn writer_lock(&self) -> PathBuf {
        self.dir.join(format!("{}.writer.lock", self.name))
    }
    fn reg_lock(&self) -> PathBuf {
        self.dir.join(format!("{}.reg.lock", self.name))
    }
    fn holder_lock(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{}.h{:02}.lock", self.name, index))
    }
    /// Whether the process of holder entry `index` lives: its lock file is
    /// locked. A lock file gone (a cleaner removed it, or a person) is no
    /// proof of death: then the entry's pid, and its start time where known,
    /// decide, so a live holder's frames are never reclaimed under it.
    fn holder_alive(&self, index: usize, entry: &HolderEntry) -> Result<bool> {
        Ok(match shm::lock_state(&self.holder_lock(index))? {
            Some(locked) => locked,
            None => shm::process_alive(entry.pid.load(Ordering::Relaxed), entry.start_time.load(Ordering::Relaxed)),
        })
    }
    /// Serialises registration, reclaiming and stale-ring cleanup between
    /// processes; released when the returned file is dropped.
    fn lock_registration(&self) -> Result<File> {
        let file = shm::open_lock_file(&self.reg_lock())?;
        shm::lock_wait(&file)?;
        Ok(file)
    }
    fn all(&self) -> Vec<PathBuf> {
        let mut v = vec![self.ring(), self.writer_lock(), self.reg_lock()];
        v.extend((0..MAX_HOLDERS).map(|i| self.holder_lock(i)));
        v
    }
}

/// Slot size and count for the options.
fn plan_geometry(opts: &RingOptions) -> Result<(usize, usize)> {
    if opts.max_width == 0 || opts.max_height == 0 || opts.max_width > 16384 || opts.max_height > 16384 {
        return Err(RingError::Config(format!(
            "max frame size {}x{} is out of range (1..16384 per side)",
            opts.max_width, opts.max_height
        )));
    }
    let slot_bytes = layout::align_up(ring_stride(opts.max_width, opts.max_format) * opts.max_height, layout::page_size());
    let slots = match opts.slots {
        Some(n) => n,
        None => {
            if !(opts.size_mb.is_finite() && opts.size_mb > 0.0) {
                return Err(RingError::Config(format!("size_mb must be a positive number, got {}", opts.size_mb)));
            }
            (opts.size_mb * MIB / slot_bytes as f64).floor() as usize
        }
    };
    if slots < 2 {
        return Err(RingError::Config(format!(
            "a ring of {:.1} MB holds {slots} slot(s) of {:.1} MB ({}x{} {}); it needs at least 2: \
             ask for at least {:.1} MB or lower max_width/max_height",
            opts.size_mb,
            slot_bytes as f64 / MIB,
            opts.max_width,
            opts.max_height,
            opts.max_format.name(),
            2.0 * slot_bytes as f64 / MIB
        )));
    }
    if slots > MAX_SLOTS {
        return Err(RingError::Config(format!("{slots} slots requested; a ring has at most {MAX_SLOTS}")));
    }
    Ok((slot_bytes, slots))
}

fn map_file(file: &File, len: usize, populate: bool) -> Result<MmapRaw> {
    let mut opts = MmapOptions::new();
    opts.len(len);
    if populate {
        opts.populate(); // MAP_POPULATE: Linux only, a no-op elsewhere
    }
    let map = opts.map_raw(file).map_err(|e| RingError::io("cannot map the ring file", e))?;
    #[cfg(not(target_os = "linux"))]
    if populate {
        // Touched once at creation, so no frame pays the first fault of its slot.
        // Each page's first word is read and written back (the same value) by the
        // creator, before the file is linked under its name: no one else sees it yet.
        let base = map.as_mut_ptr();
        for offset in (0..len).step_by(layout::page_size()) {
            // SAFETY: offset < len, inside the fresh mapping only this thread uses.
            unsafe { base.add(offset).write_volatile(base.add(offset).read_volatile()) };
        }
    }
    Ok(map)
}

impl Ring {
    /// Creates a ring named `name`. A leftover ring of the same name whose writer
    /// and holders are all dead is removed first; a live one is `Busy`. With
    /// `writer`, this handle becomes the ring's writer. It registers as holder
    /// `holder` (default "writer", or "creator" for a ring it will not write).
    pub fn create(name: &str, opts: &RingOptions, writer: bool, holder: Option<&str>, owns_files: bool) -> Result<Ring> {
        check_name("ring", name, "")?;
        let (slot_bytes, slot_count) = plan_geometry(opts)?;
        let base = opts.dir.clone().unwrap_or_else(shm::base_dir);
        let dir = shm::private_dir(&base)?;
        let paths = Paths { dir: &dir, name };

        let registration = paths.lock_registration()?;
        let writer_state = if writer { Some(Self::take_writer_lock(&paths, None)?) } else { None };
        let replaced_stale = Self::remove_stale(&paths, writer_state.is_some())?;

        let data_offset = layout::data_offset(slot_count);
        let total = data_offset + slot_count * slot_bytes;
        let free = shm::free_bytes(&dir)?;
        let shortage = || RingError::InsufficientSharedMemory {
            needed_mb: total as f64 / MIB,
            free_mb: free as f64 / MIB,
            path: dir.clone(),
        };
        if (free as usize) < total {
            return Err(shortage());
        }
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let file = shm::create_exclusive(&tmp).map_err(|e| RingError::io(format!("cannot create {}", tmp.display()), e))?;
        let result = (|| {
            if !shm::reserve(&file, total as u64)? {
                return Err(shortage());
            }
            let map = map_file(&file, total, true)?;
            // SAFETY: the mapping is `total` bytes, fresh and private to us until
            // linked; the geometry is written through a raw pointer before any
            // shared reference to the header exists.
            unsafe {
                let g = map.as_mut_ptr() as *mut layout::Geometry;
                let mut version = [0u8; 16];
                let v = crate::VERSION.as_bytes();
                version[..v.len().min(16)].copy_from_slice(&v[..v.len().min(16)]);
                g.write(layout::Geometry {
                    magic: layout::MAGIC,
                    layout_version: LAYOUT_VERSION,
                    slot_count: slot_count as u32,
                    data_offset: data_offset as u64,
                    slot_bytes: slot_bytes as u64,
                    total_bytes: total as u64,
                    generation: shm::random_u64(),
                    creator_uid: shm::euid(),
                    creator_pid: std::process::id(),
                    created_wall_ns: shm::wall_ns(),
                    max_width: opts.max_width as u32,
                    max_height: opts.max_height as u32,
                    core_version: version,
                });
            }
            let mapping = Mapping { map };
            for i in 0..slot_count {
                mapping.slot(i).free_key.store(free_key::UNUSED, Ordering::Relaxed);
            }
            mapping.map.flush().map_err(|e| RingError::io("cannot flush the ring header", e))?;
            std::fs::hard_link(&tmp, paths.ring()).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    RingError::Busy(format!("a ring named {name:?} was created by another process at the same time"))
                } else {
                    RingError::io(format!("cannot publish {}", paths.ring().display()), e)
                }
            })?;
            Ok(mapping)
        })();
        let _ = std::fs::remove_file(&tmp);
        let mapping = result?;
        // register() below takes the registration lock itself.
        drop(registration);

        let ring = Ring {
            map: Arc::new(mapping),
            name: name.to_string(),
            dir,
            writer: Mutex::new(writer_state),
            holder: Mutex::new(None),
            owns_files,
            closed: false.into(),
            replaced_stale,
            recovery: WriterRecovery::default(),
        };
        if writer {
            ring.header().writer_pid.store(std::process::id() as u64, Ordering::Relaxed);
        }
        // The creator always registers: its holder lock is what tells a later
        // create that this ring is in use.
        ring.register(holder.unwrap_or(if writer { "writer" } else { "creator" }))?;
        Ok(ring)
    }

    /// Attaches to an existing ring. With `writer`, takes over as its writer
    /// (the previous one must be dead) and repairs what it left half done.
    /// Removes the ring `name` if it is a leftover (its writer and holders all
    /// dead, or a file of this user that is no readable ring and that nobody
    /// holds a lock on). Returns whether something was removed; `Busy` if live.
    pub fn remove_stale_ring(name: &str, dir: Option<&Path>) -> Result<bool> {
        check_name("ring", name, "")?;
        let base = dir.map(Path::to_path_buf).unwrap_or_else(shm::base_dir);
        let dir = shm::private_dir(&base)?;
        let paths = Paths { dir: &dir, name };
        let _registration = paths.lock_registration()?;
        Self::remove_stale(&paths, false)
    }

    pub fn attach(name: &str, writer: bool, holder: Option<&str>, dir: Option<&Path>) -> Result<Ring> {
        check_name("ring", name, "")?;
        let base = dir.map(Path::to_path_buf).unwrap_or_else(shm::base_dir);
        let dir = shm::private_dir(&base)?;
        let paths = Paths { dir: &dir, name };
        let mapping = Self::open_mapping(&paths)?;
        let writer_state = if writer { Some(Self::take_writer_lock(&paths, Some(&mapping))?) } else { None };
        let mut ring = Ring {
            map: Arc::new(mapping),
            name: name.to_string(),
            dir,
            writer: Mutex::new(writer_state),
            holder: Mutex::new(None),
            owns_files: false,
            closed: false.into(),
            replaced_stale: false,
            recovery: WriterRecovery::default(),
        };
        if writer {
            ring.recovery = ring.recover_dead_writer();
            ring.header().writer_pid.store(std::process::id() as u64, Ordering::Relaxed);
        }
        if let Some(h) = holder.or(writer.then_some("writer")) {
            ring.register(h)?;
        }
        Ok(ring)
    }

    fn open_mapping(paths: &Paths) -> Result<Mapping> {
        let path = paths.ring();
        let file = shm::open_existing(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RingError::NotFound(format!(
                "no ring named {:?} in {}; start the pipeline (jarvis-pipeline up) or check the name",
                paths.name,
                paths.dir.display()
            )),
            _ => RingError::io(format!("cannot open {}", path.display()), e),
        })?;
        shm::check_owned_private(&file, &path)?;
        let len = file.metadata().map_err(|e| RingError::io("cannot inspect the ring file", e))?.len() as usize;
        let min = layout::data_offset(0);
        if len < min {
            return Err(RingError::Format(format!(
                "{} is too short ({len} bytes) to be a ring; it is stale or foreign: remove it",
                path.display()
            )));
        }
        let mapping = Mapping { map: map_file(&file, len, false)? };
        let g = &mapping.header().geometry;
        if g.magic != layout::MAGIC {
            return Err(RingError::Format(format!(
                "{} is not a jarvis ring (bad magic); remove it if it is stale",
                path.display()
            )));
        }
        if g.layout_version != LAYOUT_VERSION {
            return Err(RingError::Format(format!(
                "{} has ring layout version {} but this build of jarvis-rust-core ({}) uses {}; \
                 stop the pipeline that created it (jarvis-pipeline down) and start it again",
                path.display(),
                g.layout_version,
                crate::VERSION,
                LAYOUT_VERSION
            )));
        }
        let slots = g.slot_count as usize;
        let consistent = (2..=MAX_SLOTS).contains(&slots)
            && g.data_offset as usize == layout::data_offset(slots)
            && g.slot_bytes as usize % layout::page_size() == 0
            && g.slot_bytes > 0
            && g.total_bytes as usize == len
            && g.data_offset as usize + slots * g.slot_bytes as usize == len;
        if !consistent {
            return Err(RingError::Format(format!(
                "{} has an inconsistent header (corrupt or truncated); remove it and restart the pipeline",
                path.display()
            )));
        }
        if g.creator_uid != shm::euid() {
            return Err(RingError::Permission(format!(
                "{} was created by uid {}, not by this user (uid {}); refusing to attach",
                path.display(),
                g.creator_uid,
                shm::euid()
            )));
        }
        Ok(mapping)
    }

    fn take_writer_lock(paths: &Paths, mapping: Option<&Mapping>) -> Result<WriterState> {
        let lock = shm::open_lock_file(&paths.writer_lock())?;
        if !shm::try_lock(&lock)? {
            let pid = mapping.map(|m| m.header().writer_pid.load(Ordering::Relaxed)).unwrap_or(0);
            let who = if pid != 0 { format!(" (pid {pid})") } else { String::new() };
            return Err(RingError::Busy(format!(
                "ring {:?} already has a live writer{who}; a ring has one writer: stop it first",
                paths.name
            )));
        }
        Ok(WriterState { _lock: lock, pending: None })
    }

    /// Removes a leftover ring whose writer and holders are all dead. Called with
    /// the registration lock held. Returns whether something was removed.
    fn remove_stale(paths: &Paths, have_writer_lock: bool) -> Result<bool> {
        let ring_path = paths.ring();
        if std::fs::symlink_metadata(&ring_path).is_err() {
            return Ok(false);
        }
        if !have_writer_lock && shm::is_locked(&paths.writer_lock())? {
            return Err(RingError::Busy(format!(
                "ring {:?} exists and its writer is alive; use attach() or stop the running pipeline",
                paths.name
            )));
        }
        match Self::open_mapping(paths) {
            Ok(m) => {
                let live: Vec<String> = (0..MAX_HOLDERS)
                    .filter(|&i| m.header().holders[i].state.load(Ordering::Acquire) == HOLDER_ATTACHED)
                    .filter(|&i| paths.holder_alive(i, &m.header().holders[i]).unwrap_or(true))
                    .map(|i| entry_label(&m.header().holders[i]))
                    .collect();
                if !live.is_empty() {
                    return Err(RingError::Busy(format!(
                        "ring {:?} is still in use by {}; stop those processes first",
                        paths.name,
                        live.join(", ")
                    )));
                }
            }
            // A ring of another layout version, or a file that is no ring at all
            // (cut short, overwritten), is stale too when it is this user's file in
            // this user's directory and nobody holds a lock on it: its holders'
            // locks are files of their own, readable without the header.
            Err(RingError::Format(_)) => {
                let meta = std::fs::symlink_metadata(&ring_path)
                    .map_err(|e| RingError::io(format!("cannot inspect {}", ring_path.display()), e))?;
                if !meta.is_file() || meta.uid() != shm::euid() {
                    return Err(RingError::Permission(format!(
                        "{} is not a file of this user; refusing to remove it",
                        ring_path.display()
                    )));
                }
                if (0..MAX_HOLDERS).any(|i| shm::is_locked(&paths.holder_lock(i)).unwrap_or(true)) {
                    return Err(RingError::Busy(format!(
                        "ring {:?} cannot be read but a process still holds a lock on it; stop it first",
                        paths.name
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        for p in paths.all().iter().filter(|p| **p != paths.reg_lock() && **p != paths.writer_lock()) {
            let _ = std::fs::remove_file(p);
        }
        Ok(true)
    }

    fn recover_dead_writer(&self) -> WriterRecovery {
        let mut rec = WriterRecovery::default();
        let clock = &self.header().free_clock;
        for i in 0..self.slot_count() {
            let s = self.map.slot(i);
            // We own the writer lock, so nobody else sets or clears WRITER_BIT now.
            if s.holds.load(Ordering::Acquire) & WRITER_BIT == 0 {
                continue;
            }
            if s.seq.load(Ordering::Relaxed) & WRITING != 0 {
                self.map.words(i).abort(free_key::released(clock.fetch_add(1, Ordering::Relaxed)));
                rec.discarded += 1;
            } else {
                self.map
                    .words(i)
                    .publish(s.seq.load(Ordering::Relaxed), None, free_key::unheld(clock.fetch_add(1, Ordering::Relaxed)));
                rec.released += 1;
            }
        }
        rec
    }

    fn header(&self) -> &RingHeader {
        self.map.header()
    }

    fn paths(&self) -> Paths<'_> {
        Paths { dir: &self.dir, name: &self.name }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(RingError::Closed(format!("the handle on ring {:?} is closed", self.name)))
        } else {
            Ok(())
        }
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> PathBuf {
        self.paths().ring()
    }
    pub fn generation(&self) -> u64 {
        self.header().geometry.generation
    }
    pub fn slot_count(&self) -> usize {
        self.header().geometry.slot_count as usize
    }
    pub fn slot_bytes(&self) -> usize {
        self.header().geometry.slot_bytes as usize
    }
    pub fn total_bytes(&self) -> usize {
        self.header().geometry.total_bytes as usize
    }
    pub fn max_frame(&self) -> (u32, u32) {
        let g = &self.header().geometry;
        (g.max_width, g.max_height)
    }
    pub fn creator_pid(&self) -> u32 {
        self.header().geometry.creator_pid
    }
    pub fn is_writer(&self) -> bool {
        lock_guard(&self.writer).is_some()
    }
    pub fn replaced_stale(&self) -> bool {
        self.replaced_stale
    }
    pub fn recovery(&self) -> WriterRecovery {
        self.recovery
    }
    /// What registering took over from a dead holder of the same name.
    pub fn inherited(&self) -> Reclaimed {
        lock_guard(&self.holder).as_ref().map(|h| h.inherited).unwrap_or_default()
    }

    /// This handle's holder name and epoch, if registered.
    pub fn holder(&self) -> Option<(String, u64)> {
        lock_guard(&self.holder).as_ref().map(|h| (h.name.clone(), h.epoch))
    }

    // ---------------------------------------------------------------- lifetime

    /// Gives up this handle: releases its holds (and those handed to it), frees
    /// its holder entry, drops the writer role, and removes the ring's files if
    /// this handle created them. Views already taken stay valid memory.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(meta) = lock_guard(&self.writer).take().and_then(|w| w.pending) {
            self.map.words(meta.slot as usize).abort(free_key::UNUSED);
        }
        if let Some(h) = lock_guard(&self.holder).take() {
            // open_existing: if the ring's files are already gone, there is
            // nothing to deregister from, and no lock file to recreate.
            if let Ok(reg) = shm::open_existing(&self.paths().reg_lock()) {
                let _ = shm::lock_wait(&reg);
                self.clear_holder_bit(h.index, None, None);
                self.header().holders[h.index].state.store(HOLDER_FREE, Ordering::Release);
            }
        }
        if self.owns_files {
            self.unlink_files();
        }
    }

    /// Removes the ring's files from the directory (processes that have it mapped
    /// keep their mapping).
    pub fn unlink_files(&self) {
        for p in self.paths().all() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.close();
    }
}

fn entry_name(e: &HolderEntry) -> String {
    let words: [u64; layout::NAME_BYTES / 8] = std::array::from_fn(|i| e.name[i].load(Ordering::Relaxed));
    layout::decode_name(words)
}

fn entry_label(e: &HolderEntry) -> String {
    format!("{} (pid {})", entry_name(e), e.pid.load(Ordering::Relaxed))
}
