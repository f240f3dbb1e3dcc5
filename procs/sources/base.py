"""What every capture source offers the capture stage, and how one is chosen.

A source enumerates monitors and produces one BGRA frame per monitor per call.
Monitor and region selection live here, once, so every source crops the same
way and reports the same errors.
"""

from __future__ import annotations

import abc
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

SOURCES = ("auto", "screen", "synthetic", "replay")

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Monitor:
    """A rectangle to capture, in the source's global coordinates, in pixels."""

    index: int  # 1-based, as mss numbers monitors; synthetic and replay: 1..n
    left: int
    top: int
    width: int
    height: int
    # Pixels per point of the display (macOS Retina: 2), where the system
    # places monitors in points; 1 elsewhere.
    scale: int = 1


@dataclass(frozen=True)
class Label:
    """Ground truth about the last synthetic frame, for judging the later stages."""

    kind: Literal["meaningful", "trivial", "none"]
    what: str
    # The redrawn areas that differ from the frame before, (x, y, w, h) relative to
    # the monitor's top-left corner (the whole monitor, whatever region was grabbed).
    boxes: tuple[Box, ...] = ()


class SourceError(RuntimeError):
    """A grab or an enumeration failed (e.g. a monitor is gone): re-enumerate."""


class SourceEnded(Exception):
    """A replay reached its end."""


class SourceConfigError(ValueError):
    """The source cannot be opened as configured; the message says what to change."""


class Source(abc.ABC):
    kind: str

    def __init__(self, *, monitor: int = 0, region: Sequence[int] = ()) -> None:
        if monitor < 0:
            raise SourceConfigError(f"monitor must be 0 (all) or a monitor number from 1, not {monitor}")
        if region and (len(region) != 4 or region[2] <= 0 or region[3] <= 0):
            raise SourceConfigError(f"region must be [] or [left, top, width, height] with a positive size, not {list(region)}")
        self._monitor = monitor
        self._region = tuple(region)

    @abc.abstractmethod
    def _enumerate(self) -> list[Monitor]:
        """Every monitor of the source, whole, queried afresh."""

    @abc.abstractmethod
    def grab(self, monitor: Monitor) -> np.ndarray:
        """(H, W, 4) uint8 BGRA of the monitor's rectangle (rows may be padded),
        valid until the next grab."""

    def monitors(self) -> list[Monitor]:
        """The selected monitors (cropped to the region), enumerated afresh.
        Empty while the selected monitor is absent, so a capture loop can keep
        re-enumerating until it returns."""
        return _select(self._enumerate(), self._monitor, self._region, strict=False, kind=self.kind)

    def render_into(self, monitor: Monitor, out: np.ndarray) -> bool:
        """Draws the monitor's next frame straight into `out`, a writable
        (H, W, 4) view whose rows may be padded (a ring slot), and says whether
        it did; sources that cannot return False and the caller grabs instead."""
        return False

    @property
    def label(self) -> Label | None:
        return None

    def recorded_offset_ns(self) -> int | None:
        """For a replay that knows when its frames were recorded: when the frame
        last grabbed was captured, in ns after the recording's first frame.
        None: the frame is captured now."""
        return None

    def close(self) -> None:  # noqa: B027 - a hook: most sources hold nothing to release
        """Releases what the source holds (connections, decoder processes)."""

    def _check_selection(self) -> None:
        """Fails now, with what to change, if the configured monitor or region
        does not fit what the source has at opening."""
        _select(self._enumerate(), self._monitor, self._region, strict=True, kind=self.kind)


def _select(all_monitors: list[Monitor], monitor: int, region: tuple[int, ...], *, strict: bool, kind: str) -> list[Monitor]:
    chosen = [m for m in all_monitors if monitor in (0, m.index)]
    if not chosen and strict:
        raise SourceConfigError(
            f"monitor {monitor} does not exist: the {kind} source has {len(all_monitors)} monitor(s), "
            f"numbered from 1; set monitor to one of them or to 0 for all"
        )
    if not region:
        return chosen
    left, top, width, height = region
    selected = []
    for m in chosen:
        if left < 0 or top < 0 or left + width > m.width or top + height > m.height:
            msg = (
                f"region {list(region)} lies outside monitor {m.index} of the {kind} source ({m.width}x{m.height}): "
                f"it is [left, top, width, height] relative to the monitor's top-left corner and must fit in it"
            )
            if strict:
                raise SourceConfigError(msg)
            log.warning("%s; skipping that monitor", msg)
            continue
        # On a display of k pixels per point (Retina) the region grows to whole
        # points: the system grabs in points (at most k - 1 pixels more a side).
        k = m.scale
        x0, y0 = left // k * k, top // k * k
        x1, y1 = min(-(-(left + width) // k) * k, m.width), min(-(-(top + height) // k) * k, m.height)
        selected.append(Monitor(m.index, m.left + x0, m.top + y0, x1 - x0, y1 - y0, k))
    return selected


SCREEN_RECORDING_HELP = (
    "macOS has not allowed this program to record the screen (without it, frames show only the wallpaper "
    "and the menu bar): open System Settings > Privacy & Security > Screen Recording, turn on the terminal "
    "or app that runs jarvis-pipeline (add it with + if it is not listed), then quit and reopen it"
)


def screen_recording_allowed() -> bool | None:
    """macOS: whether this process may record the screen (the Screen Recording
    permission, asked without prompting); None where there is no such
    permission or the system is too old to say (before macOS 10.15)."""
    if sys.platform != "darwin":
        return None
    import ctypes
    import ctypes.util

    try:
        graphics = ctypes.CDLL(ctypes.util.find_library("CoreGraphics")
                               or "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics")
        preflight = graphics.CGPreflightScreenCaptureAccess
    except (OSError, AttributeError):
        return None
    preflight.argtypes, preflight.restype = [], ctypes.c_bool
    return bool(preflight())


def display_usable() -> tuple[bool, str]:
    """Whether the real screen can be captured here, and why (not)."""
    if screen_recording_allowed() is False:
        return False, SCREEN_RECORDING_HELP
    display = os.environ.get("DISPLAY", "")
    if sys.platform.startswith("linux") and not display:
        if os.environ.get("WAYLAND_DISPLAY"):
            return False, "Wayland session without X (DISPLAY unset, XWayland not running): mss cannot capture Wayland"
        return False, "no display: DISPLAY is not set"
    import mss  # here, so that processes that never look at the screen never load it

    try:
        with mss.MSS() as sct:
            count = len(sct.monitors) - 1
    except mss.ScreenShotError as exc:
        return False, f"cannot connect to the display {display!r}: {exc}"
    if count < 1:
        return False, f"the display {display!r} has no monitors"
    return True, f"display {display!r} with {count} monitor(s)"


def open_source(source: str, *, fps: float, monitor: int, region: Sequence[int],
                synthetic: Mapping[str, Any], replay: Mapping[str, Any], screen_pixels: str = "physical") -> Source:
    """Opens the configured source; "auto" is the screen when a display is
    usable, else the synthetic desktop."""
    if source == "auto":
        usable, reason = display_usable()
        source = "screen" if usable else "synthetic"
        log.info("capture source auto: %s (%s)", source, reason)
    # Each source is imported only when chosen: the screen source loads mss and X libraries.
    if source == "screen":
        if screen_recording_allowed() is False:
            raise SourceConfigError(SCREEN_RECORDING_HELP)
        from procs.sources.screen import ScreenSource

        return ScreenSource(monitor=monitor, region=region, pixels=screen_pixels)
    try:
        if source == "synthetic":
            from procs.sources.synthetic import SyntheticSource

            return SyntheticSource(width=int(synthetic["width"]), height=int(synthetic["height"]),
                                   seed=int(synthetic["seed"]), monitors=int(synthetic["monitors"]),
                                   fps=fps, monitor=monitor, region=region,
                                   mix=str(synthetic.get("mix", "desktop")))
        if source == "replay":
            from procs.sources.replay import ReplaySource

            return ReplaySource(path=str(replay["path"]), loop=bool(replay["loop"]), times=str(replay.get("times", "")),
                                monitor=monitor, region=region)
    except KeyError as exc:
        raise SourceConfigError(f"the {source} source's settings lack the key {exc}") from exc
    raise SourceConfigError(f"unknown capture source {source!r}: use one of {', '.join(SOURCES)}")
