//! The `jarvis_rust_core` extension module.

use pyo3::prelude::*;

mod bloom;
mod errors;
mod frame_ref;
mod frames;
#[cfg(feature = "gpu")]
mod gpu;
mod kernels;
mod parallel;
mod ring;
mod frame_buffer;
mod ready;

/// The directory rings go under when no `dir` is given: `$JARVIS_SHM_DIR`,
/// /dev/shm, ~/Library/Caches/jarvis-pipeline on macOS, else the temporary
/// directory (one rule, the core's, for the stages and `doctor` alike).
#[pyfunction]
fn default_ring_dir() -> std::path::PathBuf {
    crate::shm::base_dir()
}

#[pymodule]
fn jarvis_rust_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("LAYOUT_VERSION", crate::ring::LAYOUT_VERSION)?;
    m.add("MAX_HOLDERS", crate::slot::MAX_HOLDERS)?;
    m.add("COUNTERS", crate::layout::COUNTERS)?;
    m.add("HOPS", crate::layout::HOPS)?;
    m.add("HANDOFF_RECORDS", crate::handoff::RECORDS)?;
    m.add("HANDOFF_RECORD_BYTES", crate::handoff::RECORD_BYTES)?;
    errors::register(m)?;
    m.add_class::<frame_ref::FrameRef>()?;
    m.add_class::<ring::SharedVisionMemory>()?;
    m.add_class::<ring::Reservation>()?;
    m.add_class::<ring::Lease>()?;
    m.add_class::<frame_buffer::FrameRingBuffer>()?;
    m.add_class::<ready::Ready>()?;
    m.add_class::<bloom::BloomFilterBase>()?;
    m.add_class::<bloom::RustBloomFilter>()?;
    m.add_class::<parallel::ParallelVisionPipeline>()?;
    m.add_class::<bloom::RotatingBloomFilter>()?;
    #[cfg(feature = "gpu")]
    m.add_class::<gpu::GpuKernels>()?;
    m.add_function(wrap_pyfunction!(kernels::frame_hash, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::copy_hashed, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::frame_digests, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::band_rows, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::tile_changes, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::tile_groups, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::change_groups, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::change_pass, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::tile_signatures, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::luma_histogram, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::block_features, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::regions, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::thumbnail, m)?)?;
    m.add_function(wrap_pyfunction!(kernels::resize_box, m)?)?;
    m.add_function(wrap_pyfunction!(default_ring_dir, m)?)?;
    Ok(())
}
