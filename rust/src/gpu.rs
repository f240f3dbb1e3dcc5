//! The GPU backend (cargo feature `gpu`): the pixel kernels as WGSL compute
//! shaders through wgpu, on its Vulkan, Metal and DX12 backends only (no GL).
//! Results are bit-identical to the CPU kernels (rust/src/changes.rs,
//! fresh.rs, kernels.rs): integer arithmetic only, the same test per pixel.
//!
//! What runs here is the work over every pixel: the change model's pass
//! (changed-pixel counts against the reference and each changed tile's box),
//! plain counts (alone and for a batch of consecutive frames) and the luma
//! histogram. Tile signatures stay on the CPU: the model hashes only the tiles
//! of small changes (crate::fresh::tile_signatures), a few per frame.
//!
//! One device per `Gpu`; each pipeline is compiled once; the buffers are kept
//! and grown when a larger frame needs them. A frame is uploaded from its own
//! memory (a ring slot: no copy in Python or numpy on the way), and only the
//! per-tile results are read back. A caller that names its frames (`key`:
//! the same key always means the same pixels) has a frame uploaded once: the
//! reference stays on the device while it is the reference, and a frame that
//! becomes the reference is not sent again. Of the shadow only the rows of
//! shadowed tiles go.
//!
//! Apple silicon has unified memory, yet `Queue::write_buffer` still copies
//! into a staging buffer: a zero-copy upload would map the ring's pages as a
//! Metal buffer (`newBufferWithBytesNoCopy`, page-aligned), which wgpu does not
//! offer; not built here, since no machine can verify it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{Result, RingError};
use crate::frame::SourceFrame;

const CHANGE_PASS: &str = include_str!("shaders/change_pass.wgsl");
const LUMA_HISTOGRAM: &str = include_str!("shaders/luma_histogram.wgsl");
/// Pixels of one row an invocation takes (the shaders' RUN).
const RUN: usize = 16;
/// The shaders' workgroup: 64 runs by 4 rows.
const GROUP: (usize, usize) = (64, 4);
/// Frame buffers a batch rotates through: frame i+1 is uploaded while the
/// pair (i-1, i) is computed.
const BATCH_BUFFERS: usize = 3;

/// The adapter a `Gpu` runs on.
#[derive(Clone, Debug)]
pub struct AdapterInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software rasterizer (lavapipe, WARP): the CPU under another name.
    pub software: bool,
}

/// Where the last call's time went, milliseconds: copying the frames for the
/// device (`write_buffer`: into its staging memory, on the calling thread),
/// waiting for the device (transfers, the shader, the results' copy; in a
/// batch, the rest of the call's time: what the copies did not hide) and
/// reading the results back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub upload_ms: f64,
    pub compute_ms: f64,
    pub readback_ms: f64,
    /// Bytes of frames uploaded (0 when every frame was on the device).
    pub uploaded_bytes: u64,
}

/// `change_pass` on the GPU: per tile (row-major) the changed pixels against
/// the reference, whether it changed since the previous frame and the box of
/// its changed pixels (x0, y0, x1, y1; zeros when unchanged). As
/// `crate::fresh::Pass` without signatures.
pub struct GpuPass {
    pub counts: Vec<u32>,
    pub fresh: Vec<bool>,
    pub boxes: Vec<[i32; 4]>,
}

/// A frame buffer on the device and what it holds: the caller's key for its
/// pixels and their geometry (width, height, stride, bytes per pixel).
#[derive(Default)]
struct Resident {
    buffer: Option<wgpu::Buffer>,
    holds: Option<(u64, [usize; 4])>,
}

#[derive(Default)]
struct State {
    frame: Resident,
    reference: Resident,
    shadow: Option<wgpu::Buffer>,
    batch: [Option<wgpu::Buffer>; BATCH_BUFFERS],
    shadowed: Option<wgpu::Buffer>,
    out: Option<wgpu::Buffer>,
    read: Option<wgpu::Buffer>,
    last: Timings,
}

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    change_pass: wgpu::ComputePipeline,
    luma_histogram: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    state: Mutex<State>,
    info: AdapterInfo,
    /// An error the device reported outside any call's own result (wgpu's
    /// default would panic): taken by the call it happened in.
    failed: Arc<Mutex<Option<String>>>,
    /// Why the device was lost, once it was: every later call fails with it.
    lost: Arc<Mutex<Option<String>>>,
}

fn gpu_error(what: impl std::fmt::Display) -> RingError {
    RingError::Gpu(what.to_string())
}

/// Bytes of a frame from its first pixel to its last.
fn span(f: &SourceFrame) -> usize {
    f.stride * (f.height - 1) + f.width * f.format.channels()
}

fn geometry(f: &SourceFrame) -> [usize; 4] {
    [f.width, f.height, f.stride, f.format.channels()]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn words(values: &[usize]) -> Vec<u8> {
    values.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect()
}

fn pipeline(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);

/// One dispatch of `pipeline` over `groups` (x, y) workgroups, recorded into `encoder`.
fn dispatch(encoder: &mut wgpu::CommandEncoder, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, groups: (u32, u32)) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, 1);
}

impl Gpu {
    /// A device on the first hardware adapter; `allow_software`: a software
    /// one too, when there is no hardware one (tests, CI).
    pub fn new(allow_software: bool) -> Result<Gpu> {
        let backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor { backends, ..Default::default() });
        let adapters = instance.enumerate_adapters(backends);
        let software = |a: &wgpu::Adapter| a.get_info().device_type == wgpu::DeviceType::Cpu;
        let found: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = adapters
            .iter()
            .find(|a| !software(a))
            .or_else(|| if allow_software { adapters.iter().find(|a| software(a)) } else { None })
            .ok_or_else(|| {
                gpu_error(if found.is_empty() {
                    "no GPU adapter (Vulkan, Metal or DX12) on this machine".to_string()
                } else {
                    format!("no hardware GPU adapter, only software ones ({}): the CPU does the work better", found.join(", "))
                })
            })?;
        let i = adapter.get_info();
        let info = AdapterInfo {
            name: i.name.clone(),
            backend: format!("{:?}", i.backend).to_lowercase(),
            device_type: format!("{:?}", i.device_type),
            driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
            software: software(adapter),
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("jarvis-rust-core"),
            ..Default::default()
        }))
        .map_err(|e| gpu_error(format!("cannot open {}: {e}", info.name)))?;
        let failed = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&failed);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| format!("{reason:?}: {message}"));
            }
        });
        let change_pass = pipeline(&device, "change_pass", CHANGE_PASS);
        let luma_histogram = pipeline(&device, "luma_histogram", LUMA_HISTOGRAM);
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: 64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu { device, queue, change_pass, luma_histogram, params, state: Mutex::new(State::default()), info, failed, lost })
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// Where the last call's time went.
    pub fn timings(&self) -> Timings {
        self.state.lock().map(|s| s.last).unwrap_or_default()
    }

    /// Destroys the device, as a driver reset or an unplugged GPU would:
    /// every later call fails with GpuError (how the fallback to the CPU is
    /// tested).
    pub fn lose_device(&self) {
        self.device.destroy();
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    fn alive(&self) -> Result<()> {
        match self.lost.lock().ok().and_then(|slot| slot.clone()) {
            Some(why) => Err(gpu_error(format!("{} was lost ({why})", self.info.name))),
            None => Ok(()),
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.alive()?;
        self.state.lock().map_err(|_| gpu_error("the GPU buffers were poisoned by a panic"))
    }

    /// A frame larger than a binding can hold is refused before anything is uploaded.
    fn check_size(&self, f: &SourceFrame) -> Result<()> {
        let most = u64::from(self.device.limits().max_storage_buffer_binding_size);
        let len = span(f) as u64;
        if len.next_multiple_of(4) > most {
            return Err(gpu_error(format!(
                "a {}x{} frame of {len} bytes is more than {} can bind ({most} bytes)",
                f.width, f.height, self.info.name
            )));
        }
        Ok(())
    }

    fn buffer(&self, slot: &mut Option<wgpu::Buffer>, size: u64, usage: wgpu::BufferUsages, label: &str) -> wgpu::Buffer {
        let size = size.max(4).next_multiple_of(4);
        match slot {
            Some(b) if b.size() >= size => b.clone(),
            _ => {
                // Grown by half again (within what can be bound), so a frame a little
                // larger does not reallocate each time.
                let most = u64::from(self.device.limits().max_storage_buffer_binding_size) / 4 * 4;
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: (size + size / 2).next_multiple_of(4).min(most).max(size),
                    usage,
                    mapped_at_creation: false,
                });
                *slot = Some(b.clone());
                b
            }
        }
    }

    /// Bytes `start..end` of the frame's memory into the same place of
    /// `buffer`, widened to whole words (copies are in words; a last partial
    /// word goes padded). Returns the bytes sent.
    fn upload_range(&self, buffer: &wgpu::Buffer, f: &SourceFrame, start: usize, end: usize) -> u64 {
        let len = span(f);
        // SAFETY: a SourceFrame's memory holds `span` bytes (checked where it was made) and
        // stays alive and unchanged while the kernel that was given it runs.
        let bytes = unsafe { std::slice::from_raw_parts(f.ptr, len) };
        let (start, end) = (start / 4 * 4, end.min(len));
        let whole = (end / 4 * 4).max(start);
        if whole > start {
            self.queue.write_buffer(buffer, start as u64, &bytes[start..whole]);
        }
        if whole < end {
            let mut last = [0u8; 4];
            last[..end - whole].copy_from_slice(&bytes[whole..end]);
            self.queue.write_buffer(buffer, whole as u64, &last);
        }
        (end - start) as u64
    }

    /// The buffer holding `f` on the device, uploaded unless it holds `key`'s
    /// pixels already.
    fn resident(&self, slot: &mut Resident, f: &SourceFrame, key: Option<u64>, label: &str, sent: &mut u64) -> wgpu::Buffer {
        let holds = key.map(|k| (k, geometry(f)));
        if let (Some(b), true) = (&slot.buffer, holds.is_some() && slot.holds == holds) {
            return b.clone();
        }
        let b = self.buffer(&mut slot.buffer, span(f) as u64, STORAGE, label);
        *sent += self.upload_range(&b, f, 0, span(f));
        slot.holds = holds;
        b
    }

    /// Runs what `record` encodes, then reads back the first `n` words of
    /// `out` (copied to the read buffer in the same submission).
    fn run(&self, st: &mut State, out: &wgpu::Buffer, n: u64, record: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<Vec<u32>> {
        let read = self.buffer(&mut st.read, n * 4, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "read");
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("jarvis") });
        record(&mut encoder);
        encoder.copy_buffer_to_buffer(out, 0, &read, 0, n * 4);
        let started = Instant::now();
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        read.slice(..n * 4).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(gpu_error)?;
        let mapped = rx.recv().map_err(gpu_error);
        st.last.compute_ms = ms(started);
        self.alive()?;
        if let Some(e) = self.failed.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(gpu_error(format!("{}: {e}", self.info.name)));
        }
        mapped?.map_err(gpu_error)?;
        let started = Instant::now();
        let words = read
            .slice(..n * 4)
            .get_mapped_range()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        read.unmap();
        st.last.readback_ms = ms(started);
        Ok(words)
    }

    /// The change_pass shader's bind group.
    #[allow(clippy::too_many_arguments)]
    fn pass_bindings(&self, frame: &wgpu::Buffer, reference: &wgpu::Buffer, shadow: &wgpu::Buffer, shadowed: &wgpu::Buffer,
                     out: wgpu::BufferBinding<'_>) -> wgpu::BindGroup {
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("change_pass"),
            layout: &self.change_pass.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: frame.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: reference.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: shadow.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: shadowed.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 4, resource: wgpu::BindingResource::Buffer(out) },
                wgpu::BindGroupEntry { binding: 5, resource: self.params.as_entire_binding() },
            ],
        })
    }

    /// The change_pass shader's parameters and workgroups for frames `f`
    /// (`r`, `s`: the strides of the reference and the shadow).
    fn pass_params(&self, f: &SourceFrame, r: usize, s: usize, threshold: u32, tile: usize, boxes: bool) -> (u32, u32) {
        let (th, tw) = (f.height.div_ceil(tile), f.width.div_ceil(tile));
        let runs = tile.div_ceil(RUN);
        let aligned = f.format.channels() == 4 && [f.stride, r, s].iter().all(|x| x % 4 == 0);
        let p = [f.width, f.height, f.stride, r, s, f.format.channels(), tile, tw, threshold as usize, runs, th * tw,
                 usize::from(boxes), usize::from(aligned)];
        self.queue.write_buffer(&self.params, 0, &words(&p));
        ((tw * runs).div_ceil(GROUP.0) as u32, f.height.div_ceil(GROUP.1) as u32)
    }

    /// `crate::fresh::change_pass` without signatures, on the GPU (see
    /// `GpuPass`). `frame_key`, `reference_key`: the caller's names for the
    /// frames' pixels, when it has them (a key is never reused for other
    /// pixels): a frame the device holds already is not sent again.
    #[allow(clippy::too_many_arguments)]
    pub fn change_pass(&self, frame: &SourceFrame, reference: &SourceFrame, shadow: Option<&SourceFrame>, shadowed: &[bool],
                       threshold: u32, tile: usize, frame_key: Option<u64>, reference_key: Option<u64>) -> Result<GpuPass> {
        let (th, tw) = crate::fresh::check_pass(frame, reference, shadow, shadowed, threshold, tile)?;
        self.check_size(frame)?;
        let tiles = th * tw;
        let mut guard = self.state()?;
        let st = &mut *guard;
        st.last = Timings::default();
        let started = Instant::now();
        let mut sent = 0;
        // The frame judged last became the reference: the buffers change roles.
        if reference_key.is_some() && st.frame.holds == reference_key.map(|k| (k, geometry(reference))) {
            std::mem::swap(&mut st.frame, &mut st.reference);
        }
        let fb = self.resident(&mut st.frame, frame, frame_key, "frame", &mut sent);
        let rb = self.resident(&mut st.reference, reference, reference_key, "reference", &mut sent);
        let marks: Vec<u32> = shadowed.iter().map(|&s| u32::from(s)).collect();
        let sb = match shadow {
            Some(s) if marks.contains(&1) => {
                let b = self.buffer(&mut st.shadow, span(s) as u64, STORAGE, "shadow");
                // Only the rows of tile rows with a shadowed tile are read.
                let mut ty = 0;
                while ty < th {
                    if !shadowed[ty * tw..(ty + 1) * tw].contains(&true) {
                        ty += 1;
                        continue;
                    }
                    let first = ty;
                    while ty < th && shadowed[ty * tw..(ty + 1) * tw].contains(&true) {
                        ty += 1;
                    }
                    let end_row = (ty * tile).min(s.height);
                    sent += self.upload_range(&b, s, first * tile * s.stride, (end_row - 1) * s.stride + s.width * s.format.channels());
                }
                b
            }
            _ => rb.clone(), // never read: no tile is shadowed
        };
        let marked = self.buffer(&mut st.shadowed, tiles as u64 * 4, STORAGE, "shadowed");
        self.queue.write_buffer(&marked, 0, &marks.iter().flat_map(|m| m.to_le_bytes()).collect::<Vec<u8>>());
        let n = tiles as u64 * 5;
        let out = self.buffer(&mut st.out, n * 4, STORAGE | wgpu::BufferUsages::COPY_SRC, "out");
        let groups = self.pass_params(frame, reference.stride, shadow.map_or(frame.stride, |s| s.stride), threshold, tile, true);
        let bind = self.pass_bindings(&fb, &rb, &sb, &marked, out.slice(..n * 4).into());
        st.last.upload_ms = ms(started);
        st.last.uploaded_bytes = sent;
        let words = self.run(st, &out, n, |encoder| {
            encoder.clear_buffer(&out, 0, Some(n * 4));
            dispatch(encoder, &self.change_pass, &bind, groups);
        })?;
        let (counts, boxes) = words.split_at(tiles);
        let mut fresh = vec![false; tiles];
        let mut out_boxes = vec![[0i32; 4]; tiles];
        for t in 0..tiles {
            let b = &boxes[4 * t..4 * t + 4];
            // A shadowed tile changed when it differs from the shadow; any other when
            // its count is above zero (then it differs from the reference too).
            fresh[t] = if shadowed[t] { b[2] != 0 } else { counts[t] != 0 };
            if fresh[t] {
                out_boxes[t] = [!b[0] as i32, !b[1] as i32, b[2] as i32, b[3] as i32];
            }
        }
        Ok(GpuPass { counts: counts.to_vec(), fresh, boxes: out_boxes })
    }

    /// `changes::tile_changes` on the GPU: changed pixels per tile, row-major;
    /// (counts, tile rows, tile columns).
    pub fn tile_changes(&self, a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize) -> Result<(Vec<u32>, usize, usize)> {
        let mut counts = self.tile_changes_batch(&[a, b], threshold, tile)?;
        let (th, tw) = (a.height.div_ceil(tile), a.width.div_ceil(tile));
        Ok((counts.pop().unwrap_or_default(), th, tw))
    }

    /// `tile_changes` of each frame against the one before it: frame i+1 is
    /// uploaded while the pair (i-1, i) is computed (one submission per
    /// pair), and every pair's counts come back in one readback.
    pub fn tile_changes_batch(&self, frames: &[&SourceFrame], threshold: u32, tile: usize) -> Result<Vec<Vec<u32>>> {
        let Some(first) = frames.first() else { return Ok(Vec::new()) };
        for pair in frames.windows(2) {
            crate::changes::check_pair(pair[0], pair[1], threshold, tile)?;
        }
        crate::changes::check_pair(first, first, threshold, tile)?;
        self.check_size(first)?;
        let tiles = first.height.div_ceil(tile) * first.width.div_ceil(tile);
        let pairs = frames.len() - 1;
        let mut guard = self.state()?;
        let st = &mut *guard;
        st.last = Timings::default();
        let align = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        let per_pair = (tiles as u64 * 4).next_multiple_of(align);
        let n = (per_pair * pairs as u64).max(4) / 4;
        let out = self.buffer(&mut st.out, n * 4, STORAGE | wgpu::BufferUsages::COPY_SRC, "out");
        let marked = self.buffer(&mut st.shadowed, 4, STORAGE, "shadowed"); // never read: counts only
        let mut upload_ms = 0.0;
        let mut sent = 0;
        let mut held: Vec<wgpu::Buffer> = Vec::with_capacity(frames.len());
        let started = Instant::now();
        for (i, f) in frames.iter().enumerate() {
            let copying = Instant::now();
            let b = self.buffer(&mut st.batch[i % BATCH_BUFFERS], span(f) as u64, STORAGE, "batch frame");
            sent += self.upload_range(&b, f, 0, span(f));
            upload_ms += ms(copying);
            held.push(b);
            if i == 0 {
                continue;
            }
            let (prev, this) = (&held[i - 1], &held[i]);
            let groups = self.pass_params(f, frames[i - 1].stride, f.stride, threshold, tile, false);
            let at = per_pair * (i as u64 - 1);
            let bind = self.pass_bindings(this, prev, this, &marked, wgpu::BufferBinding {
                buffer: &out,
                offset: at,
                size: std::num::NonZeroU64::new(tiles as u64 * 4),
            });
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("pair") });
            encoder.clear_buffer(&out, at, Some(tiles as u64 * 4));
            dispatch(&mut encoder, &self.change_pass, &bind, groups);
            // Submitted now: the device starts on this pair while the next frame is copied.
            self.queue.submit([encoder.finish()]);
        }
        let words = self.run(st, &out, n, |_| {})?;
        // The device's time not hidden behind the copies: all but copying and reading back.
        st.last.compute_ms = ms(started) - upload_ms - st.last.readback_ms;
        st.last.upload_ms = upload_ms;
        st.last.uploaded_bytes = sent;
        Ok((0..pairs).map(|i| {
            let at = (per_pair / 4) as usize * i;
            words[at..at + tiles].to_vec()
        }).collect())
    }

    /// `kernels::luma_histogram` on the GPU: 256 counts.
    pub fn luma_histogram(&self, f: &SourceFrame) -> Result<Vec<u64>> {
        self.check_size(f)?;
        let mut guard = self.state()?;
        let st = &mut *guard;
        st.last = Timings::default();
        let started = Instant::now();
        let fb = self.resident(&mut st.frame, f, None, "frame", &mut 0);
        let out = self.buffer(&mut st.out, 256 * 4, STORAGE | wgpu::BufferUsages::COPY_SRC, "out");
        let runs = f.width.div_ceil(RUN);
        self.queue.write_buffer(&self.params, 0, &words(&[f.width, f.height, f.stride, f.format.channels(), runs]));
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("luma_histogram"),
            layout: &self.luma_histogram.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: fb.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::Buffer(out.slice(..256 * 4).into()) },
                wgpu::BindGroupEntry { binding: 2, resource: self.params.as_entire_binding() },
            ],
        });
        st.last.upload_ms = ms(started);
        st.last.uploaded_bytes = span(f) as u64;
        let groups = (runs.div_ceil(GROUP.0) as u32, f.height.div_ceil(GROUP.1) as u32);
        let words = self.run(st, &out, 256, |encoder| {
            encoder.clear_buffer(&out, 0, Some(256 * 4));
            dispatch(encoder, &self.luma_histogram, &bind, groups);
        })?;
        Ok(words.into_iter().map(u64::from).collect())
    }
}
