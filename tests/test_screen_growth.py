"""A screen that outgrows the ring's frame size while the pipeline runs.

The ring's slots are sized for the screen at `up`. When the screen grows
beyond them, capture counts the frame it could not write (dropped.oversize),
says so once per geometry (capture.oversize), and goes on with every frame
downscaled to fit, marked with the size it was grabbed at (scaled_from); back
at a size that fits, frames are whole again. No stage restarts.

Here: the downscale itself, pixel by pixel; the capture stage's decisions
with a source whose screen changes size on command; and the whole pipeline
on a real Xvfb server restarted at a larger size on the same display.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from pipeline_harness import pipeline, wait_for
from test_pipeline_screen import SCREEN_CONFIG, Frames, need, stop
from xvfb import start_xvfb_on

import jarvis_rust_core as jrc
from pipeline import config as config_mod
from pipeline import protocol
from pipeline.config import CaptureConfig
from pipeline.tap import Tap
from procs import kernels, stage
from procs.capture import Capture, fit_within
from procs.sources import Monitor, Source

# ---------------------------------------------------------------- the downscale


def box_means(src: np.ndarray, h: int, w: int) -> np.ndarray:
    """The definition, one output pixel at a time: the mean of box k*H//h ..
    (k+1)*H//h by k*W//w .. (k+1)*W//w, rounded half up."""
    sh, sw = src.shape[:2]
    out = np.empty((h, w, src.shape[2]), np.uint8)
    for y in range(h):
        for x in range(w):
            box = src[y * sh // h : (y + 1) * sh // h, x * sw // w : (x + 1) * sw // w].astype(np.int64)
            n = box.shape[0] * box.shape[1]
            out[y, x] = (box.sum(axis=(0, 1)) + n // 2) // n
    return out


def test_downscale_halves_into_2x2_means_rounded_half_up_channel_by_channel() -> None:
    blocks = {(0, 0): [0, 0, 0, 1], (0, 1): [0, 0, 1, 1], (1, 0): [255, 255, 255, 254], (1, 1): [10, 20, 30, 41]}
    src = np.zeros((4, 4, 4), np.uint8)
    for (by, bx), values in blocks.items():
        src[2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2, 0] = np.reshape(values, (2, 2))
    src[..., 1] = 255  # a full neighbouring channel: its sums must not spill into the next one
    src[..., 2] = np.arange(16).reshape(4, 4)
    src[..., 3] = 200
    out = np.empty((2, 2, 4), np.uint8)
    kernels.downscale(src, out)
    # 0.25 -> 0, 0.5 -> 1, 254.75 -> 255, 25.25 -> 25
    assert out[..., 0].tolist() == [[0, 1], [255, 25]]
    assert (out[..., 1] == 255).all() and (out[..., 3] == 200).all()
    # channel 2: means of 0 1 4 5 | 2 3 6 7 | 8 9 12 13 | 10 11 14 15 (2.5 -> 3, ...)
    assert out[..., 2].tolist() == [[3, 5], [11, 13]]


def test_downscale_of_odd_sizes_spreads_the_extra_pixels_over_the_boxes() -> None:
    # 3x5 into 2x2: rows {0} {1, 2}, columns {0, 1} {2, 3, 4}.
    src = np.zeros((3, 5, 4), np.uint8)
    src[..., 0] = np.array([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    out = np.empty((2, 2, 4), np.uint8)
    kernels.downscale(src, out)
    # (0+1)/2 = 0.5 -> 1; (2+3+4)/3 = 3; (10+11+20+21)/4 = 15.5 -> 16; 108/6 = 18
    assert out[..., 0].tolist() == [[1, 3], [16, 18]]
    same = np.empty_like(src)
    kernels.downscale(src, same)
    assert np.array_equal(same, src), "the same size is a copy"


@pytest.mark.parametrize(("src_shape", "size"), [
    ((7, 9, 4), (3, 4)),
    ((13, 31, 4), (5, 7)),
    ((40, 300, 4), (3, 17)),  # wide boxes of uneven width
    ((300, 300, 4), (7, 11)),  # boxes of over 257 pixels: 32-bit sums
    ((9, 10, 3), (4, 3)),  # three channels
    ((1, 1, 4), (1, 1)),
])
def test_downscale_matches_the_definition_with_padded_rows_on_both_sides(
        src_shape: tuple[int, int, int], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(src_shape) + sum(size))
    h, w, c = src_shape
    wide = rng.integers(0, 256, (h, w + 5, c), np.uint8)
    src = wide[:, 2 : 2 + w]  # padded rows, not starting at the buffer's start
    padded = np.full((size[0], size[1] * c + 13), 77, np.uint8)
    out = padded[:, : size[1] * c].reshape(size[0], size[1], c)
    kernels.downscale(src, out)
    assert np.array_equal(out, box_means(src, *size))
    assert (padded[:, size[1] * c :] == 77).all(), "the row padding is not written"
    white = np.full_like(src, 255)
    kernels.downscale(white, out)
    assert (out == 255).all(), "no sum overflows"


def test_downscale_into_a_ring_slot(shm_base: Path) -> None:
    """The ring pads rows to 64 bytes: 61 px of BGRA are 244 bytes in 256-byte rows."""
    src = np.random.default_rng(7).integers(0, 256, (59, 100, 4), np.uint8)
    size = fit_within(100, 59, 64, 36)
    assert size == (61, 36)
    with jrc.SharedVisionMemory(name="downscale", slots=2, max_width=64, max_height=36, holder="capture") as mem:
        res = mem.reserve(*size, "BGRA")
        assert res.array.strides[0] == 256
        kernels.downscale(src, res.array)
        ref = res.commit(hold=True)
        assert np.array_equal(mem.read_copy(ref), box_means(src, 36, 61))
        mem.release(ref)


def test_downscale_refuses_to_enlarge_or_to_change_channels() -> None:
    with pytest.raises(ValueError, match="0 < h <= H, 0 < w <= W"):
        kernels.downscale(np.zeros((4, 4, 4), np.uint8), np.empty((5, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="0 < h <= H"):
        kernels.downscale(np.zeros((4, 4, 4), np.uint8), np.empty((2, 2, 3), np.uint8))


def test_fit_within_keeps_the_aspect_ratio_and_at_least_a_pixel() -> None:
    assert fit_within(1024, 600, 640, 360) == (614, 360)
    assert fit_within(2560, 1440, 1920, 1080) == (1920, 1080)
    assert fit_within(4000, 100, 640, 360) == (640, 16)
    assert fit_within(100, 4000, 640, 360) == (9, 360)
    assert fit_within(100_000, 1, 640, 360) == (640, 1)


# ---------------------------------------------------------------- the capture stage


class Screen(Source):
    """A one-monitor screen whose size the test sets; a grab returns the
    screen as it is now, whatever the monitor it was asked for says."""

    kind = "test"

    @classmethod
    def from_config(cls, capture: CaptureConfig) -> Screen:
        raise NotImplementedError("made by the test, not from a configuration")

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.size = (width, height)
        self.grabs = 0

    def _enumerate(self) -> list[Monitor]:
        return [Monitor(1, 0, 0, *self.size)]

    def grab(self, monitor: Monitor) -> np.ndarray:
        self.grabs += 1
        w, h = self.size
        # A different picture at every grab, and per size.
        return np.random.default_rng((w, h, self.grabs)).integers(0, 256, (h, w, 4), np.uint8)


class BareCapture(Capture):
    """The capture stage without its process: a ring and a source; what it
    publishes and the frames it passes on (pixels copied) are recorded."""

    def __init__(self, mem: jrc.SharedVisionMemory, source: Screen) -> None:  # no Stage.__init__: no sockets
        self.mem, self.source, self.name = mem, source, "capture"
        self.cfg = cast(config_mod.Config, SimpleNamespace(capture=SimpleNamespace(rescan_s=10.0)))  # only what capture reads
        self.log = logging.getLogger("test.capture")
        self.monitors: list[Monitor] = []
        self.downscaled: dict[Monitor, tuple[int, int]] = {}
        self.next_rescan, self.ended, self.replay_origin = 0.0, False, None
        self.frames_in, self.timings = 0, stage.Timings()
        self.fps_window: list[float] = []
        self.drops, self.terminal = collections.Counter[str](), collections.Counter[str]()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.passed: list[tuple[jrc.FrameRef, dict[str, Any], np.ndarray]] = []

    def publish(self, topic: str, body: Any) -> None:
        self.events.append((topic, dict(body)))

    def pass_on(self, ref: jrc.FrameRef, extra: Any = None, *, keep: bool = False) -> bool:
        self.passed.append((ref, dict(extra or {}), self.mem.read_copy(ref)))
        self.mem.release(ref, count=protocol.COUNTER_INDEX["duplicate"])  # decided, so the counters balance
        return True

    def topics(self, topic: str) -> list[dict[str, Any]]:
        return [body for t, body in self.events if t == topic]


@pytest.fixture
def ring(shm_base: Path) -> Iterator[jrc.SharedVisionMemory]:
    with jrc.SharedVisionMemory(name="growth", slots=4, max_width=64, max_height=36, holder="capture") as mem:
        yield mem


def test_capture_downscales_a_grown_screen_after_counting_the_frame_it_could_not_write(
        ring: jrc.SharedVisionMemory) -> None:
    screen = Screen(64, 36)
    cap = BareCapture(ring, screen)

    def counters() -> dict[str, int]:
        return protocol.counter_snapshot(ring.counters())

    cap._rescan(0.0)
    m = cap.monitors[0]
    cap._capture(m, 0.0)
    (ref, extra, pixels), = cap.passed
    assert (ref.w, ref.h) == (64, 36) and protocol.SCALED_FROM_KEY not in extra

    # Grown, not yet re-enumerated: the grab no longer matches the monitor.
    # Not written, not a crash; the monitors are enumerated again at once.
    screen.size = (128, 72)
    cap._capture(m, 0.0)
    assert len(cap.passed) == 1 and cap.next_rescan == 0.0
    assert counters()["captured"] == 1

    # Enumerated again: too large for the ring. That frame is counted, not written,
    # and said once; the following ones are downscaled to fit.
    cap._rescan(0.0)
    big = cap.monitors[0]
    assert (big.width, big.height) == (128, 72)
    for _ in range(3):
        cap._capture(big, 0.0)
    assert cap.topics("capture.oversize") == [{"monitor": 1, "width": 128, "height": 72, "max_width": 64,
                                               "max_height": 36, "action": "downscaled to 64x36"}]
    assert counters()["dropped.oversize"] == 1 and cap.drops["oversize"] == 1
    for ref, extra, _ in cap.passed[1:]:
        assert (ref.w, ref.h) == (64, 36) and extra[protocol.SCALED_FROM_KEY] == [128, 72] and protocol.PIXEL_HASH_KEY in extra
    assert len(cap.passed) == 3
    *_, (ref, extra, pixels) = cap.passed
    grabbed = np.random.default_rng((128, 72, screen.grabs)).integers(0, 256, (72, 128, 4), np.uint8)
    assert np.array_equal(pixels, box_means(grabbed, 36, 64)), "the last grab, downscaled"
    captured = [b for b in cap.topics("frame.captured") if protocol.SCALED_FROM_KEY in b]
    assert len(captured) == 2 and captured[0][protocol.SCALED_FROM_KEY] == [128, 72]

    # Another size too large: a new geometry, said again.
    screen.size = (100, 72)
    cap._rescan(0.0)
    cap._capture(cap.monitors[0], 0.0)
    cap._capture(cap.monitors[0], 0.0)
    assert [b["action"] for b in cap.topics("capture.oversize")] == ["downscaled to 64x36", "downscaled to 50x36"]
    assert (cap.passed[-1][0].w, cap.passed[-1][0].h) == (50, 36)

    # Back to a size that fits: whole frames, nothing downscaled any more.
    screen.size = (64, 36)
    cap._rescan(0.0)
    cap._capture(cap.monitors[0], 0.0)
    ref, extra, _ = cap.passed[-1]
    assert (ref.w, ref.h) == (64, 36) and protocol.SCALED_FROM_KEY not in extra
    assert not cap.downscaled and len(cap.topics("capture.oversize")) == 2
    final = counters()
    assert final["captured"] == len(cap.passed) + 2 and final["dropped.oversize"] == 2
    assert protocol.terminal_total(final) == final["captured"], final


# ---------------------------------------------------------------- the pipeline on Xvfb

SMALL, GROWN = (640, 360), (1024, 600)
FITTED = fit_within(*GROWN, *SMALL)  # 614x360
# Re-enumerating twice a second: a restarted display is found again at once.
GROWTH_CONFIG = SCREEN_CONFIG.replace("fps = 4.0", "fps = 4.0\nrescan_s = 0.5")
assert "rescan_s = 0.5" in GROWTH_CONFIG


class Growth(Frames):
    """Frame events plus the capture events, and each captured frame's size."""

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        self.sizes: list[tuple[int, int, int, list[int] | None]] = []  # seq, w, h, scaled_from
        self.oversize: list[dict[str, Any]] = []

    def _note(self, topic: str, body: dict[str, Any]) -> None:
        if topic == "capture.oversize":
            self.oversize.append(body)
        elif topic == "frame.captured":
            ref = body["ref"]
            self.sizes.append((ref["seq"], ref["w"], ref["h"], body.get(protocol.SCALED_FROM_KEY)))
        super()._note(topic, body)

    def captured_at(self, size: tuple[int, int], scaled_from: tuple[int, int] | None, after_seq: int) -> Callable[[], bool]:
        want = (*size, list(scaled_from) if scaled_from else None)
        return lambda: any(seq > after_seq and (w, h, sf) == want for seq, w, h, sf in self.sizes)


def test_pipeline_goes_on_when_xvfb_restarts_larger_than_the_ring(tmp_path: Path) -> None:
    need("Xvfb")

    def screen(size: tuple[int, int]) -> str:
        return f"{size[0]}x{size[1]}x24"
    # A display far above the ones Xvfb picks for itself (tests/xvfb.py): free
    # again for the restarts, whatever other tests start meanwhile.
    first = 300 + os.getpid() % 500
    started = ((f":{n}", start_xvfb_on(f":{n}", screen(SMALL))) for n in range(first, first + 40))
    display, xvfb = next(((d, x) for d, x in started if x is not None), ("", None))
    assert xvfb is not None, f"no free X display in :{first}..:{first + 39}"

    def restart(old: subprocess.Popen[bytes], size: tuple[int, int]) -> subprocess.Popen[bytes]:
        stop(old)  # Xvfb removes its lock file and socket on SIGTERM
        again = start_xvfb_on(display, screen(size))
        assert again is not None, f"Xvfb could not start again on {display}"
        return again

    try:
        with pipeline(GROWTH_CONFIG, env={"DISPLAY": display}) as p:
            p.rt.prepare()
            with p.tap("frame.captured", "capture.") as tap:  # subscribed before up: nothing is missed
                events = Growth(tap)
                p.up()
                took: dict[str, float] = {}
                took["whole frames"] = events.wait(f"a whole {SMALL} frame", events.captured_at(SMALL, None, 0))
                pid = p.status()["capture"]["pid"]

                xvfb = restart(xvfb, GROWN)
                mark = events.last_seq()
                took["downscaled"] = events.wait(f"frames of the {GROWN} screen downscaled to {FITTED}",
                                                 events.captured_at(FITTED, GROWN, mark))
                assert events.oversize == [{"monitor": 1, "width": GROWN[0], "height": GROWN[1], "max_width": SMALL[0],
                                            "max_height": SMALL[1], "action": f"downscaled to {FITTED[0]}x{FITTED[1]}"}]
                capture = wait_for("capture's stats to count the frame it could not write",
                                   lambda: (c := p.status()["capture"])["drops"].get("oversize") and c)
                assert (capture["state"], capture["restarts"], capture["pid"]) == ("running", 0, pid), capture

                xvfb = restart(xvfb, SMALL)
                mark = events.last_seq()
                took["whole again"] = events.wait(f"whole {SMALL} frames again", events.captured_at(SMALL, None, mark))
                assert len(events.oversize) == 1, events.oversize
                print("seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))

            p.cli("down")
            final = p.final_counters()
            assert protocol.terminal_total(final) == final["captured"], f"frames lost or counted twice: {final}"
            assert final["dropped.oversize"] == 1, final  # the one frame that found the ring too small
            assert final["captured"] >= len(events.captured), final
    finally:
        stop(xvfb)
