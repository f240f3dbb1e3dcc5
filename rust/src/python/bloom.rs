//! Python face of the Bloom filters. Items are ints (as 8 little-endian bytes),
//! str (UTF-8) or bytes-like objects. `add`, `contains` and `in` live once, on
//! the base class both filters extend.

use std::ffi::c_ulong;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::bloom::{self, Key};

const TOO_BIG: &str = "Bloom filter int items must fit in 64 bits";

/// An int item's 64 bits: ints from -2^63 to 2^64 - 1 (frame hashes are
/// unsigned, other ints may be negative). For ints of more than one 30-bit
/// digit, CPython's PyLong_AsUnsignedLongLong goes through a byte-array
/// conversion that costs a third of a lookup; the conversions used here loop
/// over the digits instead. Non-negative ints, the common case, take one call
/// where unsigned long has 64 bits.
fn int_bits(item: &Bound<'_, PyAny>) -> PyResult<u64> {
    let (py, p) = (item.py(), item.as_ptr());
    if std::mem::size_of::<c_ulong>() == 8 {
        // SAFETY: `p` is a live int (the caller checked) and we hold the GIL.
        let v = unsafe { ffi::PyLong_AsUnsignedLong(p) };
        if v != c_ulong::MAX || PyErr::take(py).is_none() {
            return Ok(v as u64);
        }
        // negative, or 2^64 and more: tried below
    }
    let mut overflow = 0;
    // SAFETY: as above.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(p, &mut overflow) };
    if overflow == 0 && (v != -1 || PyErr::take(py).is_none()) {
        return Ok(v as u64);
    }
    item.extract::<u64>().map_err(|_| PyOverflowError::new_err(TOO_BIG))
}

/// The item's key, without copying str or bytes.
fn key_of(item: &Bound<'_, PyAny>) -> PyResult<Key> {
    // Frame hashes (ints) are dedup's items: test for them first.
    if item.is_instance_of::<PyInt>() {
        return Ok(Key::of(&int_bits(item)?.to_le_bytes()));
    }
    if let Ok(s) = item.cast::<PyString>() {
        return Ok(Key::of(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = item.cast::<PyBytes>() {
        return Ok(Key::of(b.as_bytes()));
    }
    if let Ok(buf) = PyBuffer::<u8>::get(item) {
        return Ok(Key::of(&buf.to_vec(item.py())?));
    }
    Err(PyTypeError::new_err(format!(
        "Bloom filter items are int, str or bytes-like, not {}",
        item.get_type().name()?
    )))
}

enum Filter {
    Plain(bloom::BloomFilter),
    Rotating(bloom::RotatingBloomFilter),
}

/// What both Bloom filters share: adding items and asking for them.
#[pyclass(module = "jarvis_rust_core", subclass)]
pub struct BloomFilterBase {
    inner: Filter,
}

#[pymethods]
impl BloomFilterBase {
    fn add(&mut self, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let key = key_of(item)?;
        match &mut self.inner {
            Filter::Plain(f) => f.add(key),
            Filter::Rotating(f) => f.add(key),
        }
        Ok(())
    }

    /// False means certainly never added; True means probably added.
    fn contains(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = key_of(item)?;
        Ok(match &self.inner {
            Filter::Plain(f) => f.contains(key),
            Filter::Rotating(f) => f.contains(key),
        })
    }

    fn __contains__(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(item)
    }
}

impl BloomFilterBase {
    fn plain(&self) -> &bloom::BloomFilter {
        match &self.inner {
            Filter::Plain(f) => f,
            Filter::Rotating(_) => unreachable!("a RustBloomFilter always holds a plain filter"),
        }
    }

    fn rotating(&self) -> &bloom::RotatingBloomFilter {
        match &self.inner {
            Filter::Rotating(f) => f,
            Filter::Plain(_) => unreachable!("a RotatingBloomFilter always holds a rotating filter"),
        }
    }
}

/// A Bloom filter of `size_mb` megabytes with `num_hashes` hash functions (the
/// plan's constructor); `for_items` sizes one for a count and a false-positive
/// rate instead.
#[pyclass(module = "jarvis_rust_core", extends = BloomFilterBase)]
pub struct RustBloomFilter;

fn plain(f: bloom::BloomFilter) -> PyClassInitializer<RustBloomFilter> {
    PyClassInitializer::from(BloomFilterBase { inner: Filter::Plain(f) }).add_subclass(RustBloomFilter)
}

#[pymethods]
impl RustBloomFilter {
    #[new]
    fn new(size_mb: f64, num_hashes: u32) -> PyResult<PyClassInitializer<Self>> {
        let bits = (size_mb * 1024.0 * 1024.0 * 8.0) as u64;
        Ok(plain(bloom::BloomFilter::new(bits, num_hashes)?))
    }

    /// A filter sized for `items` items at false-positive rate `fp_rate`.
    #[staticmethod]
    fn for_items(py: Python<'_>, items: u64, fp_rate: f64) -> PyResult<Py<Self>> {
        Py::new(py, plain(bloom::BloomFilter::for_items(items, fp_rate)?))
    }

    /// Items added (not distinct items).
    fn __len__(slf: PyRef<'_, Self>) -> usize {
        slf.as_super().plain().items() as usize
    }

    fn clear(mut slf: PyRefMut<'_, Self>) {
        if let Filter::Plain(f) = &mut slf.as_super().inner {
            f.clear()
        }
    }

    #[getter]
    fn size_bits(slf: PyRef<'_, Self>) -> u64 {
        slf.as_super().plain().bits()
    }

    #[getter]
    fn num_hashes(slf: PyRef<'_, Self>) -> u32 {
        slf.as_super().plain().hashes()
    }

    /// The false-positive rate the layout predicts after `n` items.
    fn predicted_fp_rate(slf: PyRef<'_, Self>, n: u64) -> f64 {
        slf.as_super().plain().predicted_fp_rate(n)
    }
}

/// Two generations of `capacity` items at `fp_rate`: memory stays bounded and
/// at least the last `capacity` items are remembered.
#[pyclass(module = "jarvis_rust_core", extends = BloomFilterBase)]
pub struct RotatingBloomFilter;

#[pymethods]
impl RotatingBloomFilter {
    #[new]
    fn new(capacity: u64, fp_rate: f64) -> PyResult<PyClassInitializer<Self>> {
        let f = bloom::RotatingBloomFilter::new(capacity, fp_rate)?;
        Ok(PyClassInitializer::from(BloomFilterBase { inner: Filter::Rotating(f) }).add_subclass(RotatingBloomFilter))
    }

    #[getter]
    fn rotations(slf: PyRef<'_, Self>) -> u64 {
        slf.as_super().rotating().rotations()
    }

    #[getter]
    fn capacity(slf: PyRef<'_, Self>) -> u64 {
        slf.as_super().rotating().capacity()
    }

    #[getter]
    fn size_bits(slf: PyRef<'_, Self>) -> u64 {
        slf.as_super().rotating().bits()
    }
}
