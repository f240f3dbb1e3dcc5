//! The GPU backend (cargo feature `gpu`): the change kernels as WGSL compute
//! shaders through wgpu, on its Vulkan, Metal and DX12 backends only (no GL).
//! Results are bit-identical to the CPU kernels (rust/src/changes.rs): integer
//! arithmetic only, the same test per pixel.
//!
//! One device per `Gpu`; each pipeline is compiled once; the buffers are kept
//! and grown when a larger frame needs them. A frame is uploaded from its own
//! memory (a ring slot: no copy in Python or numpy on the way), and only the
//! per-tile results are read back.
//!
//! Apple silicon has unified memory, yet `Queue::write_buffer` still copies
//! into a staging buffer: a zero-copy upload would map the ring's pages as a
//! Metal buffer (`newBufferWithBytesNoCopy`, page-aligned), which wgpu does not
//! offer; not built here, since no machine can verify it.

use std::sync::{Arc, Mutex};

use crate::error::{Result, RingError};
use crate::frame::SourceFrame;

const TILE_CHANGES: &str = include_str!("shaders/tile_changes.wgsl");
/// The shader's workgroup is 16 x 16 pixels.
const GROUP: usize = 16;

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

/// Buffers kept between calls, grown as needed.
#[derive(Default)]
struct Buffers {
    a: Option<wgpu::Buffer>,
    b: Option<wgpu::Buffer>,
    counts: Option<wgpu::Buffer>,
    read: Option<wgpu::Buffer>,
}

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    tile_changes: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    buffers: Mutex<Buffers>,
    info: AdapterInfo,
    /// An error the device reported outside any call's own result (wgpu's
    /// default would panic): taken by the call it happened in.
    failed: Arc<Mutex<Option<String>>>,
}

fn gpu_error(what: impl std::fmt::Display) -> RingError {
    RingError::Gpu(what.to_string())
}

impl Gpu {
    /// A device on the first hardware adapter; `allow_software`: a software
    /// one too, when there is no hardware one (tests, CI).
    pub fn new(allow_software: bool) -> Result<Gpu> {
        let instance = wgpu::Instance::new(&wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12,
            ..Default::default()
        });
        let adapters = instance.enumerate_adapters(wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12);
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
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("tile_changes"),
            source: wgpu::ShaderSource::Wgsl(TILE_CHANGES.into()),
        });
        let tile_changes = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("tile_changes"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: 32,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Gpu { device, queue, tile_changes, params, buffers: Mutex::new(Buffers::default()), info, failed })
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
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

    /// The frame's bytes, from its first pixel to its last, into `buffer`
    /// (writes are whole words: the last partial word goes padded).
    fn upload(&self, buffer: &wgpu::Buffer, f: &SourceFrame) {
        let len = f.stride * (f.height - 1) + f.width * f.format.channels();
        // SAFETY: a SourceFrame's memory holds `len` bytes (checked where it was made) and
        // stays alive and unchanged while the kernel that was given it runs.
        let bytes = unsafe { std::slice::from_raw_parts(f.ptr, len) };
        let whole = len / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(buffer, 0, &bytes[..whole]);
        }
        if whole < len {
            let mut last = [0u8; 4];
            last[..len - whole].copy_from_slice(&bytes[whole..]);
            self.queue.write_buffer(buffer, whole as u64, &last);
        }
    }

    /// `changes::tile_changes` on the GPU: changed pixels per tile, row-major;
    /// (counts, tile rows, tile columns).
    pub fn tile_changes(&self, a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize) -> Result<(Vec<u32>, usize, usize)> {
        crate::changes::check_pair(a, b, threshold, tile)?;
        let (w, h) = (a.width, a.height);
        let (th, tw) = (h.div_ceil(tile), w.div_ceil(tile));
        let n = (th * tw) as u64 * 4;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let mut bufs = self.buffers.lock().map_err(|_| gpu_error("the GPU buffers were poisoned by a panic"))?;
        let len = |f: &SourceFrame| (f.stride * (f.height - 1) + f.width * f.format.channels()) as u64;
        let most = u64::from(self.device.limits().max_storage_buffer_binding_size);
        if len(a).max(len(b)).next_multiple_of(4) > most {
            return Err(gpu_error(format!(
                "a {w}x{h} frame of {} bytes is more than {} can bind ({most} bytes)",
                len(a).max(len(b)),
                self.info.name
            )));
        }
        let ba = self.buffer(&mut bufs.a, len(a), storage, "frame a");
        let bb = self.buffer(&mut bufs.b, len(b), storage, "frame b");
        let counts = self.buffer(&mut bufs.counts, n, storage | wgpu::BufferUsages::COPY_SRC, "counts");
        let read = self.buffer(&mut bufs.read, n, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "read");
        self.upload(&ba, a);
        self.upload(&bb, b);
        let params = [w, h, a.stride, b.stride, a.format.channels(), tile, tw, threshold as usize];
        let params: Vec<u8> = params.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect();
        self.queue.write_buffer(&self.params, 0, &params);
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("tile_changes"),
            layout: &self.tile_changes.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: ba.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: bb.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: wgpu::BindingResource::Buffer(counts.slice(..n).into()) },
                wgpu::BindGroupEntry { binding: 3, resource: self.params.as_entire_binding() },
            ],
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tile_changes") });
        encoder.clear_buffer(&counts, 0, Some(n));
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tile_changes"), timestamp_writes: None });
            pass.set_pipeline(&self.tile_changes);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(w.div_ceil(GROUP) as u32, h.div_ceil(GROUP) as u32, 1);
        }
        encoder.copy_buffer_to_buffer(&counts, 0, &read, 0, n);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        read.slice(..n).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(gpu_error)?;
        let mapped = rx.recv().map_err(gpu_error)?;
        if let Some(e) = self.failed.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(gpu_error(format!("{}: {e}", self.info.name)));
        }
        mapped.map_err(gpu_error)?;
        let out = read.slice(..n).get_mapped_range().chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        read.unmap();
        Ok((out, th, tw))
    }
}
