"""The GPU backend (jarvis_rust_core.GpuKernels, wgpu): the same answers as
the CPU kernels and the numpy reference, exactly, on whatever adapter the
machine has; on Linux CI that is Mesa's software Vulkan (lavapipe,
scripts/system-packages.txt), so these tests never skip for want of a GPU."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels import frames

import jarvis_rust_core as jrc
from procs import kernels


@pytest.fixture(scope="module")
def gpu() -> jrc.GpuKernels:
    return jrc.GpuKernels(software=True)  # a hardware adapter when there is one


def test_the_adapter_is_named(gpu: jrc.GpuKernels) -> None:
    info = gpu.adapter
    assert set(info) == {"name", "backend", "device_type", "driver", "software"}
    assert info["backend"] in ("vulkan", "metal", "dx12") and info["name"]
    if info["software"]:  # without software=True, a software adapter is refused: the CPU does better
        with pytest.raises(jrc.GpuError, match="no hardware GPU adapter"):
            jrc.GpuKernels()


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 17))
@settings(max_examples=150, deadline=None)
def test_tile_changes_on_the_gpu_equal_the_cpu_exactly(gpu: jrc.GpuKernels, fs: tuple[np.ndarray, np.ndarray], t: int,
                                                        tile: int) -> None:
    a, b = fs
    got = gpu.tile_changes(a, b, t, tile)
    assert got.dtype == np.uint32
    assert np.array_equal(got, jrc.tile_changes(a, b, t, tile))
    assert np.array_equal(got, kernels.tile_counts(kernels.changed_mask(a, b, t), tile))


@pytest.mark.parametrize("shape", [(1, 1, 4), (1080, 1920, 4), (1080, 1920, 3), (1080, 1920), (2160, 3840, 4)])
def test_tile_changes_on_the_gpu_at_fixed_sizes(gpu: jrc.GpuKernels, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape) * shape[0])
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = a.copy()
    b[: shape[0] // 3] = rng.integers(0, 256, b[: shape[0] // 3].shape, dtype=np.uint8)  # a changed band
    b[-1, -1] ^= 1  # and one pixel by the least possible
    for t in (0, 24):
        assert np.array_equal(gpu.tile_changes(a, b, t, 32), jrc.tile_changes(a, b, t, 32))


def test_bad_input_is_refused_as_on_the_cpu(gpu: jrc.GpuKernels) -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(jrc.FrameGeometryError):
        gpu.tile_changes(a, np.zeros((8, 9, 4), np.uint8), 20, 4)
    with pytest.raises(jrc.RingConfigError, match="tile size"):
        gpu.tile_changes(a, a, 20, 0)
    with pytest.raises(jrc.RingConfigError, match="threshold"):
        gpu.tile_changes(a, a, 256, 4)


def test_a_frame_larger_than_the_device_binds_is_refused_not_a_crash(gpu: jrc.GpuKernels) -> None:
    big = np.zeros((4200, 8192, 4), np.uint8)  # 137 MB: over wgpu's default 128 MiB storage binding
    with pytest.raises(jrc.GpuError, match="can bind"):
        gpu.tile_changes(big, big, 20, 32)
    small = np.zeros((8, 8, 4), np.uint8)
    assert gpu.tile_changes(small, small, 20, 4).sum() == 0, "the device still works"


def _shadowing(a: np.ndarray, tile: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shadowed tiles (about `share` of them) and a shadow partly equal to `a`."""
    rows, cols = -(-a.shape[0] // tile), -(-a.shape[1] // tile)
    rng = np.random.default_rng(seed)
    shadowed = rng.random((rows, cols)) < share
    shadow = rng.integers(0, 256, a.shape, np.uint8)
    same = rng.random(a.shape[:2]) < 0.5
    shadow[same] = a[same]
    return shadow, shadowed


@given(frames(pair=True), st.integers(0, 255), st.integers(1, 17), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_change_pass_on_the_gpu_equals_the_cpu_exactly(gpu: jrc.GpuKernels, fs: tuple[np.ndarray, np.ndarray], t: int,
                                                       tile: int, share: float, seed: int) -> None:
    a, b = fs
    shadow, shadowed = _shadowing(a, tile, share, seed)
    counts, fresh, boxes = gpu.change_pass(a, b, shadow, shadowed, t, tile)
    assert counts.dtype == np.uint32 and fresh.dtype == np.bool_ and boxes.dtype == np.int32
    cpu = jrc.change_pass(a, b, shadow, shadowed, t, tile, signatures=False)
    ref = kernels.tile_pass(a, b, shadow, shadowed, t, tile)
    for got, want, also in zip((counts, fresh, boxes), cpu[:3], ref[:3], strict=True):
        assert got.shape == want.shape and np.array_equal(got, want) and np.array_equal(got, also)
    # Without shadowed tiles no shadow is needed.
    none = np.zeros_like(shadowed)
    assert all(np.array_equal(x, y) for x, y in zip(gpu.change_pass(a, b, None, none, t, tile),
                                                    jrc.change_pass(a, b, None, none, t, tile, signatures=False)[:3],
                                                    strict=False))


@pytest.mark.parametrize("shape", [(1, 1, 4), (1080, 1920, 4), (1080, 1920, 3), (1080, 1920), (2160, 3840, 4)])
def test_change_pass_on_the_gpu_at_fixed_sizes(gpu: jrc.GpuKernels, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(shape[0])
    ref = rng.integers(0, 256, shape, dtype=np.uint8)
    frame = ref.copy()
    frame[: shape[0] // 4, : shape[1] // 2] = rng.integers(0, 256, frame[: shape[0] // 4, : shape[1] // 2].shape, np.uint8)
    frame[-1, -1] ^= 1
    shadow, shadowed = _shadowing(frame, 32, 0.2, shape[0])
    got = gpu.change_pass(frame, ref, shadow, shadowed, 24, 32)
    want = jrc.change_pass(frame, ref, shadow, shadowed, 24, 32, signatures=False)
    assert all(np.array_equal(x, y) for x, y in zip(got, want[:3], strict=False))


def test_named_frames_are_uploaded_once(gpu: jrc.GpuKernels) -> None:
    """As analysis calls it: each frame against the reference, the reference
    kept on the device, a frame that becomes the reference not sent again,
    of the shadow only the rows of shadowed tiles; the answers always the CPU's."""
    rng = np.random.default_rng(5)
    shape, tile = (1080, 1920, 4), 32
    size = shape[0] * shape[1] * shape[2]
    frames_ = [rng.integers(0, 256, shape, np.uint8) for _ in range(4)]
    none = np.zeros((-(-shape[0] // tile), -(-shape[1] // tile)), bool)

    def check(i: int, r: int, shadow: np.ndarray | None, shadowed: np.ndarray) -> int:
        got = gpu.change_pass(frames_[i], frames_[r], shadow, shadowed, 24, tile, frame_key=i, reference_key=r)
        want = jrc.change_pass(frames_[i], frames_[r], shadow, shadowed, 24, tile, signatures=False)
        assert all(np.array_equal(x, y) for x, y in zip(got, want[:3], strict=False))
        sent: int = gpu.timings["uploaded_bytes"]
        return sent

    assert check(1, 0, None, none) == 2 * size  # both new
    assert check(2, 0, None, none) == size  # the reference stays
    assert check(3, 2, None, none) == size  # frame 2 became the reference: not sent again
    shadowed = none.copy()
    shadowed[3, 5] = shadowed[4, 7] = shadowed[20, 0] = True
    shadow = frames_[1].copy()
    sent = check(1, 2, shadow, shadowed)  # frame 1 again, but the buffer it was in holds frame 3
    rows = 3 * tile - 1  # tile rows 3-4, then 20: the last row of each run up to its last pixel
    assert sent == size + rows * 1920 * 4 + 1920 * 4
    timings = gpu.timings
    assert set(timings) == {"upload_ms", "compute_ms", "readback_ms", "uploaded_bytes"}
    assert all(timings[k] >= 0 for k in timings)


@given(st.integers(2, 6), st.integers(1, 30), st.integers(1, 30), st.sampled_from([1, 3, 4]), st.integers(0, 255),
       st.integers(1, 17), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_a_batch_on_the_gpu_equals_pairwise_cpu_counts(gpu: jrc.GpuKernels, n: int, h: int, w: int, c: int, t: int,
                                                       tile: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (h, w) if c == 1 else (h, w, c)
    seq = [rng.integers(0, 256, shape, np.uint8)]
    for _ in range(n - 1):
        nxt = seq[-1].copy()
        changed = rng.random(shape[:2]) < rng.random()
        nxt[changed] = rng.integers(0, 256, nxt[changed].shape, np.uint8)
        seq.append(nxt)
    got = gpu.tile_changes_batch(seq, t, tile)
    assert got.shape == (n - 1, -(-h // tile), -(-w // tile))
    for i in range(1, n):
        assert np.array_equal(got[i - 1], jrc.tile_changes(seq[i - 1], seq[i], t, tile))


def test_a_batch_of_ten_1080p_frames(gpu: jrc.GpuKernels) -> None:
    rng = np.random.default_rng(10)
    seq = [rng.integers(0, 256, (1080, 1920, 4), np.uint8) for _ in range(2)]
    for i in range(8):
        nxt = seq[-1].copy()
        nxt[i * 100 : i * 100 + 50] = 0
        seq.append(nxt)
    got = gpu.tile_changes_batch(seq, 24, 32)
    for i in range(1, 10):
        assert np.array_equal(got[i - 1], jrc.tile_changes(seq[i - 1], seq[i], 24, 32))
    assert gpu.tile_changes_batch(seq[:1], 24, 32).shape == (0, 34, 60)
    with pytest.raises(jrc.FrameGeometryError):
        gpu.tile_changes_batch([seq[0], seq[1][:10]], 24, 32)


@given(frames())
@settings(max_examples=100, deadline=None)
def test_the_luma_histogram_on_the_gpu_equals_the_cpu_exactly(gpu: jrc.GpuKernels, fs: tuple[np.ndarray]) -> None:
    (a,) = fs
    got = gpu.luma_histogram(a)
    assert got.dtype == np.uint64 and np.array_equal(got, jrc.luma_histogram(a))
    assert np.array_equal(got, kernels.luma_histogram(a))


def test_the_luma_histogram_at_4k(gpu: jrc.GpuKernels) -> None:
    a = np.random.default_rng(4).integers(0, 256, (2160, 3840, 4), np.uint8)
    assert np.array_equal(gpu.luma_histogram(a), jrc.luma_histogram(a))


def test_a_lost_device_fails_every_call_and_a_new_one_works() -> None:
    lost = jrc.GpuKernels(software=True)
    a = np.zeros((8, 8, 4), np.uint8)
    assert lost.tile_changes(a, a, 20, 4).sum() == 0
    lost.lose_device()
    calls: list[Callable[[], object]] = [
        functools.partial(lost.tile_changes, a, a, 20, 4), functools.partial(lost.tile_changes_batch, [a, a], 20, 4),
        functools.partial(lost.change_pass, a, a, None, np.zeros((2, 2), bool), 20, 4),
        functools.partial(lost.luma_histogram, a)]
    for call in calls:
        with pytest.raises(jrc.GpuError, match="lost"):
            call()
    assert jrc.GpuKernels(software=True).tile_changes(a, a, 20, 4).sum() == 0


def test_process_frame_batch_on_the_gpu_gives_the_cpu_pipelines_answers(gpu: jrc.GpuKernels) -> None:
    """The plan's batch entry: ten 1080p frames diffed on the GPU while the
    pool computes the features, as process_frames_parallel answers on the CPU;
    frames of mixed geometry go the CPU's way."""
    rng = np.random.default_rng(11)
    seq = [rng.integers(0, 256, (1080, 1920, 4), np.uint8)]
    for i in range(9):
        nxt = seq[-1].copy()
        nxt[100 * i : 100 * i + 40, 200 * i : 200 * i + 300] = rng.integers(0, 256, (40, 300, 4), np.uint8)
        seq.append(nxt)
    on_gpu = jrc.ParallelVisionPipeline(2, gpu=gpu)
    on_cpu = jrc.ParallelVisionPipeline(2)
    got, want = on_gpu.process_frame_batch(seq), on_cpu.process_frames_parallel(seq)
    assert len(got) == len(want) == 10
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g["features"], w["features"])
        assert g["changed_ratio"] == w["changed_ratio"] and g["regions"] == w["regions"]
    assert got[3]["regions"] and got[0]["changed_ratio"] is None
    mixed = [seq[0], seq[1][:540]]
    assert on_gpu.process_frame_batch(mixed)[1]["regions"] == on_cpu.process_frames_parallel(mixed)[1]["regions"]
    assert on_cpu.process_frame_batch(seq[:3])[2]["regions"] == want[2]["regions"]  # without a GPU: the CPU's way
