"""The compiled kernels against their numpy references, exactly, on random and
edge inputs: 1x1, odd widths, padded strides, all-equal frames, every pixel
changed, BGRA / RGB / GRAY."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import jarvis_rust_core as jrc
from procs import kernels


@st.composite
def frames(draw: st.DrawFn, pair: bool = False) -> tuple[np.ndarray, ...]:
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    c = draw(st.sampled_from([1, 3, 4]))
    pad = draw(st.integers(0, 70))
    def one() -> np.ndarray:
        base = draw(hnp.arrays(np.uint8, (h, w * c + pad)))
        view = base[:, : w * c].reshape(h, w, c)  # rows `pad` bytes apart beyond the pixels
        return view[..., 0] if c == 1 else view
    a = one()
    if not pair:
        return (a,)
    kind = draw(st.sampled_from(["random", "equal", "all", "few"]))
    if kind == "random":
        b = one()
    elif kind == "equal":
        b = a.copy()
    elif kind == "all":
        b = (a.astype(np.int16) + 128).astype(np.uint8)
    else:
        b = a.copy()
        flat = b.reshape(-1)
        for i in draw(st.lists(st.integers(0, flat.size - 1), max_size=5)):
            flat[i] ^= 0xFF
    return a, b


@given(frames())
@settings(max_examples=300, deadline=None)
def test_frame_hash_is_xxh3_of_the_packed_pixels(fs: tuple[np.ndarray]) -> None:
    (a,) = fs
    packed = np.ascontiguousarray(a)
    assert jrc.frame_hash(a) == jrc.frame_hash(packed) == xxhash.xxh3_64_intdigest(packed.tobytes())


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 17), st.booleans())
@settings(max_examples=400, deadline=None)
def test_tile_changes_match_the_reference_exactly(fs: tuple[np.ndarray, np.ndarray], t: int, tile: int, parallel: bool) -> None:
    a, b = fs
    expected = kernels.tile_counts(kernels.changed_mask(a, b, t), tile)
    got = jrc.tile_changes(a, b, t, tile, parallel=parallel)
    assert got.shape == expected.shape and (got == expected).all()


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 17), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1),
       st.booleans())
@settings(max_examples=300, deadline=None)
def test_change_pass_matches_the_reference_exactly(fs: tuple[np.ndarray, np.ndarray], t: int, tile: int, share: float,
                                                  seed: int, parallel: bool) -> None:
    """The whole pass: counts against the reference, and freshness against it
    or, for shadowed tiles, against the shadow (a third frame); each fresh
    tile's signature the xxh3 of its rows, each seeded with the rows above's."""
    a, b = fs
    rows, cols = -(-a.shape[0] // tile), -(-a.shape[1] // tile)
    rng = np.random.default_rng(seed)
    shadowed = rng.random((rows, cols)) < share
    shadow = rng.integers(0, 256, a.shape, np.uint8)
    same = rng.random(a.shape[:2]) < 0.5
    shadow[same] = a[same]  # partly equal to the frame
    counts, fresh, boxes, _ = kernels.tile_pass(a, b, shadow, shadowed, t, tile)
    got = jrc.change_pass(a, b, shadow, shadowed, t, tile, parallel=parallel)
    assert (got[0] == counts).all() and (got[1] == fresh).all() and (got[2] == boxes).all()
    assert not got[3][~fresh].any()
    for y, x in zip(*np.nonzero(fresh), strict=False):
        sig = 0
        for r in a[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]:
            sig = xxhash.xxh3_64_intdigest(np.ascontiguousarray(r).tobytes(), seed=sig)
        assert got[3][y, x] == sig
    # Unhashed, the same pass; the signatures asked for afterwards, the same.
    bare = jrc.change_pass(a, b, shadow, shadowed, t, tile, parallel=parallel, signatures=False)
    assert all((x == y).all() for x, y in zip(bare[:3], got[:3], strict=False)) and not bare[3].any()
    wanted = fresh & (rng.random(fresh.shape) < 0.5)
    assert (jrc.tile_signatures(a, wanted, tile) == np.where(wanted, got[3], 0)).all()


def test_change_pass_bad_input_is_a_clear_error() -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(jrc.FrameGeometryError, match="shadowed"):
        jrc.change_pass(a, a, None, np.zeros((3, 3), bool), 24, 4)
    with pytest.raises(jrc.FrameGeometryError, match="geometry"):
        jrc.change_pass(a, a[:4], None, np.zeros((2, 2), bool), 24, 4)
    with pytest.raises(jrc.RingConfigError, match="tile"):
        jrc.change_pass(a, a, None, np.zeros((2, 2), bool), 24, 0)
    with pytest.raises(jrc.RingConfigError, match="threshold"):
        jrc.change_pass(a, a, None, np.zeros((2, 2), bool), 256, 4)
    with pytest.raises(jrc.FrameGeometryError, match="wanted"):
        jrc.tile_signatures(a, np.zeros((3, 3), bool), 4)
    with pytest.raises(jrc.RingConfigError, match="tile"):
        jrc.tile_signatures(a, np.zeros((2, 2), bool), 0)
    with pytest.raises(jrc.RingConfigError, match="shadow"):
        jrc.change_pass(a, a, None, np.ones((2, 2), bool), 24, 4)
    with pytest.raises(jrc.FrameGeometryError):
        jrc.change_pass(a, a, None, np.ones((3, 2), bool), 24, 4)


@pytest.mark.parametrize("channels", [4, 3, 1])
def test_large_frames_split_across_threads_agree(channels: int) -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (1081, 1921, channels), dtype=np.uint8)
    b = a.copy()
    b[::7, ::5] ^= 0x55  # every 7th row changed: the other rows take the equal-row shortcut
    a, b = (a[..., 0], b[..., 0]) if channels == 1 else (a, b)
    expected = kernels.tile_counts(kernels.changed_mask(a, b, 24), 32)
    assert expected.sum() > 0
    for parallel in (True, False):
        assert (jrc.tile_changes(a, b, 24, 32, parallel=parallel) == expected).all()


def test_tiles_taller_than_the_u16_column_counts() -> None:
    # a tile of more than 65535 rows: column counts are folded into the tile
    # totals before their u16 could overflow
    a = np.zeros((70_001, 2), np.uint8)
    b = np.full((70_001, 2), 200, np.uint8)
    b[::5, 0] = 0
    mask = kernels.changed_mask(a, b, 24)  # (tile_counts would pad to tile x tile)
    assert (jrc.tile_changes(a, b, 24, 70_000, parallel=False) == [[mask[:70_000].sum()], [mask[70_000:].sum()]]).all()
    assert (jrc.tile_changes(a, b, 24, 100_000, parallel=False) == [[mask.sum()]]).all()


@st.composite
def tile_maps(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int]:
    tile = draw(st.integers(1, 40))
    w, h = draw(st.integers(1, 16 * tile)), draw(st.integers(1, 16 * tile))
    shape = (-(-h // tile), -(-w // tile))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    tiles = np.random.default_rng(seed).random(shape) < density
    return tiles, tile, w, h


@given(tile_maps(), st.integers(1, 20))
@settings(max_examples=300, deadline=None)
def test_regions_match_the_reference_exactly(m: tuple[np.ndarray, int, int, int], max_regions: int) -> None:
    tiles, tile, w, h = m
    expected = kernels.tile_regions(tiles, tile, w, h, max_regions)
    assert jrc.regions(tiles, tile, w, h, max_regions) == expected
    counts = tiles.astype(np.uint32) * 7  # tile_changes' counts: nonzero = changed
    assert jrc.regions(counts, tile, w, h, max_regions) == expected
    assert kernels.regions(tiles, tile, w, h, max_regions) == expected
    assert kernels.regions(counts.astype(np.int64), tile, w, h, max_regions) == expected  # any dtype, nonzero = changed


@given(tile_maps())
@settings(max_examples=300, deadline=None)
def test_tile_groups_match_the_reference_exactly(m: tuple[np.ndarray, int, int, int]) -> None:
    tiles = m[0]
    assert (jrc.tile_groups(tiles) == kernels.tile_labels(tiles)).all()


@given(tile_maps(), st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_change_groups_match_the_reference_exactly(m: tuple[np.ndarray, int, int, int], seed: int) -> None:
    """Each group's tiles row-major, the groups in label order, and each
    group's box the union of its tiles' boxes."""
    tiles = m[0]
    boxes = np.random.default_rng(seed).integers(-5, 5000, (*tiles.shape, 4), dtype=np.int32)
    got, expected = jrc.change_groups(tiles, boxes), kernels.tile_change_groups(tiles, boxes)
    pairs: list[tuple[np.ndarray, np.ndarray]] = list(zip(got, expected, strict=True))
    for mine, theirs in pairs:
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and (mine == theirs).all()
    labels, ys, xs, starts, union = got
    assert starts[0] == 0 and starts[-1] == tiles.sum() and len(union) == len(starts) - 1
    for g, (s, e) in enumerate(zip(starts[:-1], starts[1:], strict=True)):
        assert (labels[ys[s:e], xs[s:e]] == g).all() and e > s
        own = boxes[ys[s:e], xs[s:e]]
        assert union[g].tolist() == [*own[:, :2].min(axis=0), *own[:, 2:].max(axis=0)]


def test_change_groups_bad_input_is_a_clear_error() -> None:
    with pytest.raises(jrc.FrameGeometryError, match="boxes"):
        jrc.change_groups(np.zeros((2, 3), bool), np.zeros((2, 2, 4), np.int32))


def test_regions_of_many_scattered_changes_match_the_reference() -> None:
    # ~100 isolated boxes of uneven sizes: many merges, many ties in cost
    rng = np.random.default_rng(9)
    tiles = np.zeros((40, 40), bool)
    tiles[::4, ::4] = True
    tiles[1::8, 1::4] = rng.random((5, 10)) < 0.5
    for max_regions in (1, 7, 16, 60):
        assert jrc.regions(tiles, 16, 640, 640, max_regions) == kernels.tile_regions(tiles, 16, 640, 640, max_regions)


def test_regions_bad_input_is_a_clear_error() -> None:
    tiles = np.zeros((4, 5), bool)
    with pytest.raises(jrc.FrameGeometryError, match="tile map"):
        jrc.regions(tiles, 32, 100, 100)
    with pytest.raises(jrc.FrameGeometryError, match="uint32 or bool"):
        jrc.regions(tiles.astype(np.float32), 32, 160, 128)  # type: ignore[arg-type]
    with pytest.raises(jrc.RingConfigError):
        jrc.regions(tiles, 32, 160, 128, 0)


@given(frames(), st.integers(1, 20))
@settings(max_examples=300, deadline=None)
def test_thumbnail_matches_the_reference(fs: tuple[np.ndarray], size: int) -> None:
    (a,) = fs
    got = jrc.thumbnail(a, size)
    assert got.dtype == np.uint8 and got.shape == (size, size)
    assert np.array_equal(got, kernels.thumbnail(a, size))


@given(frames(), st.data())
@settings(max_examples=300, deadline=None)
def test_resize_box_matches_the_reference(fs: tuple[np.ndarray], data: st.DataObject) -> None:
    (a,) = fs
    h, w = a.shape[:2]
    width, height = data.draw(st.integers(1, w)), data.draw(st.integers(1, h))
    got = jrc.resize_box(a, width, height)
    assert got.dtype == np.uint8 and got.shape == (height, width, 3)
    assert np.array_equal(got, kernels.resize_box_reference(a, width, height))


def dense_box_weights(n_in: int, n_out: int) -> np.ndarray:
    firsts, weights = kernels.box_taps(n_in, n_out)
    dense = np.zeros((n_out, n_in))
    for t in range(weights.shape[1]):
        dense[np.arange(n_out), firsts + t] += weights[:, t] / kernels.RESIZE_ONE
    return dense


def test_resize_box_is_an_area_average() -> None:
    a = np.random.default_rng(9).integers(0, 256, (540, 960, 4), dtype=np.uint8)
    got = jrc.resize_box(a, 728, 410).astype(np.float64)  # the ratios of 1080p to 1456x819
    # The exact area averages, in floating point: within a level of them (each pass rounds once).
    wy, wx = (dense_box_weights(n, k) for n, k in ((540, 410), (960, 728)))
    exact = np.einsum("yh,hwc,xw->yxc", wy, a[..., [2, 1, 0]].astype(np.float64), wx, optimize=True)
    assert np.abs(got - exact).max() <= 1.0
    same = jrc.resize_box(a, 960, 540)  # the same size: the pixels, as RGB
    assert np.array_equal(same, a[..., [2, 1, 0]])
    one_line = np.zeros((100, 131, 4), np.uint8)
    one_line[:, 65, :3] = 255  # a one-pixel line never vanishes (every source pixel counts, by its share)
    assert jrc.resize_box(one_line, 100, 100)[..., 0].max(axis=1).min() > 0


def test_resize_box_of_a_whole_1080p_frame_equals_the_reference() -> None:
    a = np.random.default_rng(11).integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    assert np.array_equal(jrc.resize_box(a, 1456, 819), kernels.resize_box_reference(a, 1456, 819))


def test_resize_box_bad_sizes_are_clear_errors() -> None:
    a = np.zeros((8, 10, 4), np.uint8)
    for width, height in ((0, 4), (4, 0), (11, 8), (10, 9)):
        with pytest.raises(jrc.FrameGeometryError, match="resize_box"):
            jrc.resize_box(a, width, height)


def test_thumbnail_of_a_large_frame_and_bad_sizes() -> None:
    a = np.random.default_rng(5).integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    assert np.array_equal(jrc.thumbnail(a, 16), kernels.thumbnail(a, 16))
    for size in (0, 257):
        with pytest.raises(jrc.RingConfigError):
            jrc.thumbnail(a, size)


def test_bad_input_is_a_clear_error() -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(jrc.FrameGeometryError, match="different geometry"):
        jrc.tile_changes(a, np.zeros((8, 9, 4), np.uint8), 10, 4)
    with pytest.raises(jrc.FrameGeometryError, match="dtype"):
        jrc.tile_changes(a, a.astype(np.int16), 10, 4)
    with pytest.raises(jrc.FrameGeometryError, match="contiguous"):
        jrc.frame_hash(np.zeros((8, 16, 4), np.uint8)[:, ::2])
    with pytest.raises(jrc.RingConfigError):
        jrc.tile_changes(a, a, 256, 4)
    with pytest.raises(jrc.RingConfigError):
        jrc.tile_changes(a, a, 10, 0)


@given(frames(), st.integers(1, 12))
@settings(max_examples=300, deadline=None)
def test_luma_histogram_and_block_features_match_the_references(fs: tuple[np.ndarray], grid: int) -> None:
    (a,) = fs
    assert (jrc.luma_histogram(a) == kernels.luma_histogram(a)).all()
    got, expected = jrc.block_features(a, grid), kernels.block_features(a, grid)
    assert got.shape == (2 * grid * grid,) and np.array_equal(got, expected)


def test_block_sums_of_very_tall_blocks_do_not_overflow() -> None:
    # more than 65536 rows in one block: the column sums of squares are folded
    # into the block totals before a u32 could overflow
    a = np.full((70_001, 3), 255, np.uint8)
    a[::3, 1] = 7
    for grid in (1, 2):
        assert np.array_equal(jrc.block_features(a, grid), kernels.block_features(a, grid))
        assert np.array_equal(jrc.thumbnail(a, grid), kernels.thumbnail(a, grid))


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 9), st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_parallel_pipeline_matches_the_references(fs: tuple[np.ndarray, np.ndarray], t: int, tile: int, max_regions: int) -> None:
    a, b = fs
    (first, second) = jrc.ParallelVisionPipeline(
        2, threshold=t, tile=tile, grid=4, max_regions=max_regions
    ).process_frames_parallel([a, b])
    assert first["changed_ratio"] is None and np.array_equal(first["features"], kernels.block_features(a, 4))
    tiles = kernels.tile_counts(kernels.changed_mask(a, b, t), tile)
    h, w = a.shape[:2]
    assert second["changed_ratio"] == tiles.sum() / (w * h)
    assert second["regions"] == kernels.tile_regions(tiles > 0, tile, w, h, max_regions)


@pytest.mark.parametrize("channels", [4, 3, 1])
def test_copy_hashed_copies_and_hashes_like_frame_digests(channels: int) -> None:
    rng = np.random.default_rng(channels)
    src = rng.integers(0, 256, (77, 53, channels), np.uint8)
    src = src[..., 0] if channels == 1 else src
    padded = np.full((77, 53 * channels + 13), 5, np.uint8)  # rows padded, like a ring slot
    dst = padded[:, : 53 * channels].reshape(src.shape)
    assert jrc.copy_hashed(src[::1], dst) == jrc.frame_digests(src)
    assert (dst == src).all() and (padded[:, 53 * channels :] == 5).all()
    strided_src = np.zeros((77, 60, channels), np.uint8)[:, :53]  # a padded source too
    strided_src = strided_src[..., 0] if channels == 1 else strided_src
    strided_src[...] = src
    assert jrc.copy_hashed(strided_src, np.empty_like(src)) == jrc.frame_digests(src)


@given(st.integers(1, 200), st.integers(1, 9), st.sampled_from([1, 3, 4]), st.integers(0, 40), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_frame_digests_hash_each_band_and_the_frame_hashes_them(h: int, w: int, c: int, pad: int, seed: int) -> None:
    """Compiled: xxh3 of each band of band_rows rows, the frame's the xxh3 of
    those; the reference (blake2b) has the same bands: the same ones are
    equal between two frames."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w * c + pad), np.uint8)
    a = base[:, : w * c].reshape(h, w, c)
    a = a[..., 0] if c == 1 else a
    per = jrc.band_rows(h)
    digest, bands = jrc.frame_digests(a)
    packed = np.ascontiguousarray(a)
    want = [xxhash.xxh3_64_intdigest(packed[y : y + per].tobytes()) for y in range(0, h, per)]
    assert np.frombuffer(bands, "<u8").tolist() == want
    assert digest == xxhash.xxh3_64_intdigest(bands) == kernels.fingerprint(a)
    b = a.copy()
    b[rng.integers(0, h)] ^= 1  # one row
    mine, theirs = jrc.frame_digests(b)[1], jrc.frame_digests(a)[1]
    ref_mine, ref_theirs = kernels.reference_frame_digests(b)[1], kernels.reference_frame_digests(a)[1]
    assert len(ref_mine) == len(mine)
    assert (np.frombuffer(mine, "<u8") == np.frombuffer(theirs, "<u8")).tolist() == \
        (np.frombuffer(ref_mine, "<u8") == np.frombuffer(ref_theirs, "<u8")).tolist()


def test_band_rows_match_the_reference_and_bound_the_bands() -> None:
    assert jrc.band_rows(1080) == kernels.band_rows(1080) == 32, "a 1080p frame's bands are its 32-pixel tile rows"
    for h in range(1, 20000):
        assert jrc.band_rows(h) == kernels.band_rows(h)
        assert -(-h // kernels.band_rows(h)) <= kernels.MAX_BANDS


@given(st.integers(1, 150), st.integers(1, 40), st.integers(1, 48), st.floats(0.0, 0.5), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_change_pass_with_rows_known_equal_matches_the_reference(h: int, w: int, tile: int, share: float,
                                                                  seed: int) -> None:
    """Rows of tiles whose bands' digests match the reference's are not read,
    and the pass is what the reference gives reading everything; shadowed
    rows among them are read (a tile changed back to the reference is fresh)."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (h, w, 4), np.uint8)
    frame = ref.copy()
    for y in rng.choice(h, size=min(h, int(rng.integers(0, 4))), replace=False):
        frame[y, rng.integers(0, w)] ^= 0x80  # a few rows changed
    rows, cols = -(-h // tile), -(-w // tile)
    shadowed = rng.random((rows, cols)) < share
    shadow = rng.integers(0, 256, ref.shape, np.uint8)
    known = kernels.known_equal_rows(jrc.frame_digests(frame)[1], jrc.frame_digests(ref)[1], h, tile)
    want = kernels.tile_pass(frame, ref, shadow, shadowed, 24, tile)
    got = jrc.change_pass(frame, ref, shadow, shadowed, 24, tile, known_equal=known)
    assert all((x == y).all() for x, y in zip(got[:3], want[:3], strict=True))
    assert (got[3] == jrc.change_pass(frame, ref, shadow, shadowed, 24, tile)[3]).all()
    with mock.patch.object(kernels, "fast_change_pass", None):  # the stages' fallback believes the marks alike
        wrong = np.ones_like(known)
        fallback = kernels.change_pass(frame, ref, shadow, shadowed, 24, tile, signatures=False, known_equal=wrong)
    compiled = jrc.change_pass(frame, ref, shadow, shadowed, 24, tile, signatures=False, known_equal=wrong)
    assert all((x == y).all() for x, y in zip(fallback[:3], compiled[:3], strict=True))
    changed_rows = np.unique(np.nonzero((frame != ref).any(axis=(1, 2)))[0] // tile)
    assert not known[changed_rows].any(), "a row of tiles with a changed pixel is never known equal"
    if len(changed_rows) == 0:
        assert known.all()
    with pytest.raises(jrc.FrameGeometryError, match="known_equal"):
        jrc.change_pass(frame, ref, shadow, shadowed, 24, tile, known_equal=np.ones(rows + 1, bool))


def test_copy_hashed_refuses_what_it_cannot_write() -> None:
    src = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(jrc.FrameGeometryError, match="shape"):
        jrc.copy_hashed(src, np.zeros((8, 9, 4), np.uint8))
    with pytest.raises(jrc.FrameGeometryError, match="uint8"):
        jrc.copy_hashed(src, np.zeros((8, 8, 4), np.float32))
    with pytest.raises(jrc.FrameGeometryError, match="rows"):
        jrc.copy_hashed(src, np.zeros((8, 8, 8), np.uint8)[..., ::2])
    with pytest.raises(jrc.FrameGeometryError, match="rows"):
        jrc.copy_hashed(src, np.zeros((8, 8, 4), np.uint8)[::-1])
    readonly = np.zeros((8, 8, 4), np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(jrc.FrameGeometryError, match="destination"):
        jrc.copy_hashed(src, readonly)
    with pytest.raises(jrc.FrameGeometryError, match="overlaps"):
        jrc.copy_hashed(src, src)
    rows = np.arange(9 * 8 * 4, dtype=np.uint8).reshape(9, 8, 4)
    with pytest.raises(jrc.FrameGeometryError, match="overlaps"):
        jrc.copy_hashed(rows[:8], rows[1:])  # one row further on
    expected = jrc.frame_digests(rows[:4])
    assert jrc.copy_hashed(rows[:4], rows[4:8]) == expected  # next to each other is fine

