#!/usr/bin/env python3
"""Per-frame cost of the dedup check and of change regions, side by side with
the tools users would pick, on the same frames in the same run.

Frames: the synthetic desktop (procs/sources/synthetic.py, scripted typing,
caret, clock, scrolling), BGRA, 1920x1080 and 3840x2160. Only frames that
differ from the one before are kept, so consecutive frames differ a little
(typically a typed character). "cold": each method walks a working set of
frames larger than the L3 cache, so every frame comes from RAM as a freshly
captured one would; slow methods take every k-th frame of the same set (each
still untouched since its last visit). "hot": one frame (pair) over and over.
Rounds interleave the methods in rotating order; figures are medians over
rounds of the mean time per frame.

Dedup check (per frame):
  ours             procs.dedup.RecentFrames.check(kernels.fingerprint(frame)):
                   xxh3 of the pixels + rotating Bloom + exact recent set, the
                   dedup stage's own code
  ours, hash given the same check with the hash computed by capture (see
                   "capture + hash" below): only Bloom + set
  imagehash dhash  PIL.Image.frombuffer (BGRA -> RGBA conversion included),
                   imagehash.dhash, a set of the hashes
  imagehash phash  the same with imagehash.phash
  plan's Python    the original plan's loop: hashlib.blake2b(frame.tobytes()),
                   a Python set as its Bloom filter
Capture write (what fusing the hash into capture costs): np.copyto of the
frame into a slot-sized buffer, alone and followed by the hash of the slot.

Change regions (per frame, against the frame before; t = 24, 32 px tiles):
  ours             jarvis_rust_core.tile_changes + regions (merged boxes),
                   one thread (parallel=False) and the default rayon pool
  OpenCV           gray = cvtColor(BGRA2GRAY) (the previous frame's gray kept),
                   absdiff, threshold(t), dilate (15x15 rectangle), findContours
                   (external, simple) -> boundingRect; cv2.setNumThreads(1) and
                   OpenCV's default
  numpy reference  procs.kernels.changed_mask + tile_counts + tile_regions
Worst case for the equal-row shortcut: two noise frames (every row differs), hot.
Then single kernel calls against their numpy references, and the plan's
integration target (10 x 1080p through ParallelVisionPipeline).

Usage: .venv/bin/python scripts/bench_kernels.py [--rounds R] [--working-set-mib M] [--sizes WxH,...]
       [--sections frames,kernels,integration]
(needs the bench extra: pip install -e ".[bench]")
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_common  # noqa: E402  (scripts/: beside this script)

import jarvis_rust_core as jrc  # noqa: E402
from procs import kernels  # noqa: E402
from procs.dedup import RecentFrames  # noqa: E402
from procs.sources.synthetic import SyntheticSource  # noqa: E402

THRESHOLD, TILE, MAX_REGIONS = 24, 32, kernels.MAX_REGIONS
DILATE = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15))
CV_DEFAULT_THREADS = cv2.getNumThreads()


def desktop_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """`count` consecutive synthetic desktop frames, each different from the
    one before (identical frames skipped)."""
    src = SyntheticSource(width=width, height=height, seed=7, fps=4.0, mix="desktop")
    (m,) = src.monitors()
    out: list[np.ndarray] = []
    while len(out) < count:
        f = src.grab(m)
        if not out or not np.array_equal(f, out[-1]):
            out.append(f.copy())
    return out


# --------------------------------------------------------------------- dedup


def dedup_ours() -> Callable[[np.ndarray, int], object]:
    frames = RecentFrames(4096)
    return lambda f, i: frames.check(0, kernels.fingerprint(f), i, time.monotonic(), 4096, 30.0)


def dedup_ours_given(hashes: dict[int, int]) -> Callable[[np.ndarray, int], object]:
    frames = RecentFrames(4096)
    return lambda f, i: frames.check(0, hashes[i], i, time.monotonic(), 4096, 30.0)


def to_pil(f: np.ndarray) -> Image.Image:
    h, w = f.shape[:2]
    return Image.frombuffer("RGBA", (w, h), f, "raw", "BGRA", f.strides[0], 1)


def dedup_imagehash(fn: Callable[[Image.Image], imagehash.ImageHash]) -> Callable[[np.ndarray, int], object]:
    seen: set[imagehash.ImageHash] = set()

    def check(f: np.ndarray, i: int) -> object:
        h = fn(to_pil(f))
        dup = h in seen
        seen.add(h)
        return dup

    return check


def dedup_plan() -> Callable[[np.ndarray, int], object]:
    seen: set[bytes] = set()

    def check(f: np.ndarray, i: int) -> object:
        digest = hashlib.blake2b(f.tobytes(), digest_size=8).digest()
        if digest in seen:
            return True
        seen.add(digest)
        return False

    return check


def capture_write(hash_it: bool, slot: np.ndarray) -> Callable[[np.ndarray, int], object]:
    def write(f: np.ndarray, i: int) -> object:
        np.copyto(slot, f)
        return kernels.fingerprint(slot) if hash_it else None

    return write


# ------------------------------------------------------------------- regions


def regions_ours(parallel: bool) -> Callable[[np.ndarray, np.ndarray], object]:
    def run(a: np.ndarray, b: np.ndarray) -> object:
        counts = jrc.tile_changes(a, b, THRESHOLD, TILE, parallel=parallel)
        return jrc.regions(counts, TILE, b.shape[1], b.shape[0], MAX_REGIONS)

    return run


def regions_opencv(threads: int) -> Callable[[np.ndarray, np.ndarray], object]:
    grays: dict[int, np.ndarray] = {}  # the previous frame's gray, as a tuned loop keeps it

    def run(a: np.ndarray, b: np.ndarray) -> object:
        cv2.setNumThreads(threads)
        ga = grays.get(id(a))
        if ga is None:
            ga = cv2.cvtColor(a, cv2.COLOR_BGRA2GRAY)
        gb = cv2.cvtColor(b, cv2.COLOR_BGRA2GRAY)  # the new frame: always converted
        grays.clear()
        grays.update({id(a): ga, id(b): gb})
        diff = cv2.absdiff(ga, gb)
        _, mask = cv2.threshold(diff, THRESHOLD, 255, cv2.THRESH_BINARY)
        mask = cv2.dilate(mask, DILATE)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return [cv2.boundingRect(c) for c in contours]

    return run


def regions_numpy(a: np.ndarray, b: np.ndarray) -> object:
    counts = kernels.tile_counts(kernels.changed_mask(a, b, THRESHOLD), TILE)
    return kernels.tile_regions(counts > 0, TILE, b.shape[1], b.shape[0], MAX_REGIONS)


# ------------------------------------------------------------------- harness


def time_cold(fn: Callable[[np.ndarray, int], object], frames: list[np.ndarray], step: int) -> float:
    idx = range(step, len(frames), step)
    t0 = time.perf_counter()
    for i in idx:
        fn(frames[i], i)
    return (time.perf_counter() - t0) / len(idx)


def time_hot(fn: Callable[[np.ndarray, int], object], frames: list[np.ndarray], reps: int) -> float:
    fn(frames[1], 1)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(frames[1], 1)
    return (time.perf_counter() - t0) / reps


def pairwise(run: Callable[[np.ndarray, np.ndarray], object], frames: list[np.ndarray]) -> Callable[[np.ndarray, int], object]:
    return lambda f, i: run(frames[i - 1], f)


def bench(width: int, height: int, args: argparse.Namespace) -> list[str]:
    frame_bytes = width * height * 4
    n = max(8, -(-args.working_set_mib * 2**20 // frame_bytes))
    frames = desktop_frames(width, height, n)
    slot = np.empty_like(frames[0])
    hashes = {i: kernels.fingerprint(f) for i, f in enumerate(frames)}
    slow = max(1, n // 6)  # the slow methods visit every `slow`-th frame
    # name -> (make a fresh per-frame function, cold step, hot repetitions)
    dedup: dict[str, tuple[Callable[[], Callable[[np.ndarray, int], object]], int, int]] = {
        "ours: xxh3 + Bloom + recent set": (dedup_ours, 1, 50),
        "ours, hash given by capture: Bloom + recent set": (lambda: dedup_ours_given(hashes), 1, 2000),
        "imagehash dhash (incl. BGRA->PIL)": (lambda: dedup_imagehash(imagehash.dhash), slow, 3),
        "imagehash phash (incl. BGRA->PIL)": (lambda: dedup_imagehash(imagehash.phash), slow, 3),
        "plan's Python: blake2b(tobytes()) + set": (dedup_plan, slow, 3),
        "capture write: copy into the slot": (lambda: capture_write(False, slot), 1, 20),
        "capture write + hash (fused)": (lambda: capture_write(True, slot), 1, 20),
    }
    runs: dict[str, tuple[Callable[[], Callable[[np.ndarray, np.ndarray], object]], int, int]] = {
        "ours, 1 thread": (lambda: regions_ours(False), 1, 30),
        f"ours, rayon default ({os.cpu_count()} threads)": (lambda: regions_ours(True), 1, 30),
        "OpenCV, 1 thread": (lambda: regions_opencv(1), 1, 10),
        f"OpenCV, default ({CV_DEFAULT_THREADS} threads)": (lambda: regions_opencv(CV_DEFAULT_THREADS), 1, 10),
        "numpy reference": (lambda: regions_numpy, slow, 2),
    }

    def on(
        fs: list[np.ndarray], make: Callable[[], Callable[[np.ndarray, np.ndarray], object]]
    ) -> Callable[[], Callable[[np.ndarray, int], object]]:
        return lambda: pairwise(make(), fs)

    regions = {k: (on(frames, make), step, reps) for k, (make, step, reps) in runs.items()}
    out: list[str] = []
    for title, methods, target_name in (("Dedup check", dedup, "ours: xxh3 + Bloom + recent set"),
                                        ("Change regions", regions, "ours, 1 thread")):
        cold: dict[str, list[float]] = {k: [] for k in methods}
        hot: dict[str, list[float]] = {k: [] for k in methods}
        names = list(methods)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                make, step, reps = methods[name]
                cold[name].append(time_cold(make(), frames, step))
                hot[name].append(time_hot(make(), frames, reps))
        base_c, base_h = statistics.median(cold[target_name]), statistics.median(hot[target_name])
        head = len(out)
        out += [f"### {title}, {width}x{height} BGRA ({n} frames, {n * frame_bytes / 2**20:.0f} MiB working set)", "",
                "| method | cold ms / frame | hot ms / frame | cold vs ours | hot vs ours |", "|---|---|---|---|---|"]
        for name in names:
            c, h = statistics.median(cold[name]), statistics.median(hot[name])
            out.append(f"| {name} | {c * 1e3:.3f} | {h * 1e3:.3f} | {c / base_c:.2f}x | {h / base_h:.2f}x |")
        out.append("")
        print("\n".join(out[head:]), flush=True)
    # Worst case for the equal-row shortcut: every row differs (noise frames).
    rng = np.random.default_rng(11)
    noise = [rng.integers(0, 256, (height, width, 4), dtype=np.uint8) for _ in range(2)]
    worst = [k for k in runs if not k.startswith("numpy")]
    times: dict[str, list[float]] = {k: [] for k in worst}
    for r in range(args.rounds):
        for name in worst[r % len(worst):] + worst[: r % len(worst)]:
            pair_run, _, pair_reps = runs[name]
            times[name].append(time_hot(on(noise, pair_run)(), noise, pair_reps))
    base = statistics.median(times["ours, 1 thread"])
    out += [f"### Change regions, every row changed (noise), {width}x{height}, hot", "",
            "| method | ms / frame | vs ours |", "|---|---|---|"]
    for name, ts in times.items():
        out.append(f"| {name} | {statistics.median(ts) * 1e3:.3f} | {statistics.median(ts) / base:.2f}x |")
    out.append("")
    print("\n".join(out[-len(times) - 5:]), flush=True)
    return out


def integration(args: argparse.Namespace) -> None:
    """The plan's integration test: 10 random 1080p RGB frames through
    ParallelVisionPipeline(8) (block features + regions of consecutive
    diffs), target < 200 ms; median of `rounds` batches after a warm-up."""
    pipe = jrc.ParallelVisionPipeline(8)
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8) for _ in range(10)]
    pipe.process_frames_parallel(frames[:2])
    times = []
    for _ in range(max(args.rounds, 5)):
        t0 = time.perf_counter()
        pipe.process_frames_parallel(frames)
        times.append(time.perf_counter() - t0)
    print(f"### The plan's integration target: 10 frames of 1080p through ParallelVisionPipeline(8)\n\n"
          f"median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
          f"over {len(times)} batches (target < 200 ms)\n", flush=True)


def single(args: argparse.Namespace) -> None:
    """Single kernel calls on one random 1920x1080 BGRA frame (pair), hot,
    against their numpy references."""
    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8) for _ in range(2))
    cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "frame_hash (xxh3; reference: blake2b)": (lambda: jrc.frame_hash(a), lambda: kernels.frame_hash(a)),
        "thumbnail(16)": (lambda: jrc.thumbnail(a, 16), lambda: kernels.thumbnail(a, 16)),
        "block_features(8)": (lambda: jrc.block_features(a, 8), lambda: kernels.block_features(a, 8)),
        "luma_histogram": (lambda: jrc.luma_histogram(a), lambda: kernels.luma_histogram(a)),
        "tile_changes, every pixel changed, 1 thread": (
            lambda: jrc.tile_changes(a, b, THRESHOLD, TILE, parallel=False),
            lambda: kernels.tile_counts(kernels.changed_mask(a, b, THRESHOLD), TILE),
        ),
    }
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for name, fns in cases.items():
            for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                fn, reps = fns[which], (20 if which == 0 else 2)
                fn()
                t0 = time.perf_counter()
                for _ in range(reps):
                    fn()
                times.setdefault((name, which), []).append((time.perf_counter() - t0) / reps)
    lines = [
        "### Single kernel calls, 1920x1080 BGRA, hot",
        "",
        "| kernel | Rust ms | numpy reference ms | ratio |",
        "|---|---|---|---|",
    ]
    for name in cases:
        rust, ref = statistics.median(times[(name, 0)]), statistics.median(times[(name, 1)])
        lines.append(f"| {name} | {rust * 1e3:.3f} | {ref * 1e3:.1f} | {ref / rust:.0f}x |")
    print("\n".join(lines) + "\n", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--working-set-mib", type=int, default=480, help="frames per size: at least this much (L3 here: 300 MiB)")
    ap.add_argument("--sizes", default="1920x1080,3840x2160")
    ap.add_argument("--sections", default="frames,kernels,integration",
                    help="any of frames (dedup and regions per size), kernels (single calls), integration")
    args = ap.parse_args()
    print("# Kernels", "", *bench_common.machine_lines(bench_common.machine(packages=("opencv-python-headless",
                                                                                    "imagehash"))), sep="\n")
    print(f"- {args.rounds} rounds; cv2.getNumThreads() = {CV_DEFAULT_THREADS}\n", flush=True)
    sections = set(args.sections.split(","))
    if "frames" in sections:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.split("x"))
            bench(w, h, args)
    if "kernels" in sections:
        single(args)
    if "integration" in sections:
        integration(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
