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

/// Histogram of the luma (77 R + 150 G + 29 B) >> 8 of every pixel: 256 counts.
#[pyfunction]
pub fn luma_histogram<'py>(py: Python<'py>, frame: &Bound<'py, PyAny>) -> PyResult<Bound<'py, numpy::PyArray1<u64>>> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    let hist = py.detach(|| crate::kernels::luma_histogram(&src));
    Ok(numpy::PyArray1::from_vec(py, hist))
}

/// Mean and standard deviation of the luma per block of a `grid` x `grid`
/// division: a float64 vector [mean, std, ...] of length 2 * grid * grid.
#[pyfunction]
#[pyo3(signature = (frame, grid=8))]
pub fn block_features<'py>(py: Python<'py>, frame: &Bound<'py, PyAny>, grid: usize) -> PyResult<Bound<'py, numpy::PyArray1<f64>>> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    let features = py.detach(|| crate::kernels::block_features(&src, grid))?;
    Ok(numpy::PyArray1::from_vec(py, features))
}
