//! `FrameRef`: the ring fields of the hand-off message. The protocol module
//! (pipeline/protocol.py) adds the version and encodes it with msgpack.

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::frame::{FrameMeta, PixelFormat};

#[pyclass(module = "jarvis_rust_core", frozen, eq, hash, from_py_object)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FrameRef {
    pub meta: FrameMeta,
}

/// Field names of `to_dict`, in order.
const FIELDS: [&str; 11] =
    ["ring_gen", "slot", "seq", "epoch", "monitor", "w", "h", "stride", "fmt", "t_mono_ns", "t_wall_ns"];

fn field<'py, T: for<'a> pyo3::FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    let v = d
        .get_item(key)?
        .ok_or_else(|| PyKeyError::new_err(format!("FrameRef field {key:?} is missing")))?;
    v.extract::<T>().map_err(|_| {
        PyTypeError::new_err(format!(
            "FrameRef field {key:?} has an invalid value {}",
            v.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })
}

#[pymethods]
impl FrameRef {
    #[getter]
    fn ring_gen(&self) -> u64 {
        self.meta.ring_gen
    }
    #[getter]
    fn slot(&self) -> u32 {
        self.meta.slot
    }
    #[getter]
    fn seq(&self) -> u64 {
        self.meta.seq
    }
    #[getter]
    fn epoch(&self) -> u64 {
        self.meta.epoch
    }
    #[getter]
    fn monitor(&self) -> u32 {
        self.meta.monitor
    }
    #[getter]
    fn w(&self) -> u32 {
        self.meta.width
    }
    #[getter]
    fn h(&self) -> u32 {
        self.meta.height
    }
    #[getter]
    fn stride(&self) -> u32 {
        self.meta.stride
    }
    #[getter]
    fn fmt(&self) -> &'static str {
        self.meta.format.name()
    }
    #[getter]
    fn t_mono_ns(&self) -> u64 {
        self.meta.t_mono_ns
    }
    #[getter]
    fn t_wall_ns(&self) -> u64 {
        self.meta.t_wall_ns
    }
    /// Channels per pixel (4 BGRA, 3 RGB, 1 GRAY).
    #[getter]
    fn channels(&self) -> usize {
        self.meta.channels()
    }
    /// numpy shape of the frame: (h, w, channels), or (h, w) for GRAY.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        shape_of(&self.meta)
    }
    /// Bytes the frame occupies in its slot (row padding included).
    #[getter]
    fn nbytes(&self) -> usize {
        self.meta.nbytes()
    }

    /// The same frame as sent by another stage incarnation.
    fn with_epoch(&self, epoch: u64) -> FrameRef {
        let mut meta = self.meta;
        meta.epoch = epoch;
        FrameRef { meta }
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let m = &self.meta;
        d.set_item(FIELDS[0], m.ring_gen)?;
        d.set_item(FIELDS[1], m.slot)?;
        d.set_item(FIELDS[2], m.seq)?;
        d.set_item(FIELDS[3], m.epoch)?;
        d.set_item(FIELDS[4], m.monitor)?;
        d.set_item(FIELDS[5], m.width)?;
        d.set_item(FIELDS[6], m.height)?;
        d.set_item(FIELDS[7], m.stride)?;
        d.set_item(FIELDS[8], m.format.name())?;
        d.set_item(FIELDS[9], m.t_mono_ns)?;
        d.set_item(FIELDS[10], m.t_wall_ns)?;
        Ok(d)
    }

    /// Builds a FrameRef from a dict (as decoded from a message), validating every
    /// field; unknown keys are ignored.
    #[staticmethod]
    fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<FrameRef> {
        let fmt: String = field(d, "fmt")?;
        let format = PixelFormat::parse(&fmt).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let meta = FrameMeta {
            ring_gen: field(d, "ring_gen")?,
            slot: field(d, "slot")?,
            seq: field(d, "seq")?,
            epoch: field(d, "epoch")?,
            monitor: field(d, "monitor")?,
            width: field(d, "w")?,
            height: field(d, "h")?,
            stride: field(d, "stride")?,
            format,
            t_mono_ns: field(d, "t_mono_ns")?,
            t_wall_ns: field(d, "t_wall_ns")?,
        };
        if meta.width == 0 || meta.height == 0 || (meta.stride as usize) < meta.width as usize * format.channels() {
            return Err(PyValueError::new_err(format!(
                "FrameRef geometry {}x{} {} with stride {} is impossible",
                meta.width, meta.height, fmt, meta.stride
            )));
        }
        if meta.seq == 0 {
            return Err(PyValueError::new_err("FrameRef seq must be positive"));
        }
        Ok(FrameRef { meta })
    }

    /// The hand-off message of this ref with no extra fields: the msgpack map
    /// `{v: [major, minor], <FIELDS>}` (what pipeline.protocol sends).
    fn pack<'py>(&self, py: Python<'py>, version: (u64, u64)) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &crate::wire::pack(&self.meta, version))
    }

    /// Parses a hand-off message holding exactly `v` and the FrameRef fields:
    /// (ref, (major, minor)); None for anything else (extra fields, unusual
    /// encodings, invalid values), which the general msgpack path then handles.
    #[staticmethod]
    fn unpack(data: &[u8]) -> Option<(FrameRef, (u64, u64))> {
        crate::wire::unpack(data).map(|(meta, v)| (FrameRef { meta }, v))
    }

    #[classattr]
    #[pyo3(name = "FIELDS")]
    fn fields() -> Vec<&'static str> {
        FIELDS.to_vec()
    }

    fn __repr__(&self) -> String {
        let m = &self.meta;
        format!(
            "FrameRef(seq={}, slot={}, {}x{} {}, monitor={}, epoch={}, ring_gen={:#x})",
            m.seq,
            m.slot,
            m.width,
            m.height,
            m.format.name(),
            m.monitor,
            m.epoch,
            m.ring_gen
        )
    }
}

pub fn shape_of(m: &FrameMeta) -> Vec<usize> {
    if m.format == PixelFormat::Gray {
        vec![m.height as usize, m.width as usize]
    } else {
        vec![m.height as usize, m.width as usize, m.channels()]
    }
}
