"""The compiled kernels against their numpy references, exactly, on random and
edge inputs: 1x1, odd widths, padded strides, all-equal frames, every pixel
changed, BGRA / RGB / GRAY."""

from __future__ import annotations

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


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 17))
@settings(max_examples=400, deadline=None)
def test_tile_changes_match_the_reference_exactly(fs: tuple[np.ndarray, np.ndarray], t: int, tile: int) -> None:
    a, b = fs
    expected = kernels.tile_counts(kernels.changed_mask(a, b, t), tile)
    got = jrc.tile_changes(a, b, t, tile)
    assert got.shape == expected.shape and (got == expected).all()


def test_large_frames_split_across_threads_agree() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (1081, 1921, 4), dtype=np.uint8)
    b = a.copy()
    b[::7, ::5, 1] ^= 0x55
    assert (jrc.tile_changes(a, b, 24, 32) == kernels.tile_counts(kernels.changed_mask(a, b, 24), 32)).all()


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


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 9), st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_parallel_pipeline_matches_the_references(fs: tuple[np.ndarray, np.ndarray], t: int, tile: int, max_regions: int) -> None:
    a, b = fs
    (first, second) = jrc.ParallelVisionPipeline(2, threshold=t, tile=tile, grid=4, max_regions=max_regions).process_frames_parallel([a, b])
    assert first["changed_ratio"] is None and np.array_equal(first["features"], kernels.block_features(a, 4))
    tiles = kernels.tile_counts(kernels.changed_mask(a, b, t), tile)
    h, w = a.shape[:2]
    assert second["changed_ratio"] == tiles.sum() / (w * h)
    assert second["regions"] == kernels.regions(tiles > 0, tile, w, h, max_regions)
