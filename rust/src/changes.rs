//! Changed pixels per tile. The per-pixel test runs over whole rows with no
//! branches and no bounds checks, so the compiler vectorises it; x86-64 gets
//! an AVX2 build of the same loop, chosen at run time. Rows whose bytes are
//! equal (most of a desktop between two frames) are skipped with one memcmp.

use rayon::prelude::*;

use crate::error::{RingError, Result};
use crate::frame::{PixelFormat, SourceFrame};
use crate::kernels::{row, same_geometry};

/// Frames at least this large are split across threads.
const PARALLEL_PIXELS: usize = 256 * 1024;

/// Rows counted per pass: the per-column counts are u16 (twice the lanes of
/// u32) and are folded into the tiles' u32 counts before they could overflow.
const SUB_BAND_ROWS: usize = u16::MAX as usize;

/// Adds 1 to `acc[x]` for every changed pixel x of the row: colour
/// `dr^2+dg^2+db^2 > t2` (alpha ignored), gray `|d| > t` (t <= 255).
#[inline(always)]
fn accumulate_row(a: &[u8], b: &[u8], format: PixelFormat, t: u32, t2: u32, acc: &mut [u16]) {
    match format {
        PixelFormat::Bgra => {
            // Pixels as u8 channels widened to u16 lanes (16 per AVX2 register):
            // each square fits (255^2 = 65025) and a saturating sum still
            // compares right, since t^2 <= 65025 < u16::MAX.
            let t2 = t2 as u16;
            for ((p, q), n) in a.chunks_exact(4).zip(b.chunks_exact(4)).zip(acc.iter_mut()) {
                let d0 = u16::from(p[0].abs_diff(q[0]));
                let d1 = u16::from(p[1].abs_diff(q[1]));
                let d2 = u16::from(p[2].abs_diff(q[2]));
                *n += u16::from((d0 * d0).saturating_add(d1 * d1).saturating_add(d2 * d2) > t2);
            }
        }
        PixelFormat::Rgb => {
            let t2 = t2 as u16;
            for ((p, q), n) in a.chunks_exact(3).zip(b.chunks_exact(3)).zip(acc.iter_mut()) {
                let d0 = u16::from(p[0].abs_diff(q[0]));
                let d1 = u16::from(p[1].abs_diff(q[1]));
                let d2 = u16::from(p[2].abs_diff(q[2]));
                *n += u16::from((d0 * d0).saturating_add(d1 * d1).saturating_add(d2 * d2) > t2);
            }
        }
        PixelFormat::Gray => {
            let t = t as u8;
            for ((&p, &q), n) in a.iter().zip(b).zip(acc.iter_mut()) {
                *n += u16::from(p.abs_diff(q) > t);
            }
        }
    }
}

/// Each pixel's squared colour distance (saturating: see `accumulate_row`);
/// `C` a constant so the loop vectorises.
#[inline(always)]
fn squares<const C: usize>(a: &[u8], b: &[u8], sq: &mut [u16]) {
    for ((p, q), s) in a.chunks_exact(C).zip(b.chunks_exact(C)).zip(sq.iter_mut()) {
        let d0 = u16::from(p[0].abs_diff(q[0]));
        let d1 = u16::from(p[1].abs_diff(q[1]));
        let d2 = u16::from(p[2].abs_diff(q[2]));
        *s = (d0 * d0).saturating_add(d1 * d1).saturating_add(d2 * d2);
    }
}

/// `accumulate_row`, and where a pixel's colour differs at all (below the
/// threshold too), row `r` (of the band, counted from 1) goes into `last[x]`,
/// and `!(r - 1)` into `first[x]` unless it holds an earlier row's (a larger
/// value): both are maxima, which vectorise, and 0 stays "none" in both as
/// long as a band has at most 65535 rows. Two simple loops (the
/// squared distances into `sq`, then counts and rows from them) so each
/// vectorises; `sq` is one row of u16 and stays in the L1 cache.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn accumulate_row_extents(a: &[u8], b: &[u8], format: PixelFormat, t: u32, t2: u32, r: u16, acc: &mut [u16],
                          first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    let limit = match format {
        PixelFormat::Bgra => {
            squares::<4>(a, b, sq);
            t2 as u16
        }
        PixelFormat::Rgb => {
            squares::<3>(a, b, sq);
            t2 as u16
        }
        PixelFormat::Gray => {
            for ((&p, &q), s) in a.iter().zip(b).zip(sq.iter_mut()) {
                *s = u16::from(p.abs_diff(q));
            }
            t as u16
        }
    };
    let n = acc.len();
    let (sq, first, last) = (&sq[..n], &mut first[..n], &mut last[..n]);
    for x in 0..n {
        let s = sq[x];
        acc[x] += u16::from(s > limit);
        let any = 0u16.wrapping_sub(u16::from(s != 0)); // all ones where it differs
        last[x] = last[x].max(r & any);
        first[x] = first[x].max(!(r - 1) & any);
    }
}

/// Per-pixel counts of one band of rows `y0..y1` into `acc` (zeroed first).
#[inline(always)]
fn band_generic(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16]) {
    acc.fill(0);
    for y in y0..y1 {
        let (ra, rb) = (row(a, y), row(b, y));
        if ra != rb {
            accumulate_row(ra, rb, a.format, t, t * t, acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn band_avx2(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16]) {
    band_generic(a, b, y0, y1, t, acc)
}

/// `band_generic`, and per column the first and last row of the band where
/// a pixel's colour differs at all (see `accumulate_row_extents`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn band_extents_generic(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16],
                        first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    acc.fill(0);
    first.fill(0);
    last.fill(0);
    for y in y0..y1 {
        let (ra, rb) = (row(a, y), row(b, y));
        if ra != rb {
            accumulate_row_extents(ra, rb, a.format, t, t * t, (y - y0 + 1) as u16, acc, first, last, sq);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn band_extents_avx2(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16],
                            first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    band_extents_generic(a, b, y0, y1, t, acc, first, last, sq)
}

/// `band` and, per column, the rows where its colour differs at all (see
/// `band_extents_generic`); at most 65535 rows. `sq` is scratch, a row long.
#[allow(clippy::too_many_arguments)]
pub(crate) fn band_extents(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16],
                           first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    debug_assert!(y1 - y0 <= usize::from(u16::MAX));
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above; the check is cached).
        return unsafe { band_extents_avx2(a, b, y0, y1, t, acc, first, last, sq) };
    }
    band_extents_generic(a, b, y0, y1, t, acc, first, last, sq)
}

pub(crate) fn band(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above; the check is cached).
        return unsafe { band_avx2(a, b, y0, y1, t, acc) };
    }
    band_generic(a, b, y0, y1, t, acc)
}

/// Changed pixels per `tile` x `tile` tile (edge tiles partial), row-major
/// (rows of tiles, then columns): returns (counts, tile rows, tile columns).
/// `parallel` spreads large frames over the rayon pool; without it the
/// caller's thread does all the work.
pub fn tile_changes(a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize, parallel: bool) -> Result<(Vec<u32>, usize, usize)> {
    same_geometry(a, b)?;
    if tile == 0 {
        return Err(RingError::Config("tile size must be positive".into()));
    }
    if threshold > 255 {
        return Err(RingError::Config(format!("threshold {threshold} is outside 0..255")));
    }
    let (w, h) = (a.width, a.height);
    let (th, tw) = (h.div_ceil(tile), w.div_ceil(tile));
    let mut counts = vec![0u32; th * tw];
    let one_band = |acc: &mut Vec<u16>, (ty, out): (usize, &mut [u32])| {
        let (y0, y1) = (ty * tile, ((ty + 1) * tile).min(h));
        for sub in (y0..y1).step_by(SUB_BAND_ROWS) {
            band(a, b, sub, (sub + SUB_BAND_ROWS).min(y1), threshold, acc);
            for (n, cols) in out.iter_mut().zip(acc.chunks(tile)) {
                *n += cols.iter().map(|&c| u32::from(c)).sum::<u32>();
            }
        }
    };
    if parallel && w * h >= PARALLEL_PIXELS {
        counts.par_chunks_mut(tw).enumerate().for_each_init(|| vec![0u16; w], one_band);
    } else {
        let mut acc = vec![0u16; w];
        counts.chunks_mut(tw).enumerate().for_each(|job| one_band(&mut acc, job));
    }
    Ok((counts, th, tw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], w: usize, h: usize, stride: usize, f: PixelFormat) -> SourceFrame {
        SourceFrame::from_slice(data, w, h, Some(stride), f).unwrap()
    }

    #[test]
    fn counts_changed_pixels_per_tile() {
        let a = vec![0u8; 6 * 5 * 3];
        let mut b = a.clone();
        b[(4 * 6 + 5) * 3] = 30; // pixel (5, 4): |d| = 30
        b[0] = 10; // pixel (0, 0): below threshold 20
        for parallel in [false, true] {
            let (counts, th, tw) = tile_changes(
                &frame(&a, 6, 5, 18, PixelFormat::Rgb),
                &frame(&b, 6, 5, 18, PixelFormat::Rgb),
                20,
                4,
                parallel,
            )
            .unwrap();
            assert_eq!((th, tw), (2, 2));
            assert_eq!(counts, vec![0, 0, 0, 1]);
        }
    }

    #[test]
    fn threshold_is_strict_and_alpha_ignored() {
        // d = (3, 4, 0) -> 25 = 5^2: not > 5, but > 4; alpha differs everywhere.
        let a = [10u8, 10, 10, 0];
        let b = [13u8, 14, 10, 255];
        let (fa, fb) = (frame(&a, 1, 1, 4, PixelFormat::Bgra), frame(&b, 1, 1, 4, PixelFormat::Bgra));
        assert_eq!(tile_changes(&fa, &fb, 5, 1, false).unwrap().0, vec![0]);
        assert_eq!(tile_changes(&fa, &fb, 4, 1, false).unwrap().0, vec![1]);
    }
}
