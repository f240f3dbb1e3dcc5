"""What every capture source offers the capture stage, and how one is chosen.

A source enumerates monitors and produces one BGRA frame per monitor per call.
Monitor and region selection live here, once, so every source crops the same
way and reports the same errors. Sources are registered by name (REGISTRY,
the names of capture.source) and each builds itself from the [capture]
section (`Source.from_config`); adding one is a module, a registry entry and
its config section (docs/extending.md).
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pipeline.config import CaptureConfig

log = logging.getLogger(__name__)

#: Each source by its name: its module and class, imported only when chosen
#: (the screen source loads mss and the X libraries).
REGISTRY: dict[str, tuple[str, str]] = {
    "screen": ("procs.sources.screen", "ScreenSource"),
    "synthetic": ("procs.sources.synthetic", "SyntheticSource"),
    "replay": ("procs.sources.replay", "ReplaySource"),
}
#: What capture.source takes: a registered source, or "auto" (see `resolve`).
SOURCES = ("auto", *REGISTRY)

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

    @classmethod
    @abc.abstractmethod
    def from_config(cls, capture: CaptureConfig) -> Source:
        """The source as the [capture] section configures it (its own
        subsection, and the monitor and region every source takes)."""

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


def resolve(source: str) -> tuple[str, str]:
    """The registered source `source` names, and why: "auto" is the screen
    when a display is usable, else the synthetic desktop. The supervisor
    resolves it once, before sizing the ring; the stages get the result."""
    if source != "auto":
        return source, "configured"
    usable, why = display_usable()
    return ("screen" if usable else "synthetic"), why


def open_source(capture: CaptureConfig) -> Source:
    """Opens the source the [capture] section names ("auto" resolved first)."""
    kind, why = resolve(capture.source)
    if capture.source == "auto":
        log.info("capture source auto: %s (%s)", kind, why)
    if kind not in REGISTRY:
        raise SourceConfigError(f"unknown capture source {kind!r}: use one of {', '.join(SOURCES)}")
    module, name = REGISTRY[kind]
    cls: type[Source] = getattr(importlib.import_module(module), name)
    return cls.from_config(capture)
