//! Python face of the Bloom filters. Items are ints (as 8 little-endian bytes),
//! str (UTF-8) or bytes-like objects.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::bloom;

/// Runs `f` on the item's key bytes without copying str or bytes.
fn with_key<T>(item: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> T) -> PyResult<T> {
    // Frame hashes (ints) are dedup's items: test for them first.
    if item.is_instance_of::<PyInt>() {
        let v: u64 = match item.extract::<u64>() {
            Ok(v) => v,
            Err(_) => item
                .extract::<i64>()
                .map(|v| v as u64)
                .map_err(|_| PyOverflowError::new_err("Bloom filter int items must fit in 64 bits"))?,
        };
        return Ok(f(&v.to_le_bytes()));
    }
    if let Ok(s) = item.cast::<PyString>() {
        return Ok(f(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = item.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if let Ok(buf) = PyBuffer::<u8>::get(item) {
        return Ok(f(&buf.to_vec(item.py())?));
    }
    Err(PyTypeError::new_err(format!(
        "Bloom filter items are int, str or bytes-like, not {}",
        item.get_type().name()?
    )))
}

/// A Bloom filter of `size_mb` megabytes with `num_hashes` hash functions (the
/// plan's constructor); `for_items` sizes one for a count and a false-positive
/// rate instead.
#[pyclass(module = "jarvis_rust_core")]
pub struct RustBloomFilter {
    inner: bloom::BloomFilter,
}

#[pymethods]
impl RustBloomFilter {
    #[new]
    fn new(size_mb: f64, num_hashes: u32) -> PyResult<Self> {
        let bits = (size_mb * 1024.0 * 1024.0 * 8.0) as u64;
        Ok(RustBloomFilter { inner: bloom::BloomFilter::new(bits, num_hashes)? })
    }

    /// A filter sized for `items` items at false-positive rate `fp_rate`.
    #[staticmethod]
    fn for_items(items: u64, fp_rate: f64) -> PyResult<Self> {
        Ok(RustBloomFilter { inner: bloom::BloomFilter::for_items(items, fp_rate)? })
    }

    fn add(&mut self, item: &Bound<'_, PyAny>) -> PyResult<()> {
        with_key(item, |k| self.inner.add(k))
    }

    /// False means certainly never added; True means probably added.
    fn contains(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_key(item, |k| self.inner.contains(k))
    }

    fn __contains__(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(item)
    }

    /// Items added (not distinct items).
    fn __len__(&self) -> usize {
        self.inner.items() as usize
    }

    fn clear(&mut self) {
        self.inner.clear()
    }

    #[getter]
    fn size_bits(&self) -> u64 {
        self.inner.bits()
    }

    #[getter]
    fn num_hashes(&self) -> u32 {
        self.inner.hashes()
    }

    /// The false-positive rate the layout predicts after `n` items.
    fn predicted_fp_rate(&self, n: u64) -> f64 {
        self.inner.predicted_fp_rate(n)
    }
}

/// Two generations of `capacity` items at `fp_rate`: memory stays bounded and
/// at least the last `capacity` items are remembered.
#[pyclass(module = "jarvis_rust_core")]
pub struct RotatingBloomFilter {
    inner: bloom::RotatingBloomFilter,
}

#[pymethods]
impl RotatingBloomFilter {
    #[new]
    fn new(capacity: u64, fp_rate: f64) -> PyResult<Self> {
        Ok(RotatingBloomFilter { inner: bloom::RotatingBloomFilter::new(capacity, fp_rate)? })
    }

    fn add(&mut self, item: &Bound<'_, PyAny>) -> PyResult<()> {
        with_key(item, |k| self.inner.add(k))
    }

    fn contains(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        with_key(item, |k| self.inner.contains(k))
    }

    fn __contains__(&self, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(item)
    }

    #[getter]
    fn rotations(&self) -> u64 {
        self.inner.rotations()
    }

    #[getter]
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    #[getter]
    fn size_bits(&self) -> u64 {
        self.inner.bits()
    }
}
