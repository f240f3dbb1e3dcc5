#!/usr/bin/env python3
"""Benchmark: decoding a replayed PNG, Pillow (procs.sources.replay, today)
against the hand-written zlib + numpy codec it replaced (procs/sources/png.py,
taken from git at --codec-commit), on synthetic 1920x1080 desktop frames
saved by Pillow at its default level, in alternating order over rounds;
medians. The result decided the codec's removal (BENCHMARKS.md section 4)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_common  # noqa: E402  (scripts/: beside this script)

from pipeline import config  # noqa: E402
from procs.sources.replay import read_png_bgra  # noqa: E402
from procs.sources.synthetic import SyntheticSource  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec-commit", default="dc06b3c~1", help="a commit that still has procs/sources/png.py")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-png-"))
    codec_path = work / "png_codec.py"
    codec_path.write_bytes(subprocess.run(["git", "show", f"{args.codec_commit}:procs/sources/png.py"], cwd=ROOT,
                                          check=True, capture_output=True).stdout)
    spec = importlib.util.spec_from_file_location("png_codec", codec_path)
    assert spec is not None and spec.loader is not None
    codec = importlib.util.module_from_spec(spec)
    sys.modules["png_codec"] = codec  # (its dataclasses look their module up)
    spec.loader.exec_module(codec)
    src = SyntheticSource.from_config(config.Config().capture)
    (m,) = src.monitors()
    paths = []
    for i in range(args.frames):
        for _ in range(7):  # a few seconds of scripted activity apart
            frame = src.grab(m)
        path = work / f"{i}.png"
        Image.fromarray(np.ascontiguousarray(frame[..., [2, 1, 0, 3]])).save(path)
        paths.append(path)
    decoders = {"hand-written codec": lambda p: codec.read_png_bgra(p), "Pillow": read_png_bgra}
    assert all(np.array_equal(decoders["Pillow"](p), decoders["hand-written codec"](p)) for p in paths[:2])
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for r in range(args.rounds):
        for name in list(decoders)[:: 1 if r % 2 == 0 else -1]:
            for p in paths:
                start = time.perf_counter()
                decoders[name](p)
                times[name].append((time.perf_counter() - start) * 1e3)
    size = statistics.median(os.path.getsize(p) for p in paths) / 1024
    print("# PNG decoding for replays", "", *bench_common.machine_lines(bench_common.machine(packages=("Pillow",))),
          f"- {args.frames} frames (median {size:.0f} KiB) x {args.rounds} rounds", "", sep="\n")
    rows = [(name, f"{statistics.median(v):.1f}", f"{sorted(v)[int(0.95 * (len(v) - 1))]:.1f}") for name, v in times.items()]
    print(*bench_common.md_table(("decoder", "median ms", "p95 ms"), rows), sep="\n")
    print(f"\nratio hand-written / Pillow (medians): "
          f"{statistics.median(times['hand-written codec']) / statistics.median(times['Pillow']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
