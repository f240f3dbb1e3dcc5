#!/usr/bin/env python3
"""Bloom filter operations per second, called per item from Python, side by
side: jarvis_rust_core.RustBloomFilter, rbloom (Rust, the fastest on PyPI) and
pybloom-live (pure Python). Each filter is sized for the same item count and
false-positive rate; rounds interleave the filters in rotating order and the
figures are medians over rounds. --baseline-core DIR adds the RustBloomFilter
of another build of the core (e.g. an earlier commit's, installed with
`pip install --no-deps --target DIR ./rust`) to the same run, for before/after.

Usage: .venv/bin/python scripts/bench_bloom.py [--items N] [--rounds R] [--baseline-core DIR]
(needs the bench extra: pip install -e ".[bench]")
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_common  # noqa: E402  (scripts/: beside this script)
import pybloom_live  # type: ignore[import-untyped]
import rbloom

import jarvis_rust_core as jrc

P = 0.01


def load_core(directory: str) -> Any:
    """Another build of jarvis_rust_core, loaded next to the installed one."""
    (so,) = Path(directory, "jarvis_rust_core").glob("jarvis_rust_core*.so")
    installed = sys.modules.pop("jarvis_rust_core")
    try:
        spec = importlib.util.spec_from_file_location("jarvis_rust_core", so)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.modules["jarvis_rust_core"] = installed
    return module


def filters(n: int, baseline: Any = None) -> dict[str, Callable[[], object]]:
    extra = {"jarvis RustBloomFilter, baseline core": lambda: baseline.RustBloomFilter.for_items(n, P)} if baseline else {}
    return {
        "jarvis RustBloomFilter": lambda: jrc.RustBloomFilter.for_items(n, P),
        **extra,
        "rbloom.Bloom": lambda: rbloom.Bloom(n, P),
        "pybloom_live.BloomFilter": lambda: pybloom_live.BloomFilter(capacity=n, error_rate=P),
    }


def run(make: Callable[[], object], items: list[object], probes: list[object]) -> tuple[float, float, float]:
    f = make()
    add = f.add  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for x in items:
        add(x)
    t1 = time.perf_counter()
    hits = 0
    for x in probes:
        hits += x in f  # type: ignore[operator]
    t2 = time.perf_counter()
    return len(items) / (t1 - t0), len(probes) / (t2 - t1), hits / len(probes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--baseline-core", metavar="DIR", help="also time the RustBloomFilter of the core installed in DIR")
    args = ap.parse_args()
    n = args.items

    def spread(lo: int, modulus: int) -> list[object]:
        return [i * 0x9E3779B97F4A7C15 % modulus for i in range(lo, lo + n)]

    cases: dict[str, tuple[list[object], list[object]]] = {
        "int (frame hashes: uniform 64-bit)": (spread(0, 2**64), spread(n, 2**64)),
        "int below 2^63": (spread(0, 2**63), spread(n, 2**63)),
        "str (plan's f'item_{i}')": ([f"item_{i}" for i in range(n)], [f"item_{i}" for i in range(n, 2 * n)]),
    }
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    baseline = load_core(args.baseline_core) if args.baseline_core else None
    names = list(filters(n, baseline))
    for r in range(args.rounds):
        for case, (items, probes) in cases.items():
            for name in names[r % len(names):] + names[: r % len(names)]:
                results.setdefault((case, name), []).append(run(filters(n, baseline)[name], items, probes))
    print("# Bloom filters", "", *bench_common.machine_lines(bench_common.machine(packages=("rbloom", "pybloom-live"))),
          sep="\n")
    print(f"- {n} items, p = {P}, {args.rounds} rounds\n")
    print("| items | filter | add / s | `in` / s | measured FP rate | add vs rbloom | `in` vs rbloom |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        base = statistics.median(r[0] for r in results[(case, "rbloom.Bloom")])
        base_in = statistics.median(r[1] for r in results[(case, "rbloom.Bloom")])
        for name in names:
            rs = results[(case, name)]
            add = statistics.median(r[0] for r in rs)
            look = statistics.median(r[1] for r in rs)
            fp = statistics.median(r[2] for r in rs)
            print(
                f"| {case} | {name} | {add / 1e6:.2f} M | {look / 1e6:.2f} M | {fp:.2%} | {add / base:.2f}x | "
                    f"{look / base_in:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
