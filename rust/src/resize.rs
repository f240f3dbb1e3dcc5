//! Box downscaling to RGB: the images forward sends. Each output pixel is the
//! area average of the source pixels it covers, partly covered ones by their
//! share (Pillow's BOX filter takes a source pixel whole or not at all, by
//! its centre, so at ratios like 1920 -> 1456 a one-pixel line can vanish or
//! double). Two passes, rows then columns, each in 14-bit fixed point and
//! rounded to 8 bits. The rows pass is a weighted sum of a few whole source
//! rows, which the compiler vectorises; the columns pass runs on the fewer
//! output rows. `procs.kernels.resize_box` is the numpy reference, equal to
//! the byte.

use crate::error::{Result, RingError};
use crate::frame::{PixelFormat, SourceFrame};
use crate::kernels::row;

/// The weights' fixed point: the taps of one output pixel sum to `ONE`.
pub const ONE: u32 = 1 << 14;

/// The source taps of each output pixel along one axis.
struct Taps {
    /// Per output pixel: its first source index and its range in `weights`
    /// (`first + range.len() <= n_in`).
    spans: Vec<(usize, std::ops::Range<usize>)>,
    weights: Vec<u32>,
}

impl Taps {
    /// Output pixel k covers source [k * n_in / n_out, (k + 1) * n_in / n_out);
    /// a tap's weight is its overlap with that span, in `ONE`s of the span,
    /// rounded down, with what rounding lost given to the tap of the largest
    /// overlap (the first of equals). Integer arithmetic only: the numpy
    /// reference computes the same weights.
    fn new(n_in: usize, n_out: usize) -> Taps {
        let (n_in64, n_out64) = (n_in as u64, n_out as u64);
        let mut spans = Vec::with_capacity(n_out);
        let mut weights = Vec::new();
        for k in 0..n_out64 {
            let (lo, hi) = (k * n_in64, (k + 1) * n_in64); // in 1/n_out source pixels
            let (first, last) = (lo / n_out64, (hi - 1) / n_out64);
            let start = weights.len();
            let (mut total, mut best, mut best_overlap) = (0u32, start, 0u64);
            for i in first..=last {
                let overlap = hi.min((i + 1) * n_out64) - lo.max(i * n_out64);
                let w = (overlap * ONE as u64 / n_in64) as u32;
                if overlap > best_overlap {
                    (best, best_overlap) = (weights.len(), overlap);
                }
                total += w;
                weights.push(w);
            }
            weights[best] += ONE - total;
            spans.push((first as usize, start..weights.len()));
        }
        Taps { spans, weights }
    }

    /// The same taps, as many for every output pixel as the longest span
    /// has (zero weights added; a span near the end starts earlier instead of
    /// reading past it), for loops of fixed length.
    fn fixed(&self, n_in: usize) -> Columns {
        let n = self.spans.iter().map(|(_, r)| r.len()).max().unwrap_or(1);
        let mut firsts = Vec::with_capacity(self.spans.len());
        let mut weights = vec![0u32; self.spans.len() * n];
        for (k, (first, range)) in self.spans.iter().enumerate() {
            let start = (*first).min(n_in - n);
            let at = k * n + (first - start);
            weights[at..at + range.len()].copy_from_slice(&self.weights[range.clone()]);
            firsts.push(start);
        }
        Columns { n, firsts, weights }
    }
}

/// The columns pass's taps: `n` per output pixel, from source pixel
/// `firsts[k]` on (`firsts[k] + n <= n_in`), weights `weights[k * n..][..n]`.
struct Columns {
    n: usize,
    firsts: Vec<usize>,
    weights: Vec<u32>,
}

/// `f` box-averaged down to `width` x `height` (at most its own size), as
/// rows of RGB bytes (gray frames give R = G = B).
pub fn resize_box(f: &SourceFrame, width: usize, height: usize) -> Result<Vec<u8>> {
    if width == 0 || height == 0 || width > f.width || height > f.height {
        return Err(RingError::FrameGeometry(format!(
            "resize_box shrinks a {}x{} frame to at least 1x1 and at most its own size, not {width}x{height}",
            f.width, f.height
        )));
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return Ok(unsafe { resize_avx2(f, width, height) });
    }
    Ok(resize_any(f, width, height))
}

/// `resize_any` compiled for AVX2: the same code, which the compiler vectorises 32 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn resize_avx2(f: &SourceFrame, width: usize, height: usize) -> Vec<u8> {
    resize_any(f, width, height)
}

#[inline(always)]
fn resize_any(f: &SourceFrame, width: usize, height: usize) -> Vec<u8> {
    let row_len = f.width * f.format.channels();
    let (rows, cols) = (Taps::new(f.height, height), Taps::new(f.width, width).fixed(f.width));
    let mut out = vec![0u8; height * width * 3];
    // Row by row: the rows pass makes one row of the intermediate (every
    // channel, a weighted sum of a few source rows), which the columns pass
    // reads back from the cache.
    let mut acc = vec![0u32; row_len];
    let mut mid = vec![0u8; row_len];
    for ((first, taps), dst) in rows.spans.iter().zip(out.chunks_exact_mut(width * 3)) {
        acc.fill(ONE / 2);
        for (t, &w) in rows.weights[taps.clone()].iter().enumerate() {
            for (a, &p) in acc.iter_mut().zip(row(f, first + t)) {
                *a += w * p as u32;
            }
        }
        for (m, &a) in mid.iter_mut().zip(&acc) {
            *m = (a >> 14) as u8;
        }
        match f.format {
            PixelFormat::Bgra => columns::<4, 2, 1, 0>(&mid, &cols, dst),
            PixelFormat::Rgb => columns::<3, 0, 1, 2>(&mid, &cols, dst),
            PixelFormat::Gray => columns::<1, 0, 0, 0>(&mid, &cols, dst),
        }
    }
    out
}

/// The columns pass for one row of `CH`-byte pixels (R, G, B at those
/// offsets) into a row of RGB. The common tap counts (ratios below 3) are
/// named as constants, so the inlined loop is unrolled for them.
#[inline(always)]
fn columns<const CH: usize, const R: usize, const G: usize, const B: usize>(src: &[u8], cols: &Columns, dst: &mut [u8]) {
    match cols.n {
        1 => columns_n::<CH, R, G, B>(src, 1, cols, dst),
        2 => columns_n::<CH, R, G, B>(src, 2, cols, dst),
        3 => columns_n::<CH, R, G, B>(src, 3, cols, dst),
        4 => columns_n::<CH, R, G, B>(src, 4, cols, dst),
        n => columns_n::<CH, R, G, B>(src, n, cols, dst),
    }
}

#[inline(always)]
fn columns_n<const CH: usize, const R: usize, const G: usize, const B: usize>(src: &[u8], n: usize, cols: &Columns,
                                                                              dst: &mut [u8]) {
    for ((&first, w), px) in cols.firsts.iter().zip(cols.weights.chunks_exact(n)).zip(dst.chunks_exact_mut(3)) {
        let (mut r, mut g, mut b) = (ONE / 2, ONE / 2, ONE / 2);
        // SAFETY: `first + n <= n_in` (Taps::fixed), so the n pixels lie within the row.
        let p = unsafe { src.get_unchecked(first * CH..(first + n) * CH) };
        for t in 0..n {
            r += w[t] * p[t * CH + R] as u32;
            g += w[t] * p[t * CH + G] as u32;
            b += w[t] * p[t * CH + B] as u32;
        }
        (px[0], px[1], px[2]) = ((r >> 14) as u8, (g >> 14) as u8, (b >> 14) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_cover_each_span_with_weights_summing_to_one() {
        for (n_in, n_out) in [(1920, 1456), (1080, 819), (7, 3), (5, 5), (3840, 1456), (10, 1)] {
            let taps = Taps::new(n_in, n_out);
            for (first, range) in &taps.spans {
                assert_eq!(taps.weights[range.clone()].iter().sum::<u32>(), ONE);
                assert!(first + range.len() <= n_in);
            }
        }
        let same = Taps::new(4, 4);
        assert!(same.spans.iter().enumerate().all(|(k, (first, r))| *first == k && same.weights[r.clone()] == [ONE]));
    }

    #[test]
    fn a_flat_frame_stays_flat_and_the_same_size_is_a_copy_to_rgb() {
        let bgra: Vec<u8> = (0..6 * 4).flat_map(|_| [10u8, 20, 30, 255]).collect();
        let f = SourceFrame::from_slice(&bgra, 6, 4, None, PixelFormat::Bgra).unwrap();
        assert_eq!(resize_box(&f, 4, 3).unwrap(), [30u8, 20, 10].repeat(12));
        assert_eq!(resize_box(&f, 6, 4).unwrap(), [30u8, 20, 10].repeat(24));
        assert!(resize_box(&f, 7, 4).is_err() && resize_box(&f, 0, 1).is_err());
    }
}
