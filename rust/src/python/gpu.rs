//! `GpuKernels`: the change kernels on the GPU (crate::gpu), for Python.

use numpy::{PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::frames::source_of;
use crate::gpu::Gpu;

/// The change kernels on a GPU through wgpu (Vulkan, Metal or DX12), with the
/// same answers as the CPU kernels. `software=True` accepts a software
/// adapter (lavapipe) when there is no hardware one; GpuError without either.
#[pyclass(name = "GpuKernels", module = "jarvis_rust_core", frozen)]
pub struct GpuKernels {
    gpu: Gpu,
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
        numpy::PyArray1::from_vec(py, counts).reshape([th, tw])
    }
}
