"""A deterministic synthetic desktop with scripted activity, for running and
judging the pipeline where there is no screen.

Frame k of a monitor depends only on (width, height, fps, seed, monitor, k):
virtual time advances 1/fps per frame whatever the wall clock does. Each
monitor is an independent desktop seeded with seed and its index. The desktop
has a wallpaper, a taskbar with a ticking HH:MM:SS clock, a terminal, an editor
and a browser; a seeded script types (one character per frame), presses Enter,
deletes, scrolls, switches windows (sometimes straight back: A/B/A) and idles
for 5-20 virtual seconds, while the caret blinks every 0.5 virtual seconds.

Rendering keeps the desktop canvas and each window's own image and redraws only
what changed, so a frame costs about one copy of the canvas into the ring slot.
Each frame carries a Label that says whether it changed, and where; it is
computed by comparing the redrawn areas with the frame before, so "none" means
byte-identical and "trivial" means only the clock and the caret changed.

Two mixes: "desktop" is the scripted activity above. "unique" is the worst case
for the pipeline: the same desktop, plus on every frame a band of noise at a
random height and the frame counter stamped into the top-left pixels of the
grabbed rectangle, so no frame equals an earlier one (nothing is a duplicate)
and every frame changes meaningfully (fresh content at irregular places, never
a steady rhythm a change detector could call volatile). Every frame is
labelled "meaningful". It costs a copy of one band from a noise pool.
"""

from __future__ import annotations

import abc
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from procs.sources.base import Box, Label, Monitor, Source, SourceConfigError, SourceError
from procs.sources.font import CELL_H, CELL_W, atlas

if TYPE_CHECKING:
    from pipeline.config import CaptureConfig

Colour = tuple[int, int, int, int]  # B, G, R, A


def _rgb(r: int, g: int, b: int) -> Colour:
    return (b, g, r, 255)


TASKBAR_H = 24
TASKBAR_BG = _rgb(36, 36, 40)
TITLE_H = 20
PAD = 6  # text inset from a window's left edge
CARET_W = 2
MIN_SIZE = 64
IDLE_S = (5.0, 20.0)
BLINK_S = 0.5

_WORDS = (
    "the of frame ring slot monitor capture buffer value index error result config stage worker queue "
    "delta region change pixel thread memory shared commit release process signal window cursor clock "
    "status update render layout module import return while yield async await batch tile hash"
).split()
_COMMANDS = ("ls -la", "git status", "make test", "cat notes.txt", "grep -rn TODO src", "python3 train.py",
             "cargo build --release", "htop", "df -h", "git log --oneline", "pytest -q", "ssh build01")
_CODE = ("def {w}({v}):", "    {v} = {w}({v})", "    if {v} is None:", "        return {v}", "    for {v} in {w}:",
         "# {w} the {v}", "class {W}:", "    return {w}({v}, {v})", "")


@dataclass(frozen=True)
class _Band:
    """A browser row of coloured blocks: (start, end, colour), start and end as
    fractions of the page width. Consecutive bands make images and buttons."""

    spans: tuple[tuple[float, float, Colour], ...]


_Row = str | _Band


def _fill(region: np.ndarray, colour: Colour) -> None:
    """Fills a (h, w, 4) region with one colour, written as 32-bit words: numpy
    broadcasts a 4-byte pixel over a region several times slower."""
    region.view(np.uint32)[...] = np.array(colour, dtype=np.uint8).view(np.uint32)[0]


def _clip(box: Box, width: int, height: int) -> Box:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _words(rng: random.Random, length: int) -> str:
    text = ""
    while len(text) < length:
        text += rng.choice(_WORDS) + " "
    return text[:length]


class _Window(abc.ABC):
    """A window's own image and text model. Actions edit the model, redraw the
    affected rows of the image and return the window-local boxes they changed."""

    name = ""
    title = ""
    bg = _rgb(255, 255, 255)
    fg = _rgb(0, 0, 0)
    body_top = TITLE_H + 2

    def __init__(self, box: Box, rng: random.Random) -> None:
        self.x, self.y, self.w, self.h = box
        self.buf = np.empty((self.h, self.w, 4), dtype=np.uint8)
        self.atlas = atlas(self.fg, self.bg)
        self.cols = max(1, (self.w - 2 * PAD) // CELL_W)
        self.nvis = max(1, (self.h - self.body_top - 2) // CELL_H)
        self.rng = rng
        self.rows: list[_Row] = []
        self.top = 0  # first row of self.rows in view
        self.cur = 0  # the row being typed into

    # The input line: a row of the body for the terminal and the editor.
    def text(self) -> str:
        row = self.rows[self.cur]
        return row if isinstance(row, str) else ""

    def set_text(self, text: str) -> None:
        self.rows[self.cur] = text

    def input_origin(self) -> tuple[int, int] | None:
        """Where the input line's text starts in the image, None when scrolled out of view."""
        if not self.top <= self.cur < self.top + self.nvis:
            return None
        return PAD, self.body_top + (self.cur - self.top) * CELL_H

    def fixed(self) -> int:
        """Characters at the start of the input line that backspace keeps (a prompt)."""
        return 0

    def render(self, focused: bool) -> None:
        _fill(self.buf, _rgb(90, 90, 90))
        _fill(self.buf[1:-1, 1:-1], self.bg)
        self.draw_title(focused)
        self.draw_body()

    def draw_title(self, focused: bool) -> None:
        colour = _rgb(52, 101, 164) if focused else _rgb(150, 150, 150)
        _fill(self.buf[1:TITLE_H, 1:-1], colour)
        atlas(_rgb(255, 255, 255), colour).draw(self.buf, PAD, 2, self.title)

    def draw_body(self) -> Box:
        for i in range(self.nvis):
            self.draw_row(i)
        return (1, self.body_top, self.w - 2, self.nvis * CELL_H)

    def draw_row(self, i: int) -> Box:
        y = self.body_top + i * CELL_H
        _fill(self.buf[y : y + CELL_H, 1 : self.w - 1], self.bg)
        index = self.top + i
        row = self.rows[index] if index < len(self.rows) else ""
        if isinstance(row, str):
            self.atlas.draw(self.buf, PAD, y, row)
        else:
            width = self.w - 2 * PAD
            for start, end, colour in row.spans:
                _fill(self.buf[y : y + CELL_H, PAD + int(start * width) : PAD + int(end * width)], colour)
        return (1, y, self.w - 2, CELL_H)

    def draw_input(self) -> list[Box]:
        origin = self.input_origin()
        if origin is None:
            return []
        return [self.draw_row(self.cur - self.top)]

    def reveal_input(self) -> list[Box]:
        """Scrolls the input line into view, as typing does in real programs."""
        if self.input_origin() is not None:
            return []
        self.top = max(0, self.cur - self.nvis + 1) if self.cur >= self.top else self.cur
        return [self.draw_body()]

    def caret(self) -> Box | None:
        origin = self.input_origin()
        if origin is None:
            return None
        x, y = origin
        # Between two cells, where no glyph has pixels, so erasing it never clips a character.
        box = _clip((x + len(self.text()) * CELL_W - 1, y, CARET_W, CELL_H), self.w - 1, self.h - 1)
        return box if box[2] and box[3] == CELL_H else None

    def room(self) -> int:
        return self.cols - 1 - len(self.text())

    def type_char(self, ch: str) -> list[Box]:
        boxes = self.reveal_input()
        self.set_text(self.text() + ch)
        return boxes + self.draw_input()

    def backspace(self) -> list[Box]:
        boxes = self.reveal_input()
        self.set_text(self.text()[:-1])
        return boxes + self.draw_input()

    @abc.abstractmethod
    def enter(self) -> list[Box]: ...

    def scroll_step(self) -> int:
        """+1 (down) or -1 (up) by one text line, whichever is possible; 0 if neither."""
        limit = max(0, len(self.rows) - self.nvis)
        if self.top < limit:
            return 1
        return -1 if self.top > 0 else 0

    def scroll(self, step: int) -> list[Box]:
        self.top += step
        return [self.draw_body()]

    def trim(self) -> None:
        """Drops rows far above the view so a long run keeps its memory bounded."""
        excess = min(self.top, self.cur) - 4 * self.nvis
        if excess > 0:
            del self.rows[:excess]
            self.top -= excess
            self.cur -= excess


class _Terminal(_Window):
    name = "terminal"
    title = "Terminal - bash"
    bg = _rgb(30, 30, 30)
    fg = _rgb(200, 200, 200)
    prompt = "$ "

    def __init__(self, box: Box, rng: random.Random) -> None:
        super().__init__(box, rng)
        for _ in range(self.nvis + 8):
            self.rows += [self.prompt + rng.choice(_COMMANDS), self.output()]
        self.rows.append(self.prompt)
        self.cur = len(self.rows) - 1
        self.top = max(0, len(self.rows) - self.nvis)

    def output(self) -> str:
        r = self.rng
        return r.choice((f"-rw-r--r-- 1 dev dev {r.randint(100, 99999):>6} {r.choice(_WORDS)}.{r.choice(('py', 'rs', 'txt'))}",
                         f"{r.randint(1, 999)} passed, {r.randint(0, 3)} failed in {r.randint(1, 90)}.{r.randint(0, 99):02d}s",
                         _words(r, self.cols - 1).rstrip()))

    def fixed(self) -> int:
        return len(self.prompt)

    def enter(self) -> list[Box]:
        self.rows[self.cur + 1 :] = [self.output(), self.prompt]
        self.cur = len(self.rows) - 1
        if self.cur >= self.top + self.nvis:
            self.top = self.cur - self.nvis + 1
            return [self.draw_body()]
        return [self.draw_row(self.cur - 1 - self.top), self.draw_row(self.cur - self.top)]


class _Editor(_Window):
    name = "editor"
    title = "Editor - capture.py"
    bg = _rgb(250, 250, 245)
    fg = _rgb(40, 40, 40)

    def __init__(self, box: Box, rng: random.Random) -> None:
        super().__init__(box, rng)
        self.rows = [self.code_line() for _ in range(self.nvis * 2 + 10)]
        self.cur = rng.randrange(self.nvis // 2 + 1)

    def code_line(self) -> str:
        w, v = self.rng.choice(_WORDS), self.rng.choice(_WORDS)
        return self.rng.choice(_CODE).format(w=w, v=v, W=w.capitalize())[: self.cols - 1]

    def enter(self) -> list[Box]:
        self.cur += 1
        self.rows.insert(self.cur, "")
        return self.reveal_input() or [self.draw_body()]


class _Browser(_Window):
    name = "browser"
    title = "Browser - docs"
    bg = _rgb(255, 255, 255)
    fg = _rgb(30, 40, 90)
    body_top = TITLE_H + 4 + CELL_H + 4  # below the address bar

    def __init__(self, box: Box, rng: random.Random) -> None:
        super().__init__(box, rng)
        self.field = atlas(self.fg, _rgb(232, 234, 240))
        self.address = self.url()
        self.rows = self.page()

    def url(self) -> str:
        return "https://docs.example.org/" + self.rng.choice(_WORDS)

    def page(self) -> list[_Row]:
        r = self.rng
        rows: list[_Row] = [_words(r, r.randint(10, 30)).strip().upper(), ""]
        while len(rows) < self.nvis * 2 + 10:
            rows += [_words(r, self.cols - 1) for _ in range(r.randint(1, 4))] + [""]
            colour = _rgb(r.randrange(256), r.randrange(256), r.randrange(256))
            start = r.choice((0.0, 0.3))
            rows += [_Band(((start, start + 0.4, colour), (0.75, 0.95, _rgb(200, 210, 230))))] * r.randint(3, 6) + [""]
        return rows

    # The input line is the address bar, outside the scrolling body.
    def text(self) -> str:
        return self.address

    def set_text(self, text: str) -> None:
        self.address = text

    def input_origin(self) -> tuple[int, int]:
        return PAD, TITLE_H + 4

    def draw_input(self) -> list[Box]:
        box = (PAD - 2, TITLE_H + 2, self.w - 2 * PAD + 4, CELL_H + 4)
        x, y, w, h = _clip(box, self.w - 1, self.h - 1)
        _fill(self.buf[y : y + h, x : x + w], _rgb(232, 234, 240))
        self.field.draw(self.buf[:, : self.w - PAD], PAD, TITLE_H + 4, self.address)
        return [(x, y, w, h)]

    def render(self, focused: bool) -> None:
        super().render(focused)
        self.draw_input()

    def room(self) -> int:
        return min(self.cols - 1, 60) - len(self.address)

    def enter(self) -> list[Box]:
        """Loads a new page, which shows its own address."""
        self.address = self.url()
        self.rows = self.page()
        self.top = 0
        return self.draw_input() + [self.draw_body()]


_Action = tuple[Literal["type", "enter", "backspace", "scroll", "switch"], str] | None

MIXES = ("desktop", "unique")
BAND_H = 32  # rows of the unique mix's noise band
_POOL_PX = 1 << 18  # pixels of noise a band is cut from (1 MB per monitor)
_COUNTER_PX = 2  # pixels holding the frame counter (48 bits in their B, G, R bytes)


class _Unique:
    """The unique mix's per-frame stamp for one monitor: a band of noise cut at a
    random offset from a seeded pool, at a random height, and the frame counter."""

    def __init__(self, seed: int, index: int) -> None:
        self.rng = np.random.default_rng([seed, index, 0x756E69])
        pool = self.rng.integers(0, 1 << 24, size=_POOL_PX, dtype=np.uint32)
        self.pool = pool | np.uint32(0xFF000000)  # opaque, as screens are
        self.count = -1
        self.last_band: Box | None = None
        self.under: list[tuple[np.ndarray, np.ndarray]] = []  # (where, what was there) for unstamp, in drawing order

    def stamp(self, out: np.ndarray) -> list[Box]:
        """Draws the next frame's band and counter into `out` (H, W, 4), keeping
        what they cover for `unstamp`; returns what differs from the frame
        before besides the desktop's own changes (the band, where the band
        was, the counter), relative to `out`."""
        self.count += 1
        h, w = out.shape[:2]
        band_h = min(BAND_H, h)
        y = int(self.rng.integers(0, h - band_h + 1))
        n = band_h * w
        start = int(self.rng.integers(0, _POOL_PX - n + 1)) if n < _POOL_PX else 0
        band = out[y : y + band_h]
        self.under = [(band, band.copy())]
        noise = np.resize(self.pool, n) if n > _POOL_PX else self.pool[start : start + n]
        band.view(np.uint32)[..., 0] = noise.reshape(band_h, w)
        k = min(_COUNTER_PX, w)
        self.under.append((out[0, :k], out[0, :k].copy()))
        digits = np.frombuffer((self.count & (1 << 24 * k) - 1).to_bytes(3 * k, "little"), np.uint8)
        out[0, :k, :3] = digits.reshape(k, 3)
        out[0, :k, 3] = 255
        boxes = [(0, y, w, band_h), (0, 0, k, 1)]
        if self.last_band is not None and self.last_band[1] != y:
            boxes.insert(1, self.last_band)  # the desktop shows again where the band was
        self.last_band = boxes[0]
        return boxes

    def unstamp(self) -> None:
        """Puts back what the last stamp covered (the counter first: it may lie on the band)."""
        for where, was in reversed(self.under):
            where[...] = was
        self.under = []


class _Desktop:
    """One monitor's desktop: the canvas, the windows, the script, the clock."""

    def __init__(self, width: int, height: int, seed: int, index: int, fps: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.rng = random.Random(seed * 1_000_003 + index)
        self.canvas = np.empty((height, width, 4), dtype=np.uint8)
        self.prev = np.empty_like(self.canvas)
        self.wallpaper = self._wallpaper()
        area = height - TASKBAR_H
        self.windows: list[_Window] = [
            cls(self._place(fx, fy, fw, fh, area), random.Random(self.rng.getrandbits(64)))
            for cls, fx, fy, fw, fh in ((_Terminal, 0.04, 0.05, 0.50, 0.60), (_Editor, 0.32, 0.10, 0.55, 0.70),
                                        (_Browser, 0.14, 0.27, 0.60, 0.68))
        ]
        self.order = list(range(len(self.windows)))  # bottom to top
        self.rng.shuffle(self.order)
        self.start_s = self.rng.randint(8 * 3600, 18 * 3600)
        self.clock_x = max(0, width - 8 * CELL_W - 6)
        self.queue: deque[_Action] = deque()
        self.frame = -1
        self.key_frame = 0  # the caret restarts its blink at each key press, as in real programs
        self.caret_box: Box | None = None
        self.clock_text = ""
        self.label = Label("none", "")

    def _place(self, fx: float, fy: float, fw: float, fh: float, area: int) -> Box:
        x, y = int(fx * self.width), int(fy * area)
        w = max(min(self.width - x, 8 * CELL_W), int(fw * self.width))
        h = max(min(area - y, TITLE_H + 2 * CELL_H), int(fh * area))
        return (x, y, min(w, self.width - x), max(1, min(h, area - y)))

    def _wallpaper(self) -> np.ndarray:
        """A vertical gradient with faint diagonal stripes."""
        top, bottom = ([self.rng.randrange(lo, lo + 80) for _ in range(3)] for lo in (40, 0))
        t = np.linspace(0.0, 1.0, self.height)[:, None, None]
        gradient = (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.uint8)
        diagonal = np.arange(self.height)[:, None] + np.arange(self.width)[None, :]
        paper = np.empty((self.height, self.width, 4), dtype=np.uint8)
        paper[..., :3] = gradient + (diagonal // 48 % 2 * 6).astype(np.uint8)[..., None]
        paper[..., 3] = 255
        return paper

    @property
    def focused(self) -> _Window:
        return self.windows[self.order[-1]]

    def step(self) -> None:
        """Advances to the next frame and sets self.label."""
        self.frame += 1
        if self.frame == 0:
            self._first_frame()
            return
        dirty: list[tuple[str, Box]] = []
        if self.caret_box is not None:  # restore what the caret covers in the focused window
            dirty.append(("caret", self._blit(self.focused, self.caret_box)))
            self.caret_box = None
        if not self.queue:
            self._plan()
        action = self.queue.popleft()
        what = ""
        if action is not None:
            what, boxes = self._apply(*action)
            dirty += [("content", b) for b in boxes]
        dirty += [(kind, b) for kind, b in self._draw_clock_and_caret()]
        self._label(dirty, what)

    def _first_frame(self) -> None:
        self.canvas[:] = self.wallpaper
        _fill(self.canvas[self.height - TASKBAR_H :], TASKBAR_BG)
        for i in self.order:
            self.windows[i].render(focused=i == self.order[-1])
            self._blit(self.windows[i], (0, 0, self.windows[i].w, self.windows[i].h))
        self._draw_taskbar()
        self._draw_clock_and_caret()
        self.prev[:] = self.canvas
        self.label = Label("meaningful", "first frame", ((0, 0, self.width, self.height),))

    def _blit(self, win: _Window, box: Box) -> Box:
        """Copies part of a window's image onto the canvas; the window must be on top there."""
        x, y, w, h = _clip(box, win.w, win.h)
        self.canvas[win.y + y : win.y + y + h, win.x + x : win.x + x + w] = win.buf[y : y + h, x : x + w]
        return (win.x + x, win.y + y, w, h)

    def _compose(self, box: Box) -> None:
        """Redraws part of the canvas from the wallpaper and every window, bottom to top."""
        x, y, w, h = box
        self.canvas[y : y + h, x : x + w] = self.wallpaper[y : y + h, x : x + w]
        for i in self.order:
            win = self.windows[i]
            local = _clip((x - win.x, y - win.y, w, h), win.w, win.h)
            if local[2] and local[3]:
                self._blit(win, local)

    def _draw_taskbar(self) -> Box:
        """Draws the window buttons, left of the clock."""
        y = self.height - TASKBAR_H
        _fill(self.canvas[y:, : self.clock_x], TASKBAR_BG)
        x = 4
        for i, win in enumerate(self.windows):
            colour = _rgb(80, 110, 160) if i == self.order[-1] else _rgb(60, 60, 66)
            w = min(CELL_W * (len(win.name) + 2), max(0, self.clock_x - 6 - x))
            _fill(self.canvas[y + 3 : y + TASKBAR_H - 3, x : x + w], colour)
            atlas(_rgb(230, 230, 230), colour).draw(self.canvas[:, : x + w], x + CELL_W, y + 4, win.name.capitalize())
            x += w + 6
        return (0, y, self.clock_x, TASKBAR_H)

    def _draw_clock_and_caret(self) -> list[tuple[str, Box]]:
        dirty = []
        text = self._clock()
        if text != self.clock_text:
            self.clock_text = text
            x, y = self.clock_x, self.height - TASKBAR_H + 4
            atlas(_rgb(230, 230, 230), TASKBAR_BG).draw(self.canvas, x, y, text)
            dirty.append(("clock", _clip((x, y, 8 * CELL_W, CELL_H), self.width, self.height)))
        caret = self.focused.caret()
        if caret is not None and int((self.frame - self.key_frame) / (self.fps * BLINK_S)) % 2 == 0:
            win = self.focused
            x, y, w, h = caret
            _fill(self.canvas[win.y + y : win.y + y + h, win.x + x : win.x + x + w], win.fg)
            self.caret_box = caret
            dirty.append(("caret", (win.x + x, win.y + y, w, h)))
        return dirty

    def _clock(self) -> str:
        s = (self.start_s + int(self.frame / self.fps)) % 86400
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"

    def _label(self, dirty: list[tuple[str, Box]], what: str) -> None:
        # Compare every box before syncing any: boxes overlap (the caret sits on text).
        changed = [(kind, box) for kind, box in dirty if self._differs(box)]
        for _, (x, y, w, h) in dirty:
            self.prev[y : y + h, x : x + w] = self.canvas[y : y + h, x : x + w]
        kinds = {kind for kind, _ in changed}
        boxes = tuple(box for _, box in changed)
        if "content" in kinds:
            self.label = Label("meaningful", what, boxes)
        elif kinds:
            self.label = Label("trivial", "+".join(sorted(kinds)), boxes)
        else:
            self.label = Label("none", "")

    def _differs(self, box: Box) -> bool:
        x, y, w, h = box
        return not np.array_equal(self.canvas[y : y + h, x : x + w], self.prev[y : y + h, x : x + w])

    def _apply(self, action: str, arg: str) -> tuple[str, list[Box]]:
        win = self.focused
        name = win.name
        if action != "scroll":  # a key press or a focus change restarts the caret's blink
            self.key_frame = self.frame
        if action == "switch":
            return f"switched from {name} to {arg}", self._switch(arg)
        if action == "type":
            local, what = win.type_char(arg), f"typed {arg!r} in {name}"
        elif action == "enter":
            local, what = win.enter(), f"enter in {name}"
        elif action == "backspace":
            local, what = win.backspace(), f"backspace in {name}"
        else:
            local, what = win.scroll(win.scroll_step()), f"scrolled {name}"
        win.trim()
        return what, [self._blit(win, box) for box in local]

    def _switch(self, name: str) -> list[Box]:
        old = self.focused
        target = next(i for i, w in enumerate(self.windows) if w.name == name)
        self.order.remove(target)
        self.order.append(target)
        new = self.focused
        old.draw_title(focused=False)
        new.draw_title(focused=True)
        boxes = [(old.x, old.y, old.w, old.h), (new.x, new.y, new.w, new.h)]
        for box in boxes:
            self._compose(box)
        return boxes + [self._draw_taskbar()]

    def _plan(self) -> None:
        """Queues the next activity, one action per frame, then a short pause."""
        r, win, fps = self.rng, self.focused, self.fps
        activity = r.choices(("type", "idle", "backspace", "scroll", "switch"), weights=(40, 15, 10, 15, 20))[0]
        if activity == "backspace" and len(win.text()) <= win.fixed():
            activity = "type"
        if activity == "scroll" and win.scroll_step() == 0:
            activity = "type"
        if activity == "type" and win.room() < 3:
            self.queue.append(("enter", ""))  # the line is full: the next activity types on a fresh one
        elif activity == "type":
            self.queue.extend(("type", ch) for ch in _words(r, min(r.randint(3, 30), win.room())))
            if r.random() < 0.5:
                self.queue.extend([None] * r.randint(0, max(1, round(fps))))
                self.queue.append(("enter", ""))
        elif activity == "backspace":
            self.queue.extend([("backspace", "")] * r.randint(1, min(5, len(win.text()) - win.fixed())))
        elif activity == "scroll":
            for _ in range(r.randint(1, 4)):
                self.queue.append(("scroll", ""))
                self.queue.extend([None] * r.randint(0, 2))
        elif activity == "switch":
            self.queue.append(("switch", r.choice([w.name for w in self.windows if w is not win])))
            if r.random() < 0.5:  # a glance at another window and straight back: A/B/A
                self.queue.extend([None] * r.randint(1, max(1, round(2 * fps))))
                self.queue.append(("switch", win.name))
        else:
            self.queue.extend([None] * max(1, round(r.uniform(*IDLE_S) * fps)))
        self.queue.extend([None] * r.randint(1, max(1, round(1.5 * fps))))


class SyntheticSource(Source):
    kind = "synthetic"

    @classmethod
    def from_config(cls, capture: CaptureConfig) -> SyntheticSource:
        s = capture.synthetic
        return cls(width=s.width, height=s.height, seed=s.seed, monitors=s.monitors, fps=capture.fps,
                   monitor=capture.monitor, region=capture.region, mix=s.mix)

    def __init__(self, *, width: int = 1920, height: int = 1080, seed: int = 1, monitors: int = 1, fps: float = 4.0,
                 monitor: int = 0, region: Sequence[int] = (), mix: str = "desktop") -> None:
        super().__init__(monitor=monitor, region=region)
        if width < MIN_SIZE or height < MIN_SIZE:
            raise SourceConfigError(f"the synthetic desktop must be at least {MIN_SIZE}x{MIN_SIZE}, not {width}x{height}")
        if monitors < 1:
            raise SourceConfigError(f"the synthetic source needs at least 1 monitor, not {monitors}")
        if not fps > 0:
            raise SourceConfigError(f"fps must be positive, not {fps}")
        if mix not in MIXES:
            raise SourceConfigError(f"the synthetic mix must be one of {', '.join(map(repr, MIXES))}, not {mix!r}")
        self._size = (width, height)
        self._desktops = {i: _Desktop(width, height, seed, i, fps) for i in range(1, monitors + 1)}
        self.mix = mix
        # The unique mix stamps each frame onto the desktop's canvas, and takes the stamp off before
        # the desktop draws its next frame: grab gives the canvas itself, as for the desktop mix.
        self._unique = {i: _Unique(seed, i) for i in self._desktops} if mix == "unique" else {}
        self._label: Label | None = None
        self._check_selection()

    def _enumerate(self) -> list[Monitor]:
        width, height = self._size
        # Side by side, as a multi-monitor desktop would lay them out.
        return [Monitor(i, (i - 1) * width, 0, width, height) for i in self._desktops]

    def _next(self, monitor: Monitor) -> np.ndarray:
        desktop = self._desktops.get(monitor.index)
        width, height = self._size
        x, y = monitor.left - (monitor.index - 1) * width, monitor.top
        if desktop is None or x < 0 or y < 0 or x + monitor.width > width or y + monitor.height > height:
            raise SourceError(f"{monitor} is not part of the synthetic desktop; re-enumerate the monitors")
        desktop.step()
        self._label = desktop.label
        return desktop.canvas[y : y + monitor.height, x : x + monitor.width]

    def _stamp(self, monitor: Monitor, out: np.ndarray) -> None:
        """Unique mix: the band and counter over the desktop's frame in `out`."""
        stamped = self._unique[monitor.index].stamp(out)
        # Label boxes are relative to the whole monitor; `out` may be a region of it.
        dx, dy = monitor.left - (monitor.index - 1) * self._size[0], monitor.top
        base = self._label or Label("none", "")
        boxes = base.boxes + tuple((x + dx, y + dy, w, h) for x, y, w, h in stamped)
        what = f"unique frame {self._unique[monitor.index].count}" + (f"; {base.what}" if base.what else "")
        self._label = Label("meaningful", what, boxes)

    def grab(self, monitor: Monitor) -> np.ndarray:
        # The desktop's frame is its canvas: grab gives it without a copy and
        # capture copies it into the slot as it would a screen's, hashing as it goes.
        unique = self._unique.get(monitor.index)
        if unique is not None:
            unique.unstamp()
        view = self._next(monitor)
        if unique is not None:
            self._stamp(monitor, view)
        view = view[...]
        view.flags.writeable = False  # the canvas is the next frame's starting point
        return view

    @property
    def label(self) -> Label | None:
        return self._label
