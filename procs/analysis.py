"""The analysis stage: compares each frame with its monitor's reference frame
(the last one forwarded) tile by tile; procs.change_policy decides which
changed tiles matter. A frame with a meaningful tile goes on to forward with
the changed regions, and so does one after `keepalive_s` without any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jarvis_rust_core as jrc
import numpy as np

from procs import kernels, stage
from procs.change_policy import ChangePolicy, Tile, TileChange


def tile_change(frame: np.ndarray, reference: np.ndarray, key: Tile, tile: int, over_threshold: int = -1) -> TileChange:
    """What the policy needs of one changed tile (views, valid while both frames are held)."""
    ty, tx = key
    rows, cols = slice(ty * tile, (ty + 1) * tile), slice(tx * tile, (tx + 1) * tile)
    return TileChange(kernels.tile_signature(frame, ty, tx, tile), kernels.tile_signature(reference, ty, tx, tile),
                      frame[rows, cols], reference[rows, cols], over_threshold)


def changed_tiles(frame: np.ndarray, reference: np.ndarray, counts: np.ndarray, tile: int) -> dict[Tile, TileChange]:
    """Every tile with pixels over the threshold (`counts`, from kernels.changed_tiles), for the policy."""
    ys, xs = np.nonzero(counts)
    return {(y, x): tile_change(frame, reference, (y, x), tile, n)
            for y, x, n in zip(ys.tolist(), xs.tolist(), counts[ys, xs].tolist())}


@dataclass
class MonitorState:
    ref: jrc.FrameRef
    forwarded_at: float  # capture time of the reference, seconds
    policy: ChangePolicy


class Analysis(stage.Stage):
    name = "analysis"
    previous = "dedup"
    next = "forward"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monitors: dict[int, MonitorState] = {}

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        # The capture time, not the arrival: the policy's rhythms and the keep-alive
        # are about when frames were captured (a replay may run faster than recorded).
        now = ref.t_mono_ns / 1e9
        a = self.cfg.analysis
        state = self.monitors.get(ref.monitor)
        if state is None or (state.ref.w, state.ref.h, state.ref.fmt) != (ref.w, ref.h, ref.fmt):
            self._forward(ref, state, now, changed_ratio=1.0, regions=[[0, 0, ref.w, ref.h]], keepalive=False)
            return
        frame, reference = self.mem.read(ref), self.mem.read(state.ref)
        counts = kernels.changed_tiles(frame, reference, a.threshold, a.tile)
        ratio = float(counts.sum()) / (ref.w * ref.h)
        changed = changed_tiles(frame, reference, counts, a.tile)
        verdict = state.policy.judge(now, changed)
        if verdict.meaningful:
            meaningful = np.zeros(counts.shape, bool)
            meaningful[tuple(np.array(verdict.meaningful).T)] = True
            boxes = kernels.regions(meaningful, a.tile, ref.w, ref.h)
            self._forward(ref, state, now, changed_ratio=ratio, regions=boxes, keepalive=False)
        elif a.keepalive_s and now - state.forwarded_at >= a.keepalive_s:
            self._forward(ref, state, now, changed_ratio=ratio, regions=[], keepalive=True)
        else:
            why = f"{verdict.trivial} trivial tile(s)" if verdict.trivial else "nothing"
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
        same_geometry = state is not None and (state.ref.w, state.ref.h) == (ref.w, ref.h)
        policy = state.policy if state is not None and same_geometry else ChangePolicy(tile=self.cfg.analysis.tile)
        if state is not None:
            self.mem.release(state.ref)
        self.monitors[ref.monitor] = MonitorState(ref, now, policy)

    def shutdown(self) -> None:
        for state in self.monitors.values():
            self.mem.release(state.ref)
        self.monitors.clear()
        super().shutdown()


if __name__ == "__main__":
    stage.main(Analysis)
