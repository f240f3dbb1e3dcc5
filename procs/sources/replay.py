"""Replays a recording: a folder of PNG images (in name order, decoded by
Pillow) or a video file (decoded by an ffmpeg subprocess to raw BGRA on a
pipe; no Python video library).

One monitor, numbered 1, the size of the next frame. Each grab is the next
frame; at the end the source starts again (loop) or raises SourceEnded.
Given the recording's capture times (a JSON file, one per frame), the frames
report them (recorded_offset_ns), so a replay at any speed is stamped as it
was recorded; a loop goes on one frame interval after the last frame.
"""

from __future__ import annotations

import abc
import io
import json
import shutil
import subprocess
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from procs.sources.base import Monitor, Source, SourceConfigError, SourceEnded, SourceError

if typing.TYPE_CHECKING:
    from pipeline.config import CaptureConfig


#: The largest replayed image, in pixels a side (a file is input: one claiming a
#: huge size is refused before it is decoded).
MAX_SIDE = 16384


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's header, or SourceConfigError naming the file."""
    try:
        with Image.open(path, formats=["PNG"]) as im:
            width, height = im.size
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for files it cannot read
        raise SourceConfigError(f"{path.name}: not a PNG image Pillow can read ({exc})") from None
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise SourceConfigError(f"{path.name}: {width}x{height} is not a replayable size (at most {MAX_SIDE} a side)")
    return width, height


def read_png_bgra(path: Path) -> np.ndarray:
    """The image as (H, W, 4) BGRA, whatever its colour type and depth, or SourceError."""
    try:
        with Image.open(path, formats=["PNG"]) as im:
            if max(im.size) > MAX_SIDE:
                raise ValueError(f"{im.size[0]}x{im.size[1]} is over {MAX_SIDE} a side")
            if im.mode.startswith("I"):  # 16-bit gray, which convert() would clip: scaled to 8 bits instead
                gray = ((np.asarray(im).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
                rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
            else:
                rgba = np.asarray(im.convert("RGBA"))
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt, replaced since its header was read
        raise SourceError(f"cannot decode {path.name}: {exc}") from None
    return rgba[..., [2, 1, 0, 3]]


class _Frames(abc.ABC):
    @abc.abstractmethod
    def next_size(self) -> tuple[int, int]:
        """(width, height) of the frame the next read returns (the last one at the end)."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """The next (H, W, 4) BGRA frame; SourceEnded after the last one when not looping."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many frames one pass holds."""

    def close(self) -> None:  # noqa: B027 - a hook: a folder of images holds nothing to release
        """Releases decoder resources."""


class _PngFolder(_Frames):
    def __init__(self, folder: Path, loop: bool) -> None:
        self.files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()), key=lambda p: p.name)
        if not self.files:
            raise SourceConfigError(f"replay folder {folder} holds no .png files: put PNG images in it "
                                    f"(replayed in name order) or set replay.path to a video file")
        # Every header up front (33 bytes each), so an unsupported image fails at start, not mid-replay.
        self.sizes = []
        for path in self.files:
            self.sizes.append(png_size(path))
        self.loop = loop
        self.pos = 0

    def count(self) -> int:
        return len(self.files)

    def next_size(self) -> tuple[int, int]:
        if self.pos == len(self.files):
            return self.sizes[0] if self.loop else self.sizes[-1]
        return self.sizes[self.pos]

    def read(self) -> np.ndarray:
        if self.pos == len(self.files):
            if not self.loop:
                raise SourceEnded(f"replay of {self.files[0].parent} ended after {len(self.files)} images")
            self.pos = 0
        path = self.files[self.pos]
        self.pos += 1
        return read_png_bgra(path)


class _Video(_Frames):
    def __init__(self, path: Path, loop: bool) -> None:
        for tool in ("ffprobe", "ffmpeg"):
            if shutil.which(tool) is None:
                raise SourceConfigError(f"replaying a video needs {tool}, which is not on PATH: install ffmpeg "
                                        f"(Debian: apt-get install ffmpeg) or replay a folder of PNG images")
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                                "-of", "json", str(path)], capture_output=True, text=True, check=False)
        streams = json.loads(probe.stdout or "{}").get("streams", []) if probe.returncode == 0 else []
        if not streams:
            reason = probe.stderr.strip() or "it has no video stream"
            raise SourceConfigError(f"cannot replay {path}: ffprobe cannot read it as a video ({reason}); "
                                    f"give a video file or a folder of PNG images")
        self.path, self.loop = path, loop
        self.width, self.height = int(streams[0]["width"]), int(streams[0]["height"])
        self.frame = np.empty((self.height, self.width, 4), dtype=np.uint8)
        self.proc: subprocess.Popen[bytes] | None = None
        self.errors: typing.IO[bytes] | None = None
        self.decoded = 0  # frames decoded by the current ffmpeg run

    def next_size(self) -> tuple[int, int]:
        return self.width, self.height

    def count(self) -> int:
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                                "stream=nb_read_packets", "-of", "json", str(self.path)],
                               capture_output=True, text=True, check=False)
        streams = json.loads(probe.stdout or "{}").get("streams", []) if probe.returncode == 0 else []
        if not streams:
            raise SourceConfigError(f"cannot count the frames of {self.path}: {probe.stderr.strip() or 'no video stream'}")
        return int(streams[0]["nb_read_packets"])

    def _start(self) -> subprocess.Popen[bytes]:
        # A file, not a pipe, for ffmpeg's messages: a pipe nobody reads could fill and stall the decoder.
        self.errors = tempfile.TemporaryFile()
        # -noautorotate keeps frames in the stored orientation, the one ffprobe's width and height describe.
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-noautorotate", "-i", str(self.path), "-map", "0:v:0",
             "-f", "rawvideo", "-pix_fmt", "bgra", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors,
        )
        self.decoded = 0
        return self.proc

    def read(self) -> np.ndarray:
        proc = self.proc or self._start()
        if self._fill(proc):
            self.decoded += 1
            return self.frame
        decoded, message = self.decoded, self._stop()
        if decoded == 0:
            raise SourceError(f"ffmpeg decoded no frame of {self.path}: {message or 'no output'}")
        if not self.loop:
            raise SourceEnded(f"replay of {self.path} ended after {decoded} frames")
        proc = self._start()
        if not self._fill(proc):
            raise SourceError(f"ffmpeg decoded no frame of {self.path} when starting it again: {self._stop() or 'no output'}")
        self.decoded += 1
        return self.frame

    def _fill(self, proc: subprocess.Popen[bytes]) -> bool:
        """Reads one whole frame from ffmpeg into self.frame; False at the end of the stream."""
        stdout = typing.cast(io.BufferedReader, proc.stdout)
        view = self.frame.data.cast("B")
        got = 0
        while got < len(view):
            n = stdout.readinto(view[got:])
            if not n:
                return False  # a partial last frame is dropped: ffmpeg only stops short when cut off
            got += n
        return True

    def _stop(self) -> str:
        """Ends ffmpeg and returns what it reported."""
        message = ""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None
        if self.errors is not None:
            self.errors.seek(0)
            message = self.errors.read().decode(errors="replace").strip()
            self.errors.close()
            self.errors = None
        return message

    def close(self) -> None:
        self._stop()


class ReplaySource(Source):
    kind = "replay"

    @classmethod
    def from_config(cls, capture: CaptureConfig) -> ReplaySource:
        r = capture.replay
        return cls(path=r.path, loop=r.loop, times=r.times, monitor=capture.monitor, region=capture.region)

    def __init__(self, *, path: str, loop: bool = False, times: str = "", monitor: int = 0,
                 region: Sequence[int] = ()) -> None:
        super().__init__(monitor=monitor, region=region)
        if not path:
            raise SourceConfigError("replay.path is empty: set it to a folder of PNG images or a video file")
        where = Path(path)
        if not where.exists():
            raise SourceConfigError(
                f"replay path {where} does not exist: set replay.path to a folder of PNG images or a video file"
            )
        self._frames: _Frames = _PngFolder(where, loop) if where.is_dir() else _Video(where, loop)
        self._times = _read_times(Path(times), self._frames.count()) if times else None
        self._grabbed = 0
        self._check_selection()

    def _enumerate(self) -> list[Monitor]:
        width, height = self._frames.next_size()
        return [Monitor(1, 0, 0, width, height)]

    def grab(self, monitor: Monitor) -> np.ndarray:
        width, height = self._frames.next_size()
        if monitor.index != 1 or monitor.left < 0 or monitor.top < 0 or \
                monitor.left + monitor.width > width or monitor.top + monitor.height > height:
            # Checked before reading, so the frame is not lost: after re-enumerating, the caller gets it.
            raise SourceError(f"the next replayed frame is {width}x{height} on monitor 1, which does not hold {monitor}; "
                              f"re-enumerate the monitors")
        frame = self._frames.read()
        if frame.shape[:2] != (height, width):  # the file was replaced since its size was read
            raise SourceError(f"the replayed frame is {frame.shape[1]}x{frame.shape[0]}, its header said "
                              f"{width}x{height}")
        self._grabbed += 1
        return frame[monitor.top : monitor.top + monitor.height, monitor.left : monitor.left + monitor.width]

    def recorded_offset_ns(self) -> int | None:
        if self._times is None or not self._grabbed:
            return None
        times = self._times
        passes, index = divmod(self._grabbed - 1, len(times))
        # A loop goes on one (mean) frame interval after the last frame.
        lap = times[-1] + (times[-1] // (len(times) - 1) if len(times) > 1 else 1_000_000_000)
        return passes * lap + times[index]

    def close(self) -> None:
        self._frames.close()


def _read_times(path: Path, frames: int) -> list[int]:
    """The recorded capture times of `path` as ns after the first frame, checked
    against the replay's frame count."""
    try:
        entries = json.loads(path.read_text())["frames"]
        seconds = [float(e["t"]) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceConfigError(f"cannot read the replay's times from {path} ({exc}): give a JSON file with "
                                f'{{"frames": [{{"t": seconds}}, ...]}}, one entry per frame') from exc
    if len(seconds) != frames:
        raise SourceConfigError(f"{path} lists {len(seconds)} capture times but the replay holds {frames} frames")
    if any(b < a for a, b in zip(seconds, seconds[1:], strict=False)):
        raise SourceConfigError(f"the capture times in {path} go backwards")
    return [round((t - seconds[0]) * 1e9) for t in seconds]
