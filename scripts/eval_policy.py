#!/usr/bin/env python3
"""Compares change-detection methods on the labelled desktop session
(scripts/record_session.py): per label category, the share of frames each
method keeps, and the two headline numbers (meaningful kept, trivial dropped).

The methods, each as its users run it:
- exact: keep a frame whose bytes differ from the previous frame's;
- histogram: screenpipe-style, the Hellinger distance between the gray
  histograms of the frame and the previous one; keep at >= 0.02;
- dHash / pHash (imagehash, 64 bits) against the last kept frame; keep at a
  Hamming distance >= the threshold;
- SSIM: OpenRecall's, one global SSIM of the gray images against the last kept
  frame; keep below 0.9;
- pixels: the share of pixels that changed (the pipeline's pixel test) against
  the last kept frame; keep above the threshold;
- ours: the pipeline's policy offline, driven like the stages drive it: dedup's
  per-frame decision (procs.dedup.RecentFrames: the exact time-windowed hash
  set, repeats counted only of frames since the last forwarded one), then
  procs.change_policy against the reference frame (the last kept one), with the
  frames' recorded capture times and the default configuration
  (tests/test_policy_session.py runs the real pipeline the same way).

    .venv/bin/python scripts/eval_policy.py tests/data/session
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Config  # noqa: E402
from procs import kernels  # noqa: E402
from procs.change_policy import ChangePolicy  # noqa: E402
from procs.dedup import RecentFrames  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import policy_before  # noqa: E402


def decode(video: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """The session's frames, BGRA, one at a time (the whole session would not fit in memory)."""
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "bgra", "-"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    size = width * height * 4
    try:
        while len(data := proc.stdout.read(size)) == size:
            yield np.frombuffer(data, np.uint8).reshape(height, width, 4)
    finally:
        proc.kill()
        proc.wait()


def gray(frame: np.ndarray) -> np.ndarray:
    return kernels.luma(frame).astype(np.float64)


class AgainstPrevious:
    """A method comparing each frame with the one before it."""

    def __init__(self, differs: Callable[[np.ndarray, np.ndarray], bool]) -> None:
        self.differs = differs
        self.previous: np.ndarray | None = None

    def keep(self, frame: np.ndarray, t: float) -> bool:
        kept = self.previous is None or self.differs(self.previous, frame)
        self.previous = frame
        return kept


class AgainstKept:
    """A method comparing each frame with the last one it kept, through a feature of each."""

    def __init__(self, feature: Callable[[np.ndarray], Any], differs: Callable[[Any, Any], bool]) -> None:
        self.feature, self.differs = feature, differs
        self.kept: Any = None

    def keep(self, frame: np.ndarray, t: float) -> bool:
        f = self.feature(frame)
        if self.kept is None or self.differs(self.kept, f):
            self.kept = f
            return True
        return False


def hellinger(a: np.ndarray, b: np.ndarray) -> float:
    ha, hb = kernels.luma_histogram(a).astype(np.float64), kernels.luma_histogram(b).astype(np.float64)
    ha, hb = ha / ha.sum(), hb / hb.sum()
    return float(np.sqrt(max(0.0, 1.0 - np.sqrt(ha * hb).sum())))


def global_ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """OpenRecall's mean structured similarity: one SSIM over the whole gray image."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = a.mean(), b.mean()
    cov = ((a - mu_a) * (b - mu_b)).mean()
    return float(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (a.var() + b.var() + c2)))


class Ours:
    """Dedup then analysis, as the stages run them, on the recorded times."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.recent = RecentFrames(cfg.dedup.max_hashes)
        self.seq = 0
        self.policy: ChangePolicy | None = None
        self.reference: np.ndarray | None = None
        self.forwarded_at = 0.0

    def keep(self, frame: np.ndarray, t: float) -> bool:
        d, a = self.cfg.dedup, self.cfg.analysis
        self.seq += 1
        if self.recent.check(1, kernels.fingerprint(frame), self.seq, t, d.max_hashes, d.window_s) is not None:
            return False
        if self.reference is None or self.policy is None:
            self.policy = ChangePolicy(a, frame.shape)
            return self._forward(frame, t)
        verdict = self.policy.judge(t, frame, self.reference)
        kept = verdict.kept or bool(a.keepalive_s and t - self.forwarded_at >= a.keepalive_s)
        self.policy.settle(frame, kept)
        return self._forward(frame, t) if kept else False

    def _forward(self, frame: np.ndarray, t: float) -> bool:
        self.reference, self.forwarded_at = frame.copy(), t
        self.recent.forwarded_seq(1, self.seq)
        return True


class Before(Ours):
    """The same with the policy before the temporal model (scripts/policy_before.py)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.before = policy_before.ChangePolicy(tile=cfg.analysis.tile)

    def keep(self, frame: np.ndarray, t: float) -> bool:
        d, a = self.cfg.dedup, self.cfg.analysis
        self.seq += 1
        if self.recent.check(1, kernels.fingerprint(frame), self.seq, t, d.max_hashes, d.window_s) is not None:
            return False
        if self.reference is None:
            return self._forward(frame, t)
        counts = kernels.changed_tiles(frame, self.reference, a.threshold, a.tile)
        ys, xs = np.nonzero(counts)
        tile = a.tile
        changed = {}
        for y, x, n in zip(ys.tolist(), xs.tolist(), counts[ys, xs].tolist(), strict=False):
            rows, cols = slice(y * tile, (y + 1) * tile), slice(x * tile, (x + 1) * tile)
            changed[(y, x)] = policy_before.TileChange(
                kernels.tile_signature(frame, y, x, tile), kernels.tile_signature(self.reference, y, x, tile),
                frame[rows, cols], self.reference[rows, cols], n)
        verdict = self.before.judge(t, changed)
        if verdict.meaningful or (a.keepalive_s and t - self.forwarded_at >= a.keepalive_s):
            return self._forward(frame, t)
        return False


def methods(cfg: Config) -> dict[str, Callable[[np.ndarray, float], bool]]:
    import imagehash
    from PIL import Image

    def image(frame: np.ndarray) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(frame[..., 2::-1]))

    def hashed(fn: Callable[[Image.Image], Any], at_least: int) -> AgainstKept:
        return AgainstKept(lambda f: fn(image(f)), lambda a, b: bool(a - b >= at_least))

    def pixels(share: float) -> AgainstKept:
        return AgainstKept(lambda f: f, lambda a, b: float(kernels.changed_mask(a, b, cfg.analysis.threshold).mean()) > share)

    found: dict[str, Callable[[np.ndarray, float], bool]] = {
        "exact": AgainstPrevious(lambda a, b: not np.array_equal(a, b)).keep,
        "histogram >= 0.02": AgainstPrevious(lambda a, b: hellinger(a, b) >= 0.02).keep,
    }
    for name, fn in (("dHash", imagehash.dhash), ("pHash", imagehash.phash)):
        for at_least in (1, 5):
            found[f"{name} >= {at_least}"] = hashed(fn, at_least).keep
    found["SSIM < 0.9"] = AgainstKept(gray, lambda a, b: global_ssim(a, b) < 0.9).keep
    for share in (0.0001, 0.001):
        found[f"pixels > {share:.2%}"] = pixels(share).keep
    found["before"] = Before(cfg).keep
    found["ours"] = Ours(cfg).keep
    return found


def evaluate(session: Path, only: tuple[str, ...] = ()) -> tuple[list[dict[str, object]], dict[str, list[bool]]]:
    """Every method over one session (each starts afresh): the frames' labels
    and, per method, whether it kept each frame."""
    meta = json.loads((session / "labels.json").read_text())
    frames = meta["frames"]
    chosen = {k: v for k, v in methods(Config()).items() if not only or k in only}
    kept: dict[str, list[bool]] = {name: [] for name in chosen}
    for entry, frame in zip(frames, decode(session / meta["video"], meta["width"], meta["height"]), strict=False):
        for name, keep in chosen.items():
            kept[name].append(keep(frame, float(entry["t"])))
    if any(len(v) != len(frames) for v in kept.values()):
        sys.exit(f"eval_policy: the video holds fewer frames than labels.json lists ({len(frames)})")
    return frames, kept


def table(frames: list[dict[str, object]], kept: dict[str, list[bool]]) -> str:
    """Markdown: kept % per category and method, then the headline numbers.
    Frames with index 0 (a session's first, kept by every method) are left out."""
    names = list(kept)
    rows = []
    counted = [i for i, e in enumerate(frames) if e["index"] != 0]
    label_of: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for i in counted:
        label_of[str(frames[i]["category"])][str(frames[i]["label"])] += 1
    order = {"meaningful": 0, "trivial": 1, "none": 2}
    cats = sorted(label_of, key=lambda c: (order.get(label_of[c].most_common(1)[0][0], 3), c))

    def pct(indices: list[int], name: str) -> float:
        return 100.0 * sum(kept[name][i] for i in indices) / len(indices) if indices else float("nan")

    by_cat = {c: [i for i in counted if frames[i]["category"] == c] for c in cats}
    by_label = {lab: [i for i in counted if frames[i]["label"] == lab] for lab in order}
    rows.append("| category (frames) | " + " | ".join(names) + " |")
    rows.append("|---|" + "---:|" * len(names))
    for c in cats:
        label = label_of[c].most_common(1)[0][0]
        rows.append(f"| {label}: {c} ({len(by_cat[c])}) kept % | " + " | ".join(f"{pct(by_cat[c], n):.0f}" for n in names) + " |")
    rows.append(f"| **meaningful kept %** ({len(by_label['meaningful'])}) | "
                + " | ".join(f"**{pct(by_label['meaningful'], n):.1f}**" for n in names) + " |")
    rows.append(f"| **trivial dropped %** ({len(by_label['trivial'])}) | "
                + " | ".join(f"**{100 - pct(by_label['trivial'], n):.1f}**" for n in names) + " |")
    rows.append(f"| none dropped % ({len(by_label['none'])}) | "
                + " | ".join(f"{100 - pct(by_label['none'], n):.1f}" for n in names) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sessions", type=Path, nargs="+", help="folders with session.mkv and labels.json (one table over all)")
    parser.add_argument("--only", nargs="*", default=(), help="methods to run (default: all)")
    parser.add_argument("--misses", metavar="METHOD", help="also list the frames METHOD keeps against its label or drops")
    parser.add_argument("--jobs", type=int, default=1, help="sessions evaluated at once, each in its own process")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs is at least 1")
    frames: list[dict[str, object]] = []
    kept: dict[str, list[bool]] = {}
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        results = pool.map(evaluate, args.sessions, [tuple(args.only)] * len(args.sessions))
        for session, (session_frames, session_kept) in zip(args.sessions, results, strict=False):
            frames += [{**e, "session": session.name} for e in session_frames]
            for name, flags in session_kept.items():
                kept.setdefault(name, []).extend(flags)
            print(f"{session}: {len(session_frames)} frames", file=sys.stderr, flush=True)
    print(table(frames, kept))
    if args.misses in kept:
        for i, e in enumerate(frames):
            if e["index"] and e["label"] != "none" and kept[args.misses][i] != (e["label"] == "meaningful"):
                print(f"{e['session']} frame {e['index']} t={e['t']} {e['label']}/{e['category']}: "
                      f"{'kept' if kept[args.misses][i] else 'dropped'}")


if __name__ == "__main__":
    main()
