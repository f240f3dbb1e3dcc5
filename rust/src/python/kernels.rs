//! Python face of the vision kernels (GIL released while they run).

use numpy::{PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::frames::source_of;
use crate::error::RingError;

/// Exact 64-bit hash (xxh3) of a frame's pixels; row padding never changes it.
#[pyfunction]
pub fn frame_hash(py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<u64> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    Ok(py.detach(|| crate::kernels::frame_hash(&src)))
}

/// The frame's digests: (its own, the little-endian uint64 digests of its
/// bands of `band_rows(height)` rows as bytes); see the core's
/// `kernels::frame_digests`.
#[pyfunction]
pub fn frame_digests<'py>(py: Python<'py>, frame: &Bound<'py, PyAny>) -> PyResult<(u64, Bound<'py, PyBytes>)> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    let (digest, bands) = py.detach(|| crate::kernels::frame_digests(&src));
    Ok((digest, band_bytes(py, &bands)))
}

/// Rows per band of a frame `height` rows tall (`frame_digests`).
#[pyfunction]
pub fn band_rows(height: usize) -> usize {
    crate::kernels::band_rows(height)
}

fn band_bytes<'py>(py: Python<'py>, bands: &[u64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = bands.iter().flat_map(|d| d.to_le_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// Copies `src` into `dst` (a writable uint8 array of its shape whose rows
/// may be padded, as a ring slot's are) and returns `frame_digests(src)`,
/// reading the pixels once.
#[pyfunction]
pub fn copy_hashed<'py>(py: Python<'py>, src: &Bound<'py, PyAny>, dst: &Bound<'py, PyAny>) -> PyResult<(u64, Bound<'py, PyBytes>)> {
    let (s, _pixels) = source_of(py, src, None, None, None, None)?;
    let arr = dst
        .cast::<PyArrayDyn<u8>>()
        .map_err(|_| RingError::FrameGeometry("the destination must be a uint8 numpy array".into()))?;
    let c = s.format.channels();
    let want: Vec<usize> = if c == 1 { vec![s.height, s.width] } else { vec![s.height, s.width, c] };
    if arr.shape() != want.as_slice() {
        return Err(RingError::FrameGeometry(format!("the destination has shape {:?}, the frame {want:?}", arr.shape())).into());
    }
    let mut out = arr.try_readwrite().map_err(|e| RingError::FrameGeometry(format!("the destination: {e}")))?;
    let mut view = out.as_array_mut();
    let strides = view.strides().to_vec();
    let len = s.width * c;
    // Pixels of a row contiguous, rows apart by at least a row (a dimension
    // of size 1 may carry any stride).
    let pixels_ok = (c == 1 || strides[2] == 1) && (s.width <= 1 || strides[1] == c as isize);
    let rows_ok = s.height <= 1 || strides[0] >= len as isize;
    if !pixels_ok || !rows_ok {
        return Err(RingError::FrameGeometry(format!(
            "the destination's rows must be contiguous pixels, a row or more apart (strides {strides:?})"
        ))
        .into());
    }
    let stride = if s.height <= 1 { len } else { strides[0] as usize };
    let bytes = if s.height == 0 { 0 } else { stride * (s.height - 1) + len };
    // SAFETY: the write borrow is exclusive, and per the shape and strides
    // checked above the array's bytes span `bytes` from its first element.
    let dst = unsafe { std::slice::from_raw_parts_mut(view.as_mut_ptr(), bytes) };
    let (digest, bands) = py.detach(|| crate::kernels::copy_hashed(&s, dst, stride))?;
    Ok((digest, band_bytes(py, &bands)))
}

/// The elements of an array in row-major order: one copy when it is
/// contiguous (walking a view element by element costs tens of
/// microseconds for a tile map).
pub(crate) fn row_major<T: numpy::Element + Copy, D: numpy::ndarray::Dimension>(a: &numpy::PyReadonlyArray<'_, T, D>) -> Vec<T> {
    match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// Changed pixels per tile between two frames of one geometry: a uint32
/// (tile rows, tile columns) array. A pixel changed when dr^2+dg^2+db^2 > t^2
/// (alpha ignored), or |d| > t for gray frames. `parallel=False` keeps the
/// work on the calling thread.
#[pyfunction]
#[pyo3(signature = (a, b, threshold, tile, *, parallel=true))]
pub fn tile_changes<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    threshold: u32,
    tile: usize,
    parallel: bool,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let (fa, _pa) = source_of(py, a, None, None, None, None)?;
    let (fb, _pb) = source_of(py, b, None, None, None, None)?;
    let (counts, th, tw) = py.detach(|| crate::changes::tile_changes(&fa, &fb, threshold, tile, parallel))?;
    numpy::PyArray1::from_vec(py, counts).reshape([th, tw])
}

/// The change model's whole per-tile pass: (counts uint32 (rows, cols): pixels
/// changed against `reference` as `tile_changes` counts them; fresh, boxes,
/// sigs, for the tiles that changed against the
/// reference compared with it, and for the `shadowed` tiles compared with
/// `shadow`, what they showed in the frame before). `known_equal`, a bool
/// per row of tiles: rows known to equal the reference (their band digests
/// match), not read unless a tile of theirs is shadowed.
#[pyfunction]
#[pyo3(signature = (frame, reference, shadow, shadowed, threshold, tile, *, parallel=true, signatures=true, known_equal=None))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn change_pass<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    reference: &Bound<'py, PyAny>,
    shadow: Option<&Bound<'py, PyAny>>,
    shadowed: PyReadonlyArray2<'py, bool>,
    threshold: u32,
    tile: usize,
    parallel: bool,
    signatures: bool,
    known_equal: Option<PyReadonlyArray1<'py, bool>>,
) -> PyResult<(
    Bound<'py, PyArray2<u32>>,
    Bound<'py, PyArray2<bool>>,
    Bound<'py, numpy::PyArray3<i32>>,
    Bound<'py, PyArray2<u64>>,
)> {
    let (fa, _pa) = source_of(py, frame, None, None, None, None)?;
    let (fr, _pr) = source_of(py, reference, None, None, None, None)?;
    let shadow = shadow.map(|s| source_of(py, s, None, None, None, None)).transpose()?;
    let (rows, cols) = shadowed.as_array().dim();
    let marked = row_major(&shadowed);
    let fs = shadow.as_ref().map(|(f, _)| f);
    let known = known_equal.as_ref().map(row_major);
    let r = py.detach(|| crate::fresh::change_pass(&fa, &fr, fs, &marked, threshold, tile, parallel, signatures, known.as_deref()))?;
    if r.counts.len() != rows * cols {
        return Err(RingError::FrameGeometry(format!("shadowed is {rows}x{cols}; the frame has {} tiles", r.counts.len())).into());
    }
    let boxes: Vec<i32> = r.tiles.boxes.iter().flatten().copied().collect();
    Ok((
        numpy::PyArray1::from_vec(py, r.counts).reshape([rows, cols])?,
        numpy::PyArray1::from_vec(py, r.tiles.fresh).reshape([rows, cols])?,
        numpy::PyArray1::from_vec(py, boxes).reshape([rows, cols, 4])?,
        numpy::PyArray1::from_vec(py, r.tiles.sigs).reshape([rows, cols])?,
    ))
}

/// The signatures of the `wanted` tiles (a 2-D bool tile map) of `frame` as
/// `change_pass` makes them: uint64 (rows, cols), 0 where not wanted.
#[pyfunction]
pub fn tile_signatures<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    wanted: PyReadonlyArray2<'py, bool>,
    tile: usize,
) -> PyResult<Bound<'py, PyArray2<u64>>> {
    let (fa, _pa) = source_of(py, frame, None, None, None, None)?;
    let (rows, cols) = wanted.as_array().dim();
    let marked = row_major(&wanted);
    let sigs = py.detach(|| crate::fresh::tile_signatures(&fa, &marked, tile))?;
    if sigs.len() != rows * cols {
        return Err(RingError::FrameGeometry(format!("wanted is {rows}x{cols}; the frame has {} tiles", sigs.len())).into());
    }
    numpy::PyArray1::from_vec(py, sigs).reshape([rows, cols])
}

/// 8-connected groups of the marked tiles of a 2-D bool tile map: an int32
/// map of each tile's group number (row-major order of each group's first
/// tile), -1 where unmarked.
#[pyfunction]
pub fn tile_groups<'py>(py: Python<'py>, marked: PyReadonlyArray2<'py, bool>) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (rows, cols) = marked.as_array().dim();
    let cells = row_major(&marked);
    let labels = crate::fresh::tile_groups(&cells, rows, cols)?;
    numpy::PyArray1::from_vec(py, labels).reshape([rows, cols])
}

/// The marked tiles of a 2-D bool tile map in `tile_groups`' groups, with
/// their boxes (`boxes`: int32 (rows, cols, 4), x0, y0, x1, y1 per tile):
/// (labels int32 (rows, cols) as `tile_groups` gives them; ys, xs intp: the
/// marked tiles group after group, row-major within each; starts intp: group
/// g is ys[starts[g]:starts[g + 1]]; boxes int32 (groups, 4): each group's
/// union of its tiles' boxes).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn change_groups<'py>(
    py: Python<'py>,
    marked: PyReadonlyArray2<'py, bool>,
    boxes: numpy::PyReadonlyArray3<'py, i32>,
) -> PyResult<(
    Bound<'py, PyArray2<i32>>,
    Bound<'py, numpy::PyArray1<isize>>,
    Bound<'py, numpy::PyArray1<isize>>,
    Bound<'py, numpy::PyArray1<isize>>,
    Bound<'py, PyArray2<i32>>,
)> {
    let (rows, cols) = marked.as_array().dim();
    if boxes.as_array().dim() != (rows, cols, 4) {
        return Err(RingError::FrameGeometry(format!("boxes is {:?}; the tile map is {rows}x{cols}", boxes.as_array().dim())).into());
    }
    let cells = row_major(&marked);
    let flat = row_major(&boxes);
    let per_tile: Vec<[i32; 4]> = flat.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
    let g = crate::fresh::change_groups(&cells, &per_tile, rows, cols)?;
    let n = g.boxes.len();
    let union: Vec<i32> = g.boxes.iter().flatten().copied().collect();
    Ok((
        numpy::PyArray1::from_vec(py, g.labels).reshape([rows, cols])?,
        numpy::PyArray1::from_vec(py, g.tiles.iter().map(|&t| (t / cols) as isize).collect()),
        numpy::PyArray1::from_vec(py, g.tiles.iter().map(|&t| (t % cols) as isize).collect()),
        numpy::PyArray1::from_vec(py, g.starts.iter().map(|&s| s as isize).collect()),
        numpy::PyArray1::from_vec(py, union).reshape([n, 4])?,
    ))
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

/// Changed tiles (a 2-D tile map, nonzero = changed: `tile_changes`' counts or
/// a bool map) as merged bounding boxes [x, y, w, h] in pixels, sorted by
/// (y, x): 8-connected groups of tiles, touching boxes merged, then the
/// closest boxes merged until at most `max_regions` remain.
#[pyfunction]
#[pyo3(signature = (tiles, tile, width, height, max_regions=16))]
pub fn regions(
    py: Python<'_>,
    tiles: &Bound<'_, PyAny>,
    tile: usize,
    width: usize,
    height: usize,
    max_regions: usize,
) -> PyResult<Vec<[usize; 4]>> {
    let (changed, shape) = if let Ok(a) = tiles.extract::<PyReadonlyArray2<'_, u32>>() {
        (a.as_array().iter().map(|&c| c > 0).collect::<Vec<bool>>(), a.as_array().dim())
    } else if let Ok(a) = tiles.extract::<PyReadonlyArray2<'_, bool>>() {
        (row_major(&a), a.as_array().dim())
    } else {
        return Err(RingError::FrameGeometry("tiles is a 2-D uint32 or bool array".into()).into());
    };
    if tile == 0 || max_regions == 0 {
        return Err(RingError::Config("tile and max_regions must be positive".into()).into());
    }
    if shape != (height.div_ceil(tile), width.div_ceil(tile)) {
        return Err(RingError::FrameGeometry(format!(
            "a {width}x{height} frame in {tile} px tiles has a {}x{} tile map, not {}x{}",
            height.div_ceil(tile),
            width.div_ceil(tile),
            shape.0,
            shape.1
        ))
        .into());
    }
    Ok(py.detach(|| crate::regions::regions(&changed, shape.0, shape.1, tile, width, height, max_regions)))
}

/// `frame` box-averaged down to `width` x `height` (at most its own size) as
/// an (height, width, 3) RGB array: the area average of the pixels each
/// output pixel covers (gray frames give R = G = B).
#[pyfunction]
pub fn resize_box<'py>(
    py: Python<'py>,
    frame: &Bound<'py, PyAny>,
    width: usize,
    height: usize,
) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    let rgb = py.detach(|| crate::resize::resize_box(&src, width, height))?;
    numpy::PyArray1::from_vec(py, rgb).reshape([height, width, 3])
}

/// Tiny luma thumbnail, the cheap first look at a frame: the mean luma
/// (rounded down) of each block of a `size` x `size` division, a uint8
/// (size, size) array.
#[pyfunction]
#[pyo3(signature = (frame, size=16))]
pub fn thumbnail<'py>(py: Python<'py>, frame: &Bound<'py, PyAny>, size: usize) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let (src, _pixels) = source_of(py, frame, None, None, None, None)?;
    let thumb = py.detach(|| crate::kernels::thumbnail(&src, size))?;
    numpy::PyArray1::from_vec(py, thumb).reshape([size, size])
}
