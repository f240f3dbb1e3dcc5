#!/usr/bin/env python3
"""Benchmark: the analysis stage's work per 1080p frame on one core, the
change model (procs/change_policy.py: its Rust pass and the rules) next to the
policy before it (scripts/policy_before.py, driven as the stage drove it:
tile_changes, then each changed tile's signatures and pixels in Python). The
model is driven as the stage drives it: with the rows of tiles whose bands'
digests (capture's, made outside the timing) match the reference's marked.

Frames (BGRA 1920x1080, seeded):
  unique   every frame random: every tile changed (the worst case)
  typing   a glyph typed every frame, a caret blinking, a clock ticking
  idle     the frame equal to the reference (nothing to judge)
Each case runs --frames frames per round, the two policies interleaved over
--rounds rounds; the report gives p50 and p95 per frame (median over rounds).
RAYON_NUM_THREADS=1 keeps the Rust work on one core, as the stage runs it.

    RAYON_NUM_THREADS=1 .venv/bin/python scripts/bench_analysis.py --md out.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_common  # noqa: E402  (scripts/: beside this script)
import numpy as np  # noqa: E402
import policy_before  # noqa: E402

from pipeline.config import AnalysisConfig  # noqa: E402
from procs import kernels  # noqa: E402
from procs.change_policy import ChangePolicy  # noqa: E402

W, H = 1920, 1080


def frames(case: str, n: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.full((H, W, 4), 235, np.uint8)
    base[100:900, 100:1500, :3] = 250
    if case == "unique":
        for _ in range(n):
            yield rng.integers(0, 256, (H, W, 4), np.uint8)
        return
    frame = base.copy()
    for i in range(n):
        frame = frame.copy()
        if case == "typing":
            x, y = 120 + 9 * (i % 140), 120 + 18 * (i // 140)
            frame[y : y + 14, x : x + 8, :3][rng.random((14, 8)) < 0.3] = 0  # a glyph
            frame[y : y + 14, x + 9 : x + 10, :3] = 0 if i % 4 < 2 else 250  # the caret
            frame[40:52, 1800 : 1800 + 8 * (1 + i % 4), :3] = (i * 37) % 200  # a clock's seconds
        yield frame


def run_model(case: str, n: int, seed: int) -> list[float]:
    a = AnalysisConfig()
    times: list[float] = []
    reference: np.ndarray | None = None
    policy: ChangePolicy | None = None
    reference_bands = b""
    for f in frames(case, n, seed):
        bands = kernels.frame_digests(f)[1]  # capture's work, sent with the frame
        if reference is None or policy is None:
            reference, reference_bands, policy = f, bands, ChangePolicy(a, f.shape)
            continue
        start = time.perf_counter()
        known = kernels.known_equal_rows(bands, reference_bands, f.shape[0], a.tile)
        verdict = policy.judge(len(times) * 0.25, f, reference, known_equal=known)
        policy.settle(f, verdict.kept)
        times.append(time.perf_counter() - start)
        if verdict.kept:
            reference, reference_bands = f, bands
    return times


def run_before(case: str, n: int, seed: int) -> list[float]:
    a = AnalysisConfig()
    times: list[float] = []
    reference: np.ndarray | None = None
    policy = policy_before.ChangePolicy(tile=a.tile)
    t = a.tile
    for f in frames(case, n, seed):
        if reference is None:
            reference = f
            continue
        start = time.perf_counter()
        counts = kernels.changed_tiles(f, reference, a.threshold, t)
        ys, xs = np.nonzero(counts)
        changed = {}
        for y, x, c in zip(ys.tolist(), xs.tolist(), counts[ys, xs].tolist(), strict=False):
            rows, cols = slice(y * t, (y + 1) * t), slice(x * t, (x + 1) * t)
            changed[(y, x)] = policy_before.TileChange(kernels.tile_signature(f, y, x, t),
                                                       kernels.tile_signature(reference, y, x, t),
                                                       f[rows, cols], reference[rows, cols], c)
        verdict = policy.judge(len(times) * 0.25, changed)
        times.append(time.perf_counter() - start)
        if verdict.meaningful:
            reference = f
    return times


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1e3, q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--md", help="also write the Markdown table here")
    args = ap.parse_args()
    runners: dict[str, Callable[[str, int, int], list[float]]] = {"model": run_model, "before": run_before}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for case in ("unique", "typing", "idle"):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for name in order:
                ts = runners[name](case, args.frames, r)
                results.setdefault((case, name), []).append((pct(ts, 50), pct(ts, 95)))
                print(f"round {r} {case:7s} {name:7s} p50 {pct(ts, 50):7.2f} ms  p95 {pct(ts, 95):7.2f} ms", flush=True)
    lines = [
        *bench_common.machine_lines(bench_common.machine()),
        f"- RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}; {args.frames} frames per case and round, "
        f"{args.rounds} rounds, medians",
        "",
        "| frames | model p50 ms | model p95 ms | before p50 ms | before p95 ms | before / model (p95) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in ("unique", "typing", "idle"):
        m50, m95 = (statistics.median(x[i] for x in results[(case, "model")]) for i in (0, 1))
        b50, b95 = (statistics.median(x[i] for x in results[(case, "before")]) for i in (0, 1))
        lines.append(f"| {case} | {m50:.2f} | {m95:.2f} | {b50:.2f} | {b95:.2f} | {b95 / m95:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
