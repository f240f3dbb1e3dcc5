#!/usr/bin/env python3
"""Benchmark: the forward stage.

1. Encode time per image (procs.forward.image.encode: BGRA to RGB, area
   downscale to the API's size, format rule, encode) at 1920x1080 and
   3840x2160 on synthetic desktop frames, whole frames and crops, JPEG vs PNG
   vs the format rule, next to the previous dry-run encoding (a full-size PNG
   of the whole frame, Pillow's PNG at level 1). Variants are
   interleaved over rounds in rotating order; medians.

2. The real pipeline (`up --live`, synthetic 1920x1080 desktop, the scripted
   desktop mix) against the local fake Messages API (tests/fake_claude.py),
   in two configurations interleaved over rounds:
     defaults   every forward.* key at its default (2 s interval, batches of 5)
     no-wait    min_interval_s = 0, batch = 1, budgets out of the way: what the
                mechanism itself costs (copy, queue, encode, HTTP)
   Per window: capture-to-on-the-wire latency per frame (the fake's arrival
   time minus the capture time written in the request text, ms precision),
   p50/p99; input tokens per forwarded frame (the fake counts images as
   ceil(w*h/750) from the decoded image, text as characters/4); and input
   tokens per minute against sending every captured frame whole (the API
   bills a whole 1920x1080 frame as 1456x819 after its own resize: 1590
   tokens).

3. The rolling context and prompt caching (`--context`): the pipeline at its
   defaults replaying the recorded session tests/data/session (1920x1080, its
   recorded times, looped) against the fake API, which caches prompt
   prefixes as the API does (tests/fake_claude.py), with the rolling context
   (forward.context_refresh_s at its default) and without it (0: each
   request stands alone, as before the context), interleaved over rounds.
   From forward's journal per window: input tokens per request split as the
   API bills them (uncached, cache write, cache read; the fake's counts, an
   estimate), the share of requests that read from the cache, and the cost
   per hour of watching at forward.price.

Usage: .venv/bin/python scripts/bench_forward.py [--rounds 2] [--window 40] [--warm 8] [--context]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bench_common  # noqa: E402  (scripts/: beside this script)
from fake_claude import FakeClaude, image_tokens  # noqa: E402
from pipeline_harness import pipeline, wait_for  # noqa: E402

from pipeline import control  # noqa: E402
from procs.forward import journal  # noqa: E402
from procs.forward.image import Geometry, crop_box, encode, fit_size, tokens  # noqa: E402
from procs.sources.synthetic import SyntheticSource  # noqa: E402

KEY = "sk-bench-not-a-key"
WHOLE_FRAME_TOKENS = tokens(*fit_size(1920, 1080, Geometry()))


# ---------------------------------------------------------------- encoding


def _png_level1(bgra: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgra[..., [2, 1, 0, 3]]), "RGBA").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def desktop_frame(width: int, height: int, steps: int = 40) -> tuple[np.ndarray, list[list[int]]]:
    src = SyntheticSource(width=width, height=height, seed=1)
    mon = src.monitors()[0]
    frame = src.grab(mon)
    for _ in range(steps):
        frame = src.grab(mon)
    boxes = [list(b) for b in (src.label.boxes if src.label else ())] or [[width // 3, height // 3, 96, 32]]
    return np.array(frame), boxes


def bench_encode(rounds: int, reps: int) -> list[dict[str, Any]]:
    g = Geometry()
    cases: list[tuple[str, str, np.ndarray, str]] = []
    for w, h in ((1920, 1080), (3840, 2160)):
        frame, _ = desktop_frame(w, h)
        res = f"{w}x{h}"
        typing = crop_box(w, h, [[w // 3, h // 3, 96, 32]], g)  # a few typed characters
        window = crop_box(w, h, [[w // 4, h // 4, w // 3, h // 3]], g)  # a window's content
        for name, box in (("whole frame", [0, 0, w, h]), (f"typing crop {typing[2]}x{typing[3]}", typing),
                          (f"window crop {window[2]}x{window[3]}", window)):
            x, y, cw, ch = box
            part = np.ascontiguousarray(frame[y : y + ch, x : x + cw])
            for fmt in ("jpeg", "png", "auto"):
                cases.append((res, name, part, fmt))
        cases.append((res, "whole frame", frame, "previous dry-run PNG"))
    frame_shape = {f"{w}x{h}": (h, w) for w, h in ((1920, 1080), (3840, 2160))}
    times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    sizes: dict[int, tuple[int, str, str]] = {}
    order = list(range(len(cases)))
    for r in range(rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        for i in rot:
            res, _, part, fmt = cases[i]
            for _ in range(reps):
                start = time.perf_counter()
                if fmt == "previous dry-run PNG":
                    data = _png_level1(part)
                    sizes[i] = (len(data), f"{part.shape[1]}x{part.shape[0]}", "image/png")
                else:
                    img = encode(part, g, fmt, whole=part.shape[:2] == frame_shape[res])
                    sizes[i] = (len(img.data), f"{img.width}x{img.height}", img.media_type)
                times[i].append((time.perf_counter() - start) * 1e3)
    rows = []
    for i, (res, name, _, fmt) in enumerate(cases):
        nbytes, sent, media = sizes[i]
        rows.append({"frame": res, "part": name, "format": fmt, "sent as": f"{sent} {media}",
                     "bytes": nbytes, "ms": statistics.median(times[i])})
    return rows


# ---------------------------------------------------------------- the pipeline


CONFIGS = {
    "defaults": {},
    "no-wait": {"min_interval_s": 0.0, "batch": 1, "requests_per_minute": 100000,
                "input_tokens_per_minute": 100_000_000},
}
_CAPTURED = re.compile(r"captured (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")


def capture_ns(text: str) -> list[int]:
    out = []
    for stamp in _CAPTURED.findall(text):
        t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC)
        out.append(int(t.timestamp() * 1000) * 1_000_000)
    return out


def run_pipeline(name: str, warm: float, window: float) -> dict[str, Any]:
    forward = {"base_url": "", **CONFIGS[name]}
    with FakeClaude() as api:
        forward["base_url"] = api.url
        text = "[forward]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in forward.items()) + "\n"
        with pipeline(text, env={"ANTHROPIC_API_KEY": KEY}) as p:
            p.up("--live")
            wait_for("a first request", lambda: api.snapshot(), timeout=60)
            time.sleep(warm)  # a benchmark window, not a test: the steady state after start-up
            c0 = control.request_raw(p.rt, "status")["counters"]
            t0 = time.time_ns()
            time.sleep(window)
            t1 = time.time_ns()
            c1 = control.request_raw(p.rt, "status")["counters"]
            p.cli("down")
        reqs = [r for r in api.snapshot() if t0 <= r.arrival_ns < t1]
    latencies, frames, input_tokens = [], 0, 0
    for r in reqs:
        stamps = capture_ns(r.body["messages"][0]["content"][-1]["text"])
        latencies += [(r.arrival_ns - s) / 1e6 for s in stamps]
        frames += len(stamps)
        input_tokens += image_tokens(r.body)
    captured = c1["captured"] - c0["captured"]
    minutes = (t1 - t0) / 60e9
    return {
        "config": name, "requests": len(reqs), "frames": frames, "captured": captured,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "tokens_per_frame": input_tokens / frames if frames else float("nan"),
        "tokens_per_min": input_tokens / minutes,
        "every_frame_tokens_per_min": captured * WHOLE_FRAME_TOKENS / minutes,
    }


def interleaved(names: list[str], run: Callable[[str], dict[str, Any]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Each configuration `rounds` times, their order rotating each round
    (a slow minute of the machine does not fall on one of them only)."""
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rnd in range(rounds):
        for name in names[rnd % 2:] + names[: rnd % 2]:
            res = run(name)
            results[name].append(res)
            print(f"round {rnd + 1} {name}: {json.dumps(res)}", flush=True)
    return results


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(x[key] for x in runs))


CONTEXT_CONFIGS = {"single message": {"context_refresh_s": 0.0}, "rolling context": {}}


SESSION = ROOT / "tests" / "data" / "session"
REPLAY = f"""[capture]
source = "replay"
fps = 4.0
[capture.replay]
path = "{SESSION / 'session.mkv'}"
times = "{SESSION / 'labels.json'}"
loop = true
"""


def run_context(name: str, warm: float, window: float) -> dict[str, Any]:
    forward = {"base_url": "", **CONTEXT_CONFIGS[name]}
    with FakeClaude() as api:
        forward["base_url"] = api.url
        text = REPLAY + "[forward]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in forward.items()) + "\n"
        with pipeline(text, env={"ANTHROPIC_API_KEY": KEY}) as p:
            p.up("--live")
            wait_for("a first request", lambda: api.snapshot(), timeout=60)
            time.sleep(warm)  # a benchmark window, not a test: the steady state after start-up
            t0 = time.time_ns()
            time.sleep(window)
            t1 = time.time_ns()
            p.cli("down")
            entries = [x for x in journal.read(p.rt.data_dir / "journal.jsonl")
                       if x["outcome"] == "answered" and t0 <= x["time_ns"] < t1]
    n = max(1, len(entries))

    def mean(key: str) -> float:
        return sum(x["usage"].get(key, 0) for x in entries) / n

    return {
        "config": name, "requests": len(entries),
        "uncached": mean("input_tokens"), "cache_write": mean("cache_creation_input_tokens"),
        "cache_read": mean("cache_read_input_tokens"), "output": mean("output_tokens"),
        "hits": sum(x["usage"].get("cache_read_input_tokens", 0) > 0 for x in entries) / n,
        "usd_per_hour": sum(x["cost_usd"] for x in entries) / ((t1 - t0) / 3600e9),
    }


def bench_context(rounds: int, warm: float, window: float) -> None:
    results = interleaved(list(CONTEXT_CONFIGS), lambda name: run_context(name, warm, window), rounds)
    print("\n| requests | per minute | input tokens per request: uncached | cache write | cache read | all "
          "| requests reading the cache | USD per hour at forward.price |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        med = functools.partial(median_of, runs)
        total = med("uncached") + med("cache_write") + med("cache_read")
        print(f"| {name} | {statistics.median(x['requests'] / (window / 60) for x in runs):.1f} | "
              f"{med('uncached'):,.0f} | {med('cache_write'):,.0f} | {med('cache_read'):,.0f} | {total:,.0f} | "
              f"{100 * med('hits'):.0f} % | {med('usd_per_hour'):.2f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=float, default=40.0)
    ap.add_argument("--warm", type=float, default=8.0)
    ap.add_argument("--encode-rounds", type=int, default=5)
    ap.add_argument("--encode-reps", type=int, default=4)
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--context", action="store_true", help="only section 3: the rolling context and caching")
    args = ap.parse_args()
    if args.context:
        print("# bench_forward --context", "", *bench_common.machine_lines(bench_common.machine()), sep="\n", flush=True)
        bench_context(args.rounds, args.warm, args.window)
        return 0

    print("# bench_forward", "", *bench_common.machine_lines(bench_common.machine(packages=("Pillow",))), sep="\n",
          flush=True)
    rows = bench_encode(args.encode_rounds, args.encode_reps)
    base = {r["frame"]: r["ms"] for r in rows if r["format"] == "previous dry-run PNG"}
    print("\n| frame | part | format | sent as | bytes | encode ms (median) | vs previous dry-run PNG |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frame']} | {r['part']} | {r['format']} | {r['sent as']} | {r['bytes']:,} | {r['ms']:.1f} | "
              f"{base[r['frame']] / r['ms']:.1f}x faster |", flush=True)
    if args.skip_pipeline:
        return 0

    results = interleaved(list(CONFIGS), lambda name: run_pipeline(name, args.warm, args.window), args.rounds)
    print("\n| config | requests/min | frames/request | capture to wire p50 | p99 | input tokens per forwarded frame "
          "| input tokens/min | every captured frame whole, tokens/min | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        med = functools.partial(median_of, runs)
        rpm = statistics.median(x["requests"] / (args.window / 60) for x in runs)
        fpr = statistics.median(x["frames"] / max(1, x["requests"]) for x in runs)
        print(f"| {name} | {rpm:.1f} | {fpr:.2f} | {med('p50'):.0f} ms | {med('p99'):.0f} ms | "
              f"{med('tokens_per_frame'):.0f} | {med('tokens_per_min'):,.0f} | "
              f"{med('every_frame_tokens_per_min'):,.0f} | "
              f"{med('every_frame_tokens_per_min') / med('tokens_per_min'):.1f}x fewer |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
