//! ParallelVisionPipeline (the plan's name): features and changed regions of a
//! batch of frames, consecutive frames diffed, spread over a thread pool with
//! the GIL released; given a GPU, `process_frame_batch` (the plan's
//! MetalAccelerator.process_frame_batch) diffs on it while the pool computes
//! the features.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;

use super::frames::sources_of;
use super::gpu::GpuKernels;
use super::ready::Ready;
use crate::error::RingError;
use crate::frame::SourceFrame;
use crate::{changes, kernels};

type Analysed = (Vec<f64>, Option<(f64, Vec<[usize; 4]>)>);

#[pyclass(module = "jarvis_rust_core")]
pub struct ParallelVisionPipeline {
    pool: rayon::ThreadPool,
    threshold: u32,
    tile: usize,
    grid: usize,
    max_regions: usize,
    gpu: Option<Py<GpuKernels>>,
}

fn analyse(frames: &[SourceFrame], i: usize, t: u32, tile: usize, grid: usize, max_regions: usize) -> crate::error::Result<Analysed> {
    let features = kernels::block_features(&frames[i], grid)?;
    if i == 0 {
        return Ok((features, None));
    }
    let (a, b) = (&frames[i - 1], &frames[i]);
    if (a.width, a.height, a.format) != (b.width, b.height, b.format) {
        return Ok((features, Some((1.0, vec![[0, 0, b.width, b.height]]))));
    }
    let (counts, th, tw) = changes::tile_changes(a, b, t, tile, true)?;
    let ratio = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / (b.width * b.height) as f64;
    let changed: Vec<bool> = counts.iter().map(|&c| c > 0).collect();
    Ok((features, Some((ratio, crate::regions::regions(&changed, th, tw, tile, b.width, b.height, max_regions)))))
}

/// `analyse` of every frame, the features from `features` and the counts of
/// each frame against the one before from `counts` (made elsewhere: the GPU).
fn assemble(frames: &[SourceFrame], features: Vec<Vec<f64>>, counts: Vec<Vec<u32>>, tile: usize, max_regions: usize) -> Vec<Analysed> {
    let mut out = Vec::with_capacity(frames.len());
    for (i, f) in features.into_iter().enumerate() {
        if i == 0 {
            out.push((f, None));
            continue;
        }
        let b = &frames[i];
        let (th, tw) = (b.height.div_ceil(tile), b.width.div_ceil(tile));
        let c = &counts[i - 1];
        let ratio = c.iter().map(|&n| f64::from(n)).sum::<f64>() / (b.width * b.height) as f64;
        let changed: Vec<bool> = c.iter().map(|&n| n > 0).collect();
        out.push((f, Some((ratio, crate::regions::regions(&changed, th, tw, tile, b.width, b.height, max_regions)))));
    }
    out
}

fn to_dicts<'py>(py: Python<'py>, results: Vec<Analysed>) -> PyResult<Vec<Bound<'py, PyDict>>> {
    results
        .into_iter()
        .map(|(features, diff)| {
            let d = PyDict::new(py);
            d.set_item("features", PyArray1::from_vec(py, features))?;
            match diff {
                Some((ratio, regions)) => {
                    d.set_item("changed_ratio", ratio)?;
                    d.set_item("regions", regions.into_iter().map(|r| r.to_vec()).collect::<Vec<_>>())?;
                }
                None => {
                    d.set_item("changed_ratio", py.None())?;
                    d.set_item("regions", py.None())?;
                }
            }
            Ok(d)
        })
        .collect()
}

#[pymethods]
impl ParallelVisionPipeline {
    #[new]
    #[pyo3(signature = (num_threads=0, *, threshold=24, tile=32, grid=8, max_regions=16, gpu=None))]
    fn new(num_threads: usize, threshold: u32, tile: usize, grid: usize, max_regions: usize,
           gpu: Option<Py<GpuKernels>>) -> PyResult<Self> {
        if threshold > 255 || tile == 0 || grid == 0 || max_regions == 0 {
            return Err(RingError::Config("threshold 0..255, tile, grid and max_regions positive".into()).into());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .build()
            .map_err(|e| RingError::Config(format!("cannot start {num_threads} threads: {e}")))?;
        Ok(ParallelVisionPipeline { pool, threshold, tile, grid, max_regions, gpu })
    }

    /// For each frame: {"features": [mean, std] per block of the luma,
    /// "changed_ratio" and "regions" against the frame before (None for the
    /// first)}.
    fn process_frames_parallel<'py>(&self, py: Python<'py>, frames: Vec<Bound<'py, PyAny>>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let (sources, owners) = sources_of(py, &frames)?;
        let (t, tile, grid, max_regions) = (self.threshold, self.tile, self.grid, self.max_regions);
        let results: crate::error::Result<Vec<Analysed>> = py.detach(|| {
            self.pool.install(|| (0..sources.len()).into_par_iter().map(|i| analyse(&sources, i, t, tile, grid, max_regions)).collect())
        });
        drop(owners);
        to_dicts(py, results?)
    }

    /// `process_frames_parallel` with the changes on the GPU the pipeline
    /// was made with (`gpu=GpuKernels(...)`): the frames go to the device one
    /// after another, each while the pair before it is computed, and the pool
    /// computes the features meanwhile; the same answers. Without a GPU, or
    /// when the frames are not all of one geometry, `process_frames_parallel`.
    fn process_frame_batch<'py>(&self, py: Python<'py>, frames: Vec<Bound<'py, PyAny>>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let Some(gpu) = &self.gpu else { return self.process_frames_parallel(py, frames) };
        let (sources, owners) = sources_of(py, &frames)?;
        let geometry = |f: &SourceFrame| (f.width, f.height, f.format);
        if sources.windows(2).any(|p| geometry(&p[0]) != geometry(&p[1])) {
            drop(owners);
            return self.process_frames_parallel(py, frames);
        }
        let (t, tile, grid, max_regions) = (self.threshold, self.tile, self.grid, self.max_regions);
        let gpu = &gpu.get().gpu;
        let results: crate::error::Result<Vec<Analysed>> = py.detach(|| {
            let refs: Vec<&SourceFrame> = sources.iter().collect();
            let (features, counts) = self.pool.install(|| {
                rayon::join(
                    || sources.par_iter().map(|f| kernels::block_features(f, grid)).collect::<crate::error::Result<Vec<_>>>(),
                    || gpu.tile_changes_batch(&refs, t, tile),
                )
            });
            Ok(assemble(&sources, features?, counts?, tile, max_regions))
        });
        drop(owners);
        to_dicts(py, results?)
    }

    /// `process_frames_parallel`, as an awaitable (the work happens at the call).
    fn process_frames_async(&self, py: Python<'_>, frames: Vec<Bound<'_, PyAny>>) -> PyResult<Ready> {
        let out = self.process_frames_parallel(py, frames)?;
        Ok(Ready::new(pyo3::types::PyList::new(py, out)?.into_any().unbind()))
    }
}
