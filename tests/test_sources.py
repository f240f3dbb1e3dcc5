"""Capture sources with real tools: the synthetic desktop, the PNG codec
against ffmpeg, replays of folders and videos made by ffmpeg, and screen
capture on a real Xvfb server (two RandR monitors) with real X programs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from xvfb import start_xvfb

from pipeline.config import CaptureConfig, ReplayConfig, SyntheticConfig
from procs import kernels
from procs.sources import Label, Monitor, SourceConfigError, SourceEnded, SourceError, display_usable, open_source
from procs.sources.font import CELL_H, CELL_W, FIRST, LAST, glyph_masks
from procs.sources.replay import ReplaySource
from procs.sources.screen import ScreenSource
from procs.sources.synthetic import CARET_W, TASKBAR_H, SyntheticSource

SYNTH = {"width": 640, "height": 400, "seed": 7, "monitors": 1}
NO_REPLAY = {"path": "", "loop": False}


def capture(source: str, *, fps: float = 4.0, monitor: int = 0, region: list[int] | None = None,
            synthetic: dict[str, Any] | None = None, replay: dict[str, Any] | None = None) -> CaptureConfig:
    """A [capture] section as the configuration makes it (open_source's input)."""
    return CaptureConfig(source=source, fps=fps, monitor=monitor, region=region or [],
                         synthetic=SyntheticConfig(**(SYNTH if synthetic is None else synthetic)),
                         replay=ReplayConfig(**(NO_REPLAY if replay is None else replay)))


def synthetic(*, seed: int = 7, monitors: int = 1, fps: float = 4, monitor: int = 0,
              region: Sequence[int] = ()) -> SyntheticSource:
    return SyntheticSource(width=640, height=400, seed=seed, monitors=monitors, fps=fps, monitor=monitor, region=region)


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (Debian packages in scripts/system-packages.txt)")


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- font

def test_font_has_a_distinct_visible_glyph_for_every_printable_ascii_character() -> None:
    masks = glyph_masks()
    assert masks.shape == (LAST - FIRST + 1, CELL_H, CELL_W)
    assert not masks[0].any(), "space is blank"
    lit = masks[1:].sum(axis=(1, 2))
    assert lit.min() >= 8 and lit.max() <= 120, "a 5x7 glyph at 2x lights 8..120 pixels"
    assert len({m.tobytes() for m in masks}) == len(masks), "every character looks different"


# ---------------------------------------------------------------- synthetic desktop

def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose BGRA differs (compared as one 32-bit word each)."""
    diff: np.ndarray = np.ascontiguousarray(a).view(np.uint32)[..., 0] != np.ascontiguousarray(b).view(np.uint32)[..., 0]
    return diff


def frames(source: SyntheticSource, monitor: Monitor, n: int) -> Iterator[tuple[np.ndarray, Label]]:
    for _ in range(n):
        frame = source.grab(monitor).copy()
        assert source.label is not None
        yield frame, source.label


def test_synthetic_is_deterministic_per_seed_frame_and_monitor() -> None:
    a, b, other_seed, two = synthetic(), synthetic(), synthetic(seed=8), synthetic(monitors=2)
    assert two.monitors() == [Monitor(1, 0, 0, 640, 400), Monitor(2, 640, 0, 640, 400)]
    first, second = two.monitors()
    (m,) = a.monitors()
    seed_differs = monitors_differ = False
    for (fa, la), (fb, lb), (fo, _) in zip(frames(a, m, 300), frames(b, m, 300), frames(other_seed, m, 300), strict=False):
        # Interleaving another monitor's frames must not change monitor 1's: each desktop is independent.
        f2 = two.grab(second).copy()
        f1 = two.grab(first)
        assert np.array_equal(fa, fb) and la == lb
        assert np.array_equal(fa, f1)
        seed_differs |= not np.array_equal(fa, fo)
        monitors_differ |= not np.array_equal(f1, f2)
    assert seed_differs and monitors_differ


def test_synthetic_labels_match_the_pixels_and_the_script_covers_every_activity() -> None:
    fps = 4
    src = synthetic(fps=fps)
    (m,) = src.monitors()
    stream = frames(src, m, 2400)
    prev, first = next(stream)
    assert first.kind == "meaningful"
    kinds: set[str] = {first.kind}
    whats: list[str] = []
    typed_px: list[int] = []
    quiet = longest_quiet = 0
    for k, (frame, label) in enumerate(stream, 1):
        diff = changed_pixels(frame, prev)
        # "none" exactly when nothing changed, and every change lies in the label's boxes.
        assert diff.any() == (label.kind != "none"), (k, label)
        inside = np.zeros_like(diff)
        for x, y, w, h in label.boxes:
            inside[y : y + h, x : x + w] = True
        assert not (diff & ~inside).any(), (k, label)
        clock = [b for b in label.boxes if b[1] >= m.height - TASKBAR_H and b[2:] == (8 * CELL_W, CELL_H)]
        # The clock ticks once per virtual second: on every fps-th frame and never between.
        assert bool(clock) == (k % fps == 0), (k, label)
        if label.kind == "trivial":
            assert label.what in ("caret", "clock", "caret+clock")
            assert all(b in clock or b[2:] == (CARET_W, CELL_H) for b in label.boxes), label
        if label.what.startswith("typed") and all(b in clock or b[3] == CELL_H for b in label.boxes):
            for x, y, w, h in clock:
                diff[y : y + h, x : x + w] = False
            typed_px.append(int(diff.sum()))
        whats.append(label.what)
        kinds.add(label.kind)
        quiet = 0 if label.kind == "meaningful" else quiet + 1
        longest_quiet = max(longest_quiet, quiet)
        prev = frame
    assert kinds == {"meaningful", "trivial", "none"}
    for activity in ("typed", "enter", "backspace", "scrolled", "switched"):
        assert any(w.startswith(activity) for w in whats), f"no {activity} in {len(whats)} frames"
    runs = [len(run) for run in "".join("t" if w.startswith("typed") else " " for w in whats).split()]
    assert min(runs) >= 3 and max(runs) <= 30, f"typing comes in runs of 3-30 characters, one per frame: {runs}"
    switches = [w.split()[2:5:2] for w in whats if w.startswith("switched")]
    assert any(a == b[::-1] for a, b in zip(switches, switches[1:], strict=False)), f"no A/B/A switch in {switches}"
    assert longest_quiet >= 5 * fps, "an idle stretch of at least 5 virtual seconds"
    print(f"typed character: {min(typed_px)}..{max(typed_px)} px changed, median {int(np.median(typed_px))}")
    assert typed_px and 50 <= min(typed_px) and max(typed_px) <= 400


def test_synthetic_caret_blinks_every_half_virtual_second_when_idle() -> None:
    fps = 8
    src = synthetic(fps=fps)
    (m,) = src.monitors()
    labels = [label for _, label in frames(src, m, 1500)]
    run: list[int] = []
    for k, label in enumerate(labels):
        if label.kind == "meaningful":
            run = []
            continue
        if "caret" in label.what:
            run.append(k)
            if len(run) >= 6:
                assert set(np.diff(run)) == {fps // 2}, run
                return
    raise AssertionError("no idle stretch with a blinking caret")


def test_synthetic_desktop_is_grabbed_and_copied_hashed_into_a_padded_view() -> None:
    for region in ([], [30, 40, 200, 100]):
        a, b = synthetic(region=region), synthetic(region=region)
        (m,) = a.monitors()
        slot = np.full((m.height, m.width * 4 + 64), 7, dtype=np.uint8)  # rows padded, like a ring slot
        view = slot[:, : m.width * 4].reshape(m.height, m.width, 4)
        for _ in range(60):
            digests = kernels.copy_hashed(a.grab(m), view)
            frame = b.grab(m)
            assert np.array_equal(view, frame) and a.label == b.label
            assert digests == kernels.frame_digests(frame)
        assert (slot[:, m.width * 4 :] == 7).all(), "the padding is untouched"


def render_ms(src: SyntheticSource, n: int) -> float:
    """Mean ms per 1080p frame made and put into a padded slot as capture does
    (grabbed and copied with its hash), after a first frame that draws
    everything once."""
    (m,) = src.monitors()
    slot = np.empty((1080, 1920 * 4 + 64), dtype=np.uint8)
    view = slot[:, : 1920 * 4].reshape(1080, 1920, 4)

    def one() -> None:
        kernels.copy_hashed(src.grab(m), view)

    one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    return (time.perf_counter() - start) / n * 1000


def test_synthetic_renders_1080p_fast() -> None:
    src = SyntheticSource(width=1920, height=1080, seed=1, monitors=1, fps=4)
    per_frame_ms = render_ms(src, 400)
    print(f"synthetic 1920x1080 grab and copy_hashed: {per_frame_ms:.2f} ms per frame (mean of 400)")
    assert per_frame_ms < 30


def test_synthetic_refuses_bad_settings_with_what_to_change() -> None:
    with pytest.raises(SourceConfigError, match="monitor 3 does not exist.*2 monitor"):
        open_source(capture("synthetic", fps=4, monitor=3, region=[], synthetic={**SYNTH, "monitors": 2}, replay=NO_REPLAY))
    with pytest.raises(SourceConfigError, match="outside monitor 1"):
        open_source(capture("synthetic", fps=4, monitor=0, region=[600, 0, 100, 100], synthetic=SYNTH, replay=NO_REPLAY))
    with pytest.raises(SourceConfigError, match="at least 64x64"):
        SyntheticSource(width=32, height=400, fps=4)
    with pytest.raises(SourceConfigError, match="unknown capture source"):
        open_source(capture("webcam", fps=4, monitor=0, region=[], synthetic=SYNTH, replay=NO_REPLAY))
    src = synthetic(monitor=1, region=[10, 20, 100, 50])
    assert src.monitors() == [Monitor(1, 10, 20, 100, 50)]
    with pytest.raises(SourceError):
        src.grab(Monitor(1, 600, 0, 100, 50))


def test_synthetic_works_at_the_smallest_configurable_size() -> None:
    src = SyntheticSource(width=64, height=64, seed=1, fps=4)
    (m,) = src.monitors()
    for frame, _ in frames(src, m, 200):
        assert frame.shape == (64, 64, 4)


# ---------------------------------------------------------------- PNG images (Pillow)

def write_png(path: Path, bgra: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(bgra[..., [2, 1, 0, 3]]), "RGBA").save(path)


def ffmpeg(*args: str) -> bytes:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True).stdout


@pytest.mark.parametrize("pix_fmt", ["rgb24", "rgba", "gray", "ya8", "pal8", "rgb48be", "gray16be"])
def test_replay_reads_what_ffmpeg_writes_in_every_colour_type_and_predictor(tmp_path: Path, pix_fmt: str) -> None:
    """Checked against another decoder: ffmpeg's own BGRA of the same files."""
    need("ffmpeg")
    for pred in ("none", "sub", "up", "avg", "paeth", "mixed"):
        folder = tmp_path / f"{pix_fmt}-{pred}"
        folder.mkdir()
        pattern = str(folder / "%02d.png")
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=5", "-frames:v", "3", "-pix_fmt", pix_fmt,
               *(("-pred", pred) if pix_fmt != "pal8" else ()), pattern)
        raw = ffmpeg("-i", pattern, "-f", "rawvideo", "-pix_fmt", "bgra", "-")
        expected = np.frombuffer(raw, dtype=np.uint8).reshape(3, 64, 96, 4)
        src = ReplaySource(path=str(folder))
        (m,) = src.monitors()
        for i in range(3):
            got = src.grab(m)
            # 16-bit samples: the two decoders may round the last bit apart.
            tolerance = 1 if pix_fmt in ("rgb48be", "gray16be") else 0
            assert np.abs(got.astype(int) - expected[i]).max() <= tolerance, (pix_fmt, pred, i)
        if pix_fmt == "pal8":
            break  # one palette file says it all: ffmpeg has no predictors for it



# ---------------------------------------------------------------- replay

def distinct_frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (height, width, 4), dtype=np.uint8) for _ in range(n)]


def test_replay_a_folder_in_name_order_then_end_or_loop(tmp_path: Path) -> None:
    images = distinct_frames(4)
    for name, image in zip(("b.png", "a.png", "d.PNG", "c.png"), images, strict=False):
        write_png(tmp_path / name, image)
    (tmp_path / "notes.txt").write_text("not an image")
    in_order = [images[1], images[0], images[3], images[2]]
    src = open_source(capture("replay", replay={"path": str(tmp_path), "loop": False}))
    (m,) = src.monitors()
    assert m == Monitor(1, 0, 0, 64, 48) and src.kind == "replay" and src.label is None
    for expected in in_order:
        assert np.array_equal(src.grab(m), expected)
    with pytest.raises(SourceEnded):
        src.grab(m)
    looping = ReplaySource(path=str(tmp_path), loop=True, region=[8, 4, 20, 10])
    (crop,) = looping.monitors()
    assert crop == Monitor(1, 8, 4, 20, 10)
    for i in range(10):
        assert np.array_equal(looping.grab(crop), in_order[i % 4][4:14, 8:28])


def test_replay_a_folder_whose_image_size_changes_asks_for_re_enumeration(tmp_path: Path) -> None:
    large, small = distinct_frames(1, 60, 80)[0], distinct_frames(1)[0]
    write_png(tmp_path / "1.png", large)
    write_png(tmp_path / "2.png", small)
    src = ReplaySource(path=str(tmp_path))
    (m,) = src.monitors()
    assert np.array_equal(src.grab(m), large)
    with pytest.raises(SourceError, match="re-enumerate"):
        src.grab(m)
    (m,) = src.monitors()
    assert (m.width, m.height) == (64, 48)
    assert np.array_equal(src.grab(m), small), "the frame refused before is not lost"


def ffmpeg_children() -> list[int]:
    """Our ffmpeg child processes, from /proc (stat is "pid (comm) state ppid ...")."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it ended while we looked
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if comm == "ffmpeg" and int(rest[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def test_replay_a_video_decoded_by_ffmpeg_then_end_or_loop(tmp_path: Path) -> None:
    need("ffmpeg", "ffprobe")
    video = tmp_path / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=10", "-frames:v", "6", "-c:v", "ffv1", str(video))
    expected = np.frombuffer(ffmpeg("-i", str(video), "-f", "rawvideo", "-pix_fmt", "bgra", "-"), dtype=np.uint8)
    expected = expected.reshape(6, 90, 160, 4)
    src = open_source(capture("replay", fps=4, monitor=1, region=[], synthetic=SYNTH, replay={"path": str(video), "loop": False}))
    try:
        (m,) = src.monitors()
        assert m == Monitor(1, 0, 0, 160, 90)
        for i in range(6):
            assert np.array_equal(src.grab(m), expected[i]), i
        with pytest.raises(SourceEnded):
            src.grab(m)
    finally:
        src.close()
    looping = ReplaySource(path=str(video), loop=True, region=[10, 20, 50, 30])
    try:
        (crop,) = looping.monitors()
        for i in range(15):
            assert np.array_equal(looping.grab(crop), expected[i % 6, 20:50, 10:60]), i
        assert ffmpeg_children(), "the decoder runs while replaying"
    finally:
        looping.close()
    assert not ffmpeg_children(), "close ends the decoder"


def test_replay_stamps_frames_with_their_recorded_times(tmp_path: Path) -> None:
    need("ffmpeg", "ffprobe")
    times = tmp_path / "labels.json"
    times.write_text(json.dumps({"frames": [{"t": t} for t in (10.0, 10.25, 10.75, 11.5)]}))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(distinct_frames(4)):
        write_png(folder / f"{i}.png", image)
    video = tmp_path / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "4", "-c:v", "ffv1", str(video))
    for path in (folder, video):
        src = open_source(capture("replay", replay={"path": str(path), "loop": True, "times": str(times)}))
        try:
            (m,) = src.monitors()
            assert src.recorded_offset_ns() is None, "nothing grabbed yet"
            stamps = []
            for _ in range(6):
                src.grab(m)
                stamps.append(src.recorded_offset_ns())
            # from the first frame; the second pass starts one mean interval (0.5 s) after the last frame
            assert stamps == [0, 250_000_000, 750_000_000, 1_500_000_000, 2_000_000_000, 2_250_000_000], path
        finally:
            src.close()
    plain = ReplaySource(path=str(folder))
    plain.grab(plain.monitors()[0])
    assert plain.recorded_offset_ns() is None, "without times a frame is captured when it is grabbed"


def test_replay_refuses_times_that_do_not_fit(tmp_path: Path) -> None:
    for i, image in enumerate(distinct_frames(3)):
        write_png(tmp_path / f"{i}.png", image)
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"frames": [{"t": 0.0}, {"t": 0.25}]}))
    with pytest.raises(SourceConfigError, match="lists 2 capture times but the replay holds 3 frames"):
        ReplaySource(path=str(tmp_path), times=str(times))
    times.write_text(json.dumps({"frames": [{"t": 0.0}, {"t": 0.5}, {"t": 0.25}]}))
    with pytest.raises(SourceConfigError, match="go backwards"):
        ReplaySource(path=str(tmp_path), times=str(times))
    times.write_text("[1, 2, 3]")
    with pytest.raises(SourceConfigError, match="cannot read the replay's times"):
        ReplaySource(path=str(tmp_path), times=str(times))


def test_replay_refuses_bad_input_with_what_to_do(tmp_path: Path) -> None:
    def replay(path: Path | str) -> None:
        open_source(capture("replay", fps=4, monitor=0, region=[], synthetic=SYNTH, replay={"path": str(path), "loop": False}))

    with pytest.raises(SourceConfigError, match="replay.path is empty"):
        replay("")
    with pytest.raises(SourceConfigError, match="does not exist"):
        replay(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceConfigError, match="no .png files"):
        replay(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "0.png").write_bytes(b"this is not a png")
    with pytest.raises(SourceConfigError, match="0.png: not a PNG image"):
        replay(bad)
    (bad / "0.png").write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(SourceConfigError, match="0.png: not a PNG image"):
        replay(bad)
    huge = Image.new("L", (1, 1))  # a header claiming more than a replay takes, refused before decoding
    huge.save(bad / "0.png")
    data = bytearray((bad / "0.png").read_bytes())
    data[16:24] = (17_000).to_bytes(4, "big") + (1).to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (bad / "0.png").write_bytes(bytes(data))
    with pytest.raises(SourceConfigError, match="17000x1 is not a replayable size"):
        replay(bad)
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # and one Pillow itself takes for a decompression bomb
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (bad / "0.png").write_bytes(bytes(data))
    with pytest.raises(SourceConfigError, match="decompression bomb"):
        replay(bad)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    write_png(truncated / "0.png", distinct_frames(1)[0])
    (truncated / "0.png").write_bytes((truncated / "0.png").read_bytes()[:60])
    src = ReplaySource(path=str(truncated))
    with pytest.raises(SourceError, match="cannot decode 0.png"):
        src.grab(src.monitors()[0])
    with pytest.raises(SourceConfigError, match="monitor 2 does not exist"):
        ReplaySource(path=str(truncated), monitor=2)
    need("ffprobe")
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceConfigError, match="ffprobe cannot read it as a video"):
        replay(text)


# ---------------------------------------------------------------- screen (Xvfb)

class XServer:
    def __init__(self, display: str, proc: subprocess.Popen[bytes]) -> None:
        self.display, self.proc = display, proc

    def run(self, *args: str) -> str:
        env = {**os.environ, "DISPLAY": self.display}
        return subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DISPLAY": self.display}
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()  # Xvfb removes its lock file and socket on SIGTERM
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def xserver(monkeypatch: pytest.MonkeyPatch) -> Iterator[XServer]:
    """A fresh Xvfb with one 1280x480 screen split into two RandR monitors,
    left (640x480+0+0) and right (640x480+640+0); DISPLAY points at it."""
    need("Xvfb", "xrandr")
    proc, display = start_xvfb("1280x480x24")
    try:
        server = XServer(display, proc)
        monkeypatch.setenv("DISPLAY", server.display)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        output = next(line.split()[0] for line in server.run("xrandr", "--query").splitlines() if " connected" in line)
        server.run("xrandr", "--setmonitor", "left", "640/169x480/127+0+0", "none")
        # Giving the real output to "right" replaces the automatic whole-screen monitor.
        server.run("xrandr", "--setmonitor", "right", "640/169x480/127+640+0", output)
        yield server
    finally:
        stop(proc)


def test_screen_sees_both_xvfb_monitors_and_grabs_zero_copy(xserver: XServer) -> None:
    assert display_usable()[0]
    src = open_source(capture("auto", fps=4, monitor=0, region=[], synthetic=SYNTH, replay=NO_REPLAY))
    try:
        assert src.kind == "screen" and src.label is None
        assert src.monitors() == [Monitor(1, 0, 0, 640, 480), Monitor(2, 640, 0, 640, 480)]
        for m in src.monitors():
            frame = src.grab(m)
            assert frame.shape == (480, 640, 4) and frame.dtype == np.uint8
            assert not frame.flags.owndata, "a view of mss's buffer, not a copy"

        def grab_often(m: Monitor) -> None:
            for _ in range(20):
                assert src.grab(m).shape == (480, 640, 4)

        # One source grabbed from two threads at once: each thread gets its own mss instance.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(grab_often, src.monitors()))
    finally:
        src.close()


def test_screen_capture_sees_a_real_program_draw_and_tick(xserver: XServer) -> None:
    need("xclock")
    src = ScreenSource(monitor=2)
    clock = None
    try:
        (m,) = src.monitors()
        empty = src.grab(m).copy()
        # No window manager runs, so the window lands exactly there: 60..260 x 100..300 on monitor 2.
        clock = xserver.spawn("xclock", "-update", "1", "-geometry", "200x200+700+100")
        frames = [empty]

        def changed() -> bool:
            frame = src.grab(m)
            if np.array_equal(frame, frames[-1]):
                return False
            frames.append(frame.copy())
            return True

        wait_for("xclock to appear on monitor 2", changed)
        wait_for("xclock's second hand to move", changed)
        for before, after in zip(frames, frames[1:], strict=False):
            ys, xs = np.nonzero(changed_pixels(before, after))
            bounds = (xs.min(), xs.max(), ys.min(), ys.max())
            assert xs.min() >= 55 and xs.max() <= 265 and ys.min() >= 95 and ys.max() <= 305, bounds
    finally:
        if clock is not None:
            stop(clock)
        src.close()


def test_screen_region_crops_the_chosen_monitor(xserver: XServer) -> None:
    need("xsetroot")
    xserver.run("xsetroot", "-mod", "13", "11")  # a static grid: a crop at the wrong offset would not match
    whole = ScreenSource()
    crop = ScreenSource(monitor=2, region=[10, 20, 100, 50])
    try:
        assert crop.monitors() == [Monitor(2, 650, 20, 100, 50)]
        full = whole.grab(whole.monitors()[1])
        assert len(np.unique(full[..., :3])) > 1
        assert np.array_equal(crop.grab(crop.monitors()[0]), full[20:70, 10:110])
    finally:
        whole.close()
        crop.close()


def test_screen_re_enumerates_monitors_that_come_and_go(xserver: XServer) -> None:
    src = ScreenSource()
    try:
        assert len(src.monitors()) == 2
        xserver.run("xrandr", "--delmonitor", "left")
        assert src.monitors() == [Monitor(1, 640, 0, 640, 480)]
        xserver.run("xrandr", "--setmonitor", "top-left", "320/85x240/64+0+0", "none")
        assert Monitor(2, 0, 0, 320, 240) in src.monitors() or Monitor(1, 0, 0, 320, 240) in src.monitors()
        assert len(src.monitors()) == 2
    finally:
        src.close()


def test_screen_errors_are_source_errors_or_config_errors(xserver: XServer) -> None:
    with pytest.raises(SourceConfigError, match="monitor 3 does not exist"):
        ScreenSource(monitor=3)
    with pytest.raises(SourceConfigError, match="outside monitor 1"):
        ScreenSource(region=[600, 0, 100, 100])
    src = ScreenSource()
    try:
        with pytest.raises(SourceError, match="re-enumerate"):
            src.grab(Monitor(1, 5000, 0, 10, 10))
        m = src.monitors()[0]
        src.grab(m)
        stop(xserver.proc)  # the display goes away under a running capture
        with pytest.raises(SourceError):
            src.grab(m)
        with pytest.raises(SourceError, match="cannot connect"):
            src.monitors()
    finally:
        src.close()


# ---------------------------------------------------------------- no display

def test_without_a_display_auto_falls_back_to_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    usable, reason = display_usable()
    assert not usable and "DISPLAY" in reason
    src = open_source(capture("auto", fps=4, monitor=0, region=[], synthetic=SYNTH, replay=NO_REPLAY))
    assert src.kind == "synthetic"
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    usable, reason = display_usable()
    assert not usable and "Wayland" in reason


def test_display_usable_says_why_a_display_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":4077")  # no server: a unix-socket display fails at once
    usable, reason = display_usable()
    assert not usable and "cannot connect" in reason and ":4077" in reason
    with pytest.raises(SourceError, match="cannot connect"):
        ScreenSource()


# ---------------------------------------------------------------- synthetic unique mix

def test_synthetic_unique_mix_never_repeats_a_frame_and_labels_every_frame_meaningful() -> None:
    from procs import kernels
    from procs.sources.synthetic import BAND_H

    for region in ([], [30, 40, 200, 100]):
        uniq = SyntheticSource(width=640, height=400, seed=7, fps=4, region=region, mix="unique")
        again = SyntheticSource(width=640, height=400, seed=7, fps=4, region=region, mix="unique")
        desk = SyntheticSource(width=640, height=400, seed=7, fps=4, region=region)
        (m,) = uniq.monitors()
        dx, dy = m.left, m.top
        slot = np.full((m.height, m.width * 4 + 64), 7, dtype=np.uint8)  # rows padded, like a ring slot
        view = slot[:, : m.width * 4].reshape(m.height, m.width, 4)
        seen = set()
        rows = set()
        prev = None
        for k in range(600):
            frame = uniq.grab(m).copy()
            # Copied into a slot as capture does, with its hash: the same frames.
            assert kernels.copy_hashed(again.grab(m), view) == kernels.frame_digests(frame)
            assert np.array_equal(view, frame) and again.label == uniq.label
            label = uniq.label
            assert label is not None and label.kind == "meaningful" and label.what.startswith(f"unique frame {k}")
            digest = kernels.frame_hash(frame)
            assert digest not in seen, f"frame {k} repeats an earlier frame"
            seen.add(digest)
            assert (frame[..., 3] == 255).all(), "opaque, as a screen"
            # Outside one band of rows and the counter, the frame is the scripted desktop's.
            differs = changed_pixels(frame, desk.grab(m))
            differs[0, :2] = False
            ys = np.nonzero(differs.any(axis=1))[0]
            assert len(ys) and ys.max() - ys.min() < BAND_H, (k, ys)
            assert any(y <= ys.min() + dy and ys.max() + dy < y + h and w == m.width for _, y, w, h in label.boxes)
            rows.add(int(ys.min()))
            if prev is not None:  # every change lies in the label's boxes
                inside = np.zeros(frame.shape[:2], bool)
                for x, y, w, h in label.boxes:
                    inside[max(0, y - dy) : max(0, y - dy + h), max(0, x - dx) : max(0, x - dx + w)] = True
                assert not (changed_pixels(frame, prev) & ~inside).any(), (k, label)
            prev = frame
        assert len(rows) > 20, "the band moves: no tile changes on a steady rhythm"
        assert (slot[:, m.width * 4 :] == 7).all(), "the padding is untouched"


def test_synthetic_unique_mix_renders_1080p_fast_and_bad_mixes_are_refused() -> None:
    src = open_source(capture("synthetic", fps=60, synthetic={"width": 1920, "height": 1080, "seed": 1, "monitors": 1,
                                                               "mix": "unique"}))
    assert isinstance(src, SyntheticSource) and src.mix == "unique"
    per_frame_ms = render_ms(src, 200)
    print(f"synthetic unique 1920x1080 grabbed and copied: {per_frame_ms:.2f} ms per frame (mean of 200)")
    assert per_frame_ms < 30
    with pytest.raises(SourceConfigError, match="mix must be one of 'desktop', 'unique', not 'random'"):
        open_source(capture("synthetic", fps=4, monitor=0, region=[], synthetic={**SYNTH, "mix": "random"}, replay=NO_REPLAY))
