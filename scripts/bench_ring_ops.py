#!/usr/bin/env python3
"""Single-process costs of the ring's operations, next to the numpy baseline.

* write_frame of a 1920x1080 BGRA frame vs one np.copyto into a pre-faulted
  buffer of the same frame (both rotating through the same number of
  destinations), hot (one source frame) and cold (sources rotating through a
  working set larger than the L3 cache);
* read(ref) (zero-copy view) for frame sizes from 1x1 to 3840x2160;
* lease enter+exit, hold+release and read_copy at 1080p.

Rounds interleave the mechanisms; each figure is the median over rounds of the
per-round median. Usage: .venv/bin/python scripts/bench_ring_ops.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import bench_common  # noqa: E402  (scripts/: beside this script)
import numpy as np

import jarvis_rust_core as jrc

W, H = 1920, 1080


def l3_bytes() -> int:
    try:
        for idx in range(8):
            base = f"/sys/devices/system/cpu/cpu0/cache/index{idx}"
            if open(f"{base}/level").read().strip() == "3":
                size = open(f"{base}/size").read().strip()
                return int(size[:-1]) * {"K": 2**10, "M": 2**20}[size[-1]]
    except OSError:
        pass
    return 64 * 2**20


def per_op_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    """Median per-call time of `fn(i)` over n calls, in microseconds."""
    times = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ops", type=int, default=100, help="copies per mechanism per round")
    ap.add_argument("--quick", action="store_true", help="a few-second smoke run")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.ops = 2, 10

    frame_bytes = W * H * 4
    cold_count = max(8, int(l3_bytes() * 1.5) // frame_bytes + 1)
    rng = np.random.default_rng(0)
    hot_src = [rng.integers(0, 256, (H, W, 4), dtype=np.uint8)]
    cold_src = [rng.integers(0, 256, (H, W, 4), dtype=np.uint8) for _ in range(1 if args.quick else cold_count)]
    slots = 4
    dsts = [np.empty((H, W, 4), np.uint8) for _ in range(slots)]
    for d in dsts:
        d.fill(1)  # pre-fault
    mem = jrc.SharedVisionMemory(name=f"bench-ops-{os.getpid()}", slots=slots, max_width=3840, max_height=2160, holder="bench")

    def copyto(src: list[np.ndarray]):  # type: ignore[no-untyped-def]
        return lambda i: np.copyto(dsts[i % slots], src[i % len(src)])

    def write(src: list[np.ndarray]):  # type: ignore[no-untyped-def]
        return lambda i: mem.write_frame(src[i % len(src)])

    cases = {
        ("np.copyto", "hot"): copyto(hot_src),
        ("write_frame", "hot"): write(hot_src),
        ("np.copyto", "cold"): copyto(cold_src),
        ("write_frame", "cold"): write(cold_src),
    }
    results: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    order = list(cases)
    for r in range(args.rounds):
        for k in order[r % len(order) :] + order[: r % len(order)]:
            results[k].append(per_op_us(cases[k], args.ops))

    sizes = [(1, 1), (640, 480), (1920, 1080), (3840, 2160)]
    read_us: dict[str, list[float]] = {f"{w}x{h}": [] for w, h in sizes}
    misc: dict[str, list[float]] = {"lease enter+exit 1080p": [], "hold+release": [], "read_copy 1080p": []}
    refs = {}
    for w, h in sizes:
        refs[f"{w}x{h}"] = mem.write_frame(np.zeros((h, w, 4), np.uint8), hold=True)
    r1080 = refs["1920x1080"]

    def lease(_: int) -> None:
        with mem.lease(r1080):
            pass

    def hold_release(_: int) -> None:
        mem.hold(r1080)
        mem.release(r1080)

    for _ in range(args.rounds):
        for key, ref in refs.items():
            read_us[key].append(per_op_us(lambda _i, ref=ref: mem.read(ref), args.ops * 20))
        misc["lease enter+exit 1080p"].append(per_op_us(lease, args.ops * 20))
        misc["hold+release"].append(per_op_us(hold_release, args.ops * 20))
        misc["read_copy 1080p"].append(per_op_us(lambda _i: mem.read_copy(r1080), args.ops))
    mem.close()

    med = {k: statistics.median(v) for k, v in results.items()}
    out = {
        "machine": bench_common.machine(),
        "cold_working_set_frames": len(cold_src),
        "write_us": {f"{m} {c}": v for (m, c), v in med.items()},
        "write_ratio": {c: med[("write_frame", c)] / med[("np.copyto", c)] for c in ("hot", "cold")},
        "read_us": {k: statistics.median(v) for k, v in read_us.items()},
        "misc_us": {k: statistics.median(v) for k, v in misc.items()},
    }
    print("# ring operations", "", *bench_common.machine_lines(out["machine"]), sep="\n")
    print(f"- {args.rounds} rounds x {args.ops} ops; cold set {len(cold_src)} frames\n")
    rows = [(m, f"{med[(m, 'hot')]:.0f}", f"{med[(m, 'cold')]:.0f}") for m in ("np.copyto", "write_frame")]
    rows.append(("ratio write_frame / np.copyto", f"{out['write_ratio']['hot']:.2f}", f"{out['write_ratio']['cold']:.2f}"))
    print(*bench_common.md_table(("1920x1080 BGRA copy in", "hot us", "cold us"), rows), "", sep="\n")
    print(*bench_common.md_table(("read(ref) frame size", "us"), ((k, f"{v:.2f}") for k, v in out["read_us"].items())),
          "", sep="\n")
    print(*bench_common.md_table(("operation", "us"), ((k, f"{v:.2f}") for k, v in out["misc_us"].items())), sep="\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
