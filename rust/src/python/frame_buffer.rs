//! Python face of `FrameRingBuffer`.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::frame_ref::FrameRef;
use super::ready::Ready;
use super::ring::SharedVisionMemory;
use crate::error::RingError;
use crate::frame_buffer::FrameRingBuffer as Core;

enum Entry {
    Copy(Py<PyBytes>),
    Held(FrameRef),
}

/// A bounded, time-ordered window of recent frames: copies (`add_frame`,
/// bounded by `capacity_mb`) and frames held in a ring (`add_ref`, bounded by
/// `max_frames` since each pins a slot). The oldest entry is evicted first.
#[pyclass(module = "jarvis_rust_core")]
pub struct FrameRingBuffer {
    core: Core<Entry>,
    ring: Option<Py<SharedVisionMemory>>,
}

impl FrameRingBuffer {
    fn let_go(&self, evicted: Vec<Entry>) -> PyResult<()> {
        for e in evicted {
            if let (Entry::Held(r), Some(ring)) = (e, self.ring.as_ref()) {
                ring.get().ring().release(&r.meta, None)?;
            }
        }
        Ok(())
    }

    fn entries<'py>(py: Python<'py>, items: impl Iterator<Item = (u64, &'py Entry)>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (ts, e) in items {
            let payload: Bound<'py, PyAny> = match e {
                Entry::Copy(b) => b.bind(py).clone().into_any(),
                Entry::Held(r) => Bound::new(py, r.clone())?.into_any(),
            };
            list.append(PyTuple::new(py, [ts.into_pyobject(py)?.into_any(), payload])?)?;
        }
        Ok(list)
    }
}

#[pymethods]
impl FrameRingBuffer {
    #[new]
    #[pyo3(signature = (capacity_mb=500.0, *, ring=None, max_frames=None))]
    fn new(capacity_mb: f64, ring: Option<Py<SharedVisionMemory>>, max_frames: Option<usize>) -> PyResult<Self> {
        if !(capacity_mb.is_finite() && capacity_mb > 0.0) {
            return Err(RingError::Config(format!("capacity_mb must be a positive number, got {capacity_mb}")).into());
        }
        let bytes = (capacity_mb * 1024.0 * 1024.0) as usize;
        Ok(FrameRingBuffer { core: Core::new(bytes, max_frames.unwrap_or(usize::MAX))?, ring })
    }

    /// Copies `data` (bytes-like) into the buffer at `timestamp`.
    fn add_frame(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>, timestamp: u64) -> PyResult<()> {
        let buf = PyBuffer::<u8>::get(data)?;
        let bytes = PyBytes::new(py, &buf.to_vec(py)?).unbind();
        let evicted = self.core.push(timestamp, buf.len_bytes(), Entry::Copy(bytes))?;
        self.let_go(evicted)
    }

    /// `add_frame`, as an awaitable (the copy happens at the call).
    fn add_frame_async(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>, timestamp: u64) -> PyResult<Ready> {
        self.add_frame(py, data, timestamp)?;
        Ok(Ready::new(py.None()))
    }

    /// Holds frame `r` in the ring and indexes it at `timestamp` (default: its
    /// capture wall time in ns; use one time unit per buffer).
    #[pyo3(signature = (r, timestamp=None))]
    fn add_ref(&mut self, r: FrameRef, timestamp: Option<u64>) -> PyResult<()> {
        let ring = self
            .ring
            .as_ref()
            .ok_or_else(|| RingError::Hold("add_ref needs a buffer created with ring=".into()))?;
        ring.get().ring().hold(&r.meta)?;
        let ts = timestamp.unwrap_or(r.meta.t_wall_ns);
        match self.core.push(ts, 0, Entry::Held(r.clone())) {
            Ok(evicted) => self.let_go(evicted),
            Err(e) => {
                ring.get().ring().release(&r.meta, None)?;
                Err(e.into())
            }
        }
    }

    /// The newest `n` entries as (timestamp, bytes | FrameRef), oldest first.
    fn latest<'py>(&'py self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyList>> {
        Self::entries(py, self.core.latest(n))
    }

    /// Entries with start <= timestamp <= end, oldest first.
    fn between<'py>(&'py self, py: Python<'py>, start: u64, end: u64) -> PyResult<Bound<'py, PyList>> {
        Self::entries(py, self.core.between(start, end))
    }

    /// Drops every entry, releasing held frames.
    fn clear(&mut self) -> PyResult<()> {
        let all: Vec<Entry> = self.core.drain().collect();
        self.let_go(all)
    }

    fn __len__(&self) -> usize {
        self.core.len()
    }
    #[getter]
    fn used_bytes(&self) -> usize {
        self.core.used_bytes()
    }
    #[getter]
    fn capacity_bytes(&self) -> usize {
        self.core.capacity_bytes()
    }
}
