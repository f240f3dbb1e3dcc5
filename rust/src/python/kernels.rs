//! Python face of the vision kernels (GIL released while they run).

use numpy::{PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use super::frames::source_of;

/// Exact 64-bit hash (xxh3) of a frame's pixels; row padding never changes it.
#[pyfunction]
pub fn frame_hash(py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<u64> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    Ok(py.detach(|| crate::kernels::frame_hash(&src)))
}

/// Changed pixels per tile between two frames of one geometry: a uint32
/// (tile rows, tile columns) array. A pixel changed when dr^2+dg^2+db^2 > t^2
/// (alpha ignored), or |d| > t for gray frames.
#[pyfunction]
pub fn tile_changes<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    threshold: u32,
    tile: usize,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let (fa, _pa) = source_of(py, a, None, None, None, None)?;
    let (fb, _pb) = source_of(py, b, None, None, None, None)?;
    let (counts, th, tw) = py.detach(|| crate::kernels::tile_changes(&fa, &fb, threshold, tile))?;
    numpy::PyArray1::from_vec(py, counts).reshape([th, tw])
}
