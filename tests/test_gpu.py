"""The GPU backend (jarvis_rust_core.GpuKernels, wgpu): the same answers as
the CPU kernels and the numpy reference, exactly, on whatever adapter the
machine has; on Linux CI that is Mesa's software Vulkan (lavapipe,
scripts/system-packages.txt), so these tests never skip for want of a GPU."""

from __future__ import annotations

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
