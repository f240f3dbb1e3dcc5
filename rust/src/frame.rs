//! Frame geometry and the frame reference that travels between stages.

use crate::error::{RingError, Result};

/// Pixel formats a slot can hold. Pixels within a row are contiguous; rows are
/// `stride` bytes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PixelFormat {
    Bgra = 1,
    Rgb = 2,
    Gray = 3,
}

impl PixelFormat {
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Bgra => 4,
            PixelFormat::Rgb => 3,
            PixelFormat::Gray => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Bgra => "BGRA",
            PixelFormat::Rgb => "RGB",
            PixelFormat::Gray => "GRAY",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "BGRA" => Ok(PixelFormat::Bgra),
            "RGB" => Ok(PixelFormat::Rgb),
            "GRAY" => Ok(PixelFormat::Gray),
            other => Err(RingError::FrameGeometry(format!(
                "unknown pixel format {other:?}; use \"BGRA\", \"RGB\" or \"GRAY\""
            ))),
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(PixelFormat::Bgra),
            2 => Some(PixelFormat::Rgb),
            3 => Some(PixelFormat::Gray),
            _ => None,
        }
    }

    /// The format implied by a channel count (numpy shapes (H, W, C) / (H, W)).
    pub fn for_channels(channels: usize) -> Result<Self> {
        match channels {
            4 => Ok(PixelFormat::Bgra),
            3 => Ok(PixelFormat::Rgb),
            1 => Ok(PixelFormat::Gray),
            c => Err(RingError::FrameGeometry(format!(
                "a frame has 1 (GRAY), 3 (RGB) or 4 (BGRA) channels, not {c}"
            ))),
        }
    }
}

/// Row stride of a frame in the ring: rows start on 64-byte boundaries so that
/// SIMD kernels and cache lines line up.
pub fn ring_stride(width: usize, format: PixelFormat) -> usize {
    (width * format.channels()).div_ceil(64) * 64
}

/// A reference to one frame in one ring: the hand-off message's ring fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameMeta {
    pub ring_gen: u64,
    pub slot: u32,
    pub seq: u64,
    pub epoch: u64,
    pub monitor: u32,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub format: PixelFormat,
    pub t_mono_ns: u64,
    pub t_wall_ns: u64,
}

impl FrameMeta {
    pub fn channels(&self) -> usize {
        self.format.channels()
    }

    /// Bytes the frame occupies in its slot (padding of the last row included).
    pub fn nbytes(&self) -> usize {
        self.stride as usize * self.height as usize
    }
}

/// Where the pixels to write come from: rows of `width * channels` contiguous
/// bytes, `stride` bytes apart (any stride at least the row length).
#[derive(Debug, Clone, Copy)]
pub struct SourceFrame {
    pub ptr: *const u8,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub format: PixelFormat,
}

// SAFETY: a SourceFrame is only a description of memory the caller keeps alive
// and unchanged for the duration of the call it is passed to, which only reads it.
unsafe impl Send for SourceFrame {}
// SAFETY: as above; kernels read it from several threads at once.
unsafe impl Sync for SourceFrame {}

impl SourceFrame {
    /// # Safety
    /// `ptr` must point to `height` rows of `width * channels` readable bytes,
    /// `stride` bytes apart, valid for the duration of the write.
    pub unsafe fn new(
        ptr: *const u8,
        width: usize,
        height: usize,
        stride: usize,
        format: PixelFormat,
    ) -> Result<Self> {
        check_dimensions(width, height)?;
        let row = width * format.channels();
        if stride < row {
            return Err(RingError::FrameGeometry(format!(
                "row stride {stride} is shorter than a row of {width} {} pixels ({row} bytes)",
                format.name()
            )));
        }
        Ok(SourceFrame { ptr, width, height, stride, format })
    }

    pub fn from_slice(data: &[u8], width: usize, height: usize, stride: Option<usize>, format: PixelFormat) -> Result<Self> {
        let row = width * format.channels();
        let stride = stride.unwrap_or(row);
        check_dimensions(width, height)?;
        let needed = stride * (height - 1) + row;
        if data.len() < needed {
            return Err(RingError::FrameGeometry(format!(
                "a {width}x{height} {} frame with row stride {stride} needs {needed} bytes, got {}",
                format.name(),
                data.len()
            )));
        }
        // SAFETY: the length check above covers every row read by the write.
        unsafe { SourceFrame::new(data.as_ptr(), width, height, stride, format) }
    }
}

fn check_dimensions(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(RingError::FrameGeometry(format!(
            "a frame needs at least one pixel, got {width}x{height}"
        )));
    }
    if width > u32::MAX as usize / 4 || height > u32::MAX as usize / 4 {
        return Err(RingError::FrameGeometry(format!("frame size {width}x{height} is out of range")));
    }
    Ok(())
}
