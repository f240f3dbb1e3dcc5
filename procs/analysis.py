"""The analysis stage: compares each frame with its monitor's reference frame
(the last one forwarded) tile by tile; procs.change_policy's model decides
which changes matter. A frame with a meaningful tile goes on to forward with
the changed regions, and so does one after `keepalive_s` without any. The
per-pixel pass runs where analysis.backend says (procs.backend); a GPU that
fails is left for the CPU, the frame it failed on judged again there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

import jarvis_rust_core as jrc
from pipeline import protocol, schemas
from procs import backend, kernels, stage
from procs.change_policy import ChangePolicy, Verdict


@dataclass
class MonitorState:
    ref: jrc.FrameRef
    forwarded_at: float  # capture time of the reference, seconds
    policy: ChangePolicy
    bands: bytes | None  # the reference's band digests (protocol.BAND_DIGESTS_KEY), if it came with usable ones


def usable_bands(extra: dict[str, Any], height: int) -> bytes | None:
    """The frame's band digests from capture (protocol.BAND_DIGESTS_KEY), if
    they are as many as a frame `height` rows tall has bands; else None (its
    rows are all read)."""
    bands = extra.get(protocol.BAND_DIGESTS_KEY)
    if isinstance(bands, bytes) and len(bands) == 8 * -(-height // kernels.band_rows(height)):
        return bands
    return None


class AnalysisStats(schemas.StageStats, kw_only=True):
    gpu_failures: Annotated[int, schemas.doc("GPU calls that failed (the device lost): each frame judged again on the "
                                             "CPU")] = 0
    tile_rows: Annotated[int, schemas.doc("rows of tiles of the frames judged against a reference")] = 0
    tile_rows_skipped: Annotated[int, schemas.doc("... of which not read: their bands' digests were the reference's "
                                                  "(on the CPU)")] = 0
    band_digests_refused: Annotated[int, schemas.doc("frames whose band digests were not usable (missing, or not the "
                                                     "frame's geometry): all their rows read")] = 0


class Analysis(stage.Stage):
    Stats = AnalysisStats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.monitors: dict[int, MonitorState] = {}
        # "gpu" without an adapter raises here; `up` has checked it before (procs.backend).
        self.gpu, self.backend = backend.open_gpu(self.cfg.analysis.backend)
        self.gpu_times = stage.Timings()
        self.gpu_failures = 0
        self.gpu_frames = 0  # judged on the GPU
        self.tile_rows = self.tile_rows_skipped = self.band_digests_refused = 0
        # Fault injection (procs.backend): the device lost after this many frames judged on it.
        lose_after = os.environ.get(backend.FAULT_LOST_AFTER)
        self.lose_gpu_after = int(lose_after) if lose_after and lose_after.isdigit() else None
        self.log.info("analysis runs on %s", self.backend)
        self.publish("analysis.backend", {"backend": self.backend, "fallback": False})

    def _bands(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> bytes | None:
        bands = usable_bands(extra, ref.h)
        self.band_digests_refused += bands is None
        return bands

    def _judge(self, state: MonitorState, now: float, ref: jrc.FrameRef, frame: np.ndarray,
               bands: bytes | None) -> Verdict:
        """The model's verdict; on the GPU when there is one, else (or when
        the GPU fails: it is not used again) on the CPU, reading only the rows
        of tiles whose bands differ from the reference's."""
        keys, reference = (ref.seq, state.ref.seq), self.mem.read(state.ref)
        tile = self.cfg.analysis.tile
        self.tile_rows += -(-ref.h // tile)
        if self.gpu is not None:
            if self.lose_gpu_after is not None and self.gpu_frames >= self.lose_gpu_after:
                self.gpu.lose_device()
            try:
                verdict = state.policy.judge(now, frame, reference, keys=keys)
            except jrc.GpuError as exc:
                self._lose_gpu(exc)
            else:
                t = self.gpu.timings
                self.gpu_frames += 1
                self.gpu_times.add((t["upload_ms"] + t["compute_ms"] + t["readback_ms"]) / 1e3)
                return verdict
        known = None
        if bands is not None and state.bands is not None:
            known = kernels.known_equal_rows(bands, state.bands, ref.h, tile)
        verdict = state.policy.judge(now, frame, reference, keys=keys, known_equal=known)
        self.tile_rows_skipped += verdict.rows_skipped
        return verdict

    def _lose_gpu(self, exc: jrc.GpuError) -> None:
        self.gpu_failures += 1
        self.gpu = None
        for state in self.monitors.values():
            state.policy.gpu = None
        self.backend = f"cpu (the GPU failed: {exc})"
        self.log.error("the GPU failed (%s): analysis goes on on the CPU", exc)
        self.publish("analysis.backend", {"backend": self.backend, "fallback": True})

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        # The capture time, not the arrival: the policy's rhythms and the keep-alive
        # are about when frames were captured (a replay may run faster than recorded).
        now = ref.t_mono_ns / 1e9
        a = self.cfg.analysis
        frame = self.mem.read(ref)
        bands = self._bands(ref, extra)
        state = self.monitors.get(ref.monitor)
        if state is None or (state.ref.w, state.ref.h, state.ref.fmt) != (ref.w, ref.h, ref.fmt):
            self._forward(ref, now, bands, changed_ratio=1.0, regions=[[0, 0, ref.w, ref.h]], keepalive=False,
                          policy=ChangePolicy(a, frame.shape, gpu=self.gpu))
            return
        try:
            verdict = self._judge(state, now, ref, frame, bands)
        except Exception:  # noqa: BLE001 - a picture the model cannot take must not stop the stage
            # Counted and logged; the model starts afresh and the frame goes on whole, as a first one would.
            self.rejected["model_error"] += 1
            if self.rejected["model_error"] <= 10 or self.rejected["model_error"] % 1000 == 0:
                self.log.exception("the change model failed on frame seq %d (%d so far); it starts afresh",
                                   ref.seq, self.rejected["model_error"])
            state.policy = ChangePolicy(a, frame.shape, gpu=self.gpu)
            self._forward(ref, now, bands, changed_ratio=1.0, regions=[[0, 0, ref.w, ref.h]], keepalive=False)
            return
        ratio = float(verdict.counts.sum()) / (ref.w * ref.h)
        if verdict.kept or (a.keepalive_s and now - state.forwarded_at >= a.keepalive_s):
            boxes = kernels.regions(verdict.meaningful, a.tile, ref.w, ref.h) if verdict.kept else []
            forwarded = self._forward(ref, now, bands, changed_ratio=ratio, regions=boxes, keepalive=not verdict.kept)
            # A frame that could not go on was dropped: its pixels may be reused already.
            state.policy.settle(frame if forwarded else None, kept=forwarded)
        else:
            state.policy.settle(frame, kept=False)  # before `finish` lets go of the pixels
            why = ", ".join(f"{n} {cause}" for cause, n in sorted(verdict.causes.items())) or "nothing"
            self.finish(ref, "unchanged", changed_ratio=round(ratio, 6), why=why)

    def _forward(self, ref: jrc.FrameRef, now: float, bands: bytes | None, *, changed_ratio: float,
                 regions: list[list[int]], keepalive: bool, policy: ChangePolicy | None = None) -> bool:
        """The frame matters: it goes on to forward and becomes the monitor's
        reference (only if it really went on: the reference is what forward got)."""
        body = {"changed_ratio": round(changed_ratio, 6), "regions": regions, "keepalive": keepalive}
        # keep: the frame's owning hold travels on, a plain hold stays as the reference.
        if not self.pass_on(ref, body, keep=True):
            return False
        self.frame_event("frame.changed", ref, **body)
        state = self.monitors.get(ref.monitor)
        if state is not None:
            self.mem.release(state.ref)
        if policy is not None or state is None:
            assert policy is not None
            self.monitors[ref.monitor] = MonitorState(ref, now, policy, bands)
        else:
            state.ref, state.forwarded_at, state.bands = ref, now, bands
        return True

    def extra_stats(self) -> dict[str, Any]:
        return {"backend": self.backend, "gpu_ms": self.gpu_times.take(), "gpu_failures": self.gpu_failures,
                "tile_rows": self.tile_rows, "tile_rows_skipped": self.tile_rows_skipped,
                "band_digests_refused": self.band_digests_refused}

    def shutdown(self) -> None:
        for state in self.monitors.values():
            self.mem.release(state.ref)
        self.monitors.clear()
        super().shutdown()


if __name__ == "__main__":
    stage.main(Analysis)
