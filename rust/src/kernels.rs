//! Vision kernels over frames as they lie in the ring: rows contiguous, any
//! row stride, BGRA / RGB / GRAY. Each has a plain numpy reference in
//! procs/kernels.py that the tests hold it to, exactly.

use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::error::{RingError, Result};
use crate::frame::{PixelFormat, SourceFrame};

/// Frames at least this large are split across threads.
const PARALLEL_PIXELS: usize = 256 * 1024;

fn row(f: &SourceFrame, y: usize) -> &[u8] {
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

fn same_geometry(a: &SourceFrame, b: &SourceFrame) -> Result<()> {
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

/// Changed pixels in `a[x0..x1]` vs `b`: colour `dr^2+dg^2+db^2 > t^2`
/// (alpha ignored), gray `|d| > t`. Integer math: CPU, numpy and GPU agree.
fn changed_in(a: &[u8], b: &[u8], format: PixelFormat, t: u32) -> u32 {
    let t2 = (t * t) as i32;
    match format {
        PixelFormat::Gray => a.iter().zip(b).map(|(&p, &q)| u32::from((i32::from(p) - i32::from(q)).abs() > t as i32)).sum(),
        PixelFormat::Bgra | PixelFormat::Rgb => {
            let c = format.channels();
            a.chunks_exact(c)
                .zip(b.chunks_exact(c))
                .map(|(p, q)| {
                    let d0 = i32::from(p[0]) - i32::from(q[0]);
                    let d1 = i32::from(p[1]) - i32::from(q[1]);
                    let d2 = i32::from(p[2]) - i32::from(q[2]);
                    u32::from(d0 * d0 + d1 * d1 + d2 * d2 > t2)
                })
                .sum()
        }
    }
}

/// Changed pixels per `tile` x `tile` tile (edge tiles partial), row-major
/// (rows of tiles, then columns): returns (counts, tile rows, tile columns).
pub fn tile_changes(a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize) -> Result<(Vec<u32>, usize, usize)> {
    same_geometry(a, b)?;
    if tile == 0 {
        return Err(RingError::Config("tile size must be positive".into()));
    }
    if threshold > 255 {
        return Err(RingError::Config(format!("threshold {threshold} is outside 0..255")));
    }
    let (w, h, c) = (a.width, a.height, a.format.channels());
    let (th, tw) = (h.div_ceil(tile), w.div_ceil(tile));
    let mut counts = vec![0u32; th * tw];
    let band = |ty: usize, out: &mut [u32]| {
        for y in ty * tile..((ty + 1) * tile).min(h) {
            let (ra, rb) = (row(a, y), row(b, y));
            for (tx, n) in out.iter_mut().enumerate() {
                let (x0, x1) = (tx * tile * c, ((tx + 1) * tile).min(w) * c);
                *n += changed_in(&ra[x0..x1], &rb[x0..x1], a.format, threshold);
            }
        }
    };
    if w * h >= PARALLEL_PIXELS {
        counts.par_chunks_mut(tw).enumerate().for_each(|(ty, out)| band(ty, out));
    } else {
        counts.chunks_mut(tw).enumerate().for_each(|(ty, out)| band(ty, out));
    }
    Ok((counts, th, tw))
}

/// Integer luma of one pixel: (77 R + 150 G + 29 B) >> 8 (gray: the value).
fn luma_row(r: &[u8], format: PixelFormat, out: &mut Vec<u8>) {
    out.clear();
    match format {
        PixelFormat::Gray => out.extend_from_slice(r),
        PixelFormat::Bgra => out.extend(
            r.chunks_exact(4).map(|p| ((77 * u32::from(p[2]) + 150 * u32::from(p[1]) + 29 * u32::from(p[0])) >> 8) as u8),
        ),
        PixelFormat::Rgb => out.extend(
            r.chunks_exact(3).map(|p| ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as u8),
        ),
    }
}

/// Histogram of the luma values (256 bins).
pub fn luma_histogram(f: &SourceFrame) -> Vec<u64> {
    let mut hist = vec![0u64; 256];
    let mut luma = Vec::with_capacity(f.width);
    for y in 0..f.height {
        luma_row(row(f, y), f.format, &mut luma);
        for &v in &luma {
            hist[usize::from(v)] += 1;
        }
    }
    hist
}

/// Mean and standard deviation of the luma in each of `grid` x `grid` blocks
/// (block k spans rows k*H/grid .. (k+1)*H/grid, likewise columns), as one
/// vector [mean, std, mean, std, ...] in row-major block order; an empty block
/// (frames smaller than the grid) gives 0, 0.
pub fn block_features(f: &SourceFrame, grid: usize) -> Result<Vec<f64>> {
    if grid == 0 || grid > 256 {
        return Err(RingError::Config(format!("grid must be 1..256, not {grid}")));
    }
    let (w, h) = (f.width, f.height);
    let mut sums = vec![(0u64, 0u64, 0u64); grid * grid];
    let col_block: Vec<usize> = (0..w).map(|x| (0..grid).rfind(|&b| b * w / grid <= x).unwrap_or(0)).collect();
    let mut luma = Vec::with_capacity(w);
    for y in 0..h {
        let by = (0..grid).rfind(|&b| b * h / grid <= y).unwrap_or(0);
        luma_row(row(f, y), f.format, &mut luma);
        for (x, &v) in luma.iter().enumerate() {
            let s = &mut sums[by * grid + col_block[x]];
            s.0 += u64::from(v);
            s.1 += u64::from(v) * u64::from(v);
            s.2 += 1;
        }
    }
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

/// Changed tiles as merged bounding boxes [x, y, w, h] in pixels: 8-connected
/// groups of tiles, boxes that overlap or touch merged, then the pair whose
/// union adds the least area merged until at most `max_regions` remain; sorted
/// by (y, x). The numpy reference (procs/kernels.regions) is the same algorithm.
pub fn regions(changed: &[bool], th: usize, tw: usize, tile: usize, width: usize, height: usize, max_regions: usize) -> Vec<[usize; 4]> {
    let mut seen = vec![false; th * tw];
    let mut boxes: Vec<[usize; 4]> = Vec::new();
    for start in 0..th * tw {
        if !changed[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        let (mut stack, mut b) = (vec![start], [start % tw, start / tw, start % tw, start / tw]);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % tw, i / tw);
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            for ny in y.saturating_sub(1)..=(y + 1).min(th - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(tw - 1) {
                    let j = ny * tw + nx;
                    if changed[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        boxes.push(b);
    }
    let union = |a: [usize; 4], b: [usize; 4]| [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])];
    'merge: loop {
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                let (a, b) = (boxes[i], boxes[j]);
                if a[0] <= b[2] + 1 && b[0] <= a[2] + 1 && a[1] <= b[3] + 1 && b[1] <= a[3] + 1 {
                    boxes[i] = union(a, b);
                    boxes.remove(j);
                    continue 'merge;
                }
            }
        }
        break;
    }
    let area = |b: [usize; 4]| ((b[2] - b[0] + 1) * (b[3] - b[1] + 1)) as i64;
    while boxes.len() > max_regions.max(1) {
        let mut best: Option<(i64, usize, usize)> = None;
        for i in 0..boxes.len() {
            for j in i + 1..boxes.len() {
                let cost = area(union(boxes[i], boxes[j])) - area(boxes[i]) - area(boxes[j]);
                if best.is_none_or(|(c, _, _)| cost < c) {
                    best = Some((cost, i, j));
                }
            }
        }
        let (_, i, j) = best.expect("at least two boxes");
        boxes[i] = union(boxes[i], boxes[j]);
        boxes.remove(j);
    }
    boxes.sort_by_key(|b| (b[1], b[0]));
    boxes
        .into_iter()
        .map(|[x0, y0, x1, y1]| {
            [x0 * tile, y0 * tile, ((x1 + 1) * tile).min(width) - x0 * tile, ((y1 + 1) * tile).min(height) - y0 * tile]
        })
        .collect()
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
    fn counts_changed_pixels_per_tile() {
        let a = vec![0u8; 6 * 5 * 3];
        let mut b = a.clone();
        b[(4 * 6 + 5) * 3] = 30; // pixel (5, 4): |d| = 30
        b[0] = 10; // pixel (0, 0): below threshold 20
        let (counts, th, tw) = tile_changes(
            &frame(&a, 6, 5, 18, PixelFormat::Rgb),
            &frame(&b, 6, 5, 18, PixelFormat::Rgb),
            20,
            4,
        )
        .unwrap();
        assert_eq!((th, tw), (2, 2));
        assert_eq!(counts, vec![0, 0, 0, 1]);
    }
}
