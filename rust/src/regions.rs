//! Changed tiles as merged bounding boxes. The numpy reference
//! (procs/kernels.tile_regions) is the plain form of the same algorithm; this
//! one gives the same boxes in the same order with less work: touching boxes
//! merge in passes rather than restarting after every merge, and the closest
//! pair comes from a per-box cache of its cheapest partner.

/// A box in tiles: x0, y0, x1, y1, inclusive.
type TileBox = [usize; 4];

fn union(a: TileBox, b: TileBox) -> TileBox {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

fn touch(a: TileBox, b: TileBox) -> bool {
    a[0] <= b[2] + 1 && b[0] <= a[2] + 1 && a[1] <= b[3] + 1 && b[1] <= a[3] + 1
}

fn area(b: TileBox) -> i64 {
    ((b[2] - b[0] + 1) * (b[3] - b[1] + 1)) as i64
}

/// The area a merge adds.
fn cost(a: TileBox, b: TileBox) -> i64 {
    area(union(a, b)) - area(a) - area(b)
}

/// 8-connected groups of changed tiles, in row-major order of their first tile.
fn components(changed: &[bool], th: usize, tw: usize) -> Vec<TileBox> {
    let mut seen = vec![false; th * tw];
    let mut boxes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..th * tw {
        if !changed[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut b = [start % tw, start / tw, start % tw, start / tw];
        while let Some(i) = stack.pop() {
            let (x, y) = (i % tw, i / tw);
            b = union(b, [x, y, x, y]);
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
    boxes
}

/// Merges boxes that overlap or touch until none do. Boxes only grow, so two
/// that touch keep touching: the result does not depend on the order of the
/// merges, and a merged box keeps the place of its earliest member, as in the
/// reference's merge-and-restart loop.
fn merge_touching(boxes: &mut Vec<TileBox>) {
    let mut merged = true;
    while merged {
        merged = false;
        let mut i = 0;
        while i < boxes.len() {
            let mut j = i + 1;
            while j < boxes.len() {
                if touch(boxes[i], boxes[j]) {
                    boxes[i] = union(boxes[i], boxes[j]);
                    boxes.remove(j);
                    merged = true;
                    j = i + 1; // box i grew: look again at those after it
                } else {
                    j += 1;
                }
            }
            i += 1;
        }
    }
}

/// Box i's cheapest partner after it, the first on ties.
fn cheapest(boxes: &[TileBox], alive: &[bool], i: usize) -> Option<(i64, usize)> {
    let mut best: Option<(i64, usize)> = None;
    for j in i + 1..boxes.len() {
        if alive[j] {
            let c = cost(boxes[i], boxes[j]);
            if best.is_none_or(|(b, _)| c < b) {
                best = Some((c, j));
            }
        }
    }
    best
}

/// Merges the pair whose union adds the least area (the first pair in order
/// on ties) until at most `max` boxes remain.
fn merge_closest(boxes: &mut Vec<TileBox>, max: usize) {
    let n = boxes.len();
    if n <= max {
        return;
    }
    let mut alive = vec![true; n];
    let mut best: Vec<Option<(i64, usize)>> = (0..n).map(|i| cheapest(boxes, &alive, i)).collect();
    for _ in max..n {
        let mut pick: Option<(i64, usize, usize)> = None;
        for (i, b) in best.iter().enumerate() {
            if let Some((c, j)) = *b {
                if alive[i] && pick.is_none_or(|(p, _, _)| c < p) {
                    pick = Some((c, i, j));
                }
            }
        }
        let (_, i, j) = pick.expect("two boxes at least");
        boxes[i] = union(boxes[i], boxes[j]);
        alive[j] = false;
        best[j] = None;
        best[i] = cheapest(boxes, &alive, i);
        for k in 0..n {
            if !alive[k] || k == i {
                continue;
            }
            match best[k] {
                Some((_, bj)) if bj == i || bj == j => best[k] = cheapest(boxes, &alive, k),
                Some((bc, bj)) if k < i => {
                    let c = cost(boxes[k], boxes[i]);
                    if c < bc || (c == bc && i < bj) {
                        best[k] = Some((c, i));
                    }
                }
                _ => {}
            }
        }
    }
    let mut keep = alive.into_iter();
    boxes.retain(|_| keep.next().unwrap_or(false));
}

/// Changed tiles (row-major, `th` x `tw`) as merged bounding boxes [x, y, w, h]
/// in pixels: 8-connected groups of tiles, boxes that overlap or touch merged,
/// then the pair whose union adds the least area merged until at most
/// `max_regions` remain; sorted by (y, x).
pub fn regions(changed: &[bool], th: usize, tw: usize, tile: usize, width: usize, height: usize, max_regions: usize) -> Vec<[usize; 4]> {
    let mut boxes = components(changed, th, tw);
    merge_touching(&mut boxes);
    merge_closest(&mut boxes, max_regions.max(1));
    boxes.sort_by_key(|b| (b[1], b[0]));
    boxes
        .into_iter()
        .map(|[x0, y0, x1, y1]| {
            [x0 * tile, y0 * tile, ((x1 + 1) * tile).min(width) - x0 * tile, ((y1 + 1) * tile).min(height) - y0 * tile]
        })
        .collect()
}
