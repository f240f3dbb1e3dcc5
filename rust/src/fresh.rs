//! The change model's per-tile pass (procs/change_policy.py): which tiles
//! changed since the previous frame, where in each tile, and each changed
//! tile's content signature, in one sweep over the candidate tiles. Rows of a
//! tile that are byte-equal are skipped with one memcmp; only the rows that
//! differ are looked at pixel by pixel (colour channels: alpha is ignored, as
//! in `tile_changes`).

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{RingError, Result};
use crate::frame::{PixelFormat, SourceFrame};
use crate::kernels::{row, same_geometry};

/// Frames at least this large are split across threads.
const PARALLEL_PIXELS: usize = 256 * 1024;

/// Per tile, row-major: whether it changed, the box of its changed pixels in
/// frame coordinates (x0, y0, x1, y1; zeros when unchanged) and the xxh3-64 of
/// its bytes, rows back to back (0 when unchanged).
pub struct FreshTiles {
    pub fresh: Vec<bool>,
    pub boxes: Vec<[i32; 4]>,
    pub sigs: Vec<u64>,
}

/// First and last pixel of `a` and `b` (one tile row's bytes) whose colour
/// differs, if any.
fn differing_span(a: &[u8], b: &[u8], format: PixelFormat) -> Option<(usize, usize)> {
    let c = format.channels();
    let colours = if format == PixelFormat::Bgra { 3 } else { c };
    let differs = |i: usize| a[i * c..i * c + colours] != b[i * c..i * c + colours];
    let n = a.len() / c;
    let first = (0..n).find(|&i| differs(i))?;
    let last = (first..n).rev().find(|&i| differs(i)).unwrap_or(first);
    Some((first, last))
}

fn one_tile(frame: &SourceFrame, previous: &SourceFrame, tile: usize, ty: usize, tx: usize) -> (bool, [i32; 4], u64) {
    let c = frame.format.channels();
    let (x0, x1) = (tx * tile, ((tx + 1) * tile).min(frame.width));
    let (y0, y1) = (ty * tile, ((ty + 1) * tile).min(frame.height));
    let (mut bx0, mut by0, mut bx1, mut by1) = (usize::MAX, usize::MAX, 0, 0);
    for y in y0..y1 {
        let (a, b) = (&row(frame, y)[x0 * c..x1 * c], &row(previous, y)[x0 * c..x1 * c]);
        if a == b {
            continue;
        }
        if let Some((first, last)) = differing_span(a, b, frame.format) {
            bx0 = bx0.min(x0 + first);
            bx1 = bx1.max(x0 + last + 1);
            by0 = by0.min(y);
            by1 = y + 1;
        }
    }
    if bx0 == usize::MAX {
        return (false, [0; 4], 0);
    }
    let mut hasher = Xxh3::new();
    for y in y0..y1 {
        hasher.update(&row(frame, y)[x0 * c..x1 * c]);
    }
    (true, [bx0 as i32, by0 as i32, bx1 as i32, by1 as i32], hasher.digest())
}

/// The pass over `candidates` (tile rows x tile columns, row-major) of
/// `frame` against `previous`. `parallel` spreads large frames over the
/// rayon pool; without it the caller's thread does all the work.
pub fn fresh_tiles(frame: &SourceFrame, previous: &SourceFrame, candidates: &[bool], tile: usize, parallel: bool) -> Result<FreshTiles> {
    same_geometry(frame, previous)?;
    if tile == 0 {
        return Err(RingError::Config("tile size must be positive".into()));
    }
    let (th, tw) = (frame.height.div_ceil(tile), frame.width.div_ceil(tile));
    if candidates.len() != th * tw {
        return Err(RingError::FrameGeometry(format!(
            "a {}x{} frame in {tile} px tiles has {th}x{tw} tiles; candidates has {} entries",
            frame.width,
            frame.height,
            candidates.len()
        )));
    }
    let mut out = vec![(false, [0i32; 4], 0u64); th * tw];
    let band = |(ty, cells): (usize, &mut [(bool, [i32; 4], u64)])| {
        for (tx, cell) in cells.iter_mut().enumerate() {
            if candidates[ty * tw + tx] {
                *cell = one_tile(frame, previous, tile, ty, tx);
            }
        }
    };
    if parallel && frame.width * frame.height >= PARALLEL_PIXELS {
        out.par_chunks_mut(tw).enumerate().for_each(band);
    } else {
        out.chunks_mut(tw).enumerate().for_each(band);
    }
    Ok(FreshTiles {
        fresh: out.iter().map(|t| t.0).collect(),
        boxes: out.iter().map(|t| t.1).collect(),
        sigs: out.iter().map(|t| t.2).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    #[test]
    fn finds_the_changed_box_per_tile_and_hashes_it() {
        let (w, h) = (6, 5);
        let a = vec![7u8; w * h * 4];
        let mut b = a.clone();
        b[(3 * w + 4) * 4 + 1] = 9; // pixel (4, 3): a colour byte
        b[(1 * w + 1) * 4 + 3] = 0; // pixel (1, 1): alpha only, ignored
        let fa = SourceFrame::from_slice(&a, w, h, None, PixelFormat::Bgra).unwrap();
        let fb = SourceFrame::from_slice(&b, w, h, None, PixelFormat::Bgra).unwrap();
        let r = fresh_tiles(&fb, &fa, &[true; 4], 4, false).unwrap();
        assert_eq!(r.fresh, vec![false, true, false, false]);
        assert_eq!(r.boxes[1], [4, 3, 5, 4]);
        let mut tile = Vec::new();
        for y in 0..4 {
            tile.extend_from_slice(&b[(y * w + 4) * 4..(y * w + 6) * 4]);
        }
        assert_eq!(r.sigs[1], xxh3_64(&tile[..]));
        let none = fresh_tiles(&fb, &fa, &[true, false, true, true], 4, true).unwrap();
        assert!(none.fresh.iter().all(|f| !f), "only candidates are looked at");
    }
}
