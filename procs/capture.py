"""The capture stage: one frame per monitor at the configured rate, written
straight into a ring slot (rendered in place where the source can), handed to
dedup. It is the ring's only writer. A monitor that grew beyond the ring's
slots after `up` is captured downscaled to fit until it shrinks back."""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np

import jarvis_rust_core as jrc
from pipeline import protocol, schemas
from procs import kernels, stage
from procs.sources import base as sources

#: Capture-rate divisor per memory-pressure level.
SLOWDOWN = {"low": 1, "medium": 1, "high": 2, "critical": 4}
#: Hand-off extra and frame.captured field of a frame that was downscaled to fit
#: the ring: [width, height] of the monitor as grabbed (w and h are the frame's).


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size within max_width x max_height with the aspect ratio of
    width x height (rounded down, at least one pixel each way)."""
    if width * max_height > height * max_width:  # wider than the ring's frame: its width limits
        return max_width, max(1, height * max_width // width)
    return max(1, width * max_height // height), max_height


class CaptureStats(schemas.StageStats, kw_only=True):
    fps: Annotated[float, schemas.doc("frames captured per second over the last 5 s")] = 0.0
    monitors: Annotated[int, schemas.doc("monitors captured")] = 0
    source: Annotated[str, schemas.doc("the capture source")] = ""


class Capture(stage.Stage):
    is_writer = True
    Stats = CaptureStats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c = self.cfg.capture
        self.source = sources.open_source(c)
        self.monitors: list[sources.Monitor] = []
        # Monitors larger than the ring's slots, and the size their frames are
        # downscaled to; a monitor that changes size is a new key, so a screen
        # that shrinks back is captured whole again.
        self.downscaled: dict[sources.Monitor, tuple[int, int]] = {}
        self.next_frame = time.monotonic()
        self.next_rescan = 0.0
        self.ended = False
        self.fps_window: list[float] = []
        self.replay_origin: tuple[int, int] | None = None  # (monotonic, wall) ns of a replay's first frame
        recovered = self.mem.recovery
        if recovered["discarded"] or recovered["released"]:
            self.log.warning("repaired what the previous writer left: %s", recovered)

    def _rescan(self, now: float) -> None:
        try:
            found = self.source.monitors()
        except sources.SourceError as exc:
            self.log.warning("cannot enumerate monitors: %s", exc)
            found = []
        if found != self.monitors:
            self.monitors = found
            self.downscaled = {m: size for m, size in self.downscaled.items() if m in found}
            self.publish("capture.geometry_changed", {"monitors": [vars(m) for m in found]})
            self.log.info("monitors: %s", found)
        self.next_rescan = now + self.cfg.capture.rescan_s

    def tick(self, now: float) -> float | None:
        if self.ended:
            return None
        if now >= self.next_rescan:
            self._rescan(now)
        if now >= self.next_frame:
            for m in list(self.monitors):
                self._capture(m, now)
            interval = SLOWDOWN[self.pressure] / self.cfg.capture.fps
            # A late tick does not try to catch up: frames are snapshots, not a backlog.
            self.next_frame = max(self.next_frame + interval, now)
        return min(self.next_frame, self.next_rescan)

    def _capture(self, m: sources.Monitor, now: float) -> None:
        start = time.perf_counter()
        t_mono, t_wall = time.monotonic_ns(), time.time_ns()
        size = self.downscaled.get(m) if self.downscaled else None  # hashing a Monitor takes a microsecond
        try:
            res = self.mem.reserve(*(size or (m.width, m.height)), "BGRA", monitor=m.index)
        except jrc.RingFull:
            # Captured (the screen was there) but nowhere to put it.
            self.mem.counter_add(protocol.COUNTER_INDEX["captured"])
            self.mem.counter_add(protocol.COUNTER_INDEX["dropped.ring_full"])
            self.drops["ring_full"] += 1
            self.terminal["dropped.ring_full"] += 1
            return
        except jrc.FrameGeometryError:
            self._oversize(m)
            return
        digests = None
        try:
            if size is not None:
                kernels.downscale(self._grab(m), res.array)
            else:
                # Hashed as it is copied: the pixels are read once.
                digests = kernels.copy_hashed(self._grab(m), res.array)
        except sources.SourceEnded:
            res.abort()
            self.ended = True
            self.log.info("the replay ended; capture idles")
            return
        except sources.SourceError as exc:
            res.abort()
            self.log.warning("grab of monitor %d failed (%s); re-enumerating", m.index, exc)
            self.next_rescan = 0.0
            return
        except BaseException:
            res.abort()
            raise
        recorded = self.source.recorded_offset_ns()
        if recorded is not None:
            # A replay with its recorded times: frames carry those (from the first one replayed),
            # so what depends on when frames were captured holds at any replay speed.
            if self.replay_origin is None:
                self.replay_origin = (t_mono - recorded, t_wall - recorded)
            t_mono, t_wall = self.replay_origin[0] + recorded, self.replay_origin[1] + recorded
        # Hashing here, with or straight after the write, reads the pixels from
        # cache; dedup would read them again from memory (BENCHMARKS.md, kernels).
        digest, bands = digests if digests is not None else kernels.frame_digests(res.array)
        ref = res.commit(hold=True, t_mono_ns=t_mono, t_wall_ns=t_wall, count=protocol.COUNTER_INDEX["captured"])
        self.frames_in += 1
        self.fps_window.append(now)
        scaled = {protocol.SCALED_FROM_KEY: [m.width, m.height]} if size is not None else {}
        label = self.source.label
        self.frame_event("frame.captured", ref, **scaled, **({"label": label.kind} if label is not None else {}))
        self.pass_on(ref, {protocol.PIXEL_HASH_KEY: digest, protocol.BAND_DIGESTS_KEY: bands, **scaled})
        self.timings.add(time.perf_counter() - start)

    def _grab(self, m: sources.Monitor) -> np.ndarray:
        frame = self.source.grab(m)
        if frame.shape != (m.height, m.width, 4):
            # The monitor changed after it was enumerated; written anyway, the
            # frame would be torn or fail the copy, every time until a rescan.
            raise sources.SourceError(f"the {self.source.kind} source returned a {frame.shape} array for "
                                      f"the {m.width}x{m.height} monitor, not ({m.height}, {m.width}, 4)")
        return frame

    def _oversize(self, m: sources.Monitor) -> None:
        """Counts the frame of a monitor too large for the ring's slots (it was
        not written) and has the monitor's next frames downscaled to fit. Once
        per geometry: a downscaled size always fits."""
        self.mem.counter_add(protocol.COUNTER_INDEX["captured"])
        self.mem.counter_add(protocol.COUNTER_INDEX["dropped.oversize"])
        self.drops["oversize"] += 1
        self.terminal["dropped.oversize"] += 1
        max_width, max_height = self.mem.max_frame
        width, height = self.downscaled[m] = fit_within(m.width, m.height, max_width, max_height)
        action = f"downscaled to {width}x{height}"
        self.log.warning("monitor %d is %dx%d, larger than the ring's %dx%d frames: its frames are %s from now on "
                         "(a restart of the pipeline sizes the ring for it)", m.index, m.width, m.height,
                         max_width, max_height, action)
        self.publish("capture.oversize", {"monitor": m.index, "width": m.width, "height": m.height,
                                          "max_width": max_width, "max_height": max_height, "action": action})

    def extra_stats(self) -> dict[str, Any]:
        now = time.monotonic()
        self.fps_window = [t for t in self.fps_window if now - t <= 5.0]
        fps = len(self.fps_window) / 5.0 if self.fps_window else 0.0
        return {"fps": round(fps, 2), "monitors": len(self.monitors), "source": self.source.kind}

    def shutdown(self) -> None:
        self.source.close()
        super().shutdown()


if __name__ == "__main__":
    stage.main(Capture)
