"""The real screen, through mss (X11, macOS, Windows).

Monitors are mss's monitors[1:] (monitors[0] is their bounding box). An mss
instance is not thread-safe, so each thread that grabs gets its own.

macOS places monitors in points, and a Retina display has two pixels per
point each way. mss grabs at one pixel per point unless told otherwise, which
halves text; with `pixels = "physical"` (the default) every pixel is grabbed,
at four times the bytes per frame, and each monitor's scale is measured when
the monitors are enumerated. A grab of another size than its monitor's (the
scale or the resolution changed) is a SourceError: capture enumerates again.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import mss
import numpy as np
from mss import ScreenShotError

from procs.sources import base
from procs.sources.base import Monitor, Source, SourceConfigError, SourceError

if TYPE_CHECKING:
    from pipeline.config import CaptureConfig


class ScreenSource(Source):
    kind = "screen"

    @classmethod
    def from_config(cls, capture: CaptureConfig) -> ScreenSource:
        if base.screen_recording_allowed() is False:
            raise SourceConfigError(base.SCREEN_RECORDING_HELP)
        return cls(monitor=capture.monitor, region=capture.region, pixels=capture.screen_pixels)

    def __init__(self, *, display: str | None = None, monitor: int = 0, region: Sequence[int] = (),
                 pixels: str = "physical") -> None:
        """display: an X display name; None takes $DISPLAY (and is the only choice off Linux).
        pixels: "physical" (every pixel of a Retina display) or "points" (one per point)."""
        super().__init__(monitor=monitor, region=region)
        self._display = display
        self._physical = pixels == "physical"
        if sys.platform == "darwin":
            import mss.darwin

            nominal = mss.darwin.kCGWindowImageNominalResolution
            # (a module setting of mss: every instance in this process grabs alike)
            if self._physical:
                mss.darwin.IMAGE_OPTIONS &= ~nominal
            else:
                mss.darwin.IMAGE_OPTIONS |= nominal
        self._local = threading.local()
        self._lock = threading.Lock()
        self._instances: list[mss.MSS] = []
        self._check_selection()

    def _connect(self) -> mss.MSS:
        """A new mss instance for the calling thread, replacing its previous one."""
        try:
            sct = mss.MSS(display=self._display) if self._display is not None else mss.MSS()
        except ScreenShotError as exc:
            where = self._display or "the default display"
            raise SourceError(f"cannot connect to {where}: {exc}; is the display server running and DISPLAY right?") from exc
        old: mss.MSS | None = getattr(self._local, "sct", None)
        self._local.sct = sct
        with self._lock:
            self._instances.append(sct)
            if old is not None:
                self._instances.remove(old)
        if old is not None:
            _close_quietly(old)
        return sct

    def _enumerate(self) -> list[Monitor]:
        # mss caches the monitor list for an instance's lifetime, and sizes its
        # shared-memory buffer for the screen as it was at creation: only a new
        # instance sees monitors come and go and can grab a grown screen.
        sct = self._connect()
        try:
            found = sct.monitors[1:]
            scales = [self._scale(sct, m) for m in found]
        except (ScreenShotError, AssertionError) as exc:
            raise SourceError(f"cannot enumerate the monitors: {exc}") from exc
        return [Monitor(i, m["left"] * k, m["top"] * k, m["width"] * k, m["height"] * k, k)
                for i, (m, k) in enumerate(zip(found, scales, strict=False), 1)]

    def _scale(self, sct: mss.MSS, m: dict[str, int]) -> int:
        """Pixels per point of monitor `m`: what a grab of a few points gives
        (macOS with physical pixels; 1 wherever mss grabs in pixels)."""
        if sys.platform != "darwin" or not self._physical:
            return 1
        side = 8
        shot = sct.grab({"left": m["left"], "top": m["top"], "width": side, "height": side})
        return max(1, shot.width // side)

    def grab(self, monitor: Monitor) -> np.ndarray:
        sct: mss.MSS | None = getattr(self._local, "sct", None)
        if sct is None:
            sct = self._connect()
        k = monitor.scale  # mss takes points
        try:
            shot = sct.grab({"left": monitor.left // k, "top": monitor.top // k, "width": monitor.width // k,
                             "height": monitor.height // k})
        # mss asserts on the missing reply when the X connection is gone instead of raising its own error.
        except (ScreenShotError, AssertionError) as exc:
            raise SourceError(f"grabbing monitor {monitor.index} failed ({type(exc).__name__}: {exc}); "
                              f"the monitor or the display may be gone: re-enumerate the monitors") from exc
        if (shot.width, shot.height) != (monitor.width, monitor.height):
            raise SourceError(f"monitor {monitor.index} gave {shot.width}x{shot.height} pixels where "
                              f"{monitor.width}x{monitor.height} were expected (its resolution or scale changed): "
                              f"re-enumerate the monitors")
        # A view of the shot's own buffer: no copy on the way to the ring.
        return np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)

    def close(self) -> None:
        with self._lock:
            instances, self._instances = self._instances, []
        for sct in instances:
            _close_quietly(sct)


def _close_quietly(sct: mss.MSS) -> None:
    try:
        sct.close()
    except ScreenShotError:
        pass  # the connection is already gone (the X server died): nothing left to release
