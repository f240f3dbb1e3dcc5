//! The change model's per-tile pass (procs/change_policy.py): which tiles
//! changed since the previous frame, where in each tile, and each changed
//! tile's content signature. Against the reference it is one sweep over the
//! two frames: the `tile_changes` test and, in the same per-pixel loop, the
//! rows and columns where any colour differs (alpha is ignored), from which
//! each tile's box follows. Tiles compared with the shadow are swept again,
//! their byte-equal rows skipped with one memcmp.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{RingError, Result};
use crate::frame::{PixelFormat, SourceFrame};
use crate::kernels::{row, same_geometry};

/// Frames at least this large are split across threads.
const PARALLEL_PIXELS: usize = 256 * 1024;

/// Per tile, row-major: whether it changed, the box of its changed pixels in
/// frame coordinates (x0, y0, x1, y1; zeros when unchanged) and its
/// signature (0 when unchanged): the xxh3-64 of its last row, seeded with
/// that of the row above, and so on up to its first row, seeded with 0.
pub struct FreshTiles {
    pub fresh: Vec<bool>,
    pub boxes: Vec<[i32; 4]>,
    pub sigs: Vec<u64>,
}

/// One tile's result: fresh, box, signature (see `FreshTiles`).
type Cell = (bool, [i32; 4], u64);

/// First and last pixel of `a` and `b` (one tile row's bytes) whose colour
/// differs, if any.
fn differing_span(a: &[u8], b: &[u8], format: PixelFormat) -> Option<(usize, usize)> {
    let c = format.channels();
    let colours = if format == PixelFormat::Bgra { 3 } else { c };
    let differs = |(p, q): (&[u8], &[u8])| p[..colours] != q[..colours];
    let first = a.chunks_exact(c).zip(b.chunks_exact(c)).position(differs)?;
    let last = a.chunks_exact(c).zip(b.chunks_exact(c)).rposition(differs).unwrap_or(first);
    Some((first, last))
}

/// One row of tiles (`ty`) against `previous` (the shadow), scanned row by
/// row of pixels so memory is read in order: each candidate tile's changed
/// box, and (`hash`) its hash (kept only if it changed).
fn band(frame: &SourceFrame, previous: &SourceFrame, tile: usize, ty: usize, wanted: &[bool], hash: bool,
        out: &mut [Cell]) {
    let c = frame.format.channels();
    let (y0, y1) = (ty * tile, ((ty + 1) * tile).min(frame.height));
    let mut boxes = vec![(usize::MAX, usize::MAX, 0usize, 0usize); out.len()];
    let mut sigs = vec![0u64; out.len()];
    for y in y0..y1 {
        let (ra, rb) = (row(frame, y), row(previous, y));
        for (tx, (&w, (bx, sig))) in wanted.iter().zip(boxes.iter_mut().zip(sigs.iter_mut())).enumerate() {
            if !w {
                continue;
            }
            let (x0, x1) = (tx * tile, ((tx + 1) * tile).min(frame.width));
            let (a, b) = (&ra[x0 * c..x1 * c], &rb[x0 * c..x1 * c]);
            if hash {
                *sig = xxh3_64_with_seed(a, *sig);
            }
            if a == b {
                continue;
            }
            if bx.0 == x0 && bx.2 == x1 {
                // The box spans the tile's width already: only its height grows.
                bx.3 = y + 1;
            } else if let Some((first, last)) = differing_span(a, b, frame.format) {
                *bx = (bx.0.min(x0 + first), bx.1.min(y), bx.2.max(x0 + last + 1), y + 1);
            }
        }
    }
    for ((cell, bx), sig) in out.iter_mut().zip(boxes).zip(sigs) {
        if bx.0 != usize::MAX {
            *cell = (true, [bx.0 as i32, bx.1 as i32, bx.2 as i32, bx.3 as i32], sig);
        }
    }
}

/// The whole per-tile pass of one judged frame: per tile the pixels changed
/// against the reference (the `tile_changes` test, `counts`), and for the
/// tiles that changed against it or are `shadowed` (they differed from the
/// reference in the frame before: `shadow` holds what they showed then)
/// whether they changed since the previous frame, where, and their hash.
pub struct Pass {
    pub counts: Vec<u32>,
    pub tiles: FreshTiles,
}

/// Per-column scratch of one band: threshold counts, and the first and last
/// row where the colour differs at all (`changes::band_extents`).
#[derive(Clone)]
struct Scratch {
    acc: Vec<u16>,
    first: Vec<u16>,
    last: Vec<u16>,
    sq: Vec<u16>, // one row's squared colour distances
}

/// One row of tiles of `change_pass`. Against the reference, one sweep gives
/// both the counts and each tile's changed box (from the per-column extents);
/// the shadowed tiles are then compared with the shadow, their rows found in
/// the cache.
#[allow(clippy::too_many_arguments)]
fn pass_band(frame: &SourceFrame, reference: &SourceFrame, shadow: Option<&SourceFrame>, shadowed: &[bool],
             threshold: u32, tile: usize, ty: usize, hash: bool, s: &mut Scratch, counts: &mut [u32],
             out: &mut [Cell]) {
    let (y0, y1) = (ty * tile, ((ty + 1) * tile).min(frame.height));
    crate::changes::band_extents(frame, reference, y0, y1, threshold, &mut s.acc, &mut s.first, &mut s.last, &mut s.sq);
    for (tx, (n, cell)) in counts.iter_mut().zip(out.iter_mut()).enumerate() {
        let cols = tx * tile..((tx + 1) * tile).min(frame.width);
        *n = s.acc[cols.clone()].iter().map(|&c| u32::from(c)).sum();
        if *n == 0 || shadowed[tx] {
            continue;
        }
        // Some colour passed the threshold, so some column holds a row.
        let last = &s.last[cols.clone()];
        let x0 = last.iter().position(|&l| l != 0).unwrap_or(0);
        let x1 = last.iter().rposition(|&l| l != 0).unwrap_or(0) + 1;
        let top = usize::from(!s.first[cols.clone()].iter().max().copied().unwrap_or(u16::MAX));
        let bottom = last.iter().max().copied().unwrap_or(1);
        let x = cols.start;
        *cell = (true, [(x + x0) as i32, (y0 + top) as i32, (x + x1) as i32,
                        (y0 + usize::from(bottom)) as i32], 0);
    }
    if hash {
        let fresh: Vec<bool> = out.iter().map(|c| c.0).collect();
        let mut sigs = vec![0u64; out.len()];
        band_signatures(frame, tile, ty, &fresh, &mut sigs);
        for (cell, sig) in out.iter_mut().zip(sigs) {
            cell.2 = sig;
        }
    }
    if let Some(shadow) = shadow {
        if shadowed.iter().any(|&s| s) {
            let mut from_shadow = vec![(false, [0i32; 4], 0u64); out.len()];
            band(frame, shadow, tile, ty, shadowed, hash, &mut from_shadow);
            for ((cell, theirs), &s) in out.iter_mut().zip(from_shadow).zip(shadowed) {
                if s {
                    *cell = theirs;
                }
            }
        }
    }
}

/// What `change_pass` takes, on any backend (see there); the tile rows and
/// columns.
pub fn check_pass(frame: &SourceFrame, reference: &SourceFrame, shadow: Option<&SourceFrame>, shadowed: &[bool],
                  threshold: u32, tile: usize) -> Result<(usize, usize)> {
    same_geometry(frame, reference)?;
    if let Some(s) = shadow {
        same_geometry(frame, s)?;
    }
    if tile == 0 || tile > usize::from(u16::MAX) {
        return Err(RingError::Config(format!("tile size {tile} is outside 1..65535")));
    }
    if threshold > 255 {
        return Err(RingError::Config(format!("threshold {threshold} is outside 0..255")));
    }
    let (th, tw) = (frame.height.div_ceil(tile), frame.width.div_ceil(tile));
    if shadowed.len() != th * tw {
        return Err(RingError::FrameGeometry(format!("{th}x{tw} tiles; shadowed has {} entries", shadowed.len())));
    }
    if shadow.is_none() && shadowed.iter().any(|&s| s) {
        return Err(RingError::Config("shadowed tiles need the shadow frame".into()));
    }
    Ok((th, tw))
}

/// See `Pass`. `shadowed` has one entry per tile (row-major); `shadow` must
/// be given when any is set. Without `hash` every signature is 0: the caller
/// asks `tile_signatures` for the tiles it needs (not those of a window-sized
/// change, whose contents decide nothing). `known_equal`, one entry per row of
/// tiles, marks rows the caller knows to equal the reference (their band
/// digests match): those are not read, their tiles unchanged, unless one is
/// shadowed (it may have changed back to the reference). A wrong mark is
/// believed: the digests are what vouches for it.
#[allow(clippy::too_many_arguments)]
pub fn change_pass(frame: &SourceFrame, reference: &SourceFrame, shadow: Option<&SourceFrame>, shadowed: &[bool],
                   threshold: u32, tile: usize, parallel: bool, hash: bool, known_equal: Option<&[bool]>) -> Result<Pass> {
    let (th, tw) = check_pass(frame, reference, shadow, shadowed, threshold, tile)?;
    if let Some(k) = known_equal {
        if k.len() != th {
            return Err(RingError::FrameGeometry(format!("{th} rows of tiles; known_equal has {} entries", k.len())));
        }
    }
    let mut counts = vec![0u32; th * tw];
    let mut out = vec![(false, [0i32; 4], 0u64); th * tw];
    let w = frame.width;
    let one = |s: &mut Scratch, (ty, (n, cells)): (usize, (&mut [u32], &mut [Cell]))| {
        let marked = &shadowed[ty * tw..(ty + 1) * tw];
        if known_equal.is_some_and(|k| k[ty]) && !marked.iter().any(|&m| m) {
            return;
        }
        pass_band(frame, reference, shadow, marked, threshold, tile, ty, hash, s, n, cells);
    };
    let scratch = Scratch { acc: vec![0; w], first: vec![0; w], last: vec![0; w], sq: vec![0; w] };
    if parallel && frame.width * frame.height >= PARALLEL_PIXELS {
        counts.par_chunks_mut(tw).zip(out.par_chunks_mut(tw)).enumerate().for_each_init(|| scratch.clone(), one);
    } else {
        let mut s = scratch;
        counts.chunks_mut(tw).zip(out.chunks_mut(tw)).enumerate().for_each(|job| one(&mut s, job));
    }
    Ok(Pass {
        counts,
        tiles: FreshTiles {
            fresh: out.iter().map(|t| t.0).collect(),
            boxes: out.iter().map(|t| t.1).collect(),
            sigs: out.iter().map(|t| t.2).collect(),
        },
    })
}

/// The signatures of the `wanted` tiles of row `ty` of tiles into `out`.
fn band_signatures(frame: &SourceFrame, tile: usize, ty: usize, wanted: &[bool], out: &mut [u64]) {
    if !wanted.iter().any(|&w| w) {
        return;
    }
    let c = frame.format.channels();
    for y in ty * tile..((ty + 1) * tile).min(frame.height) {
        let r = row(frame, y);
        for (tx, (&w, sig)) in wanted.iter().zip(out.iter_mut()).enumerate() {
            if w {
                let (x0, x1) = (tx * tile, ((tx + 1) * tile).min(frame.width));
                *sig = xxh3_64_with_seed(&r[x0 * c..x1 * c], *sig);
            }
        }
    }
}

/// The signatures of the `wanted` tiles (th x tw, row-major) of `frame`, as
/// `change_pass` makes them; 0 for the others.
pub fn tile_signatures(frame: &SourceFrame, wanted: &[bool], tile: usize) -> Result<Vec<u64>> {
    if tile == 0 {
        return Err(RingError::Config("tile size must be positive".into()));
    }
    let (th, tw) = (frame.height.div_ceil(tile), frame.width.div_ceil(tile));
    if wanted.len() != th * tw {
        return Err(RingError::FrameGeometry(format!("{th}x{tw} tiles; wanted has {} entries", wanted.len())));
    }
    let mut sigs = vec![0u64; th * tw];
    for ty in 0..th {
        band_signatures(frame, tile, ty, &wanted[ty * tw..(ty + 1) * tw], &mut sigs[ty * tw..(ty + 1) * tw]);
    }
    Ok(sigs)
}

/// 8-connected groups of the `marked` tiles (th x tw, row-major): per tile
/// its group's number, or -1; groups are numbered in row-major order of their
/// first tile. Runs of marked tiles along each row are joined (union-find)
/// with the runs of the row above that they touch, corners included; a
/// window-sized change is a few dozen runs, where a flood fill would visit
/// every tile's nine neighbours.
pub fn tile_groups(marked: &[bool], th: usize, tw: usize) -> Result<Vec<i32>> {
    if marked.len() != th * tw {
        return Err(RingError::FrameGeometry(format!("a {th}x{tw} tile map has {} entries, not {}", th * tw, marked.len())));
    }
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]]; // path halving
            i = parent[i];
        }
        i
    }
    let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (row, first, end), row-major
    let mut parent: Vec<usize> = Vec::new();
    let mut above = 0..0; // the runs of the row above
    for y in 0..th {
        let row = &marked[y * tw..(y + 1) * tw];
        let first = runs.len();
        let mut x = 0;
        while x < tw {
            if !row[x] {
                x += 1;
                continue;
            }
            let x0 = x;
            while x < tw && row[x] {
                x += 1;
            }
            let id = runs.len();
            runs.push((y, x0, x));
            parent.push(id);
            for j in above.clone() {
                let (_, a0, a1) = runs[j];
                if a0 <= x && x0 <= a1 {
                    // [a0, a1) and [x0, x) overlap or meet at a corner.
                    let (ra, rb) = (root(&mut parent, j), root(&mut parent, id));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        above = first..runs.len();
    }
    let mut labels = vec![-1i32; th * tw];
    let mut number = vec![-1i32; runs.len()];
    let mut next = 0;
    for (id, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = root(&mut parent, id);
        if number[r] < 0 {
            number[r] = next;
            next += 1;
        }
        labels[y * tw + x0..y * tw + x1].fill(number[r]);
    }
    Ok(labels)
}

/// The marked tiles in `tile_groups`' groups: the tiles (row-major
/// indices) group after group, each group's in row-major order, group `g`
/// at `starts[g]..starts[g + 1]`; and each group's box, the union of its
/// tiles' `boxes` (x0, y0, x1, y1).
pub struct Groups {
    pub labels: Vec<i32>,
    pub tiles: Vec<usize>,
    pub starts: Vec<usize>,
    pub boxes: Vec<[i32; 4]>,
}

/// See `Groups`: a counting sort of the tiles by group, one sweep.
pub fn change_groups(marked: &[bool], boxes: &[[i32; 4]], th: usize, tw: usize) -> Result<Groups> {
    let labels = tile_groups(marked, th, tw)?;
    if boxes.len() != labels.len() {
        return Err(RingError::FrameGeometry(format!("a {th}x{tw} tile map has {} boxes", boxes.len())));
    }
    let n = labels.iter().max().map_or(0, |&m| (m + 1) as usize);
    let mut starts = vec![0usize; n + 1];
    for &l in labels.iter().filter(|&&l| l >= 0) {
        starts[l as usize + 1] += 1;
    }
    for g in 0..n {
        starts[g + 1] += starts[g];
    }
    let mut next = starts.clone();
    let mut tiles = vec![0usize; starts[n]];
    let mut union = vec![[i32::MAX, i32::MAX, i32::MIN, i32::MIN]; n];
    for (i, (&l, b)) in labels.iter().zip(boxes).enumerate().filter(|(_, (&l, _))| l >= 0) {
        let g = l as usize;
        tiles[next[g]] = i;
        next[g] += 1;
        let u = &mut union[g];
        *u = [u[0].min(b[0]), u[1].min(b[1]), u[2].max(b[2]), u[3].max(b[3])];
    }
    Ok(Groups { labels, tiles, starts, boxes: union })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_changed_box_per_tile_and_hashes_it() {
        let (w, h) = (6, 5);
        let a = vec![7u8; w * h * 4];
        let mut b = a.clone();
        b[(3 * w + 4) * 4 + 1] = 90; // pixel (4, 3): a colour byte, past the threshold
        b[(w + 1) * 4 + 3] = 0; // pixel (1, 1): alpha only, ignored
        let fa = SourceFrame::from_slice(&a, w, h, None, PixelFormat::Bgra).unwrap();
        let fb = SourceFrame::from_slice(&b, w, h, None, PixelFormat::Bgra).unwrap();
        for parallel in [false, true] {
            let r = change_pass(&fb, &fa, None, &[false; 4], 24, 4, parallel, true, None).unwrap();
            assert_eq!(r.counts, vec![0, 1, 0, 0]);
            assert_eq!(r.tiles.fresh, vec![false, true, false, false]);
            assert_eq!(r.tiles.boxes[1], [4, 3, 5, 4]);
            let sig = (0..4).fold(0, |seed, y| xxh3_64_with_seed(&b[(y * w + 4) * 4..(y * w + 6) * 4], seed));
            assert_eq!(r.tiles.sigs[1], sig, "each row hashed seeded with the hash of the rows above");
            assert_eq!(r.tiles.sigs.iter().filter(|&&s| s != 0).count(), 1);
            assert_eq!(tile_signatures(&fb, &[false, true, false, false], 4).unwrap(), vec![0, sig, 0, 0]);
            let unhashed = change_pass(&fb, &fa, None, &[false; 4], 24, 4, parallel, false, None).unwrap();
            assert_eq!((unhashed.tiles.fresh, unhashed.tiles.boxes), (r.tiles.fresh.clone(), r.tiles.boxes.clone()));
            assert!(unhashed.tiles.sigs.iter().all(|&s| s == 0));
        }
        // Shadowed, the tile is compared with the shadow (equal here): not fresh.
        let r = change_pass(&fb, &fa, Some(&fb), &[false, true, false, false], 24, 4, false, true, None).unwrap();
        assert_eq!(r.counts[1], 1);
        assert!(r.tiles.fresh.iter().all(|f| !f), "shadowed tiles are compared with the shadow");
    }

    #[test]
    fn rows_known_equal_are_not_read_unless_shadowed() {
        let (w, h) = (6, 5);
        let a = vec![7u8; w * h * 4];
        let mut b = a.clone();
        b[(3 * w + 4) * 4 + 1] = 90; // pixel (4, 3): tile (0, 1)
        let fa = SourceFrame::from_slice(&a, w, h, None, PixelFormat::Bgra).unwrap();
        let fb = SourceFrame::from_slice(&b, w, h, None, PixelFormat::Bgra).unwrap();
        let full = change_pass(&fb, &fa, None, &[false; 4], 24, 4, false, true, None).unwrap();
        let hinted = change_pass(&fb, &fa, None, &[false; 4], 24, 4, false, true, Some(&[false, true])).unwrap();
        assert_eq!((hinted.counts, hinted.tiles.fresh), (full.counts, full.tiles.fresh), "a true mark changes nothing");
        // A mark is believed (here a wrong one): the row is not read.
        let r = change_pass(&fb, &fa, None, &[false; 4], 24, 4, false, true, Some(&[true, false])).unwrap();
        assert!(r.counts.iter().all(|&n| n == 0) && r.tiles.fresh.iter().all(|f| !f));
        // ... unless a tile of it is shadowed.
        let r = change_pass(&fb, &fa, Some(&fa), &[false, true, false, false], 24, 4, false, true, Some(&[true, true])).unwrap();
        assert_eq!(r.counts, vec![0, 1, 0, 0]);
        assert!(r.tiles.fresh[1]);
        assert!(change_pass(&fb, &fa, None, &[false; 4], 24, 4, false, true, Some(&[true])).is_err());
    }

    #[test]
    fn groups_tiles_that_touch_also_at_corners() {
        #[rustfmt::skip]
        let marked = [
            true, false, false, true,
            false, true, false, false,
            false, false, false, true,
        ];
        assert_eq!(tile_groups(&marked, 3, 4).unwrap(), vec![0, -1, -1, 1, -1, 0, -1, -1, -1, -1, -1, 2]);
        assert!(tile_groups(&marked, 2, 4).is_err());
    }
}
