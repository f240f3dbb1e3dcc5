"""The real screen, through mss (X11, macOS, Windows).

Monitors are mss's monitors[1:] (monitors[0] is their bounding box). An mss
instance is not thread-safe, so each thread that grabs gets its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import mss
import numpy as np
from mss import ScreenShotError

from procs.sources.base import Monitor, Source, SourceError


class ScreenSource(Source):
    kind = "screen"

    def __init__(self, *, display: str | None = None, monitor: int = 0, region: Sequence[int] = ()) -> None:
        """display: an X display name; None takes $DISPLAY (and is the only choice off Linux)."""
        super().__init__(monitor=monitor, region=region)
        self._display = display
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
        except ScreenShotError as exc:
            raise SourceError(f"cannot enumerate the monitors: {exc}") from exc
        return [Monitor(i, m["left"], m["top"], m["width"], m["height"]) for i, m in enumerate(found, 1)]

    def grab(self, monitor: Monitor) -> np.ndarray:
        sct: mss.MSS | None = getattr(self._local, "sct", None)
        if sct is None:
            sct = self._connect()
        try:
            shot = sct.grab({"left": monitor.left, "top": monitor.top, "width": monitor.width, "height": monitor.height})
        # mss asserts on the missing reply when the X connection is gone instead of raising its own error.
        except (ScreenShotError, AssertionError) as exc:
            raise SourceError(f"grabbing monitor {monitor.index} failed ({type(exc).__name__}: {exc}); "
                              f"the monitor or the display may be gone: re-enumerate the monitors") from exc
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
