#!/usr/bin/env python3
"""Benchmark: the pixel kernels on the GPU (jarvis_rust_core.GpuKernels,
wgpu) against the same kernels on one CPU core, at 1080p and 4K, on a pair of
synthetic desktop frames (a window's worth changed): per frame and for a batch
of ten consecutive frames, the GPU's time split into upload (copying the
frames for the device, on the calling thread), compute (waiting for the
device: transfers, shader, results' copy) and readback; and the process's
whole CPU time per frame (every thread: a driver's too) on each backend.
Medians over rounds, the backends alternating. On a software adapter
(lavapipe) the "GPU" is the CPU's cores: figures for correctness and scale
only (BENCHMARKS.md section 8).

--pipeline: the real pipeline (scripts/bench_pipeline.py's run) on the
worst-case mix (every 1080p frame unique, so every one is judged) at 5 fps,
analysis.backend = "cpu" and "gpu" alternating over --pipeline-rounds: the
analysis process's CPU time per frame (all its threads: the driver's too)."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_common  # noqa: E402  (scripts/: beside this script)

import jarvis_rust_core as jrc  # noqa: E402
from pipeline import config  # noqa: E402
from procs.sources.synthetic import SyntheticSource  # noqa: E402

THRESHOLD, TILE = 24, 32
REF_KEY = 2**63  # the reference's name for the device (the frames are named 0, 1, ...)


def desktop(width: int, height: int, n: int) -> list[np.ndarray]:
    """`n` consecutive frames of the synthetic desktop (a few seconds of its
    scripted activity apart), BGRA."""
    c = config.Config().capture
    src = SyntheticSource.from_config(dataclasses.replace(c, synthetic=dataclasses.replace(c.synthetic, width=width,
                                                                                               height=height)))
    (m,) = src.monitors()
    out = []
    for _ in range(n):
        for _ in range(5):
            frame = src.grab(m)
        out.append(frame.copy())  # (a view of the desktop's canvas, which the next grab changes)
    return out


def measure(fn: Callable[[], Any], gpu: jrc.GpuKernels | None) -> tuple[float, float, dict[str, float]]:
    """Wall ms, process CPU ms (every thread) and the GPU's split of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3
    return wall, cpu, dict(gpu.timings) if gpu is not None else {}


def size_rows(gpu: jrc.GpuKernels, name: str, frames: list[np.ndarray], rounds: int) -> list[tuple[str, ...]]:
    """The table's rows of one frame size."""
    a, b = frames[0], frames[1]
    h, w = a.shape[:2]
    none = np.zeros((-(-h // TILE), -(-w // TILE)), bool)
    keyed = iter(range(10**9))

    def gpu_pass() -> Any:
        # As analysis calls it: the reference on the device already, the frame new.
        return gpu.change_pass(b, a, None, none, THRESHOLD, TILE, frame_key=next(keyed), reference_key=REF_KEY)

    def cpu_batch() -> Any:
        return [jrc.tile_changes(x, y, THRESHOLD, TILE, parallel=False) for x, y in zip(frames, frames[1:], strict=False)]

    gpu.change_pass(a, a, None, none, THRESHOLD, TILE, frame_key=REF_KEY, reference_key=REF_KEY)  # the reference resident
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "changed-tile counts, one frame": (lambda: jrc.tile_changes(a, b, THRESHOLD, TILE, parallel=False),
                                           lambda: gpu.tile_changes(a, b, THRESHOLD, TILE)),
        "change model's pass, one frame (reference on the device)": (
            lambda: jrc.change_pass(b, a, None, none, THRESHOLD, TILE, parallel=False, signatures=False), gpu_pass),
        "changed-tile counts, batch of 10": (cpu_batch, lambda: gpu.tile_changes_batch(frames, THRESHOLD, TILE)),
        "luma histogram, one frame": (lambda: jrc.luma_histogram(a), lambda: gpu.luma_histogram(a)),
    }
    assert np.array_equal(gpu.tile_changes_batch(frames, THRESHOLD, TILE)[0], jrc.tile_changes(a, b, THRESHOLD, TILE))
    changed = float(jrc.tile_changes(a, b, THRESHOLD, TILE).astype(bool).mean())
    rows: list[tuple[str, ...]] = []
    for case, (on_cpu, on_gpu) in cases.items():
        on_cpu(), on_gpu()  # warm: buffers grown, pipelines used once
        cpu_runs, gpu_runs = [], []
        for r in range(rounds):
            if r % 2 == 0:
                cpu_runs.append(measure(on_cpu, None))
                gpu_runs.append(measure(on_gpu, gpu))
            else:
                gpu_runs.append(measure(on_gpu, gpu))
                cpu_runs.append(measure(on_cpu, None))

        def med(runs: list[tuple[float, float, dict[str, float]]], i: int, key: str = "") -> float:
            """The median of each run's wall (i = 0) or CPU (1) time, or its GPU split's `key`."""
            return statistics.median([r[2][key] for r in runs] if key else [r[0] if i == 0 else r[1] for r in runs])

        rows.append((
            f"{name} ({changed:.0%} of tiles changed): {case}",
            f"{med(cpu_runs, 0):.2f}",
            f"{med(gpu_runs, 0):.2f}",
            f"{med(gpu_runs, 2, 'upload_ms'):.2f}",
            f"{med(gpu_runs, 2, 'compute_ms'):.2f}",
            f"{med(gpu_runs, 2, 'readback_ms'):.3f}",
            f"{med(gpu_runs, 2, 'uploaded_bytes') / 2**20:.1f}",
            f"{med(cpu_runs, 1):.2f}",
            f"{med(gpu_runs, 1):.2f}",
            f"{med(cpu_runs, 1) / max(med(gpu_runs, 1), 1e-9):.2f}x",
        ))
    return rows


def pipeline_rows(rounds: int, window: float) -> list[tuple[str, ...]]:
    """The analysis process's CPU per frame, each backend, through the real pipeline."""
    import bench_pipeline

    plain = bench_pipeline.config_toml
    runs: dict[str, list[dict[str, Any]]] = {"cpu": [], "gpu": []}
    try:
        for r in range(rounds):
            for which in ("cpu", "gpu") if r % 2 == 0 else ("gpu", "cpu"):
                bench_pipeline.config_toml = lambda *a, w=which: plain(*a) + f'[analysis]\nbackend = "{w}"\n'
                runs[which].append(bench_pipeline.run_pipeline("unique", 5.0, window, 3.0, quiet=True))
    finally:
        bench_pipeline.config_toml = plain
    rows: list[tuple[str, ...]] = []
    for which, results in runs.items():
        per_frame = [10 * x["cpu_percent"]["analysis"] / x["captured_fps"] for x in results if x["captured_fps"]]
        proc = [x["stages"]["analysis"]["proc_ms"]["p50"] for x in results if x["stages"].get("analysis")]
        rows.append((which, f"{statistics.median(per_frame):.2f}", f"{statistics.median(proc):.2f}" if proc else "-",
                     str(sum(1 for x in results if x["sustained"])) + f"/{len(results)}"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--software", action="store_true", help="accept a software adapter (lavapipe) when there is no hardware one")
    ap.add_argument("--pipeline", action="store_true", help="also the analysis process's CPU per frame in the real pipeline")
    ap.add_argument("--pipeline-rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=10.0, help="seconds measured per pipeline run")
    args = ap.parse_args()
    gpu = jrc.GpuKernels(software=args.software)
    adapter = gpu.adapter
    print("# GPU kernels against the CPU's", "", *bench_common.machine_lines(bench_common.machine()),
          f"- adapter: {adapter['name']} ({adapter['backend']}, {'software' if adapter['software'] else 'hardware'}, "
          f"driver {adapter['driver']})", f"- {args.rounds} rounds, medians; CPU kernels on the calling thread (one core)",
          "", sep="\n")
    rows = []
    for name, (w, h) in {"1080p": (1920, 1080), "4K": (3840, 2160)}.items():
        rows += size_rows(gpu, name, desktop(w, h, 10), args.rounds)
    print()
    head = ("case", "CPU ms", "GPU ms", "upload ms", "compute ms", "readback ms", "MiB sent", "CPU time ms (CPU)",
            "CPU time ms (GPU)", "CPU time CPU/GPU")
    print(*bench_common.md_table(head, rows), sep="\n")
    if args.pipeline:
        print("", f"The analysis process in the pipeline, every 1080p frame unique, 5 fps, {args.pipeline_rounds} rounds "
              f"of {args.window:g} s, medians:", "", sep="\n")
        print(*bench_common.md_table(("analysis.backend", "analysis CPU ms per frame (all threads)", "handle() p50 ms",
                                      "rounds sustained"), pipeline_rows(args.pipeline_rounds, args.window)), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
