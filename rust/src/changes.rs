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

/// The sums of squared channel differences (alpha left out) of the 8 BGRA
/// pixels at `pa` and `pb`, as i32 in pixel order (see `squares_bgra_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sums8(pa: *const u8, pb: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let (va, vb) = (_mm256_loadu_si256(pa as *const __m256i), _mm256_loadu_si256(pb as *const __m256i));
    let d = _mm256_or_si256(_mm256_subs_epu8(va, vb), _mm256_subs_epu8(vb, va));
    let d = _mm256_and_si256(d, _mm256_set1_epi32(0x00ff_ffff));
    let (lo, hi) = (_mm256_unpacklo_epi8(d, _mm256_setzero_si256()), _mm256_unpackhi_epi8(d, _mm256_setzero_si256()));
    _mm256_hadd_epi32(_mm256_madd_epi16(lo, lo), _mm256_madd_epi16(hi, hi))
}

/// `accumulate_row_extents` of a BGRA row with explicit AVX2, 16 pixels a
/// step: the compiler's own vectorisation of four-byte pixels spends most of
/// its time taking the channels apart. Per 8 pixels (`sums8`): |d| per byte
/// (two saturating subtractions), alpha masked off, widened to 16 bits, each
/// pixel's squares summed by `madd` (pairs of channels) then `hadd` (the
/// pairs), which leaves the 8 sums in pixel order; `packus` saturates 16 of
/// them to u16 as `squares` does (a sum of squares never wraps, so min(sum,
/// 65535) is the saturating sum); then the counts and rows as the plain loop
/// makes them, on 16 lanes. The row's last pixels (under 16) take the plain loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate_bgra_extents_avx2(a: &[u8], b: &[u8], t: u32, t2: u32, r: u16, acc: &mut [u16], first: &mut [u16],
                                       last: &mut [u16], sq: &mut [u16]) {
    use std::arch::x86_64::*;
    let n = acc.len().min(first.len()).min(last.len()).min(a.len() / 4).min(b.len() / 4);
    // s > t2 as s >= t2 + 1 (there is no unsigned 16-bit compare): t2 <= 255^2, so t2 + 1 fits.
    let above = _mm256_set1_epi16((t2 + 1) as u16 as i16);
    let (row, not_before) = (_mm256_set1_epi16(r as i16), _mm256_set1_epi16(!(r - 1) as i16));
    let zero = _mm256_setzero_si256();
    let mut i = 0;
    // SAFETY (the loop): `sums8` reads 32 bytes at pixel i or i + 8 of a and
    // b, and the u16 loads and stores touch 16 lanes at i, all with i + 16 <= n.
    while i + 16 <= n {
        let packed = _mm256_packus_epi32(sums8(a.as_ptr().add(4 * i), b.as_ptr().add(4 * i)),
                                         sums8(a.as_ptr().add(4 * i + 32), b.as_ptr().add(4 * i + 32)));
        // packus works within 128-bit lanes: pixels 0-3, 8-11 | 4-7, 12-15.
        let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(packed);
        let changed = _mm256_cmpeq_epi16(_mm256_max_epu16(s, above), s); // all ones where s > t2
        let same = _mm256_cmpeq_epi16(s, zero);
        let (pa, pf, pl) = (acc.as_mut_ptr().add(i) as *mut __m256i, first.as_mut_ptr().add(i) as *mut __m256i,
                            last.as_mut_ptr().add(i) as *mut __m256i);
        _mm256_storeu_si256(pa, _mm256_sub_epi16(_mm256_loadu_si256(pa), changed));
        _mm256_storeu_si256(pl, _mm256_max_epu16(_mm256_loadu_si256(pl), _mm256_andnot_si256(same, row)));
        _mm256_storeu_si256(pf, _mm256_max_epu16(_mm256_loadu_si256(pf), _mm256_andnot_si256(same, not_before)));
        i += 16;
    }
    accumulate_row_extents::<false>(&a[4 * i..], &b[4 * i..], PixelFormat::Bgra, t, t2, r, &mut acc[i..n],
                                    &mut first[i..n], &mut last[i..n], sq);
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
fn accumulate_row_extents<const AVX2: bool>(a: &[u8], b: &[u8], format: PixelFormat, t: u32, t2: u32, r: u16,
                                             acc: &mut [u16], first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if AVX2 && format == PixelFormat::Bgra {
        // SAFETY: AVX2 is only set by `band_extents` after checking the CPU has it.
        return unsafe { accumulate_bgra_extents_avx2(a, b, t, t2, r, acc, first, last, sq) };
    }
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
fn band_extents_generic<const AVX2: bool>(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32,
                                          acc: &mut [u16], first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    acc.fill(0);
    first.fill(0);
    last.fill(0);
    for y in y0..y1 {
        let (ra, rb) = (row(a, y), row(b, y));
        if ra != rb {
            accumulate_row_extents::<AVX2>(ra, rb, a.format, t, t * t, (y - y0 + 1) as u16, acc, first, last, sq);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn band_extents_avx2(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16],
                            first: &mut [u16], last: &mut [u16], sq: &mut [u16]) {
    band_extents_generic::<true>(a, b, y0, y1, t, acc, first, last, sq)
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
    band_extents_generic::<false>(a, b, y0, y1, t, acc, first, last, sq)
}

pub(crate) fn band(a: &SourceFrame, b: &SourceFrame, y0: usize, y1: usize, t: u32, acc: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above; the check is cached).
        return unsafe { band_avx2(a, b, y0, y1, t, acc) };
    }
    band_generic(a, b, y0, y1, t, acc)
}

/// What `tile_changes` takes, on any backend: two frames of one geometry, a
/// positive tile size, a threshold in 0..255.
pub fn check_pair(a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize) -> Result<()> {
    same_geometry(a, b)?;
    if tile == 0 {
        return Err(RingError::Config("tile size must be positive".into()));
    }
    if threshold > 255 {
        return Err(RingError::Config(format!("threshold {threshold} is outside 0..255")));
    }
    Ok(())
}

/// Changed pixels per `tile` x `tile` tile (edge tiles partial), row-major
/// (rows of tiles, then columns): returns (counts, tile rows, tile columns).
/// `parallel` spreads large frames over the rayon pool; without it the
/// caller's thread does all the work.
pub fn tile_changes(a: &SourceFrame, b: &SourceFrame, threshold: u32, tile: usize, parallel: bool) -> Result<(Vec<u32>, usize, usize)> {
    check_pair(a, b, threshold, tile)?;
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
