"""The original plan's snippets, run against the real module, and the plan names
that are deliberately not built (with the reason), so the list stays true."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

import jarvis_rust_core

#: Plan names not built, and why. A test below keeps this list honest.
NOT_BUILT = {
    "RustImageProcessor": "the vision kernels are plain functions and ParallelVisionPipeline",
    "RustAdvancedMemoryPool": "frames live in the ring; a second pool would duplicate its accounting",
    "RustRuntimeManager": "stages are separate processes; CPU affinity is left to the OS",
    "MetalAccelerator": "GPU analysis goes through wgpu (Metal, Vulkan, D3D12) rather than Metal alone",
    "ZeroCopyVisionPipeline": "the pipeline is the stage processes themselves over the ring",
    "RustBloomNetwork": "one RustBloomFilter per dedup stage; there is no network of filters",
    "initialize_rust_acceleration": "nothing to initialise: importing the module is enough",
}
#: Plan names that arrive with the kernels issue (dedup and change analysis).
NOT_YET_BUILT: set[str] = set()


def test_deliberately_unbuilt_names_are_absent() -> None:
    for name in [*NOT_BUILT, *NOT_YET_BUILT]:
        assert not hasattr(jarvis_rust_core, name), f"{name} exists now: update this file"


def murmur3_32(data: bytes, seed: int) -> int:
    """MurmurHash3 (x86, 32-bit) in pure Python, what the plan's filter fell back to."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    tail = len(data) & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = int.from_bytes(data[tail:], "little")
    if k:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


class AdaptiveBloomFilter:
    """A pure-Python Bloom filter, as the plan's comparison baseline."""

    def __init__(self, size_mb: float, expected_items: int, num_hashes: int = 7) -> None:
        self.m = int(size_mb * 8 * 2**20)
        self.k = num_hashes  # the same as the Rust filter it is compared with
        self.expected_items = expected_items
        self.bits = bytearray(self.m // 8 + 1)

    def add(self, item: str) -> None:
        data = item.encode()
        h1, h2 = murmur3_32(data, 0), murmur3_32(data, 0x9747B28C) | 1
        for i in range(self.k):
            p = (h1 + i * h2) % self.m
            self.bits[p >> 3] |= 1 << (p & 7)


def test_bloom_filter_performance() -> None:
    # Testing strategy, unit tests: test_bloom_filter_performance (the plan's
    # 5x; the real ratio is in BENCHMARKS.md, this keeps a wide margin)
    rust_filter = jarvis_rust_core.RustBloomFilter(10.0, 7)
    python_filter = AdaptiveBloomFilter(10.0, 10000)
    start = time.perf_counter()
    for i in range(100000):
        rust_filter.add(f"item_{i}")
    rust_time = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(100000):
        python_filter.add(f"item_{i}")
    python_time = time.perf_counter() - start
    print(f"rust {rust_time:.3f}s, python {python_time:.3f}s: {python_time / rust_time:.1f}x")
    assert rust_time < python_time * 0.2  # 5x faster
    assert all(f"item_{i}" in rust_filter for i in range(0, 100000, 997))


def test_verify_installation_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    # Deployment step 2: python -c "import jarvis_rust_core; print(jarvis_rust_core.__version__)"
    print(jarvis_rust_core.__version__)
    assert capsys.readouterr().out.strip().count(".") == 2


def test_zero_copy_analyzer_snippet(shm_base: Path) -> None:
    # Phase 5.2: ZeroCopyVisionAnalyzer.__init__ / analyze_frame_batch
    class ZeroCopyVisionAnalyzer:
        def __init__(self) -> None:
            self.shared_memory = jarvis_rust_core.SharedVisionMemory(size_mb=1000)

        async def analyze_frame_batch(self, frames: list[np.ndarray]) -> list[jarvis_rust_core.FrameRef]:
            for frame in frames:
                await self.shared_memory.write_frame_async(frame.tobytes())
            return self.shared_memory.get_frame_pointers()

    analyzer = ZeroCopyVisionAnalyzer()
    frames = [np.full((1080, 1920, 3), i, np.uint8) for i in range(3)]
    pointers = asyncio.run(analyzer.analyze_frame_batch(frames))
    assert len(pointers) == 3
    for i, ref in enumerate(pointers):
        assert analyzer.shared_memory.read_copy(ref).nbytes == frames[i].nbytes
        assert analyzer.shared_memory.read_copy(ref)[0, :5].tolist() == [i] * 5
    analyzer.shared_memory.close()


def test_frame_buffer_snippet() -> None:
    # Phase 3.2: the sliding window of frames
    frame_buffer = jarvis_rust_core.FrameRingBuffer(capacity_mb=500)  # 500MB for ~30 seconds at 1080p

    async def _add_frame_to_buffer(screenshot: np.ndarray) -> None:
        frame_bytes = screenshot.tobytes()
        timestamp = int(time.time() * 1000)
        await frame_buffer.add_frame_async(frame_bytes, timestamp)

    shot = np.zeros((1080, 1920, 3), np.uint8)
    for _ in range(90):
        asyncio.run(_add_frame_to_buffer(shot))
    assert len(frame_buffer) == 500 * 2**20 // shot.nbytes  # bounded, oldest evicted
    assert frame_buffer.used_bytes <= frame_buffer.capacity_bytes
    (ts, data), = frame_buffer.latest(1)
    assert isinstance(data, bytes)  # a buffer without a ring keeps copies
    assert len(data) == shot.nbytes and ts <= int(time.time() * 1000)


def test_parallel_pipeline_integration_target() -> None:
    # Integration tests: "10 frames of 1080p ... assert elapsed < 0.2"; this test
    # keeps a 3x margin (0.6 s); the real figure is in BENCHMARKS.md.
    vision_pipeline = jarvis_rust_core.ParallelVisionPipeline(8)
    frames = [np.random.randint(0, 255, (1080, 1920, 3), dtype=np.uint8) for _ in range(10)]
    vision_pipeline.process_frames_parallel(frames[:2])  # start the pool's threads
    start = time.time()
    results = vision_pipeline.process_frames_parallel(frames)
    elapsed = time.time() - start
    print(f"10 frames of 1080p in {elapsed * 1000:.0f} ms")
    assert elapsed < 0.6
    assert len(results) == 10
    assert results[0]["regions"] is None and all(r["features"].shape == (128,) for r in results)
