//! Python face of the ring: `SharedVisionMemory`, `Reservation`, `Lease`.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use numpy::npyffi::{self, npy_intp, NpyTypes, NPY_ARRAY_WRITEABLE, PY_ARRAY_API};
use numpy::{Element, PyArrayDescrMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyType};

use super::frame_ref::{shape_of, FrameRef};
use super::frames::source_of;
use super::ready::Ready;
use crate::error::RingError;
use crate::frame::{FrameMeta, PixelFormat};
use crate::ring::{CopyJob, Mapping, Ring, RingOptions};

/// Copies below this size run with the GIL held: releasing it costs more.
const DETACH_BYTES: usize = 64 * 1024;

/// Keeps the mapping alive for as long as a numpy view of it exists.
#[pyclass(module = "jarvis_rust_core", frozen)]
pub struct MappingKeepAlive {
    _map: Arc<Mapping>,
}

/// A numpy array over `meta`'s pixels in slot memory (no copy).
fn make_view<'py>(py: Python<'py>, map: &Arc<Mapping>, meta: &FrameMeta, writable: bool) -> PyResult<Bound<'py, PyAny>> {
    let shape = shape_of(meta);
    let mut dims: Vec<npy_intp> = shape.iter().map(|&d| d as npy_intp).collect();
    let mut strides: Vec<npy_intp> = vec![meta.stride as npy_intp, meta.channels() as npy_intp, 1];
    strides.truncate(dims.len());
    let keep = Bound::new(py, MappingKeepAlive { _map: map.clone() })?;
    let data = map.slot_ptr(meta.slot as usize) as *mut c_void;
    let flags = if writable { NPY_ARRAY_WRITEABLE } else { 0 };
    // SAFETY: dims/strides describe memory inside one slot (checked against the
    // slot size when the frame was reserved or validated); the base object set
    // below owns an Arc of the mapping, so the memory outlives the array.
    unsafe {
        let arr = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, NpyTypes::PyArray_Type),
            u8::get_dtype(py).into_dtype_ptr(),
            dims.len() as i32,
            dims.as_mut_ptr(),
            strides.as_mut_ptr(),
            data,
            flags,
            std::ptr::null_mut(),
        );
        if arr.is_null() {
            return Err(PyErr::fetch(py));
        }
        if PY_ARRAY_API.PyArray_SetBaseObject(py, arr as *mut npyffi::PyArrayObject, keep.into_ptr()) < 0 {
            pyo3::ffi::Py_DECREF(arr);
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, arr))
    }
}

fn run_detached(py: Python<'_>, nbytes: usize) -> impl FnOnce(&CopyJob) + '_ {
    move |job: &CopyJob| {
        if nbytes >= DETACH_BYTES {
            py.detach(job)
        } else {
            job()
        }
    }
}

static AUTO_NAMES: AtomicU64 = AtomicU64::new(0);

/// The shared-memory frame ring. See the crate documentation for the protocol.
#[pyclass(module = "jarvis_rust_core", frozen)]
pub struct SharedVisionMemory {
    ring: Ring,
}

impl SharedVisionMemory {
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    fn meta_list<'py>(py: Python<'py>, metas: impl IntoIterator<Item = FrameMeta>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, metas.into_iter().map(|meta| FrameRef { meta }))
    }
}

#[pymethods]
impl SharedVisionMemory {
    /// Creates a ring. `size_mb` bounds the slots' total size (the slot count is
    /// derived from it and the largest frame, unless `slots` is given).
    #[new]
    #[pyo3(signature = (size_mb=256.0, name=None, *, slots=None, max_width=3840, max_height=2160, writer=true, holder=None, dir=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        size_mb: f64,
        name: Option<String>,
        slots: Option<usize>,
        max_width: usize,
        max_height: usize,
        writer: bool,
        holder: Option<String>,
        dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let name = name.unwrap_or_else(|| {
            format!("ring-{}-{}", std::process::id(), AUTO_NAMES.fetch_add(1, Ordering::Relaxed))
        });
        let opts = RingOptions { size_mb, slots, max_width, max_height, max_format: PixelFormat::Bgra, dir };
        Ok(SharedVisionMemory { ring: Ring::create(&name, &opts, writer, holder.as_deref(), true)? })
    }

    /// Attaches to an existing ring (from another process). `writer=True` takes
    /// over as the writer (the previous one must be dead); `holder` registers
    /// this handle as a named holder so it can take holds.
    #[classmethod]
    #[pyo3(signature = (name, *, writer=false, holder=None, dir=None))]
    fn attach(
        _cls: &Bound<'_, PyType>,
        name: &str,
        writer: bool,
        holder: Option<String>,
        dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        Ok(SharedVisionMemory { ring: Ring::attach(name, writer, holder.as_deref(), dir.as_deref())? })
    }

    /// Removes ring `name` if it is a leftover of a stopped run (its writer and
    /// holders dead, or an unreadable file of this user nobody holds a lock on):
    /// whether something was removed. RingBusy if it is in use.
    #[staticmethod]
    #[pyo3(signature = (name, *, dir=None))]
    fn remove_stale(name: &str, dir: Option<PathBuf>) -> PyResult<bool> {
        Ok(Ring::remove_stale_ring(name, dir.as_deref())?)
    }

    // ------------------------------------------------------------ properties

    #[getter]
    fn name(&self) -> &str {
        self.ring.name()
    }
    #[getter]
    fn path(&self) -> PathBuf {
        self.ring.path()
    }
    #[getter]
    fn generation(&self) -> u64 {
        self.ring.generation()
    }
    #[getter]
    fn slot_count(&self) -> usize {
        self.ring.slot_count()
    }
    #[getter]
    fn slot_bytes(&self) -> usize {
        self.ring.slot_bytes()
    }
    #[getter]
    fn total_bytes(&self) -> usize {
        self.ring.total_bytes()
    }
    /// Largest frame (width, height) a slot takes in BGRA.
    #[getter]
    fn max_frame(&self) -> (u32, u32) {
        self.ring.max_frame()
    }
    #[getter]
    fn creator_pid(&self) -> u32 {
        self.ring.creator_pid()
    }
    #[getter]
    fn is_writer(&self) -> bool {
        self.ring.is_writer()
    }
    /// This handle's holder name, or None.
    #[getter]
    fn holder(&self) -> Option<String> {
        self.ring.holder().map(|h| h.0)
    }
    /// This handle's holder epoch (its incarnation), or 0.
    #[getter]
    fn epoch(&self) -> u64 {
        self.ring.holder().map(|h| h.1).unwrap_or(0)
    }
    /// What registering took over from a dead holder of the same name:
    /// (holds released, frames it owned whose terminal state nobody decided).
    #[getter]
    fn inherited(&self) -> (usize, usize) {
        let r = self.ring.inherited();
        (r.released, r.undecided)
    }
    /// Whether creating this ring removed a leftover ring of a dead run.
    #[getter]
    fn replaced_stale(&self) -> bool {
        self.ring.replaced_stale()
    }
    /// What taking over as writer repaired: {"discarded": n, "released": n}.
    #[getter]
    fn recovery<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.ring.recovery();
        let d = PyDict::new(py);
        d.set_item("discarded", r.discarded)?;
        d.set_item("released", r.released)?;
        Ok(d)
    }

    // ------------------------------------------------------------ writing

    /// Copies a frame into a free slot and publishes it. `data` is a numpy uint8
    /// array (H, W, C) or (H, W) whose rows may be padded, or a bytes-like object
    /// with `width`, `height`, `fmt` and optionally `stride` (without them the
    /// bytes are kept as an opaque blob: one GRAY row). With `hold=True`
    /// this handle keeps a hold on the new frame and owns it; with `count`, that
    /// shared counter is incremented as the frame is published. Raises
    /// `RingFull` when every slot is held (it never waits).
    #[pyo3(signature = (data, *, width=None, height=None, fmt=None, stride=None, monitor=0, hold=false, t_mono_ns=None, t_wall_ns=None, count=None))]
    #[allow(clippy::too_many_arguments)]
    fn write_frame(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        width: Option<usize>,
        height: Option<usize>,
        fmt: Option<&str>,
        stride: Option<usize>,
        monitor: u32,
        hold: bool,
        t_mono_ns: Option<u64>,
        t_wall_ns: Option<u64>,
        count: Option<usize>,
    ) -> PyResult<FrameRef> {
        let (src, pixels) = source_of(py, data, width, height, fmt, stride)?;
        let nbytes = src.stride * src.height;
        let times = (t_mono_ns, t_wall_ns);
        let meta = self.ring.write_frame(&src, monitor, hold, times, count, run_detached(py, nbytes))?;
        drop(pixels);
        Ok(FrameRef { meta })
    }

    /// `write_frame`, as an awaitable (the copy happens at the call).
    #[pyo3(signature = (data, *, width=None, height=None, fmt=None, stride=None, monitor=0, hold=false, t_mono_ns=None, t_wall_ns=None, count=None))]
    #[allow(clippy::too_many_arguments)]
    fn write_frame_async(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        width: Option<usize>,
        height: Option<usize>,
        fmt: Option<&str>,
        stride: Option<usize>,
        monitor: u32,
        hold: bool,
        t_mono_ns: Option<u64>,
        t_wall_ns: Option<u64>,
        count: Option<usize>,
    ) -> PyResult<Ready> {
        let r = self.write_frame(py, data, width, height, fmt, stride, monitor, hold, t_mono_ns, t_wall_ns, count)?;
        Ok(Ready::new(Py::new(py, r)?.into_any()))
    }

    /// Claims a slot for a frame of this geometry so a source can render into
    /// it directly (`Reservation.array`); then `commit()` or `abort()`.
    #[pyo3(signature = (width, height, fmt="BGRA", monitor=0))]
    fn reserve(slf: &Bound<'_, Self>, width: usize, height: usize, fmt: &str, monitor: u32) -> PyResult<Reservation> {
        let format = PixelFormat::parse(fmt)?;
        let meta = slf.get().ring.reserve(width, height, format, monitor)?;
        Ok(Reservation { mem: slf.clone().unbind(), meta, done: false })
    }

    /// Publishes the reserved frame (see `reserve` and `write_frame`).
    #[pyo3(signature = (*, hold=false, t_mono_ns=None, t_wall_ns=None, count=None))]
    fn commit(&self, hold: bool, t_mono_ns: Option<u64>, t_wall_ns: Option<u64>, count: Option<usize>) -> PyResult<FrameRef> {
        Ok(FrameRef { meta: self.ring.commit(hold, (t_mono_ns, t_wall_ns), count)? })
    }

    /// Gives up the reserved slot without publishing anything.
    fn abort(&self) -> PyResult<()> {
        Ok(self.ring.abort()?)
    }

    // ------------------------------------------------------------ reading

    /// A read-only numpy view of the frame in shared memory (no copy). Raises
    /// `FrameExpired` if the frame is gone. Only stable while a hold is taken:
    /// use `lease(ref)` or `hold(ref)` first.
    fn read<'py>(&self, py: Python<'py>, r: &FrameRef) -> PyResult<Bound<'py, PyAny>> {
        self.ring.view_ptr(&r.meta)?;
        make_view(py, self.ring.mapping(), &r.meta, false)
    }

    /// A private copy of the frame (packed rows), for readers that hold nothing.
    /// Never returns a torn frame: raises `FrameExpired` if the slot changed.
    fn read_copy<'py>(&self, py: Python<'py>, r: &FrameRef) -> PyResult<Bound<'py, PyAny>> {
        let shape = shape_of(&r.meta);
        // SAFETY: the array is fully written by read_copy before it is returned;
        // on error it is dropped unread.
        let arr = unsafe { numpy::PyArray::<u8, numpy::IxDyn>::new(py, shape, false) };
        let len = arr.len();
        let ptr = unsafe { (*arr.as_array_ptr()).fields.data as *mut u8 };
        // SAFETY: a fresh C-contiguous array of `len` bytes that nobody else sees yet.
        let dst = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        self.ring.read_copy(&r.meta, dst, run_detached(py, len))?;
        Ok(arr.into_any())
    }

    /// `with mem.lease(ref) as view:` holds the frame for the block and yields a
    /// zero-copy read-only view of it.
    fn lease(slf: &Bound<'_, Self>, r: FrameRef) -> Lease {
        Lease { mem: slf.clone().unbind(), r, active: false }
    }

    /// The published frames in the ring, oldest first.
    fn get_frame_pointers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        Self::meta_list(py, self.ring.frames())
    }

    // ------------------------------------------------------------ holds

    /// Registers this handle as holder `name`; returns its epoch.
    fn register(&self, name: &str) -> PyResult<u64> {
        Ok(self.ring.register(name)?)
    }

    /// Takes a hold on the frame (nested holds are counted).
    fn hold(&self, r: &FrameRef) -> PyResult<()> {
        Ok(self.ring.hold(&r.meta)?)
    }

    /// Releases one hold on the frame. True when that ended this handle's
    /// ownership: the frame's terminal state was this handle's to decide, and
    /// is tallied in shared counter `count` in the same step.
    #[pyo3(signature = (r, *, count=None))]
    fn release(&self, r: &FrameRef, count: Option<usize>) -> PyResult<bool> {
        Ok(self.ring.release(&r.meta, count)?)
    }

    /// Passes one of this handle's holds on the frame, and its ownership, to
    /// holder `to` atomically. With `keep`, this handle keeps a hold until it
    /// releases it, and can `withdraw` the hand-over if its message is not sent.
    #[pyo3(signature = (r, to, *, keep=false))]
    fn hand_over(&self, r: &FrameRef, to: &str, keep: bool) -> PyResult<()> {
        Ok(self.ring.hand_over(&r.meta, to, keep)?)
    }

    /// Undoes `hand_over(r, to, keep=True)`: `to` loses its hold, ownership returns.
    fn withdraw(&self, r: &FrameRef, to: &str) -> PyResult<()> {
        Ok(self.ring.withdraw(&r.meta, to)?)
    }

    /// Gives up holds handed to this holder whose message never arrived
    /// (captured at least `min_age_s` ago, never accepted, and with `only`,
    /// one of those refs): [(ref, was_owner)].
    #[pyo3(signature = (min_age_s, *, count=None, only=None))]
    fn reclaim_transit(
        &self,
        min_age_s: f64,
        count: Option<usize>,
        only: Option<Vec<PyRef<'_, FrameRef>>>,
    ) -> PyResult<Vec<(FrameRef, bool)>> {
        let ns = (min_age_s.max(0.0) * 1e9) as u64;
        let pairs: Option<Vec<(u32, u64)>> = only.map(|refs| refs.iter().map(|r| (r.meta.slot, r.meta.seq)).collect());
        Ok(self
            .ring
            .reclaim_transit(ns, count, pairs.as_deref())?
            .into_iter()
            .map(|(meta, owned)| (FrameRef { meta }, owned))
            .collect())
    }

    /// Frames handed over to this holder and not accepted yet.
    fn transit(&self) -> PyResult<Vec<FrameRef>> {
        Ok(self.ring.transit()?.into_iter().map(|meta| FrameRef { meta }).collect())
    }

    /// The frames this handle owns, oldest first.
    fn owned(&self) -> PyResult<Vec<FrameRef>> {
        let mut v = self.ring.owned()?;
        v.sort_by_key(|m| m.seq);
        Ok(v.into_iter().map(|meta| FrameRef { meta }).collect())
    }

    /// Takes charge of a hold handed over to this handle's holder.
    fn accept(&self, r: &FrameRef) -> PyResult<()> {
        Ok(self.ring.accept(&r.meta)?)
    }

    /// Number of holds this handle has on a slot.
    fn held_count(&self, slot: usize) -> u32 {
        self.ring.held_count(slot)
    }

    /// Releases every hold of the dead holder `name`: (holds released, frames
    /// it owned, whose terminal state nobody decided; tallied in `count`).
    #[pyo3(signature = (name, *, count=None))]
    fn reclaim(&self, name: &str, count: Option<usize>) -> PyResult<(usize, usize)> {
        let r = self.ring.reclaim(name, count, None)?;
        Ok((r.released, r.undecided))
    }

    /// As `reclaim`, with the undecided frames themselves: (holds released,
    /// [FrameRef of each undecided frame]), for their frame.dropped events.
    #[pyo3(signature = (name, *, count=None))]
    fn reclaim_frames(&self, name: &str, count: Option<usize>) -> PyResult<(usize, Vec<FrameRef>)> {
        let mut frames = Vec::new();
        let r = self.ring.reclaim(name, count, Some(&mut frames))?;
        Ok((r.released, frames.into_iter().map(|meta| FrameRef { meta }).collect()))
    }

    /// Reclaims the holds of every dead holder: {name: (released, undecided)}.
    #[pyo3(signature = (*, count=None))]
    fn reclaim_dead<'py>(&self, py: Python<'py>, count: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, r) in self.ring.reclaim_dead(count)? {
            d.set_item(name, (r.released, r.undecided))?;
        }
        Ok(d)
    }

    /// Registered holders: name, pid, epoch, alive, holds.
    fn holders<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for h in self.ring.holders()? {
            let d = PyDict::new(py);
            d.set_item("index", h.index)?;
            d.set_item("name", h.name)?;
            d.set_item("pid", h.pid)?;
            d.set_item("epoch", h.epoch)?;
            d.set_item("alive", h.alive)?;
            d.set_item("holds", h.holds)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Per-slot state: index, seq, writing, holders and owner (holder indices).
    fn slots<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for s in self.ring.slots() {
            let d = PyDict::new(py);
            d.set_item("index", s.index)?;
            d.set_item("seq", s.seq)?;
            d.set_item("writing", s.writing)?;
            d.set_item("holders", s.holders)?;
            d.set_item("owner", s.owner)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Whether `epoch` belongs to a registered holder whose process is alive.
    fn epoch_is_live(&self, epoch: u64) -> PyResult<bool> {
        Ok(self.ring.epoch_is_live(epoch)?)
    }

    // ------------------------------------------------------------ counters

    /// Adds `n` to shared counter `index`; returns the new value.
    #[pyo3(signature = (index, n=1))]
    fn counter_add(&self, index: usize, n: u64) -> PyResult<u64> {
        Ok(self.ring.counter_add(index, n)?)
    }

    /// Moves `n` from shared counter `src` to `dst` (pending frames reaching a
    /// terminal state); fails without change if `src` holds less than `n`.
    #[pyo3(signature = (src, dst, n=1))]
    fn counter_move(&self, src: usize, dst: usize, n: u64) -> PyResult<()> {
        Ok(self.ring.counter_move(src, dst, n)?)
    }

    /// All shared counters.
    fn counters(&self) -> Vec<u64> {
        self.ring.counters()
    }

    /// Takes an in-flight credit on `hop` if fewer than `limit` are out.
    fn credit_take(&self, hop: usize, limit: u64) -> PyResult<bool> {
        Ok(self.ring.credit_take(hop, limit)?)
    }

    /// Returns a credit on `hop` (saturating at zero); returns the credits still out.
    fn credit_return(&self, hop: usize) -> PyResult<u64> {
        Ok(self.ring.credit_return(hop)?)
    }

    fn credit_in_flight(&self, hop: usize) -> PyResult<u64> {
        Ok(self.ring.credit_in_flight(hop)?)
    }

    /// Zeroes `hop`'s credits (after its receiver died); returns the old count.
    fn credit_reset(&self, hop: usize) -> PyResult<u64> {
        Ok(self.ring.credit_reset(hop)?)
    }

    // ------------------------------------------------------------ hand-off queues

    /// Producer of `hop`: queues hand-off `message` for the hop's consumer.
    /// True when the consumer is asleep: signal its wake-up object. Raises
    /// `HandoffFull` when the queue is full (nothing was queued).
    fn handoff_push(&self, hop: usize, message: &[u8]) -> PyResult<bool> {
        Ok(self.ring.handoff_push(hop, message)?)
    }

    /// Consumer of `hop`: the next message, or None when the queue is empty.
    /// Raises `RingFormatError` for a record that breaks the protocol (it is
    /// skipped; the queue stays usable).
    fn handoff_pop<'py>(&self, py: Python<'py>, hop: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.ring.handoff_pop(hop)?.map(|v| PyBytes::new(py, &v)))
    }

    /// Consumer of `hop`, before it sleeps: asks for a wake-up on the next
    /// message; returns how many are already waiting (then do not sleep).
    fn handoff_arm(&self, hop: usize) -> PyResult<u64> {
        Ok(self.ring.handoff_arm(hop)?)
    }

    /// Messages waiting in `hop`'s queue.
    fn handoff_pending(&self, hop: usize) -> PyResult<u64> {
        Ok(self.ring.handoff_pending(hop)?)
    }

    // ------------------------------------------------------------ lifetime

    /// Releases this handle's holds and roles; the creator also removes the
    /// ring's files. Views already taken remain valid memory.
    fn close(&self) {
        self.ring.close()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) {
        self.ring.close()
    }

    fn __repr__(&self) -> String {
        format!(
            "SharedVisionMemory(name={:?}, slots={}, slot_bytes={}, writer={}, holder={:?})",
            self.ring.name(),
            self.ring.slot_count(),
            self.ring.slot_bytes(),
            self.ring.is_writer(),
            self.ring.holder().map(|h| h.0)
        )
    }
}

/// A slot claimed by `reserve`: fill `array`, then `commit()` or `abort()`.
/// Leaving a `with` block without committing aborts.
#[pyclass(module = "jarvis_rust_core")]
pub struct Reservation {
    mem: Py<SharedVisionMemory>,
    meta: FrameMeta,
    done: bool,
}

#[pymethods]
impl Reservation {
    /// A writable numpy view of the reserved slot, shaped like the frame.
    #[getter]
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.done {
            return Err(RingError::Hold("this reservation is already committed or aborted".into()).into());
        }
        make_view(py, self.mem.get().ring.mapping(), &self.meta, true)
    }

    #[getter]
    fn slot(&self) -> u32 {
        self.meta.slot
    }

    /// Sequence number the frame will have once committed.
    #[getter]
    fn seq(&self) -> u64 {
        self.meta.seq
    }

    #[pyo3(signature = (*, hold=false, t_mono_ns=None, t_wall_ns=None, count=None))]
    fn commit(&mut self, hold: bool, t_mono_ns: Option<u64>, t_wall_ns: Option<u64>, count: Option<usize>) -> PyResult<FrameRef> {
        if self.done {
            return Err(RingError::Hold("this reservation is already committed or aborted".into()).into());
        }
        let meta = self.mem.get().ring.commit(hold, (t_mono_ns, t_wall_ns), count)?;
        self.done = true;
        Ok(FrameRef { meta })
    }

    fn abort(&mut self) -> PyResult<()> {
        if !self.done {
            self.done = true;
            self.mem.get().ring.abort()?;
        }
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.abort()
    }
}

/// A hold for the duration of a `with` block; yields the zero-copy view.
#[pyclass(module = "jarvis_rust_core")]
pub struct Lease {
    mem: Py<SharedVisionMemory>,
    r: FrameRef,
    active: bool,
}

#[pymethods]
impl Lease {
    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.active {
            return Err(RingError::Hold("this lease is already entered".into()).into());
        }
        let ring = &self.mem.get().ring;
        ring.hold(&self.r.meta)?;
        self.active = true;
        make_view(py, ring.mapping(), &self.r.meta, false)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        if std::mem::take(&mut self.active) {
            self.mem.get().ring.release(&self.r.meta, None)?;
        }
        Ok(())
    }
}
