"""Capture sources: the real screen (mss), a synthetic desktop, and replays of
recordings (a folder of PNG images or a video file). The capture stage opens
one with open_source and asks it for monitors and frames."""

from procs.sources.base import (
    Label,
    Monitor,
    Source,
    SourceConfigError,
    SourceEnded,
    SourceError,
    display_usable,
    open_source,
)

__all__ = ["Label", "Monitor", "Source", "SourceConfigError", "SourceEnded", "SourceError", "display_usable", "open_source"]
