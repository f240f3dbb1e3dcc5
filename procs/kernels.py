"""Plain numpy versions of the vision kernels the stages use. They are the
reference the Rust kernels are checked against, and what the stages run when
the compiled kernels are not available.

Input contract: frames are (H, W, C) or (H, W) uint8 views whose rows may be
padded (pixels within a row contiguous). A pixel changed when
dr^2 + dg^2 + db^2 > t^2 (colour; alpha ignored) or |d| > t (gray).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from jarvis_rust_core import GpuKernels

MAX_REGIONS = 16

try:  # the compiled kernels; without them the stages run these references
    from jarvis_rust_core import change_groups as fast_change_groups
    from jarvis_rust_core import change_pass as fast_change_pass
    from jarvis_rust_core import copy_hashed as fast_copy_hashed
    from jarvis_rust_core import frame_digests as fast_frame_digests
    from jarvis_rust_core import regions as fast_regions
    from jarvis_rust_core import resize_box as fast_resize_box
    from jarvis_rust_core import tile_changes as fast_tile_changes
    from jarvis_rust_core import tile_groups as fast_tile_groups
    from jarvis_rust_core import tile_signatures as fast_tile_signatures
except ImportError as exc:  # an older or partial build of the core
    fast_frame_digests = fast_tile_changes = fast_regions = fast_tile_groups = fast_change_pass = None  # type: ignore[assignment]
    fast_tile_signatures = fast_copy_hashed = fast_change_groups = fast_resize_box = None  # type: ignore[assignment]
    logging.getLogger("jarvis.kernels").warning(
        "the compiled vision kernels are not available (%s): running the numpy references, "
        "which are much slower; rebuild the core with scripts/setup", exc
    )


def frame_hash(frame: np.ndarray) -> int:
    """Exact 64-bit hash of the pixels; row padding never changes it. (The
    compiled kernel hashes with xxh3, this reference with blake2b: hashes are
    only ever compared within one process.)"""
    h = hashlib.blake2b(digest_size=8)
    rows = frame.reshape(frame.shape[0], -1)
    if rows.flags.c_contiguous:
        h.update(rows.data)
    else:
        for row in rows:
            h.update(row.data)
    return int.from_bytes(h.digest(), "little")


def changed_mask(a: np.ndarray, b: np.ndarray, threshold: int) -> np.ndarray:
    """Boolean (H, W): which pixels changed between two frames of one geometry."""
    if a.shape != b.shape:
        raise ValueError(f"frames of different shapes cannot be compared: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        return np.abs(a.astype(np.int16) - b.astype(np.int16)) > threshold
    d = a[..., :3].astype(np.int32) - b[..., :3].astype(np.int32)
    squared: np.ndarray = np.einsum("hwc,hwc->hw", d, d)
    return squared > threshold * threshold


def tile_counts(mask: np.ndarray, tile: int) -> np.ndarray:
    """Changed pixels per tile (edge tiles are partial)."""
    h, w = mask.shape
    th, tw = -(-h // tile), -(-w // tile)
    padded = np.zeros((th * tile, tw * tile), np.int32)
    padded[:h, :w] = mask
    counts: np.ndarray = padded.reshape(th, tile, tw, tile).sum(axis=(1, 3))
    return counts


def tile_signature(frame: np.ndarray, ty: int, tx: int, tile: int) -> int:
    """Exact 64-bit hash of one tile's pixels (edge tiles are partial)."""
    return fingerprint(frame[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile])


def tile_freshness(frame: np.ndarray, previous: np.ndarray, candidates: np.ndarray,
                   tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The change model's per-tile pass (reference): of the `candidates`
    tiles, which differ from `previous` in a colour byte, the box of their
    changed pixels in the frame (x0, y0, x1, y1) and each one's signature
    (`frame_hash` of its pixels); zeros where a tile did not change."""
    h, w = frame.shape[:2]
    rows, cols = candidates.shape
    diff = np.zeros((rows * tile, cols * tile), bool)
    a, b = (frame[..., :3], previous[..., :3]) if frame.ndim == 3 else (frame[..., None], previous[..., None])
    diff[:h, :w] = np.any(a != b, axis=-1)
    diff &= np.repeat(np.repeat(candidates, tile, axis=0), tile, axis=1)
    per = diff.reshape(rows, tile, cols, tile)
    in_rows = np.asarray(per.any(axis=3), bool)  # (rows, tile, cols)
    in_cols = np.asarray(per.any(axis=1), bool)  # (rows, cols, tile)
    fresh = np.asarray(in_rows.any(axis=1), bool)
    boxes = np.zeros((rows, cols, 4), np.int32)
    first_y, last_y = in_rows.argmax(axis=1), tile - 1 - in_rows[:, ::-1].argmax(axis=1)
    first_x, last_x = in_cols.argmax(axis=2), tile - 1 - in_cols[:, :, ::-1].argmax(axis=2)
    ty, tx = np.mgrid[0:rows, 0:cols] * tile
    boxes[..., 0], boxes[..., 1] = tx + first_x, ty + first_y
    boxes[..., 2], boxes[..., 3] = tx + last_x + 1, ty + last_y + 1
    boxes[~fresh] = 0
    sigs = np.zeros((rows, cols), np.uint64)
    for y, x in zip(*np.nonzero(fresh), strict=False):
        sigs[y, x] = frame_hash(frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile])
    return fresh, boxes, sigs


def tile_pass(frame: np.ndarray, reference: np.ndarray, shadow: np.ndarray | None, shadowed: np.ndarray,
              threshold: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The change model's whole per-tile pass (reference): changed pixels per
    tile against the reference, and `tile_freshness` of the tiles changed
    against it (compared with it) and of the `shadowed` tiles (compared with
    `shadow`, what they showed in the frame before)."""
    counts = tile_counts(changed_mask(frame, reference, threshold), tile)
    fresh, boxes, sigs = tile_freshness(frame, reference, (counts > 0) & ~shadowed, tile)
    if shadowed.any():
        assert shadow is not None
        f2, b2, s2 = tile_freshness(frame, shadow, shadowed, tile)
        fresh |= f2
        boxes[f2], sigs[f2] = b2[f2], s2[f2]
    return counts, fresh, boxes, sigs


def tile_labels(marked: np.ndarray) -> np.ndarray:
    """8-connected groups of the marked tiles (reference): each tile's group
    number in row-major order of the groups' first tiles, -1 where unmarked."""
    labels = np.full(marked.shape, -1, np.int32)
    rows, cols = marked.shape
    group = 0
    for start in zip(*np.nonzero(marked), strict=False):
        if labels[start] >= 0:
            continue
        labels[start] = group
        stack = [start]
        while stack:
            y, x = stack.pop()
            for ny in range(max(y - 1, 0), min(y + 2, rows)):
                for nx in range(max(x - 1, 0), min(x + 2, cols)):
                    if marked[ny, nx] and labels[ny, nx] < 0:
                        labels[ny, nx] = group
                        stack.append((ny, nx))
        group += 1
    return labels


def tile_change_groups(marked: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """The marked tiles in `tile_labels`' groups (reference): labels; the
    tiles' rows and columns group after group, row-major within each; where
    each group starts (and the end); each group's union of its tiles' boxes
    (`boxes`: rows, cols, 4 as x0, y0, x1, y1)."""
    labels = tile_labels(marked)
    ys, xs = np.nonzero(labels >= 0)
    group = labels[ys, xs]
    order = np.argsort(group, kind="stable")
    ys, xs, group = ys[order], xs[order], group[order]
    starts = np.searchsorted(group, np.arange(int(labels.max(initial=-1)) + 2)).astype(np.intp)
    b = boxes[ys, xs].reshape(-1, 4)
    union = np.array([[*b[s:e, :2].min(axis=0), *b[s:e, 2:].max(axis=0)] for s, e in zip(starts[:-1], starts[1:], strict=False)],
                     np.int32).reshape(-1, 4)
    return labels, ys.astype(np.intp), xs.astype(np.intp), starts, union


def tile_regions(tiles: np.ndarray, tile: int, width: int, height: int, max_regions: int = MAX_REGIONS) -> list[list[int]]:
    """Changed tiles (a boolean tile map) as merged bounding boxes [x, y, w, h]
    in pixels: 8-connected groups of tiles, then boxes that overlap or touch
    are merged, at most `max_regions` (the closest boxes are merged first)."""
    ys, xs = np.nonzero(tiles)
    if len(ys) == 0:
        return []
    seen = np.zeros_like(tiles, dtype=bool)
    boxes = []
    for y0, x0 in zip(ys.tolist(), xs.tolist(), strict=False):
        if seen[y0, x0]:
            continue
        stack, box = [(y0, x0)], [x0, y0, x0, y0]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            box = [min(box[0], x), min(box[1], y), max(box[2], x), max(box[3], y)]
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < tiles.shape[0] and 0 <= nx < tiles.shape[1] and tiles[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        boxes.append(box)
    boxes = _merge_touching(boxes)
    while len(boxes) > max_regions:
        boxes = _merge_closest(boxes)
    return [
        [x0 * tile, y0 * tile, min((x1 + 1) * tile, width) - x0 * tile, min((y1 + 1) * tile, height) - y0 * tile]
        for x0, y0, x1, y1 in sorted(boxes, key=lambda b: (b[1], b[0]))
    ]


def _merge_touching(boxes: list[list[int]]) -> list[list[int]]:
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] <= b[2] + 1 and b[0] <= a[2] + 1 and a[1] <= b[3] + 1 and b[1] <= a[3] + 1:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _merge_closest(boxes: list[list[int]]) -> list[list[int]]:
    best = None
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            union = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
            cost = union - (a[2] - a[0] + 1) * (a[3] - a[1] + 1) - (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            if best is None or cost < best[0]:
                best = (cost, i, j)
    assert best is not None
    _, i, j = best
    a, b = boxes[i], boxes[j]
    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
    del boxes[j]
    return boxes


def changed_tiles(a: np.ndarray, b: np.ndarray, threshold: int, tile: int) -> np.ndarray:
    """Changed pixels per tile between two frames (the stages' entry point:
    the compiled kernel when available, else the references above)."""
    if fast_tile_changes is not None:
        return fast_tile_changes(a, b, threshold, tile)
    return tile_counts(changed_mask(a, b, threshold), tile)


def change_pass(frame: np.ndarray, reference: np.ndarray, shadow: np.ndarray | None, shadowed: np.ndarray,
                threshold: int, tile: int, signatures: bool = True, gpu: GpuKernels | None = None,
                keys: tuple[int, int] | None = None,
                known_equal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The change model's per-tile pass (the stages' entry point: on `gpu`
    when given, with `keys` naming the frame's and the reference's pixels,
    else the compiled kernel on the calling thread when available, else
    `tile_pass`); without `signatures`, every signature is 0
    (`tile_signatures` gives those needed; on the GPU they are always made so).
    `known_equal` (`known_equal_rows`) marks the rows of tiles known to show
    the reference: the compiled kernel does not read them (unless shadowed),
    the GPU reads them all the same."""
    if gpu is not None:
        frame_key, reference_key = keys if keys is not None else (None, None)
        counts, fresh, boxes = gpu.change_pass(frame, reference, shadow, shadowed, threshold, tile, frame_key=frame_key,
                                               reference_key=reference_key)
        sigs = tile_signatures(frame, fresh, tile) if signatures else np.zeros(fresh.shape, np.uint64)
        return counts, fresh, boxes, sigs
    if fast_change_pass is not None:
        return fast_change_pass(frame, reference, shadow, shadowed, threshold, tile, parallel=False,
                                signatures=signatures, known_equal=known_equal)
    counts, fresh, boxes, sigs = tile_pass(frame, reference, shadow, shadowed, threshold, tile)
    if known_equal is not None:  # as the compiled kernel: believed, where no tile is shadowed
        skip = known_equal & ~shadowed.any(axis=1)
        counts[skip], fresh[skip], boxes[skip], sigs[skip] = 0, False, 0, 0
    return counts, fresh, boxes, sigs if signatures else np.zeros_like(sigs)


def tile_signatures(frame: np.ndarray, wanted: np.ndarray, tile: int) -> np.ndarray:
    """The signatures of the `wanted` tiles as `change_pass` makes them, 0
    elsewhere (the compiled kernel when available, else each tile's `frame_hash`, as
    `tile_freshness` makes them)."""
    if fast_tile_signatures is not None:
        return fast_tile_signatures(frame, np.asarray(wanted, dtype=bool), tile)
    sigs = np.zeros(wanted.shape, np.uint64)
    for y, x in zip(*np.nonzero(wanted), strict=False):
        sigs[y, x] = frame_hash(frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile])
    return sigs


def tile_groups(marked: np.ndarray) -> np.ndarray:
    """8-connected groups of marked tiles (the compiled kernel when
    available, else `tile_labels`)."""
    if fast_tile_groups is not None:
        return fast_tile_groups(np.asarray(marked, dtype=bool))
    return tile_labels(marked)


def change_groups(marked: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """The marked tiles grouped, with each group's box (the compiled kernel
    when available, else `tile_change_groups`)."""
    if fast_change_groups is not None:
        return fast_change_groups(np.asarray(marked, dtype=bool), np.asarray(boxes, dtype=np.int32))
    return tile_change_groups(marked, boxes)


def regions(tiles: np.ndarray, tile: int, width: int, height: int, max_regions: int = MAX_REGIONS) -> list[list[int]]:
    """Changed tiles as merged bounding boxes [x, y, w, h] (the stages' entry
    point: the compiled kernel when available, else `tile_regions`)."""
    if fast_regions is not None:
        return fast_regions(np.asarray(tiles, dtype=bool), tile, width, height, max_regions)
    return tile_regions(tiles, tile, width, height, max_regions)


MAX_BANDS = 36  # as the core's kernels::MAX_BANDS: a hand-off record has room for this many band digests
MIN_BAND_ROWS = 32  # a 1080p frame's bands are its 32-pixel tile rows


def band_rows(height: int) -> int:
    """Rows per band of a frame `height` rows tall (`frame_digests`)."""
    return max(MIN_BAND_ROWS, -(-height // MAX_BANDS))


def frame_digests(frame: np.ndarray) -> tuple[int, bytes]:
    """The frame's digest and its bands' (`band_rows` rows each, the last
    shorter), the latter as little-endian uint64 bytes; the frame's is the
    hash of those bytes (the compiled kernel: xxh3, else
    `reference_frame_digests`). A band equal in two frames has one digest."""
    return fast_frame_digests(frame) if fast_frame_digests is not None else reference_frame_digests(frame)


def reference_frame_digests(frame: np.ndarray) -> tuple[int, bytes]:
    """`frame_digests` with blake2b, as `frame_hash`."""
    per_band = band_rows(frame.shape[0])
    bands = b"".join(frame_hash(frame[y : y + per_band]).to_bytes(8, "little")
                     for y in range(0, frame.shape[0], per_band))
    return int.from_bytes(hashlib.blake2b(bands, digest_size=8).digest(), "little"), bands


def fingerprint(frame: np.ndarray) -> int:
    """Exact frame hash for dedup, as capture sends it (`frame_digests`)."""
    return frame_digests(frame)[0]


def copy_hashed(src: np.ndarray, dst: np.ndarray) -> tuple[int, bytes]:
    """Copies `src` into `dst` (its shape; rows may be padded) and returns
    `frame_digests(src)`; compiled, the pixels are read from memory once."""
    if fast_copy_hashed is not None:
        return fast_copy_hashed(src, dst)
    np.copyto(dst, src)
    return frame_digests(dst)


def known_equal_rows(bands: bytes, reference_bands: bytes, height: int, tile: int) -> np.ndarray:
    """Per row of `tile`-pixel tiles of a frame `height` rows tall: whether
    every band it overlaps has the reference's digest (its pixels are the
    reference's: `change_pass` need not read it). The digests are
    `frame_digests`' of the two frames, of one geometry."""
    per_band = band_rows(height)
    equal = np.frombuffer(bands, "<u8") == np.frombuffer(reference_bands, "<u8")
    unequal_before = np.concatenate([[0], np.cumsum(~equal)])  # bands differing before each band
    starts = np.arange(0, height, tile)
    first, last = starts // per_band, (np.minimum(starts + tile, height) - 1) // per_band
    return np.asarray(unequal_before[last + 1] == unequal_before[first], bool)


def luma(frame: np.ndarray) -> np.ndarray:
    """Integer luma (77 R + 150 G + 29 B) >> 8 of each pixel, (H, W) uint8."""
    if frame.ndim == 2:
        return frame
    r, g, b = (
        (frame[..., 2], frame[..., 1], frame[..., 0]) if frame.shape[2] == 4 else (frame[..., 0], frame[..., 1], frame[..., 2])
    )
    return ((77 * r.astype(np.uint32) + 150 * g.astype(np.uint32) + 29 * b.astype(np.uint32)) >> 8).astype(np.uint8)


def luma_histogram(frame: np.ndarray) -> np.ndarray:
    """256 counts of the luma values."""
    return np.bincount(luma(frame).reshape(-1), minlength=256).astype(np.uint64)


def block_features(frame: np.ndarray, grid: int = 8) -> np.ndarray:
    """[mean, std] of the luma per block of a grid x grid division (block k
    spans k*H//grid .. (k+1)*H//grid); empty blocks give 0, 0."""
    y = luma(frame)
    h, w = y.shape
    out = []
    for by in range(grid):
        for bx in range(grid):
            block = y[by * h // grid : (by + 1) * h // grid, bx * w // grid : (bx + 1) * w // grid].astype(np.uint64)
            n = block.size
            if n == 0:
                out += [0.0, 0.0]
                continue
            s, ss = int(block.sum()), int((block * block).sum())
            mean = s / n
            out += [mean, math.sqrt(max(ss / n - mean * mean, 0.0))]
    return np.array(out, dtype=np.float64)


def thumbnail(frame: np.ndarray, size: int = 16) -> np.ndarray:
    """The mean luma (rounded down) of each block of a size x size division
    (block k spans k*H//size .. (k+1)*H//size), (size, size) uint8; empty
    blocks give 0."""
    y = luma(frame).astype(np.uint64)
    h, w = y.shape
    out = np.zeros((size, size), np.uint8)
    for by in range(size):
        for bx in range(size):
            block = y[by * h // size : (by + 1) * h // size, bx * w // size : (bx + 1) * w // size]
            if block.size:
                out[by, bx] = int(block.sum()) // block.size
    return out


def downscale(src: np.ndarray, out: np.ndarray) -> None:
    """Shrinks `src` (H, W, C) into `out` (h, w, C), h <= H and w <= W, rows of
    either may be padded. Each output pixel is the mean, rounded half up, of
    its box of source pixels (box k spans k*H//h .. (k+1)*H//h down, and the
    same across): every source pixel counts once, so a change of a single
    pixel never vanishes from the smaller frame as it can when sampling.
    Numpy only, with no compiled twin: capture runs it only for a screen
    larger than the ring's slots (tens of ms for 2560x1440 into 1920x1080)."""
    (sh, sw), (h, w) = src.shape[:2], out.shape[:2]
    if src.ndim != 3 or src.shape[2:] != out.shape[2:] or not (0 < h <= sh and 0 < w <= sw):
        raise ValueError(
            f"downscale shrinks (H, W, C) into (h, w, C) with 0 < h <= H, 0 < w <= W, not {src.shape} into {out.shape}"
        )
    ys, ny = _boxes(sh, h)
    xs, nx = _boxes(sw, w)
    # Sums of up to 257 values of 255 fit in 16 bits, and float32 divides integers
    # below 2**24 with the exact floor; larger boxes take 32 bits and float64.
    wide, real = (np.uint16, np.float32) if int(ny.max()) * int(nx.max()) <= 257 else (np.uint32, np.float64)
    rows = _box_sums(src, ys, ny, 0, wide)
    count = np.multiply.outer(ny, nx)
    if wide is np.uint16 and rows.shape[2] == 4:
        # BGRA: each pixel's four 16-bit sums move and add as one 64-bit word (no
        # lane carries into the next), about 3x faster than four-element rows.
        packed = _box_sums(rows.view(np.uint64)[..., 0], xs, nx, 1, np.uint64)
        packed += (count // 2).astype(np.uint64) * np.uint64(0x0001_0001_0001_0001)
        sums = packed[..., None].view(wide)
    else:
        sums = _box_sums(rows, xs, nx, 1, wide)
        sums += (count // 2)[..., None].astype(wide)
    np.divide(sums, count[..., None].astype(real), out=out, casting="unsafe")  # the cast to uint8 takes the floor


RESIZE_ONE = 1 << 14  # the box weights' fixed point


def box_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel along one axis, its first source pixel and the weights
    of that and the next ones ((n_out,) and (n_out, taps) int64). Output pixel
    k covers source [k*n_in/n_out, (k+1)*n_in/n_out); a source pixel's weight
    is its overlap with that span in RESIZE_ONEs of the span, rounded down,
    and what rounding lost goes to the pixel of the largest overlap (the
    first of equals). Every pixel gets the same number of taps (zero weights
    added; a span near the end starts earlier instead of reading past it)."""
    spans = []
    for k in range(n_out):
        lo, hi = k * n_in, (k + 1) * n_in  # in 1/n_out source pixels
        first, last = lo // n_out, (hi - 1) // n_out
        overlaps = [min(hi, (i + 1) * n_out) - max(lo, i * n_out) for i in range(first, last + 1)]
        w = [o * RESIZE_ONE // n_in for o in overlaps]
        w[int(np.argmax(overlaps))] += RESIZE_ONE - sum(w)
        spans.append((first, w))
    taps = max(len(w) for _, w in spans)
    firsts = np.array([min(first, n_in - taps) for first, _ in spans], np.int64)
    weights = np.zeros((n_out, taps), np.int64)
    for k, (first, w) in enumerate(spans):
        at = first - int(firsts[k])
        weights[k, at : at + len(w)] = w
    return firsts, weights


def resize_box_reference(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` (BGRA, RGB or gray) shrunk to (height, width, 3) RGB, each
    output pixel the area average of the source pixels it covers: rows first,
    then columns, each pass in RESIZE_ONE fixed point rounded to 8 bits."""
    f = frame if frame.ndim == 3 else frame[..., None]
    (h, w, ch) = f.shape
    if not (0 < width <= w and 0 < height <= h):
        raise ValueError(f"resize_box shrinks a {w}x{h} frame to at most its own size, not {width}x{height}")
    half = RESIZE_ONE // 2
    firsts, weights = box_taps(h, height)
    rows = sum(weights[:, t, None, None] * f[firsts + t].astype(np.int64) for t in range(weights.shape[1]))
    rows = (rows + half) >> 14  # (height, w, ch)
    firsts, weights = box_taps(w, width)
    out = sum(weights[None, :, t, None] * rows[:, firsts + t] for t in range(weights.shape[1]))
    out = (out + half) >> 14  # (height, width, ch)
    rgb = {4: [2, 1, 0], 3: [0, 1, 2], 1: [0, 0, 0]}[ch]
    return np.ascontiguousarray(out[..., rgb], dtype=np.uint8)


def resize_box(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`resize_box_reference`, compiled when available (1080p to 1456x819:
    ~5 ms compiled, ~0.6 s in numpy)."""
    if fast_resize_box is not None:
        return fast_resize_box(frame, width, height)
    return resize_box_reference(frame, width, height)


def _boxes(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of k boxes over n pixels starts, and how many pixels it spans."""
    starts = np.arange(k) * n // k
    return starts, np.diff(starts, append=n)


def _box_sums(a: np.ndarray, starts: np.ndarray, counts: np.ndarray, axis: int, wide: type) -> np.ndarray:
    """Sums of a's boxes along `axis` (0 or 1), a whole slice of boxes per
    gather: the boxes differ in size by one pixel at most, so a few gathers do."""
    sums: np.ndarray = np.take(a, starts, axis=axis).astype(wide, copy=False)
    for j in range(1, int(counts.max())):
        longer = np.flatnonzero(counts > j)
        part = np.take(a, starts[longer] + j, axis=axis)
        if len(longer) == len(starts):
            sums += part
        elif axis == 0:
            sums[longer] += part
        else:
            sums[:, longer] += part
    return sums
