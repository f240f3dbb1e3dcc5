#!/usr/bin/env python3
"""Records the labelled desktop session the change policy is tuned and tested on.

A private Xvfb (1920x1080, no window manager: windows land where -geometry puts
them) runs real X programs: an xterm with a blinking cursor, an analog xclock
ticking every second, a dillo browser showing a local page, and xmessage
dialogs. xdotool drives them from a seeded script: single typed characters,
deletes (of typos), one-line commands, wheel scrolls in the terminal and the browser,
raising/focusing windows, opening and closing a dialog, and idle stretches in
which only the clock ticks and the caret blinks. The screen is grabbed at 4 fps
through the project's screen source.

Labels come from what the script did, checked against the pixels:
- `none`: byte-identical to the previous frame (always);
- `meaningful`: the first frame showing an action's effect (the script acts
  right after a grab and then polls the screen until the effect shows, so an
  effect that lands late is still attributed to its action), and any further
  frame that action's effect keeps changing in (a repaint in two steps);
- `trivial`: every other change: clock ticks, caret blinks (a change that only
  switches one character cell's block on or off, also right after an action:
  a space typed at the end of a line shows only as the caret moving on; or a
  change confined to one cell of the focused terminal with no action pending).

Output: session.mkv (libx264rgb -qp 0: lossless; the decode is checked
byte-exact against the recorded frames) and labels.json (per frame: index,
capture time in seconds from the first frame, label, category).

    .venv/bin/python scripts/record_session.py tests/data/session
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from xvfb import start_xvfb  # noqa: E402

from procs.sources.screen import ScreenSource  # noqa: E402

W, H = 1920, 1080
FPS = 4.0
CELL = (6, 13)  # the xterm's default "fixed" font: a character cell in pixels
XTERM_GEOMETRY, XTERM_AT = "110x34+40+40", (40, 40)
BROWSER_GEOMETRY = "900x640+560+300"
CLOCK_GEOMETRY, CLOCK_BOX = "164x164+1700+40", (1700, 40, 166, 166)  # with the 1 px border
DIALOG_AT = (760, 420)
POLL_S = 0.2  # how long the script waits for an action's effect to show before the next grab
NO_EFFECT_S = 2.0  # an action that shows nothing within this long (a scroll at the end) did nothing
SETTLE_S = 1.0  # changes this soon after an action's effect are still that action's (a second repaint)
TOOLS = ("Xvfb", "xterm", "xclock", "xmessage", "dillo", "xdotool", "ffmpeg")

WORDS = ("ls", "echo", "date", "seq", "cat", "grep", "jarvis", "frame", "monitor", "tile", "clock", "hello")
COMMANDS = ("ls", "pwd", "id", "date", "seq 3", "echo hi", "uname", "ls /")
TYPOS = "qxzjkvw"  # keys hit by mistake, deleted at once
PAGE = """<html><head><title>Notes</title></head><body>
<h1>Screen monitor notes</h1>
{paragraphs}
</body></html>"""


@dataclass
class Action:
    kind: str  # a meaningful category
    at: float  # when it was done, seconds from the first frame
    landed: float | None = None  # capture time of the first frame showing it


class Desktop:
    """The X programs and the script's handles on them."""

    def __init__(self, tmp: Path, seed: int) -> None:
        self.xvfb, self.display = start_xvfb(f"{W}x{H}x24")
        self.env = {**os.environ, "DISPLAY": self.display}
        self.procs: list[subprocess.Popen[bytes]] = [self.xvfb]
        rng = random.Random(seed)
        page = tmp / "notes.html"
        paragraphs = "\n".join(
            "<p>" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90))) + "</p>" for _ in range(40)
        )
        page.write_text(PAGE.format(paragraphs=paragraphs))
        # dillo keeps its settings in ~/.dillo; a private home keeps the machine's out.
        self.env["HOME"] = str(tmp)
        self.xterm = self._window(["xterm", "-bc", "-geometry", XTERM_GEOMETRY, "-sl", "500"], "xterm")
        self.clock = self._window(["xclock", "-update", "1", "-geometry", CLOCK_GEOMETRY], "xclock")
        self.browser = self._window(["dillo", "-g", BROWSER_GEOMETRY, f"file://{page}"], "Dillo")
        self.dialog: subprocess.Popen[bytes] | None = None
        self.focused = ""

    def _window(self, argv: list[str], name: str) -> str:
        self.procs.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self.search(name)

    def search(self, name: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdo("search", "--onlyvisible", "--classname", name, check=False).split()
            if found:
                return found[-1]
            time.sleep(0.1)  # polling for a window to be mapped; no event to wait on from here
        raise RuntimeError(f"no {name} window appeared on {self.display}")

    def xdo(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"xdotool {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def focus(self, window: str) -> None:
        self.xdo("windowraise", window)
        self.xdo("windowfocus", "--sync", window)
        self.focused = window

    def open_dialog(self, text: str) -> None:
        self.dialog = subprocess.Popen(
            ["xmessage", "-geometry", f"+{DIALOG_AT[0]}+{DIALOG_AT[1]}", "-buttons", "OK", text],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def close_dialog(self) -> None:
        assert self.dialog is not None
        self.dialog.terminate()
        self.dialog.wait()
        self.dialog = None

    def close(self) -> None:
        if self.dialog is not None:
            self.close_dialog()
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def changed_box(a: np.ndarray, b: np.ndarray, ignore: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the pixels that differ, outside `ignore`
    (x, y, w, h); None when nothing else differs."""
    diff = np.any(a[..., :3] != b[..., :3], axis=2)
    x, y, w, h = ignore
    diff[y : y + h, x : x + w] = False
    ys, xs = np.nonzero(diff)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def caret_flip(previous: np.ndarray, frame: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """The pixels in `box` all changed, from one colour to one colour: a block switched on or off."""
    x0, y0, x1, y1 = box
    old, new = previous[y0:y1, x0:x1, :3].reshape(-1, 3), frame[y0:y1, x0:x1, :3].reshape(-1, 3)
    return bool((old != new).any(axis=1).all() and (old == old[0]).all() and (new == new[0]).all())


def one_cell(box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    return x1 - x0 <= CELL[0] + 2 and y1 - y0 <= CELL[1] + 2


class Script:
    """The seeded sequence of actions: returns the next one to do at a frame."""

    def __init__(self, desk: Desktop, seed: int) -> None:
        self.desk, self.rng = desk, random.Random(seed)
        self.line = ""  # what is typed on the terminal's command line
        self.target = ""  # the command being typed
        self.typo = False  # the last character typed is wrong
        self.idle = 0  # frames left in an idle stretch
        self.dialog_frames = 0
        self.scrolled: dict[str, int] = {}  # wheel clicks away from where each window starts

    def step(self) -> tuple[str, Callable[[], object]] | None:
        """The next action as (category, do), or None for an idle frame."""
        d, rng = self.desk, self.rng
        if self.idle > 0:
            self.idle -= 1
            return None
        if rng.random() < 0.3:
            # mostly short pauses (irregular typing), sometimes a long idle stretch
            self.idle = rng.choice((1, 1, 2, 2, 3, 5)) if rng.random() < 0.9 else rng.randint(10, 24)
            return None
        if d.dialog is not None:
            self.dialog_frames += 1
            if self.dialog_frames > rng.randint(1, 3):
                self.dialog_frames = 0
                return "dialog", d.close_dialog
            return None
        roll = rng.random()
        if roll < 0.09:
            return "dialog", lambda: d.open_dialog(rng.choice(("Saved.", "Build finished", "3 new messages", "Update ready")))
        if roll < 0.18:
            other = d.browser if d.focused == d.xterm else d.xterm
            return "window_switch", lambda: d.focus(other)
        if roll < 0.36:
            return self._scroll()
        if d.focused != d.xterm:
            return "window_switch", lambda: d.focus(d.xterm)
        if not self.target:
            self.target = rng.choice(COMMANDS)
        if self.typo:
            # a typo is deleted before typing goes on
            self.line, self.typo = self.line[:-1], False
            self.scrolled[d.xterm] = 0  # the echo brings the terminal back to its bottom
            return "delete", lambda: d.xdo("key", "BackSpace")
        if self.line == self.target:
            self.line, self.target = "", ""
            self.scrolled[d.xterm] = 0
            return "command_output", lambda: d.xdo("key", "Return")
        char = self.target[len(self.line)]
        if rng.random() < 0.4:
            char, self.typo = rng.choice([c for c in TYPOS if c != char]), True
        self.line += char
        self.scrolled[d.xterm] = 0
        return "typed_char", lambda: d.xdo("type", "--delay", "0", char)

    def _scroll(self) -> tuple[str, Callable[[], object]]:
        """A wheel click over the focused window, in a direction that moves
        something: dillo's page down from its top, xterm's history up from its
        bottom (the wheel scrolls a few lines at a time)."""
        d, window = self.desk, self.desk.focused
        back = self.scrolled.get(window, 0)
        away = "4" if window == d.xterm else "5"  # away from where the window starts
        toward = "5" if away == "4" else "4"
        limit = 3 if window == d.xterm else 12  # the terminal's history is short
        button = toward if back >= limit or (back > 0 and self.rng.random() < 0.4) else away
        self.scrolled[window] = back + (1 if button == away else -1)

        def wheel() -> None:
            d.xdo("mousemove", "--window", window, "300", "300")
            d.xdo("click", button)
        return "scroll", wheel


def record(out: Path, frames: int, seed: int) -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        sys.exit(f"record_session: needs {', '.join(missing)} (scripts/system-deps installs them)")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="jarvis-session-"))
    desk = Desktop(tmp, seed)
    video = out / "session.mkv"
    encoder = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgra", "-s", f"{W}x{H}",
         "-r", str(FPS), "-i", "-", "-c:v", "libx264rgb", "-qp", "0", "-preset", "veryfast", "-pix_fmt", "bgr24", str(video)],
        stdin=subprocess.PIPE,
    )
    assert encoder.stdin is not None
    try:
        source = ScreenSource(display=desk.display)
        monitor = source.monitors()[0]

        def grab() -> np.ndarray:
            return np.ascontiguousarray(source.grab(monitor))

        desk.focus(desk.xterm)
        desk.xdo("type", "--delay", "0", "seq 80\n")  # a terminal history to scroll back in
        settle(grab)
        script = Script(desk, seed)
        labels: list[dict[str, object]] = []
        digests: list[str] = []
        pending: Action | None = None
        last: Action | None = None
        previous: np.ndarray | None = None
        start = time.monotonic()
        for index in range(frames):
            due = start + index / FPS
            time.sleep(max(0.0, due - time.monotonic()))  # the capture clock, like the capture stage's timer
            t = time.monotonic() - start
            frame = grab()
            frame[..., 3] = 255  # the video keeps no alpha; neither does the replay
            encoder.stdin.write(frame.data)
            digests.append(hashlib.sha1(frame.data).hexdigest())
            label, category = "meaningful", "first_frame"
            if previous is not None:
                label, category, pending, last = classify(previous, frame, t, pending, last, desk)
            labels.append({"index": index, "t": round(t, 4), "label": label, "category": category})
            previous = frame
            # act right after a grab, at an irregular moment within the frame interval
            step = script.step() if pending is None else None
            if step is None:
                continue
            time.sleep(script.rng.uniform(0.0, 0.06))
            kind, do = step
            do()
            pending = Action(kind, time.monotonic() - start)
            print(f"{t:7.2f}s frame {index}: {kind}", flush=True)
            wait_for_effect(grab, frame, start + (index + 1) / FPS - 0.03)
        encoder.stdin.close()
        if encoder.wait() != 0:
            sys.exit("record_session: ffmpeg failed to encode the session")
    finally:
        desk.close()
        shutil.rmtree(tmp, ignore_errors=True)
    check_decode(video, digests)
    counts: dict[str, int] = {}
    for entry in labels:
        key = f"{entry['label']}/{entry['category']}"
        counts[key] = counts.get(key, 0) + 1
    meta = {"width": W, "height": H, "fps": FPS, "seed": seed, "video": video.name, "counts": counts, "frames": labels}
    (out / "labels.json").write_text(json.dumps(meta, indent=0) + "\n")
    print(json.dumps(counts, indent=1, sort_keys=True))
    print(f"{video}: {video.stat().st_size / 1e6:.2f} MB")


def settle(grab: Callable[[], np.ndarray], timeout: float = 60.0) -> None:
    """Waits until the programs have drawn everything (the browser loads its
    page after its window appears): nothing but the clock and the caret changes
    for two seconds."""
    deadline = time.monotonic() + timeout
    before, quiet_since = grab(), time.monotonic()
    while time.monotonic() - quiet_since < 2.0:
        if time.monotonic() > deadline:
            raise RuntimeError("the desktop did not settle: something keeps changing")
        time.sleep(0.1)  # polling the screen: X offers no "all drawn" event
        now = grab()
        box = changed_box(before, now, CLOCK_BOX)
        if box is not None and not one_cell(box):
            quiet_since = time.monotonic()
        before = now


def wait_for_effect(grab: Callable[[], np.ndarray], before: np.ndarray, until: float) -> None:
    """Polls the screen until the last action shows (more than a caret blink
    changed outside the clock) or the next grab is due."""
    while time.monotonic() < until:
        box = changed_box(before, grab(), CLOCK_BOX)
        if box is not None and not one_cell(box):
            return


def classify(
    previous: np.ndarray, frame: np.ndarray, t: float, pending: Action | None, last: Action | None, desk: Desktop,
) -> tuple[str, str, Action | None, Action | None]:
    """(label, category, pending, last) of a frame from its difference to the previous one."""
    box = changed_box(previous, frame, CLOCK_BOX)
    if np.array_equal(previous, frame):
        return "none", "idle", pending, last
    if pending is not None and t - pending.at > NO_EFFECT_S:
        print(f"{pending.kind} at {pending.at:.2f}s showed no effect", flush=True)
        pending = None
    if box is None:  # only the clock moved (an action whose effect has not shown yet stays pending)
        return "trivial", "clock_tick", pending, last
    if one_cell(box) and caret_flip(previous, frame, box):
        # Only the caret's block switched on or off: a blink, also right after an action
        # (a space typed at the end of a line shows only as the caret moving on).
        return "trivial", "caret_blink", pending, last
    if pending is not None:
        pending.landed = t
        return "meaningful", pending.kind, None, pending
    blinking = one_cell(box) and desk.focused == desk.xterm
    if last is not None and last.landed is not None and t - last.landed <= SETTLE_S and not blinking:
        # the same action still painting (e.g. the terminal drawing its hollow unfocused cursor)
        return "meaningful", last.kind, None, last
    if blinking:
        return "trivial", "caret_blink", None, last  # the caret blinking over a character
    raise RuntimeError(f"an unexplained change at {t:.2f}s in {box}: no action pending")


def check_decode(video: Path, digests: list[str]) -> None:
    """The stored video decodes to exactly the recorded frames."""
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "bgra", "-"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    size = W * H * 4
    for index, digest in enumerate(digests):
        data = proc.stdout.read(size)
        if len(data) != size or hashlib.sha1(data).hexdigest() != digest:
            proc.kill()
            sys.exit(f"record_session: frame {index} of {video} does not decode to the recorded pixels")
    if proc.stdout.read(1) or proc.wait() != 0:
        sys.exit(f"record_session: {video} holds more frames than were recorded, or ffmpeg failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for session.mkv and labels.json")
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    record(args.out, args.frames, args.seed)


if __name__ == "__main__":
    main()
