//! `GpuKernels`: the pixel kernels on the GPU (crate::gpu), for Python.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::frames::{source_of, sources_of};
use super::kernels::row_major;
use crate::error::RingError;
use crate::gpu::Gpu;

/// The pixel kernels on a GPU through wgpu (Vulkan, Metal or DX12), with the
/// same answers as the CPU kernels. `software=True` accepts a software
/// adapter (lavapipe) when there is no hardware one; GpuError without either.
#[pyclass(name = "GpuKernels", module = "jarvis_rust_core", frozen)]
pub struct GpuKernels {
    pub(crate) gpu: Gpu,
}

#[pymethods]
impl GpuKernels {
    #[new]
    #[pyo3(signature = (*, software=false))]
    fn new(py: Python<'_>, software: bool) -> PyResult<Self> {
        Ok(GpuKernels { gpu: py.detach(|| Gpu::new(software))? })
    }

    /// {name, backend, device_type, driver, software} of the adapter in use.
    #[getter]
    fn adapter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = self.gpu.info();
        let d = PyDict::new(py);
        d.set_item("name", &i.name)?;
        d.set_item("backend", &i.backend)?;
        d.set_item("device_type", &i.device_type)?;
        d.set_item("driver", &i.driver)?;
        d.set_item("software", i.software)?;
        Ok(d)
    }

    /// Where the last call's time went: {upload_ms (copying the frames for
    /// the device, on the calling thread), compute_ms (waiting for the
    /// device), readback_ms, uploaded_bytes}.
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = self.gpu.timings();
        let d = PyDict::new(py);
        d.set_item("upload_ms", t.upload_ms)?;
        d.set_item("compute_ms", t.compute_ms)?;
        d.set_item("readback_ms", t.readback_ms)?;
        d.set_item("uploaded_bytes", t.uploaded_bytes)?;
        Ok(d)
    }

    /// As `jarvis_rust_core.tile_changes`: changed pixels per tile, a uint32
    /// (tile rows, tile columns) array.
    fn tile_changes<'py>(
        &self,
        py: Python<'py>,
        a: &Bound<'py, PyAny>,
        b: &Bound<'py, PyAny>,
        threshold: u32,
        tile: usize,
    ) -> PyResult<Bound<'py, PyArray2<u32>>> {
        let (fa, _pa) = source_of(py, a, None, None, None, None)?;
        let (fb, _pb) = source_of(py, b, None, None, None, None)?;
        let (counts, th, tw) = py.detach(|| self.gpu.tile_changes(&fa, &fb, threshold, tile))?;
        PyArray1::from_vec(py, counts).reshape([th, tw])
    }

    /// `tile_changes` of each frame against the one before it, a uint32
    /// (frames - 1, tile rows, tile columns) array: the frames go to the
    /// device one after another, each while the pair before it is computed.
    fn tile_changes_batch<'py>(
        &self,
        py: Python<'py>,
        frames: Vec<Bound<'py, PyAny>>,
        threshold: u32,
        tile: usize,
    ) -> PyResult<Bound<'py, numpy::PyArray3<u32>>> {
        let (sources, owners) = sources_of(py, &frames)?;
        let refs: Vec<_> = sources.iter().collect();
        let counts = py.detach(|| self.gpu.tile_changes_batch(&refs, threshold, tile))?;
        drop(owners);
        let (th, tw) = sources.first().map_or((0, 0), |f| (f.height.div_ceil(tile), f.width.div_ceil(tile)));
        PyArray1::from_vec(py, counts.concat()).reshape([sources.len().saturating_sub(1), th, tw])
    }

    /// As `jarvis_rust_core.change_pass` with signatures=False: (counts,
    /// fresh, boxes). `frame_key`, `reference_key`: names for the frames'
    /// pixels (a key is never reused for other pixels, e.g. a ring sequence
    /// number): a frame the device holds already is not sent again.
    #[pyo3(signature = (frame, reference, shadow, shadowed, threshold, tile, *, frame_key=None, reference_key=None))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn change_pass<'py>(
        &self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
        reference: &Bound<'py, PyAny>,
        shadow: Option<&Bound<'py, PyAny>>,
        shadowed: PyReadonlyArray2<'py, bool>,
        threshold: u32,
        tile: usize,
        frame_key: Option<u64>,
        reference_key: Option<u64>,
    ) -> PyResult<(Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<bool>>, Bound<'py, numpy::PyArray3<i32>>)> {
        let (ff, _pf) = source_of(py, frame, None, None, None, None)?;
        let (fr, _pr) = source_of(py, reference, None, None, None, None)?;
        let shadow = shadow.map(|s| source_of(py, s, None, None, None, None)).transpose()?;
        let (rows, cols) = shadowed.as_array().dim();
        let marked = row_major(&shadowed);
        let fs = shadow.as_ref().map(|(f, _)| f);
        let r = py.detach(|| self.gpu.change_pass(&ff, &fr, fs, &marked, threshold, tile, frame_key, reference_key))?;
        if r.counts.len() != rows * cols {
            return Err(RingError::FrameGeometry(format!("shadowed is {rows}x{cols}; the frame has {} tiles", r.counts.len())).into());
        }
        let boxes: Vec<i32> = r.boxes.iter().flatten().copied().collect();
        Ok((
            PyArray1::from_vec(py, r.counts).reshape([rows, cols])?,
            PyArray1::from_vec(py, r.fresh).reshape([rows, cols])?,
            PyArray1::from_vec(py, boxes).reshape([rows, cols, 4])?,
        ))
    }

    /// As `jarvis_rust_core.luma_histogram`: 256 uint64 counts.
    fn luma_histogram<'py>(&self, py: Python<'py>, frame: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let (f, _p) = source_of(py, frame, None, None, None, None)?;
        let hist = py.detach(|| self.gpu.luma_histogram(&f))?;
        Ok(PyArray1::from_vec(py, hist))
    }

    /// Destroys the device, as a driver reset or an unplugged GPU would:
    /// every later call raises GpuError. For tests of the fallback to the CPU.
    fn lose_device(&self, py: Python<'_>) {
        py.detach(|| self.gpu.lose_device());
    }
}
