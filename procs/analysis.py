"""The analysis stage: compares each frame with its monitor's reference frame
(the last one forwarded) tile by tile and decides whether it changed in a way
that matters.

A changed tile is trivial when it returns to content it showed recently (a
blinking caret cell, a hover flicker) or when it is volatile: it keeps changing
on its own on a steady rhythm (a clock, a spinner). Any other changed tile,
however small (one typed character), is meaningful. How much changed cannot
separate these (a typed character, a caret blink and a clock tick each change a
few hundred pixels); where and how a change behaves over time can.
"""

from __future__ import annotations

import collections
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import jarvis_rust_core as jrc
import numpy as np

from procs import kernels, stage

RECENT_CONTENTS = 4  # contents per tile that count as "recently shown"
RECENT_S = 5.0  # ... within this many seconds
VOLATILE_CHANGES = 3  # steady intervals needed to call a tile volatile
VOLATILE_JITTER = 0.25  # allowed deviation of an interval from their median
VOLATILE_MIN_PERIOD_S = 0.4


@dataclass
class TileMemory:
    contents: collections.deque[tuple[int, float]] = field(default_factory=lambda: collections.deque(maxlen=RECENT_CONTENTS))
    changes: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=VOLATILE_CHANGES + 1))

    def seen_recently(self, sig: int, now: float) -> bool:
        return any(s == sig and now - t <= RECENT_S for s, t in self.contents)

    def volatile(self, now: float) -> bool:
        if len(self.changes) <= VOLATILE_CHANGES:
            return False
        times = list(self.changes)
        gaps = [b - a for a, b in zip(times, times[1:])]
        period = statistics.median(gaps)
        return (
            period >= VOLATILE_MIN_PERIOD_S
            and all(abs(g - period) <= VOLATILE_JITTER * period for g in gaps)
            and now - times[-1] <= 2.5 * period
        )

    def observe(self, sig: int, now: float) -> None:
        if not self.contents or self.contents[-1][0] != sig:
            self.changes.append(now)
        self.contents.append((sig, now))


@dataclass
class MonitorState:
    ref: jrc.FrameRef
    forwarded_at: float
    tiles: dict[tuple[int, int], TileMemory] = field(default_factory=dict)


class Analysis(stage.Stage):
    name = "analysis"
    previous = "dedup"
    next = "forward"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monitors: dict[int, MonitorState] = {}

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        now = time.monotonic()
        a = self.cfg.analysis
        state = self.monitors.get(ref.monitor)
        if state is None or (state.ref.w, state.ref.h, state.ref.fmt) != (ref.w, ref.h, ref.fmt):
            self._forward(ref, state, now, changed_ratio=1.0, regions=[[0, 0, ref.w, ref.h]], keepalive=False)
            return
        frame, reference = self.mem.read(ref), self.mem.read(state.ref)
        counts = kernels.changed_tiles(frame, reference, a.threshold, a.tile)
        ratio = float(counts.sum()) / (ref.w * ref.h)
        meaningful = np.zeros(counts.shape, bool)
        trivial = 0
        for ty, tx in zip(*np.nonzero(counts)):
            key = (int(ty), int(tx))
            memory = state.tiles.setdefault(key, TileMemory())
            sig = kernels.tile_signature(frame, key[0], key[1], a.tile)
            quiet = memory.seen_recently(sig, now) or memory.volatile(now)
            memory.observe(sig, now)
            if quiet:
                trivial += 1
            else:
                meaningful[key] = True
        if meaningful.any():
            boxes = kernels.regions(meaningful, a.tile, ref.w, ref.h)
            self._forward(ref, state, now, changed_ratio=ratio, regions=boxes, keepalive=False)
        elif a.keepalive_s and now - state.forwarded_at >= a.keepalive_s:
            self._forward(ref, state, now, changed_ratio=ratio, regions=[], keepalive=True)
        else:
            why = f"{trivial} trivial tile(s)" if trivial else "nothing"
            self.finish(ref, "unchanged", changed_ratio=round(ratio, 6), why=why)

    def _forward(
        self, ref: jrc.FrameRef, state: MonitorState | None, now: float, *, changed_ratio: float,
        regions: list[list[int]], keepalive: bool,
    ) -> None:
        """The frame matters: it goes on to forward and becomes the monitor's
        reference (only if it really went on: the reference is what forward got)."""
        body = {"changed_ratio": round(changed_ratio, 6), "regions": regions, "keepalive": keepalive}
        # keep: the frame's owning hold travels on, a plain hold stays as the reference.
        if not self.pass_on(ref, body, keep=True):
            return
        self.frame_event("frame.changed", ref, **body)
        tiles = state.tiles if state is not None and (state.ref.w, state.ref.h) == (ref.w, ref.h) else {}
        if state is not None:
            self.mem.release(state.ref)
        self.monitors[ref.monitor] = MonitorState(ref, now, tiles)

    def shutdown(self) -> None:
        for state in self.monitors.values():
            self.mem.release(state.ref)
        self.monitors.clear()
        super().shutdown()


if __name__ == "__main__":
    stage.main(Analysis)
