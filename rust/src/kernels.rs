//! Vision kernels over frames as they lie in the ring: rows contiguous, any
//! row stride, BGRA / RGB / GRAY. Each has a plain numpy reference in
//! procs/kernels.py that the tests hold it to, exactly.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::error::{RingError, Result};
use crate::frame::{PixelFormat, SourceFrame};

pub(crate) fn row(f: &SourceFrame, y: usize) -> &[u8] {
    // SAFETY: SourceFrame's contract: `height` rows of `width * channels`
    // readable bytes, `stride` apart, alive while the kernel runs.
    unsafe { std::slice::from_raw_parts(f.ptr.add(y * f.stride), f.width * f.format.channels()) }
}

/// Exact 64-bit hash of the pixels (xxh3-64 of the rows back to back): row
/// padding never changes it.
pub fn frame_hash(f: &SourceFrame) -> u64 {
    let len = f.width * f.format.channels();
    if f.stride == len {
        // SAFETY: contiguous rows: the whole frame is one readable range.
        xxh3_64(unsafe { std::slice::from_raw_parts(f.ptr, len * f.height) })
    } else {
        let mut h = Xxh3::new();
        for y in 0..f.height {
            h.update(row(f, y));
        }
        h.digest()
    }
}

/// Bands of at most this many rows a frame is hashed in (capture sends
/// their digests with each frame, and a hand-off record has room for this
/// many; see `band_rows`).
pub const MAX_BANDS: usize = 36;
/// Rows of a band at the least: a 1080p frame's bands are its 32-pixel tile
/// rows (analysis.tile's default), so a tile row maps to one band.
pub const MIN_BAND_ROWS: usize = 32;

/// Rows per band of a frame `height` rows tall: `MIN_BAND_ROWS`, more where
/// that would make over `MAX_BANDS` bands.
pub fn band_rows(height: usize) -> usize {
    MIN_BAND_ROWS.max(height.div_ceil(MAX_BANDS))
}

/// The frame's digests: per band of `band_rows` rows the xxh3-64 of its rows
/// back to back, and the frame's own, the xxh3-64 of those (little-endian,
/// in order). Row padding never changes them. A band equal in two frames has
/// one digest; analysis compares only the tile rows whose bands differ from
/// its reference's.
pub fn frame_digests(f: &SourceFrame) -> (u64, Vec<u64>) {
    let mut bands = BandDigests::new(f.height);
    for y in 0..f.height {
        bands.row(row(f, y));
    }
    bands.finish()
}

/// Band digests built row by row (`frame_digests`).
struct BandDigests {
    per_band: usize,
    rows: usize,
    h: Xxh3,
    digests: Vec<u64>,
}

impl BandDigests {
    fn new(height: usize) -> Self {
        BandDigests { per_band: band_rows(height), rows: 0, h: Xxh3::new(), digests: Vec::with_capacity(MAX_BANDS) }
    }

    fn row(&mut self, pixels: &[u8]) {
        self.h.update(pixels);
        self.rows += 1;
        if self.rows == self.per_band {
            self.digests.push(self.h.digest());
            self.h.reset();
            self.rows = 0;
        }
    }

    fn finish(mut self) -> (u64, Vec<u64>) {
        if self.rows > 0 {
            self.digests.push(self.h.digest());
        }
        let bytes: Vec<u8> = self.digests.iter().flat_map(|d| d.to_le_bytes()).collect();
        (xxh3_64(&bytes), self.digests)
    }
}

/// Copies `src` into `dst` (the same geometry, rows `dst_stride` bytes
/// apart) and returns `frame_digests(src)`. Each row is hashed straight after
/// its copy, from the cache, so the pixels come from memory once: capture
/// writes a frame into its ring slot and hashes it for dedup and analysis
/// (copy, then hash from memory, took about twice as long at 1080p).
pub fn copy_hashed(src: &SourceFrame, dst: &mut [u8], dst_stride: usize) -> Result<(u64, Vec<u64>)> {
    let len = src.width * src.format.channels();
    let need = if src.height == 0 { 0 } else { dst_stride * (src.height - 1) + len };
    if dst_stride < len || dst.len() < need {
        return Err(RingError::FrameGeometry(format!(
            "the copy needs {} rows of {len} bytes, {dst_stride} apart; the destination has {} bytes",
            src.height,
            dst.len()
        )));
    }
    let src_span = src.ptr as usize..src.ptr as usize + if src.height == 0 { 0 } else { src.stride * (src.height - 1) + len };
    let dst_span = dst.as_ptr() as usize..dst.as_ptr() as usize + need;
    if src_span.start < dst_span.end && dst_span.start < src_span.end {
        return Err(RingError::FrameGeometry("the destination overlaps the source".into()));
    }
    let mut bands = BandDigests::new(src.height);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        for y in 0..src.height {
            let from = row(src, y);
            bands.row(from);
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { copy_streaming(from, &mut dst[y * dst_stride..y * dst_stride + len]) };
        }
        // SAFETY: SSE2 is part of x86-64. Streaming stores are weakly ordered: the fence
        // orders them before whatever publishes the slot afterwards (a release store).
        unsafe { std::arch::x86_64::_mm_sfence() };
        return Ok(bands.finish());
    }
    for y in 0..src.height {
        let out = &mut dst[y * dst_stride..y * dst_stride + len];
        out.copy_from_slice(row(src, y));
        bands.row(out);
    }
    Ok(bands.finish())
}

/// `dst.copy_from_slice(src)` with streaming (non-temporal) stores where the
/// destination is 32-byte aligned: the destination's lines are not read
/// first, which a plain store would do (a third of the copy's memory traffic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn copy_streaming(src: &[u8], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let head = dst.as_ptr().align_offset(32).min(n);
    dst[..head].copy_from_slice(&src[..head]);
    let mut i = head;
    // SAFETY (the loop): 32 bytes at i are within both slices (i + 32 <= n), and dst + i
    // is 32-byte aligned (head aligned it, steps keep it).
    while i + 32 <= n {
        let v = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
        _mm256_stream_si256(dst.as_mut_ptr().add(i) as *mut __m256i, v);
        i += 32;
    }
    dst[i..n].copy_from_slice(&src[i..n]);
}

pub(crate) fn same_geometry(a: &SourceFrame, b: &SourceFrame) -> Result<()> {
    if (a.width, a.height, a.format) != (b.width, b.height, b.format) {
        return Err(RingError::FrameGeometry(format!(
            "frames of different geometry cannot be compared: {}x{} {} vs {}x{} {}",
            a.width,
            a.height,
            a.format.name(),
            b.width,
            b.height,
            b.format.name()
        )));
    }
    Ok(())
}

/// Integer luma of one pixel: (77 R + 150 G + 29 B) >> 8 (gray: the value).
#[inline(always)]
fn luma_bgra(p: &[u8]) -> u32 {
    (77 * u32::from(p[2]) + 150 * u32::from(p[1]) + 29 * u32::from(p[0])) >> 8
}

#[inline(always)]
fn luma_rgb(p: &[u8]) -> u32 {
    (77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8
}

/// The luma of a row's pixels into `out` (as long as the row is wide).
#[inline(always)]
fn luma_row(r: &[u8], format: PixelFormat, out: &mut [u8]) {
    match format {
        PixelFormat::Gray => out.copy_from_slice(r),
        PixelFormat::Bgra => out.iter_mut().zip(r.chunks_exact(4)).for_each(|(o, p)| *o = luma_bgra(p) as u8),
        PixelFormat::Rgb => out.iter_mut().zip(r.chunks_exact(3)).for_each(|(o, p)| *o = luma_rgb(p) as u8),
    }
}

#[inline(always)]
fn luma_histogram_generic(f: &SourceFrame) -> Vec<u64> {
    // Four interleaved sub-histograms: runs of equal values (flat screen
    // areas) would otherwise wait on the previous increment of the same bin.
    let mut hist = [[0u32; 256]; 4];
    let mut total = vec![0u64; 256];
    let mut luma = vec![0u8; f.width];
    let mut counted = 0usize;
    for y in 0..f.height {
        luma_row(row(f, y), f.format, &mut luma);
        let mut quads = luma.chunks_exact(4);
        for q in &mut quads {
            hist[0][usize::from(q[0])] += 1;
            hist[1][usize::from(q[1])] += 1;
            hist[2][usize::from(q[2])] += 1;
            hist[3][usize::from(q[3])] += 1;
        }
        for &v in quads.remainder() {
            hist[0][usize::from(v)] += 1;
        }
        counted += f.width;
        // Fold into u64 before a u32 bin could overflow.
        if counted > (u32::MAX as usize) - f.width || y + 1 == f.height {
            for h in &mut hist {
                for (t, c) in total.iter_mut().zip(h.iter_mut()) {
                    *t += u64::from(*c);
                    *c = 0;
                }
            }
            counted = 0;
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn luma_histogram_avx2(f: &SourceFrame) -> Vec<u64> {
    luma_histogram_generic(f)
}

/// Adds each pixel's luma to its column's sum, and with `SQUARES` its square
/// to the column's sum of squares.
#[inline(always)]
fn add_luma<const SQUARES: bool>(r: &[u8], format: PixelFormat, cols: &mut [u32], sq: &mut [u32]) {
    #[inline(always)]
    fn add<const SQUARES: bool>(c: &mut u32, q: &mut u32, l: u32) {
        *c += l;
        if SQUARES {
            *q += l * l;
        }
    }
    let (cols, sq) = (cols.iter_mut(), sq.iter_mut());
    match format {
        PixelFormat::Gray => cols.zip(sq).zip(r).for_each(|((c, q), &v)| add::<SQUARES>(c, q, u32::from(v))),
        PixelFormat::Bgra => cols.zip(sq).zip(r.chunks_exact(4)).for_each(|((c, q), p)| add::<SQUARES>(c, q, luma_bgra(p))),
        PixelFormat::Rgb => cols.zip(sq).zip(r.chunks_exact(3)).for_each(|((c, q), p)| add::<SQUARES>(c, q, luma_rgb(p))),
    }
}

#[inline(always)]
fn column_sums_generic<const SQUARES: bool>(f: &SourceFrame, y0: usize, y1: usize, cols: &mut [u32], sq: &mut [u32]) {
    cols.fill(0);
    sq.fill(0);
    for y in y0..y1 {
        add_luma::<SQUARES>(row(f, y), f.format, cols, sq);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn column_sums_avx2<const SQUARES: bool>(f: &SourceFrame, y0: usize, y1: usize, cols: &mut [u32], sq: &mut [u32]) {
    column_sums_generic::<SQUARES>(f, y0, y1, cols, sq)
}

/// Per-column luma sums (and sums of squares) of rows `y0..y1`.
fn column_sums<const SQUARES: bool>(f: &SourceFrame, y0: usize, y1: usize, cols: &mut [u32], sq: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { column_sums_avx2::<SQUARES>(f, y0, y1, cols, sq) };
    }
    column_sums_generic::<SQUARES>(f, y0, y1, cols, sq)
}

/// Rows per pass of column sums: 65536 * 255^2 still fits in a u32.
const BAND_ROWS: usize = 65536;

/// (sum of luma, sum of squares (with `SQUARES`), pixels) of each block of a
/// `grid` x `grid` division (block k spans rows k*H/grid .. (k+1)*H/grid,
/// likewise columns), row-major. Column sums build up row by row (a loop the
/// compiler vectorises; AVX2 where the CPU has it) and are folded into blocks
/// once per band of rows.
fn block_sums<const SQUARES: bool>(f: &SourceFrame, grid: usize) -> Vec<(u64, u64, u64)> {
    let (w, h) = (f.width, f.height);
    let mut sums = vec![(0u64, 0u64, 0u64); grid * grid];
    let (mut cols, mut sq) = (vec![0u32; w], vec![0u32; w]);
    for by in 0..grid {
        let (y0, y1) = (by * h / grid, (by + 1) * h / grid);
        let out = &mut sums[by * grid..(by + 1) * grid];
        for band in (y0..y1).step_by(BAND_ROWS) {
            column_sums::<SQUARES>(f, band, (band + BAND_ROWS).min(y1), &mut cols, &mut sq);
            for (bx, s) in out.iter_mut().enumerate() {
                let (x0, x1) = (bx * w / grid, (bx + 1) * w / grid);
                s.0 += cols[x0..x1].iter().map(|&c| u64::from(c)).sum::<u64>();
                if SQUARES {
                    s.1 += sq[x0..x1].iter().map(|&c| u64::from(c)).sum::<u64>();
                }
            }
        }
        for (bx, s) in out.iter_mut().enumerate() {
            s.2 = ((y1 - y0) * ((bx + 1) * w / grid - bx * w / grid)) as u64;
        }
    }
    sums
}

/// Histogram of the luma values (256 bins).
pub fn luma_histogram(f: &SourceFrame) -> Vec<u64> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { luma_histogram_avx2(f) };
    }
    luma_histogram_generic(f)
}

/// Mean and standard deviation of the luma in each of `grid` x `grid` blocks
/// (block k spans rows k*H/grid .. (k+1)*H/grid, likewise columns), as one
/// vector [mean, std, mean, std, ...] in row-major block order; an empty block
/// (frames smaller than the grid) gives 0, 0.
pub fn block_features(f: &SourceFrame, grid: usize) -> Result<Vec<f64>> {
    if grid == 0 || grid > 256 {
        return Err(RingError::Config(format!("grid must be 1..256, not {grid}")));
    }
    let sums = block_sums::<true>(f, grid);
    Ok(sums
        .into_iter()
        .flat_map(|(s, ss, n)| {
            if n == 0 {
                return [0.0, 0.0];
            }
            let mean = s as f64 / n as f64;
            let var = (ss as f64 / n as f64 - mean * mean).max(0.0);
            [mean, var.sqrt()]
        })
        .collect())
}

/// Tiny luma thumbnail for a cheap first look: the mean luma (rounded down)
/// of each of `size` x `size` blocks (block k spans rows k*H/size ..
/// (k+1)*H/size, likewise columns), row-major; an empty block (frames smaller
/// than the thumbnail) gives 0.
pub fn thumbnail(f: &SourceFrame, size: usize) -> Result<Vec<u8>> {
    if size == 0 || size > 256 {
        return Err(RingError::Config(format!("thumbnail size must be 1..256, not {size}")));
    }
    Ok(block_sums::<false>(f, size).into_iter().map(|(s, _, n)| s.checked_div(n).unwrap_or(0) as u8).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], w: usize, h: usize, stride: usize, f: PixelFormat) -> SourceFrame {
        SourceFrame::from_slice(data, w, h, Some(stride), f).unwrap()
    }

    #[test]
    fn padding_never_changes_the_hash() {
        let packed: Vec<u8> = (0..3 * 5 * 4).map(|i| i as u8).collect();
        let mut padded = vec![0xee; 3 * 64];
        for y in 0..3 {
            padded[y * 64..y * 64 + 20].copy_from_slice(&packed[y * 20..y * 20 + 20]);
        }
        let a = frame(&packed, 5, 3, 20, PixelFormat::Bgra);
        let b = frame(&padded, 5, 3, 64, PixelFormat::Bgra);
        assert_eq!(frame_hash(&a), frame_hash(&b));
        assert_eq!(frame_hash(&a), xxh3_64(&packed));
    }

    #[test]
    fn band_digests_hash_each_band_and_the_frame_hashes_them() {
        let (w, h) = (3, 100); // bands of 32 rows: 32, 32, 32 and 4
        let packed: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let mut padded = vec![0xee; h * 16];
        for y in 0..h {
            padded[y * 16..y * 16 + w * 4].copy_from_slice(&packed[y * w * 4..(y + 1) * w * 4]);
        }
        let (digest, bands) = frame_digests(&frame(&packed, w, h, w * 4, PixelFormat::Bgra));
        let want: Vec<u64> = packed.chunks(32 * w * 4).map(xxh3_64).collect();
        assert_eq!(bands, want);
        assert_eq!(want.len(), 4);
        let bytes: Vec<u8> = want.iter().flat_map(|d| d.to_le_bytes()).collect();
        assert_eq!(digest, xxh3_64(&bytes));
        assert_eq!(frame_digests(&frame(&padded, w, h, 16, PixelFormat::Bgra)), (digest, bands.clone()));
        let mut dst = vec![0u8; h * 20];
        assert_eq!(copy_hashed(&frame(&padded, w, h, 16, PixelFormat::Bgra), &mut dst, 20).unwrap(), (digest, bands));
        assert!((0..h).all(|y| dst[y * 20..y * 20 + w * 4] == packed[y * w * 4..(y + 1) * w * 4]));
    }

    #[test]
    fn bands_are_tile_rows_at_1080p_and_never_too_many() {
        assert_eq!(band_rows(1080), 32);
        assert_eq!(band_rows(2160), 60);
        for h in 1..=16384usize {
            assert!(h.div_ceil(band_rows(h)) <= MAX_BANDS && band_rows(h) >= MIN_BAND_ROWS, "height {h}");
        }
    }
}
