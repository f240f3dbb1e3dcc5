#!/usr/bin/env python3
"""Records the labelled corpus of desktop sessions the change-judgement model
is tuned on (tests/data/corpus/tuning) and checked on (tests/data/corpus/heldout).

    scripts/system-deps --recording            # the programs only recording needs (as root)
    .venv/bin/python scripts/record_corpus.py --split heldout
    .venv/bin/python scripts/record_corpus.py --split tuning
    .venv/bin/python scripts/record_corpus.py --split heldout --session h1-dark   # one session
    .venv/bin/python scripts/record_corpus.py --split heldout --session h1-dark --probe shot.png  # layout only
    .venv/bin/python scripts/record_corpus.py --split tuning --work corpus-work   # keep the raw frames and the log
    .venv/bin/python scripts/record_corpus.py --split tuning --work corpus-work --relabel  # label them again
    .venv/bin/python scripts/record_corpus.py --split heldout --summary  # tests/data/corpus/README.md, manifest.json

Record one session at a time on an otherwise quiet machine: the grabs keep
real time (4 fps), and capture times in the labels are the real grab times.
The held-out sessions were recorded and committed before the tuning ones.

Each session runs its own private Xvfb (1920x1080) with openbox as the window
manager and real programs: a shell in an xterm (commands with output, `less`
scrolled by line and by page), a text editor (mousepad, or vim in a second
xterm), chromium showing a local page (a textarea typed into, a scrolled text
box, a CSS spinner, an animated GIF and a progress bar that the page starts and
stops on its own schedule), mpv playing a small generated clip in a window
(started and stopped by the script), an analog and a digital xclock ticking
seconds, dunst notifications popping up and going, xmessage dialogs, and xlogo
windows opened, moved, resized and closed. xdotool drives them from a seeded
script; the mouse pointer is composited into the frames (XFixes, through
mss's with_cursor) and moved over empty desktop. Every session has its own
seed, window layout, fonts and colour theme (SESSIONS below); the held-out
sessions share none of them with the tuning sessions.

The screen is grabbed at 4 fps into a temporary raw file (about 7 GB a session;
nothing is encoded while grabbing); afterwards the frames
are encoded losslessly (libx264rgb -qp 0; the decode is checked byte-exact
against the grabbed frames) and labelled from what the script did and where
the animated things are, checked against the pixels (label_session): every
changed pixel of a frame must be explained by a cause whose region holds it (an
action's windows from when it was done until its effect has settled, an animated
region, a clock, the focused widget's caret, the pointer's old and new place);
an unexplained change makes the session fail. Per frame: index, t (capture
time, s from the first frame), label (meaningful / trivial / none), category
(the main cause) and causes (every category that changed in it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from xvfb import start_xvfb  # noqa: E402

W, H = 1920, 1080
FPS = 4.0
FRAME_BYTES = W * H * 4
TOOLS = ("Xvfb", "openbox", "xterm", "xclock", "xmessage", "xlogo", "xdotool", "xprop", "xwininfo", "xsetroot", "ffmpeg",
         "chromium", "mpv", "dunst", "notify-send", "dbus-daemon", "mousepad", "vim", "less")

MEANINGFUL = ("typed_char", "typed_space", "delete", "newline", "command_output", "scroll", "window_switch",
              "window_open", "window_close", "window_move", "window_resize", "dialog", "notification",
              "animation_start", "animation_stop", "progress_complete", "first_frame")
TRIVIAL = ("pointer_move", "caret_blink", "animation", "spinner", "clock_tick")  # a frame's category: its first cause
CATEGORIES = MEANINGFUL + TRIVIAL
TYPING = ("typed_char", "typed_space", "delete", "newline", "command_output")

NO_EFFECT_S = 2.0  # an action that shows nothing within this long did nothing
SETTLE_S = 1.0  # changes in an action's region this soon after its effect showed are still its own
POINTER_BOX = (-24, -24, 40, 40)  # around the hot spot: the largest cursor sprite in use

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass(frozen=True)
class Theme:
    name: str
    dark: bool
    root: str
    term_bg: str
    term_fg: str
    page_bg: str
    page_fg: str
    box_bg: str  # the textarea's and the text box's background
    accent: str
    openbox: str
    notify_bg: str
    notify_fg: str


@dataclass(frozen=True)
class Layout:
    """Where everything goes: client origins of the windows, sizes, and the
    empty desktop areas the transient windows and the pointer keep to."""
    shell: tuple[int, int, int, int]  # x, y, columns, rows
    editor: tuple[int, int, int, int]  # x, y, w, h (mousepad) or x, y, columns, rows (vim)
    browser: tuple[int, int, int, int]  # x, y, w, h
    aclock: tuple[int, int, int]  # x, y, size
    dclock: tuple[int, int]
    video: tuple[int, int]  # 320x240 at x, y
    transient: Rect  # xlogo windows and dialogs stay in here
    pointer: Rect  # the pointer wanders in here
    notify: str  # dunst's origin corner
    notify_box: Rect


@dataclass(frozen=True)
class Spec:
    name: str
    split: str
    seed: int
    theme: Theme
    term_font: tuple[str, ...]  # xterm font arguments
    editor: str  # "mousepad" or "vim"
    page_font: str
    layout: Layout
    frames: int = 840
    weights: tuple[tuple[str, float], ...] = ()  # episode weights changed from Script.choose's defaults


DARK_SLATE = Theme("dark slate", True, "#1c2026", "#101418", "#c8d0d8", "#20242a", "#d0d4d8", "#14181c", "#4a90d9",
                   "Onyx", "#2a3440", "#e0e6ee")
LIGHT_PAPER = Theme("light paper", False, "#c8c4b8", "#fbf8ef", "#2a2620", "#efeae0", "#2a2620", "#fffdf6", "#b05a20",
                    "Clearlooks", "#fff4d0", "#302810")
LIGHT_GREY = Theme("light grey", False, "#a8b0b8", "#ffffff", "#101010", "#f2f4f6", "#202428", "#ffffff", "#2a7a3a",
                   "Natura", "#e8f0ff", "#102040")
DARK_GREEN = Theme("dark green", True, "#0c140e", "#0e1a10", "#b8e0b8", "#142018", "#c0e0c0", "#0a140c", "#d0a030",
                   "Nightmare", "#203020", "#d0f0d0")
DARK_PLUM = Theme("dark plum", True, "#1a1020", "#140c18", "#e0d0e8", "#20142a", "#e0d4ea", "#170e1e", "#c060a0",
                  "Mikachu", "#2c1c34", "#f0e0f4")
DARK_NAVY = Theme("dark navy", True, "#0a1230", "#0c1428", "#d8e4f8", "#101a34", "#dce6fa", "#0e1830", "#40c0c0",
                  "Bear2", "#1a2850", "#e4ecff")
LIGHT_MINT = Theme("light mint", False, "#9cc4b0", "#f4fbf6", "#18281e", "#e6f4ec", "#1a2a20", "#fafffb", "#a03060",
                   "Orang", "#f0fff4", "#183020")
DARK_AMBER = Theme("dark amber", True, "#1e1408", "#181008", "#f0d8a8", "#221a10", "#f0dcb4", "#1a1208", "#e08020",
                   "Syscrash", "#302010", "#f8e8c8")
LIGHT_SKY = Theme("light sky", False, "#8fb0d8", "#f6f9ff", "#102030", "#eef4fc", "#14202c", "#ffffff", "#3050c0",
                  "Clearlooks-Olive", "#e4eeff", "#0c1830")
LIGHT_ROSE = Theme("light rose", False, "#d8b8c0", "#fff8f8", "#301820", "#fbeef0", "#341c24", "#ffffff", "#b03040",
                   "Onyx-Citrus", "#fff0f2", "#3a1a22")
DARK_TEAL = Theme("dark teal", True, "#08181a", "#0a1c1e", "#c0e8e4", "#10262a", "#c8ecea", "#0c1e20", "#e06040",
                  "Artwiz-boxed", "#163034", "#d8f4f0")
LIGHT_SAND = Theme("light sand", False, "#c8b890", "#fffcf0", "#302810", "#f6efdc", "#2c2410", "#fffef8", "#6040b0",
                   "Raleigh", "#fff8e0", "#28200c")
DARK_GRAPHITE = Theme("dark graphite", True, "#202020", "#1a1a1a", "#e8e8e8", "#242424", "#e4e4e4", "#161616",
                      "#60b040", "Breeze-ob", "#303030", "#f0f0f0")
LIGHT_LILAC = Theme("light lilac", False, "#b8b0d0", "#fbf9ff", "#201830", "#f1eef8", "#221a30", "#ffffff", "#a05010",
                    "Clearlooks-3.4", "#f4f0ff", "#241c34")
DARK_EMBER = Theme("dark ember", True, "#200c0a", "#1a0a08", "#f0c8b8", "#261210", "#f2ccbc", "#1c0b09", "#40a0e0",
                   "Nightmare-02", "#341a16", "#f8dcd0")
LIGHT_ICE = Theme("light ice", False, "#a0c0c8", "#f6fcfe", "#102028", "#e8f4f8", "#10242c", "#ffffff", "#c03080",
                  "Emacs", "#eaf8fc", "#0c2028")

LAYOUT_A = Layout(shell=(12, 30, 82, 25), editor=(12, 560, 760, 420), browser=(810, 30, 680, 520),
                  aclock=(1530, 30, 150), dclock=(1730, 30), video=(1550, 250),
                  transient=(800, 590, 1480, 1070), pointer=(1520, 540, 1900, 800),
                  notify="bottom-right", notify_box=(1480, 830, 1920, 1080))
LAYOUT_B = Layout(shell=(1100, 30, 80, 26), editor=(1100, 500, 80, 24), browser=(20, 30, 700, 560),
                  aclock=(30, 660, 160), dclock=(30, 880), video=(270, 650),
                  transient=(745, 30, 1080, 640), pointer=(620, 700, 1070, 1070),
                  notify="bottom-right", notify_box=(1460, 920, 1920, 1080))
LAYOUT_C = Layout(shell=(1060, 560, 96, 20), editor=(1060, 30, 96, 24), browser=(440, 470, 580, 560),
                  aclock=(20, 20, 130), dclock=(180, 40), video=(20, 200),
                  transient=(380, 20, 1020, 440), pointer=(20, 500, 410, 1060),
                  notify="bottom-right", notify_box=(1580, 950, 1920, 1080))
LAYOUT_D = Layout(shell=(40, 560, 84, 22), editor=(40, 30, 760, 470), browser=(1200, 480, 700, 560),
                  aclock=(1740, 30, 140), dclock=(1520, 40), video=(1200, 200),
                  transient=(840, 20, 1180, 460), pointer=(840, 560, 1180, 1060),
                  notify="bottom-left", notify_box=(0, 920, 420, 1080))
LAYOUT_E = Layout(shell=(20, 620, 70, 20), editor=(20, 30, 700, 480), browser=(760, 30, 640, 560),
                  aclock=(1450, 30, 180), dclock=(1680, 40), video=(1460, 300),
                  transient=(760, 650, 1400, 1070), pointer=(1440, 620, 1900, 880),
                  notify="bottom-right", notify_box=(1460, 900, 1920, 1080))
LAYOUT_F = Layout(shell=(700, 590, 86, 20), editor=(700, 30, 84, 22), browser=(20, 420, 620, 560),
                  aclock=(20, 40, 150), dclock=(200, 50), video=(320, 110),
                  transient=(1500, 190, 1910, 700), pointer=(1500, 720, 1910, 1070),
                  notify="top-right", notify_box=(1480, 0, 1920, 180))
LAYOUT_G = Layout(shell=(30, 40, 64, 18), editor=(30, 560, 720, 400), browser=(1220, 30, 660, 520),
                  aclock=(1240, 620, 170), dclock=(1440, 640), video=(1560, 620),
                  transient=(820, 30, 1200, 520), pointer=(820, 560, 1200, 1060),
                  notify="bottom-right", notify_box=(1460, 900, 1920, 1080))
LAYOUT_H = Layout(shell=(1160, 700, 90, 24), editor=(700, 330, 84, 22), browser=(20, 215, 640, 540),
                  aclock=(1050, 30, 150), dclock=(1220, 50), video=(700, 30),
                  transient=(1420, 20, 1910, 660), pointer=(20, 800, 1120, 1070),
                  notify="top-left", notify_box=(0, 0, 440, 180))
LAYOUT_J = Layout(shell=(980, 680, 100, 16), editor=(20, 570, 900, 470), browser=(20, 30, 640, 480),
                  aclock=(1810, 700, 100), dclock=(1810, 850), video=(700, 40),
                  transient=(1060, 20, 1900, 390), pointer=(700, 300, 960, 530),
                  notify="right-center", notify_box=(1480, 430, 1920, 650))
LAYOUT_I = Layout(shell=(1220, 30, 74, 20), editor=(20, 30, 700, 460), browser=(1240, 440, 660, 540),
                  aclock=(760, 300, 160), dclock=(940, 320), video=(760, 30),
                  transient=(20, 540, 720, 880), pointer=(760, 500, 1200, 880),
                  notify="bottom-center", notify_box=(700, 900, 1220, 1080))
LAYOUT_K = Layout(shell=(40, 40, 78, 22), editor=(40, 520, 84, 22), browser=(1200, 500, 680, 540),
                  aclock=(1720, 40, 160), dclock=(1500, 60), video=(880, 40),
                  transient=(880, 320, 1160, 1060), pointer=(1220, 250, 1900, 470),
                  notify="bottom-left", notify_box=(0, 930, 420, 1080))
LAYOUT_L = Layout(shell=(1000, 40, 100, 18), editor=(1000, 470, 880, 400), browser=(40, 590, 620, 450),
                  aclock=(40, 40, 140), dclock=(220, 60), video=(400, 40),
                  transient=(20, 300, 960, 560), pointer=(700, 580, 980, 1060),
                  notify="bottom-right", notify_box=(1460, 900, 1920, 1080))
LAYOUT_M = Layout(shell=(520, 40, 64, 22), editor=(20, 560, 640, 480), browser=(1240, 40, 660, 520),
                  aclock=(40, 40, 150), dclock=(220, 60), video=(40, 260),
                  transient=(700, 580, 1400, 880), pointer=(1420, 620, 1900, 880),
                  notify="bottom-center", notify_box=(700, 900, 1220, 1080))
LAYOUT_N = Layout(shell=(40, 470, 96, 22), editor=(40, 40, 90, 28), browser=(1220, 40, 660, 540),
                  aclock=(1720, 620, 150), dclock=(1720, 800), video=(1300, 620),
                  transient=(760, 40, 1180, 560), pointer=(40, 820, 700, 1060),
                  notify="bottom-right", notify_box=(1460, 900, 1920, 1080))
LAYOUT_O = Layout(shell=(1080, 40, 96, 20), editor=(1080, 460, 780, 420), browser=(40, 40, 660, 520),
                  aclock=(40, 640, 160), dclock=(220, 660), video=(420, 620),
                  transient=(740, 40, 1040, 600), pointer=(760, 640, 1040, 1060),
                  notify="bottom-left", notify_box=(0, 920, 420, 1080))
LAYOUT_P = Layout(shell=(630, 40, 100, 30), editor=(630, 420, 600, 420), browser=(1260, 40, 640, 580),
                  aclock=(1720, 680, 150), dclock=(1500, 690), video=(40, 40),
                  transient=(40, 320, 590, 860), pointer=(40, 900, 1240, 1060),
                  notify="bottom-right", notify_box=(1460, 900, 1920, 1080))

SESSIONS = (
    Spec("h1-dark", "heldout", 101, DARK_SLATE, ("-fa", "DejaVu Sans Mono", "-fs", "11"), "mousepad", "DejaVu Sans", LAYOUT_A),
    Spec("h2-light", "heldout", 202, LIGHT_PAPER, ("-fn", "9x15"), "vim", "DejaVu Serif", LAYOUT_B,
         weights=(("shell_command", 3.0), ("pointer_wander", 3.0), ("notification", 3.5))),
    Spec("h3-plum", "heldout", 505, DARK_PLUM, ("-fn", "10x20"), "mousepad", "DejaVu Sans Condensed", LAYOUT_E,
         weights=(("dialog", 4.0), ("notification", 4.0), ("editor_typing", 2.5), ("textarea_typing", 2.5),
                  ("window_ops", 1.5), ("shell_command", 1.0), ("shell_less", 0.5), ("idle", 2.5))),
    # Recorded after the model had been scored once on h1-h3: held out for the model's next changes.
    Spec("h4-navy", "heldout", 808, DARK_NAVY, ("-fa", "Nimbus Mono PS", "-fs", "11"), "vim", "Nimbus Sans", LAYOUT_F,
         weights=(("textarea_typing", 2.5), ("shell_less", 2.0), ("window_ops", 2.0), ("pointer_wander", 2.0))),
    Spec("h5-mint", "heldout", 909, LIGHT_MINT, ("-fn", "12x24"), "mousepad", "URW Gothic", LAYOUT_G,
         weights=(("shell_command", 2.0), ("editor_typing", 2.5), ("dialog", 2.0), ("notification", 2.5),
                  ("idle", 1.5))),
    # Recorded after the model had been scored once on h4-h5: held out for the model's next changes.
    Spec("h6-amber", "heldout", 1111, DARK_AMBER, ("-fn", "8x13"), "vim", "URW Bookman", LAYOUT_H,
         weights=(("editor_typing", 2.5), ("shell_command", 2.0), ("notification", 2.5), ("pointer_wander", 2.0))),
    Spec("h7-sky", "heldout", 1313, LIGHT_SKY, ("-fn", "9x15bold"), "mousepad", "Nimbus Sans Narrow", LAYOUT_I,
         weights=(("textarea_typing", 2.5), ("window_ops", 2.0), ("dialog", 2.5), ("shell_less", 1.5),
                  ("idle", 1.5))),
    Spec("h8-rose", "heldout", 1717, LIGHT_ROSE, ("-fa", "Liberation Mono:bold", "-fs", "9"), "mousepad", "C059",
         LAYOUT_J, weights=(("window_ops", 5.0), ("pointer_wander", 2.0), ("notification", 2.0), ("idle", 2.0))),
    # Recorded after the model had been scored once on h6-h8: held out for the model's next changes.
    Spec("h9-teal", "heldout", 2121, DARK_TEAL, ("-fa", "DejaVu Sans Mono:bold", "-fs", "10"), "vim", "P052", LAYOUT_K,
         weights=(("editor_typing", 2.5), ("textarea_typing", 2.0), ("shell_less", 2.0), ("notification", 2.0))),
    Spec("h10-sand", "heldout", 2323, LIGHT_SAND, ("-fn", "6x13"), "mousepad", "Nimbus Roman", LAYOUT_L,
         weights=(("shell_command", 2.5), ("window_ops", 3.0), ("dialog", 2.5), ("pointer_wander", 2.5))),
    Spec("h11-graphite", "heldout", 2525, DARK_GRAPHITE, ("-fa", "Nimbus Mono PS:bold", "-fs", "12"), "mousepad",
         "Z003", LAYOUT_M, weights=(("textarea_typing", 2.5), ("notification", 2.5), ("idle", 2.0),
                                    ("shell_less", 1.5))),
    # Recorded after the model had been scored once on h9-h11: held out for the model's next changes.
    Spec("h12-lilac", "heldout", 2929, LIGHT_LILAC, ("-fn", "7x13"), "vim", "DejaVu Serif Condensed", LAYOUT_N,
         weights=(("shell_less", 2.5), ("editor_typing", 2.0), ("window_ops", 2.0), ("idle", 1.5))),
    Spec("h13-ember", "heldout", 3131, DARK_EMBER, ("-fa", "Liberation Mono:italic", "-fs", "10"), "mousepad",
         "DejaVu Sans Light", LAYOUT_O, weights=(("textarea_typing", 2.5), ("dialog", 2.5), ("pointer_wander", 2.5),
                                                  ("notification", 2.0))),
    Spec("h14-ice", "heldout", 3737, LIGHT_ICE, ("-fn", "6x10"), "mousepad", "DejaVu Math TeX Gyre", LAYOUT_P,
         weights=(("shell_command", 2.5), ("window_ops", 3.0), ("editor_typing", 2.0), ("notification", 2.5))),
    Spec("t1-light", "tuning", 303, LIGHT_GREY, ("-fa", "Liberation Mono", "-fs", "10"), "vim", "Liberation Sans", LAYOUT_C,
         weights=(("shell_command", 2.5), ("editor_typing", 2.0), ("dialog", 2.5), ("notification", 3.0),
                  ("pointer_wander", 2.5))),
    Spec("t2-dark", "tuning", 404, DARK_GREEN, ("-fn", "7x14"), "mousepad", "Liberation Serif", LAYOUT_D,
         weights=(("window_ops", 3.0), ("notification", 3.0), ("pointer_wander", 2.5), ("idle", 2.0))),
)

WORDS = ("screen", "frame", "monitor", "tile", "clock", "hello", "notes", "change", "build", "jarvis", "pixel",
         "queue", "stage", "ring", "hash", "delta", "window", "focus", "ok", "done", "todo", "fix", "test", "run")
COMMANDS = ("ls /etc/X11", "seq 4", "echo build ok", "uname -s", "id -un", "pwd", "printf 'a b\\n'",
            "head -3 notes.txt", "wc -l notes.txt", "date +%Y", "ls", "echo one two")
MESSAGES = ("Saved.", "Build finished", "3 new messages", "Update ready", "Disk almost full", "Backup done")
NOTES = (("Build finished", "all tests passed"), ("New message", "lunch at noon?"), ("Battery", "20% left"),
         ("Calendar", "standup in 5 min"), ("Download", "clip.mkv saved"), ("Update", "2 packages"))
TYPOS = "qxzjkvw"


def rect_union(*rects: Rect | None) -> list[Rect]:
    return [r for r in rects if r is not None]


def clip(r: Rect) -> Rect:
    return max(0, r[0]), max(0, r[1]), min(W, r[2]), min(H, r[3])


def overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def pointer_box(p: tuple[int, int]) -> Rect:
    return clip((p[0] + POINTER_BOX[0], p[1] + POINTER_BOX[1], p[0] + POINTER_BOX[2], p[1] + POINTER_BOX[3]))


# ---------------------------------------------------------------------------------------------------------------------
# The generated media and page


def make_media(tmp: Path, spec: Spec, rng: random.Random) -> None:
    t = spec.theme
    bg, box = ("0x203040", "0xe0a030") if t.dark else ("0xd8e0e8", "0x3060a0")
    speed = rng.choice((60, 80, 100))
    # a box moving over a flat background: a 4 s loop at 10 fps (320x240), and an 8-frame GIF (64x64)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={bg}:s=320x240:r=10:d=4",
                    "-f", "lavfi", "-i", f"color=c={box}:s=40x40:r=10:d=4",
                    "-filter_complex", f"[0][1]overlay=x='mod(t*{speed},280)':y='100+40*sin(t*3)'",
                    "-c:v", "libx264rgb", "-qp", "0", str(tmp / "clip.mkv")], check=True)
    gif_bg, gif_box = t.page_bg.replace("#", "0x"), t.accent.replace("#", "0x")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={gif_bg}:s=64x64:r=8:d=1",
                    "-f", "lavfi", "-i", f"color=c={gif_box}:s=16x16:r=8:d=1", "-filter_complex",
                    "[0][1]overlay=x='mod(n*8,48)':y=24,split[a][b];[a]palettegen=reserve_transparent=0[p];[b][p]paletteuse",
                    "-loop", "0", str(tmp / "anim.gif")], check=True)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) for _ in range(300)]
    (tmp / "notes.txt").write_text("\n".join(f"{i + 1:3d} {line}" for i, line in enumerate(lines)) + "\n")


# Page coordinates (CSS px from the viewport's top left) of the page's parts.
PAGE_TEXTAREA = (16, 16, 400, 190)
PAGE_DOC = (16, 230, 400, 200)
PAGE_SPIN = (450, 20, 32, 32)
PAGE_GIF = (450, 80, 64, 64)
PAGE_PROGRESS = (450, 170, 110, 40)  # the bar, and the word "done" under it when complete

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Notes</title><style>
:root{{color-scheme:{scheme}}}
html,body{{margin:0;background:{bg};color:{fg};font:14px "{font}";overflow:hidden}}
#mark{{position:absolute;left:0;top:0;width:4px;height:4px;background:#ff00ff}}
#ta{{position:absolute;left:{ta[0]}px;top:{ta[1]}px;width:{ta[2]}px;height:{ta[3]}px;box-sizing:border-box;
 font:15px "{font}";border:1px solid {accent};background:{box};color:{fg};caret-color:{fg};resize:none;outline:none;margin:0}}
#doc{{position:absolute;left:{doc[0]}px;top:{doc[1]}px;width:{doc[2]}px;height:{doc[3]}px;box-sizing:border-box;
 overflow-y:scroll;border:1px solid {accent};background:{box};padding:4px;margin:0}}
#doc p{{margin:0 0 6px 0}}
#spin{{position:absolute;left:{sp[0]}px;top:{sp[1]}px;width:{sp[2]}px;height:{sp[3]}px;visibility:hidden}}
#spin div{{width:100%;height:100%;background:conic-gradient({accent} 0 25%,transparent 0 100%);border-radius:50%;
 animation:r 1s steps(8) infinite}}
@keyframes r{{to{{transform:rotate(360deg)}}}}
#gif{{position:absolute;left:{gif[0]}px;top:{gif[1]}px;width:{gif[2]}px;height:{gif[3]}px;visibility:hidden}}
#prog{{position:absolute;left:{pr[0]}px;top:{pr[1]}px;width:{pr[2]}px;height:14px;box-sizing:border-box;
border:1px solid {accent}}}
#bar{{height:100%;width:0;background:{accent}}}
#bar.done{{background:#10a010}}
#done{{position:absolute;left:{pr[0]}px;top:{done_top}px;color:#10a010;font:bold 14px "{font}";visibility:hidden}}
</style></head><body><div id="mark"></div>
<textarea id="ta" spellcheck="false"></textarea>
<div id="doc">{paragraphs}</div>
<div id="spin"><div></div></div><img id="gif" src="anim.gif"><div id="prog"><div id="bar"></div></div><div id="done">done</div>
<script>
document.getElementById('ta').focus();
const t0 = performance.now();
function cycle(el, on, off, delay) {{
  const show = () => {{ el.style.visibility = 'visible'; setTimeout(hide, on); }};
  const hide = () => {{ el.style.visibility = 'hidden'; setTimeout(show, off); }};
  setTimeout(show, delay);
}}
cycle(document.getElementById('spin'), {spin_on}, {spin_off}, {spin_delay});
cycle(document.getElementById('gif'), {gif_on}, {gif_off}, {gif_delay});
const bar = document.getElementById('bar'), done = document.getElementById('done');
let pct = 0;
function progress() {{
  if (pct >= 100) {{ pct = 0; bar.className = ''; done.style.visibility = 'hidden'; bar.style.width = '0%';
    setTimeout(progress, {step}); return; }}
  pct = Math.min(100, pct + {inc});
  bar.style.width = pct + '%';
  if (pct >= 100) {{ bar.className = 'done'; done.style.visibility = 'visible'; setTimeout(progress, {hold}); }}
  else setTimeout(progress, {step});
}}
setTimeout(progress, {prog_delay});
</script></body></html>
"""


def make_page(tmp: Path, spec: Spec, rng: random.Random) -> Path:
    t = spec.theme
    paragraphs = "\n".join("<p>" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 50))) + "</p>"
                           for _ in range(30))
    page = tmp / "page.html"
    page.write_text(PAGE.format(
        scheme="dark" if t.dark else "light", bg=t.page_bg, fg=t.page_fg, box=t.box_bg, accent=t.accent,
        font=spec.page_font, ta=PAGE_TEXTAREA, doc=PAGE_DOC, sp=PAGE_SPIN, gif=PAGE_GIF, pr=PAGE_PROGRESS,
        done_top=PAGE_PROGRESS[1] + 20, paragraphs=paragraphs,
        # the page's own schedule (ms): spinner and GIF shown and hidden, a progress bar filling then done
        spin_on=rng.randint(3000, 6000), spin_off=rng.randint(4000, 8000), spin_delay=rng.randint(4000, 9000),
        gif_on=rng.randint(3000, 6000), gif_off=rng.randint(4000, 8000), gif_delay=rng.randint(6000, 12000),
        step=rng.choice((300, 350, 400)), inc=rng.choice((5, 8, 10)), hold=rng.randint(2500, 4000),
        prog_delay=rng.randint(3000, 8000),
    ))
    return page


# ---------------------------------------------------------------------------------------------------------------------
# The desktop


@dataclass
class Win:
    wid: str
    client: Rect
    extents: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom

    @property
    def frame(self) -> Rect:
        x0, y0, x1, y1 = self.client
        left, right, top, bottom = self.extents
        return clip((x0 - left - 2, y0 - top - 2, x1 + right + 2, y1 + bottom + 2))


class Desktop:
    def __init__(self, tmp: Path, spec: Spec, rng: random.Random) -> None:
        self.tmp, self.spec, self.rng = tmp, spec, rng
        self.procs: list[subprocess.Popen[bytes]] = []
        self.xvfb, self.display = start_xvfb(f"{W}x{H}x24")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS", "XDG_", "GTK", "WAYLAND"))}
        home = tmp / "home"
        home.mkdir()
        self.env.update(DISPLAY=self.display, HOME=str(home), XDG_RUNTIME_DIR=str(tmp), XDG_CONFIG_HOME=str(home / ".config"),
                        NO_AT_BRIDGE="1", GSETTINGS_BACKEND="memory", PS1="$ ", LC_ALL="C.UTF-8", TERM="xterm")
        self.dbus_pid: str | None = None
        self.windows: dict[str, Win] = {}
        self.dialog: subprocess.Popen[bytes] | None = None
        self.logos: list[tuple[subprocess.Popen[bytes], Win]] = []
        self.mpv_sock = tmp / "mpv.sock"

    # -- processes

    def spawn(self, argv: list[str], extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env={**self.env, **(extra_env or {})}, cwd=cwd or self.tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, *argv: str, check: bool = True) -> str:
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def xdo(self, *args: str, check: bool = True) -> str:
        return self.run("xdotool", *args, check=check)

    def search(self, *args: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdo("search", "--onlyvisible", *args, check=False).split()
            if found:
                return found[-1]
            time.sleep(0.1)  # polling for a window to be mapped; no event to wait on from here
        raise RuntimeError(f"no window {args} appeared on {self.display}")

    def geometry(self, wid: str) -> Win:
        out = self.run("xwininfo", "-id", wid)
        g = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
        x, y = int(g["Absolute upper-left X"]), int(g["Absolute upper-left Y"])
        w, h = int(g["Width"]), int(g["Height"])
        ext = self.run("xprop", "-id", wid, "_NET_FRAME_EXTENTS", check=False)
        extents = (0, 0, 0, 0)
        if "=" in ext:
            left, right, top, bottom = (int(v) for v in ext.split("=", 1)[1].split(","))
            extents = (left, right, top, bottom)
        return Win(wid, (x, y, x + w, y + h), extents)

    def refresh(self, name: str) -> Win:
        self.windows[name] = self.geometry(self.windows[name].wid)
        return self.windows[name]

    # -- setup

    def start(self) -> None:
        spec, t, lay, tmp = self.spec, self.spec.theme, self.spec.layout, self.tmp
        out = self.run("dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1").split()
        self.env["DBUS_SESSION_BUS_ADDRESS"], self.dbus_pid = out[0], out[1]
        self.run("xsetroot", "-solid", t.root, "-cursor_name", "left_ptr")
        rc = Path("/etc/xdg/openbox/rc.xml").read_text()
        rc = rc.replace("<name>Clearlooks</name>", f"<name>{t.openbox}</name>", 1)
        (tmp / "rc.xml").write_text(rc)
        self.spawn(["openbox", "--config-file", str(tmp / "rc.xml")])
        time.sleep(1.0)  # openbox takes the screen before any window maps
        dunstrc = tmp / "dunstrc"
        dunstrc.write_text(DUNSTRC.format(origin=lay.notify, font=spec.page_font, bg=t.notify_bg, fg=t.notify_fg,
                                          frame=t.accent))
        self.spawn(["dunst", "-config", str(dunstrc)])
        colours = ["-bg", t.term_bg, "-fg", t.term_fg, "-cr", t.term_fg]
        x, y, cols, rows = lay.shell
        self.spawn(["xterm", "-bc", "-name", "shell", "-title", "shell", *spec.term_font, *colours,
                    "-geometry", f"{cols}x{rows}+{x}+{y}", "-sl", "1000", "-e", "bash", "--norc", "--noprofile"])
        self.windows["shell"] = Win(self.search("--classname", "shell"), (0, 0, 0, 0))
        if spec.editor == "vim":
            x, y, cols, rows = lay.editor
            self.spawn(["xterm", "-bc", "-name", "editor", "-title", "editor", *spec.term_font, *colours,
                        "-geometry", f"{cols}x{rows}+{x}+{y}", "-e", "vim", "-u", "NONE", "-N", "-n",
                        "-c", "set backspace=indent,eol,start noswapfile", "-c", "startinsert", "draft.txt"])
            self.windows["editor"] = Win(self.search("--classname", "editor"), (0, 0, 0, 0))
        else:
            gtk = "Adwaita:dark" if t.dark else "Adwaita"
            self.spawn(["mousepad", "--disable-server"], {"GTK_THEME": gtk})
            wid = self.search("--class", "Mousepad")
            x, y, w, h = lay.editor
            time.sleep(1.0)
            self.xdo("windowsize", "--sync", wid, str(w), str(h))
            self.xdo("windowmove", "--sync", wid, str(x), str(y))
            self.windows["editor"] = Win(wid, (0, 0, 0, 0))
        x, y, w, h = lay.browser
        self.spawn(["chromium", "--no-sandbox", "--test-type", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                    f"--user-data-dir={tmp / 'chromium'}", "--disable-features=Translate,MediaRouter,OptimizationHints",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--password-store=basic", "--disable-smooth-scrolling", "--force-device-scale-factor=1",
                    "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                    *(["--force-dark-mode"] if t.dark else []),
                    f"--app=file://{tmp / 'page.html'}", f"--window-position={x},{y}", f"--window-size={w},{h}"])
        self.windows["browser"] = Win(self.search("--name", "^Notes$"), (0, 0, 0, 0))
        x, y, size = lay.aclock
        fgbg = ["-bg", t.page_bg, "-fg", t.page_fg, "-hd", t.page_fg, "-hl", t.accent]
        self.spawn(["xclock", "-name", "aclock", "-update", "1", *fgbg, "-geometry", f"{size}x{size}+{x}+{y}"])
        self.windows["aclock"] = Win(self.search("--classname", "aclock"), (0, 0, 0, 0))
        x, y = lay.dclock
        self.spawn(["xclock", "-name", "dclock", "-digital", "-update", "1", "-strftime", "%H:%M:%S", *fgbg,
                    "-geometry", f"+{x}+{y}"])
        self.windows["dclock"] = Win(self.search("--classname", "dclock"), (0, 0, 0, 0))
        x, y = lay.video
        self.spawn(["mpv", "--no-config", "--idle=yes", "--force-window=yes", "--no-osc", "--osd-level=0",
                    "--vo=x11", "--hwdec=no", "--no-audio", "--title=video", "--loop-file=inf", "--keep-open=no",
                    "--background=#000000", f"--geometry=320x240+{x}+{y}", "--no-input-default-bindings",
                    f"--input-ipc-server={self.mpv_sock}"])
        self.windows["video"] = Win(self.search("--name", "^video$"), (0, 0, 0, 0))
        for name in list(self.windows):
            self.refresh(name)
        self.activate("shell")
        self.xdo("type", "--delay", "0", "seq 60\n")  # a history to scroll back in

    def activate(self, name: str) -> None:
        self.xdo("windowactivate", "--sync", self.windows[name].wid, check=False)

    def mpv(self, *command: str) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.mpv_sock))
            s.sendall(json.dumps({"command": list(command)}).encode() + b"\n")

    def notify(self, title: str, body: str, ms: int) -> None:
        self.run("notify-send", "-t", str(ms), title, body)

    def open_dialog(self, text: str, at: tuple[int, int]) -> None:
        t = self.spec.theme
        self.dialog = subprocess.Popen(
            ["xmessage", "-geometry", f"+{at[0]}+{at[1]}", "-bg", t.page_bg, "-fg", t.page_fg, "-buttons", "OK", text],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close_dialog(self) -> None:
        assert self.dialog is not None
        self.dialog.terminate()
        self.dialog.wait()
        self.dialog = None

    def open_logo(self, rect: Rect) -> Win:
        t = self.spec.theme
        x0, y0, x1, y1 = rect
        self.logo_count = getattr(self, "logo_count", 0) + 1
        name = f"logo{self.logo_count}"
        proc = subprocess.Popen(["xlogo", "-name", name, "-bg", t.page_bg, "-fg", t.accent,
                                 "-geometry", f"{x1 - x0}x{y1 - y0}+{x0}+{y0}"],
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        win = self.geometry(self.search("--classname", f"^{name}$", timeout=10))
        self.logos.append((proc, win))
        return win

    def close(self) -> None:
        if self.dialog is not None:
            self.close_dialog()
        for proc, _ in self.logos:
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        for proc in [*self.procs, *(p for p, _ in self.logos)]:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        if self.dbus_pid:
            subprocess.run(["kill", self.dbus_pid], check=False)
        self.xvfb.terminate()
        self.xvfb.wait()


DUNSTRC = """[global]
    origin = {origin}
    offset = 12x12
    width = 300
    height = 100
    font = {font} 10
    frame_width = 2
    frame_color = "{frame}"
    show_age_threshold = -1
    idle_threshold = 0
    sticky_history = no
    icon_position = off
    format = "<b>%s</b>\\n%b"
[urgency_low]
    background = "{bg}"
    foreground = "{fg}"
[urgency_normal]
    background = "{bg}"
    foreground = "{fg}"
[urgency_critical]
    background = "{bg}"
    foreground = "{fg}"
"""


# ---------------------------------------------------------------------------------------------------------------------
# The script: what is done, frame by frame


@dataclass
class Act:
    kind: str
    do: Callable[[], object]
    region: Callable[[], list[Rect]]  # where its effect may show, computed when it is done
    widget: str | None = None  # the text widget typed into


Step = Act | None  # None: an idle frame


class Script:
    def __init__(self, desk: Desktop, rng: random.Random, frames: int) -> None:
        self.d, self.rng, self.frames = desk, rng, frames
        self.focused = "shell"
        self.shell_mode = "prompt"
        self.pointer = (0, 0)
        self.notify_until = 0.0
        self.video_on, self.video_next = False, 0.0
        self.counts: Counter[str] = Counter()
        self.episode: Iterator[Step] | None = None
        self.textarea_len = 0
        self.timed: list[dict[str, Any]] = []  # expected effects not done by the script at a frame (a notification going)

    # regions

    def frame_of(self, *names: str | None) -> list[Rect]:
        return [self.d.windows[n].frame for n in names if n is not None and n in self.d.windows]

    def text_frames(self) -> list[Rect]:
        return self.frame_of("shell", "editor", "browser")

    def focus_frames(self) -> list[Rect]:
        rects = self.text_frames()
        rects += [w.frame for _, w in self.d.logos]
        return rects

    # the episodes

    def next(self, now: float) -> Step:
        if self.episode is not None:
            try:
                return next(self.episode)
            except StopIteration:
                self.episode = None
        self.episode = self.choose(now)
        return None

    def choose(self, now: float) -> Iterator[Step]:
        rng = self.rng
        options: list[tuple[float, Callable[[], Iterator[Step]]]] = [
            (2.0, self.shell_command), (1.0, self.shell_less), (0.8, self.wheel_shell), (1.5, self.editor_typing),
            (1.5, self.textarea_typing), (0.8, self.doc_scroll), (1.2, self.ab_switch), (4.0, self.window_ops),
            (2.0, self.dialog), (1.2, self.pointer_wander), (1.2, self.idle),
        ]
        if now >= self.notify_until:
            options.append((2.5, self.notification))
        weights = dict(self.d.spec.weights)
        options = [(weights.get(make.__name__, w), make) for w, make in options]
        total = sum(w for w, _ in options)
        pick = rng.uniform(0, total)
        for weight, make in options:
            pick -= weight
            if pick <= 0:
                return make()
        return self.idle()

    def idle(self) -> Iterator[Step]:
        for _ in range(self.rng.choice((2, 3, 5, 8, 12, 20))):
            yield None

    def pause(self) -> Iterator[Step]:
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            yield None

    def switch(self, name: str) -> Act:
        before = self.focused

        def do() -> None:
            self.d.activate(name)
            self.focused = name
        return Act("window_switch", do, lambda: self.frame_of(before, name) + [w.frame for _, w in self.d.logos])

    def ensure(self, name: str) -> Iterator[Step]:
        if self.focused != name:
            yield self.switch(name)
            yield from self.pause()

    def key(self, kind: str, widget: str, *keys: str) -> Act:
        return Act(kind, lambda: self.d.xdo("key", "--delay", "30", *keys), lambda: self.frame_of(widget), widget)

    def typed(self, widget: str, char: str) -> Act:
        kind = "typed_space" if char == " " else "typed_char"
        return Act(kind, lambda: self.d.xdo("type", "--delay", "0", char), lambda: self.frame_of(widget), widget)

    def type_text(self, widget: str, text: str) -> Iterator[Step]:
        rng = self.rng
        for char in text:
            if char != " " and rng.random() < 0.12:
                yield self.typed(widget, rng.choice([c for c in TYPOS if c != char]))
                yield from self.pause()
                yield self.key("delete", widget, "BackSpace")
            yield self.typed(widget, char)
            if rng.random() < 0.35:
                yield from self.pause()

    def shell_command(self) -> Iterator[Step]:
        if self.shell_mode != "prompt":
            return
        yield from self.ensure("shell")
        yield from self.type_text("shell", self.rng.choice(COMMANDS))
        yield from self.pause()
        yield self.key("command_output", "shell", "Return")

    def shell_less(self) -> Iterator[Step]:
        yield from self.ensure("shell")
        yield from self.type_text("shell", "less notes.txt")
        yield self.key("command_output", "shell", "Return")
        self.shell_mode = "less"
        for _ in range(self.rng.randint(4, 8)):
            yield from self.pause()
            yield self.key("scroll", "shell", self.rng.choice(("j", "j", "Down", "space", "b", "k", "f")))
        yield from self.pause()
        yield self.key("command_output", "shell", "q")
        self.shell_mode = "prompt"

    def wheel(self, widget: str, at: tuple[int, int], buttons: list[str]) -> Iterator[Step]:
        for button in buttons:
            def do(button: str = button) -> None:
                self.move_pointer(at)
                self.d.xdo("click", button)
            old = self.pointer
            yield Act("scroll", do, lambda old=old: self.frame_of(widget) + [pointer_box(old), pointer_box(at)])
            yield from self.pause()

    def wheel_shell(self) -> Iterator[Step]:
        if self.shell_mode != "prompt":
            return
        n = self.rng.randint(1, 3)
        x0, y0, x1, y1 = self.d.windows["shell"].client
        at = (self.rng.randint(x0 + 40, x1 - 40), self.rng.randint(y0 + 40, y1 - 40))
        yield from self.wheel("shell", at, ["4"] * n + ["5"] * n)

    def doc_scroll(self) -> Iterator[Step]:
        n = self.rng.randint(2, 4)
        ox, oy = self.viewport
        at = (ox + PAGE_DOC[0] + PAGE_DOC[2] // 2 + self.rng.randint(-60, 60), oy + PAGE_DOC[1] + PAGE_DOC[3] // 2)
        yield from self.wheel("browser", at, ["5"] * n + ["4"] * self.rng.randint(0, n))

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n))

    def editor_typing(self) -> Iterator[Step]:
        yield from self.ensure("editor")
        for _ in range(self.rng.randint(1, 2)):
            yield from self.type_text("editor", self.words(self.rng.randint(1, 3)))
            yield from self.pause()
            yield self.key("newline", "editor", "Return")

    def textarea_typing(self) -> Iterator[Step]:
        yield from self.ensure("browser")
        if self.textarea_len > 120:
            yield self.key("delete", "browser", "ctrl+a", "BackSpace")
            self.textarea_len = 0
            yield from self.pause()
        text = self.words(self.rng.randint(1, 3))
        yield from self.type_text("browser", text)
        yield from self.pause()
        yield self.key("newline", "browser", "Return")
        self.textarea_len += len(text) + 1

    def ab_switch(self) -> Iterator[Step]:
        a = self.focused if self.focused in ("shell", "editor", "browser") else "shell"
        b = self.rng.choice([n for n in ("shell", "editor", "browser") if n != a])
        yield from self.ensure(a)
        for i in range(self.rng.randint(3, 6)):
            yield self.switch(b if i % 2 == 0 else a)

    def window_ops(self) -> Iterator[Step]:
        rng, zone = self.rng, self.d.spec.layout.transient

        def place(w: int, h: int) -> Rect:
            x = rng.randint(zone[0] + 10, zone[2] - w - 10)
            y = rng.randint(zone[1] + 40, zone[3] - h - 10)
            return x, y, x + w, y + h

        rect = place(rng.randint(120, 220), rng.randint(100, 180))
        before = self.focused
        holder: dict[str, Win] = {}

        def do_open() -> None:
            holder["win"] = self.d.open_logo(rect)
            self.focused = "logo"
        yield Act("window_open", do_open, lambda: [pad(rect)] + self.frame_of(before))
        for _ in range(rng.randint(2, 4)):
            yield from self.pause()
            win = holder["win"]
            old = win.client
            if rng.random() < 0.5:
                new = place(old[2] - old[0], old[3] - old[1])

                def do_move(new: Rect = new, win: Win = win) -> None:
                    self.d.xdo("windowmove", "--sync", win.wid, str(new[0]), str(new[1]))
                    win.client = self.d.geometry(win.wid).client
                yield Act("window_move", do_move, lambda old=old, new=new: [pad(old), pad(new)])
            else:
                w = max(80, min(zone[2] - old[0] - 10, old[2] - old[0] + rng.choice((-60, -40, 40, 60))))
                h = max(60, min(zone[3] - old[1] - 10, old[3] - old[1] + rng.choice((-40, -30, 30, 40))))
                new = (old[0], old[1], old[0] + w, old[1] + h)

                def do_size(new: Rect = new, win: Win = win) -> None:
                    self.d.xdo("windowsize", "--sync", win.wid, str(new[2] - new[0]), str(new[3] - new[1]))
                    win.client = self.d.geometry(win.wid).client
                yield Act("window_resize", do_size, lambda old=old, new=new: [pad(old), pad(new)])
        yield from self.pause()

        def do_close() -> None:
            proc, win = self.d.logos.pop()
            holder["closed"] = win
            proc.terminate()
            proc.wait()
            self.focused = before
        yield Act("window_close", do_close, lambda: [pad(holder["win"].client)] + self.frame_of(before))

    def dialog(self) -> Iterator[Step]:
        zone, rng = self.d.spec.layout.transient, self.rng
        at = (rng.randint(zone[0] + 10, max(zone[0] + 10, zone[2] - 330)), rng.randint(zone[1] + 40, zone[3] - 130))
        box = (at[0] - 10, at[1] - 40, at[0] + 320, at[1] + 120)
        before = self.focused

        def do_open() -> None:
            self.d.open_dialog(rng.choice(MESSAGES), at)
            self.focused = "dialog"
        yield Act("dialog", do_open, lambda: [box] + self.frame_of(before) + [w.frame for _, w in self.d.logos])
        for _ in range(rng.randint(2, 6)):
            yield None

        def do_close() -> None:
            self.d.close_dialog()
            self.focused = before
        yield Act("dialog", do_close, lambda: [box] + self.frame_of(before) + [w.frame for _, w in self.d.logos])

    def notification(self) -> Iterator[Step]:
        title, body = self.rng.choice(NOTES)
        ms = self.rng.randint(2000, 4500)
        box = self.d.spec.layout.notify_box

        def do() -> None:
            self.d.notify(title, body, ms)
        self.pending_notification = ms / 1000
        yield Act("notification", do, lambda: [box])

    def pointer_wander(self) -> Iterator[Step]:
        zone = self.d.spec.layout.pointer
        for _ in range(self.rng.randint(2, 5)):
            to = (self.rng.randint(zone[0] + 30, zone[2] - 45), self.rng.randint(zone[1] + 30, zone[3] - 45))

            def do(to: tuple[int, int] = to) -> None:
                self.move_pointer(to)
            yield Act("pointer_move", do, lambda: [])
            if self.rng.random() < 0.3:
                yield None

    viewport = (0, 0)

    def move_pointer(self, to: tuple[int, int]) -> None:
        if to != self.pointer:  # xdotool's --sync waits for a move that never comes when the pointer is there already
            self.d.xdo("mousemove", "--sync", str(to[0]), str(to[1]))
            self.pointer = to


def pad(r: Rect, margin: int = 12, title: int = 44) -> Rect:
    """A window's requested client rectangle grown to hold its frame wherever the window manager puts it."""
    return clip((r[0] - margin, r[1] - title, r[2] + margin, r[3] + title))


# ---------------------------------------------------------------------------------------------------------------------
# Recording


def find_viewport(frame: np.ndarray, client: Rect) -> tuple[int, int]:
    """The page's top left on the screen: its 4x4 magenta mark."""
    x0, y0, x1, y1 = clip((client[0] - 60, client[1] - 60, client[2], client[3]))
    part = frame[y0:y1, x0:x1, :3]
    ys, xs = np.nonzero((part[..., 0] == 255) & (part[..., 1] == 0) & (part[..., 2] == 255))
    if len(ys) == 0:
        raise RuntimeError(f"the page's mark is not on the screen near {client}")
    return x0 + int(xs.min()), y0 + int(ys.min())


def page_rect(origin: tuple[int, int], r: tuple[int, int, int, int], pad_px: int = 0) -> Rect:
    return (origin[0] + r[0] - pad_px, origin[1] + r[1] - pad_px, origin[0] + r[0] + r[2] + pad_px,
            origin[1] + r[1] + r[3] + pad_px)


def record(spec: Spec, work: Path, probe: Path | None = None) -> Path:
    """Runs the session; its raw frames and log in `work`; returns the log's path."""
    import mss

    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        sys.exit(f"record_corpus: needs {', '.join(missing)} (scripts/system-deps --recording installs them)")
    rng = random.Random(spec.seed)
    tmp = Path(tempfile.mkdtemp(prefix="jarvis-corpus-"))
    make_media(tmp, spec, rng)
    make_page(tmp, spec, rng)
    desk = Desktop(tmp, spec, rng)
    try:
        desk.start()
        sct = mss.MSS(display=desk.display, with_cursor=True)
        mon = sct.monitors[1]

        def grab() -> np.ndarray:
            shot = sct.grab(mon)
            frame = np.frombuffer(shot.raw, np.uint8).reshape(H, W, 4).copy()
            frame[..., 3] = 255
            return frame

        lay = spec.layout
        pointer = ((lay.pointer[0] + lay.pointer[2]) // 2, (lay.pointer[1] + lay.pointer[3]) // 2)
        desk.xdo("mousemove", "--sync", str(pointer[0]), str(pointer[1]))
        time.sleep(6.0)  # chromium lays out its page
        first = grab()
        if probe is not None:
            from PIL import Image
            Image.fromarray(np.ascontiguousarray(first[..., 2::-1])).save(probe)
        origin = find_viewport(first, desk.windows["browser"].client)
        wins = {n: desk.refresh(n) for n in desk.windows}
        regions = {
            "aclock": (wins["aclock"].client, "clock"),
            "dclock": (wins["dclock"].client, "clock"),
            "video": (wins["video"].client, "video"),
            "spin": (page_rect(origin, PAGE_SPIN, 2), "spinner"),
            "gif": (page_rect(origin, PAGE_GIF, 1), "gif"),
            "progress": (page_rect(origin, PAGE_PROGRESS, 2), "progress"),
        }
        widgets = {
            "shell": {"rect": wins["shell"].client, "caret": "block"},
            "editor": {"rect": wins["editor"].client, "caret": "block" if spec.editor == "vim" else "ibeam"},
            "browser": {"rect": page_rect(origin, PAGE_TEXTAREA), "caret": "ibeam"},
        }
        layout_check(spec, wins, regions)
        if probe is not None:
            from PIL import Image
            Image.fromarray(np.ascontiguousarray(first[..., 2::-1])).save(probe)
            print(json.dumps({"windows": {n: w.frame for n, w in wins.items()}, "regions": regions, "widgets": widgets}))
            return probe
        script = Script(desk, rng, spec.frames)
        script.pointer = pointer
        script.viewport = origin
        script.pending_notification = 0.0
        raw_path = work / "frames.raw"
        log: dict[str, Any] = {
            "spec": spec.name, "seed": spec.seed, "regions": regions, "widgets": widgets,
            "notify_box": lay.notify_box, "frames": [], "actions": [], "timed": [],
        }
        frames_log: list[dict[str, Any]] = log["frames"]
        actions_log: list[dict[str, Any]] = log["actions"]
        pending: dict[str, Any] | None = None
        previous: np.ndarray | None = None
        script.video_next = rng.uniform(3, 8)
        with raw_path.open("wb") as raw:
            start = time.monotonic()
            for index in range(spec.frames):
                due = start + index / FPS
                time.sleep(max(0.0, due - time.monotonic()))  # the capture clock
                t = time.monotonic() - start
                frame = grab()
                raw.write(frame.data)
                frames_log.append({"t": round(t, 4), "pointer": script.pointer, "focused": script.focused})
                if pending is not None and previous is not None:
                    # the script waits for its last action to show in its region before the next (a caret
                    # blinking there is not it, unless the action typed: a typed space may show only as the caret)
                    for r in pending["region"]:
                        box = bbox(np.any(previous[r[1]:r[3], r[0]:r[2]] != frame[r[1]:r[3], r[0]:r[2]], axis=2))
                        if box is not None and (pending["kind"] in TYPING or box[2] - box[0] > 24 or box[3] - box[1] > 40):
                            pending = None
                            break
                    if pending is not None and t - float(pending["t"]) > NO_EFFECT_S:
                        pending = None
                previous = frame
                now = time.monotonic() - start
                if now >= script.video_next:  # the clip starts and stops on the script's own timer
                    script.video_on = not script.video_on
                    if script.video_on:
                        desk.mpv("loadfile", str(tmp / "clip.mkv"))
                    else:
                        desk.mpv("stop")
                    log["timed"].append({"kind": "video_" + ("start" if script.video_on else "stop"), "t": round(now, 4)})
                    script.video_next = now + rng.uniform(5, 12) if script.video_on else now + rng.uniform(4, 9)
                if pending is not None or index >= spec.frames - 2:
                    continue
                step = script.next(now)
                if step is None:
                    continue
                time.sleep(rng.uniform(0.0, 0.05))
                step.do()
                t_done = time.monotonic() - start
                entry = {"kind": step.kind, "t": round(t_done, 4), "frame": index, "widget": step.widget,
                         "region": [list(map(int, r)) for r in step.region()]}
                actions_log.append(entry)
                if step.kind == "notification":
                    script.notify_until = t_done + script.pending_notification + 1.5
                    log["timed"].append({"kind": "notification", "t": round(t_done + script.pending_notification, 4),
                                         "region": [list(lay.notify_box)]})
                if step.kind != "pointer_move":
                    pending = entry
                print(f"{t:7.2f}s frame {index}: {step.kind}", flush=True)
        log["elapsed"] = round(time.monotonic() - start, 2)
        log_path = work / "log.json"
        log_path.write_text(json.dumps(log))
        return log_path
    finally:
        desk.close()
        shutil.rmtree(tmp, ignore_errors=True)


def layout_check(spec: Spec, wins: dict[str, Win], regions: dict[str, tuple[Rect, str]]) -> None:
    """The areas kept for transient windows, the pointer and notifications touch no window."""
    lay = spec.layout
    for name, win in wins.items():
        for zone_name, zone in (("transient", lay.transient), ("pointer", lay.pointer), ("notify", lay.notify_box)):
            if overlaps(win.frame, zone):
                raise RuntimeError(f"{spec.name}: window {name} {win.frame} overlaps the {zone_name} area {zone}")
    names = list(wins)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if overlaps(wins[a].frame, wins[b].frame):
                raise RuntimeError(f"{spec.name}: windows {a} {wins[a].frame} and {b} {wins[b].frame} overlap")
    for a, b in (("transient", "pointer"), ("transient", "notify_box"), ("pointer", "notify_box")):
        if overlaps(getattr(lay, a), getattr(lay, b)):
            raise RuntimeError(f"{spec.name}: the {a} and {b} areas overlap")


# ---------------------------------------------------------------------------------------------------------------------
# Labelling, checked against the pixels


def raw_frames(path: Path) -> Iterator[np.ndarray]:
    with path.open("rb") as f:
        while len(data := f.read(FRAME_BYTES)) == FRAME_BYTES:
            yield np.frombuffer(data, np.uint8).reshape(H, W, 4)


def bbox(mask: np.ndarray) -> Rect | None:
    ys = np.flatnonzero(mask.any(axis=1))
    if len(ys) == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def uniform(part: np.ndarray) -> bool:
    flat = part[..., :3].reshape(-1, 3)
    return bool((flat == flat[0]).all())


@dataclass
class Open:
    kind: str
    t: float
    region: list[Rect]
    widget: str | None
    timed: bool = False
    landed: float | None = None


@dataclass
class Labeller:
    log: dict[str, Any]
    caret_at: dict[str, Rect | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.regions = {n: (tuple(r), kind) for n, (r, kind) in self.log["regions"].items()}
        self.widgets = {n: (tuple(w["rect"]), w["caret"]) for n, w in self.log["widgets"].items()}
        # the pointer's moves are told by its place at each frame, not as actions
        events = [dict(a, timed=False) for a in self.log["actions"] if a["kind"] != "pointer_move"]
        events += [dict(e, timed=True) for e in self.log["timed"] if e["kind"] == "notification"]
        self.events = sorted(events, key=lambda e: e["t"])
        self.open: list[Open] = []

    def caret_like(self, prev: np.ndarray, cur: np.ndarray, box: Rect, caret: str) -> bool:
        x0, y0, x1, y1 = box
        if caret == "ibeam":
            return x1 - x0 <= 3 and y1 - y0 <= 40
        if x1 - x0 > 21 or y1 - y0 > 32:
            return False
        return uniform(prev[y0:y1, x0:x1]) and uniform(cur[y0:y1, x0:x1])

    def state(self, kind: str, part: np.ndarray) -> str:
        if kind == "progress":
            # complete: the bar and the word under it in the page's "done" green (#10a010; no theme uses it)
            done = np.all(part[..., :3] == np.array((0x10, 0xA0, 0x10), np.uint8), axis=2)
            return "complete" if int(done.sum()) > 40 else "running"
        return "blank" if uniform(part) else "shown"

    def label(self, index: int, prev: np.ndarray | None, cur: np.ndarray) -> tuple[str, str, list[str]]:
        frames = self.log["frames"]
        info = frames[index]
        t = float(info["t"])
        while self.events and self.events[0]["t"] - (0.6 if self.events[0]["timed"] else 0.0) < t:
            e = self.events.pop(0)
            self.open.append(Open(e["kind"], float(e["t"]), [tuple(r) for r in e["region"]], e.get("widget"), e["timed"]))
        for o in list(self.open):
            if o.landed is None and t - o.t > NO_EFFECT_S + (1.5 if o.timed else 0.0):
                self.warnings.append(f"frame {index}: {o.kind} at {o.t:.2f}s showed no effect")
                self.open.remove(o)
            elif o.landed is not None and t - o.landed > SETTLE_S:
                self.open.remove(o)
        if prev is None:
            return "meaningful", "first_frame", ["first_frame"]
        diff = np.any(prev[..., :3] != cur[..., :3], axis=2)
        if not diff.any():
            return "none", "idle", []
        causes: list[str] = []
        rem = diff.copy()
        for r, kind in self.regions.values():
            x0, y0, x1, y1 = r
            if not diff[y0:y1, x0:x1].any():
                continue
            rem[y0:y1, x0:x1] = False
            if kind == "clock":
                causes.append("clock_tick")
                continue
            before, after = self.state(kind, prev[y0:y1, x0:x1]), self.state(kind, cur[y0:y1, x0:x1])
            if kind == "progress":
                if before == "running" and after == "complete":
                    causes.append("progress_complete")
                elif before == "complete":
                    causes.append("animation_start")
                else:
                    causes.append("spinner")
            elif before == "blank" and after == "shown":
                causes.append("animation_start")
            elif before == "shown" and after == "blank":
                causes.append("animation_stop")
            elif kind == "spinner":
                causes.append("spinner")
            else:
                causes.append("animation")
        focused = {frames[index - 1]["focused"], info["focused"]}
        carets: dict[str, Rect] = {}  # focused widgets whose only change is caret-sized
        for w in focused:
            if w not in self.widgets:
                continue
            r, caret = self.widgets[w]
            sub = np.zeros_like(rem)
            sub[r[1]:r[3], r[0]:r[2]] = rem[r[1]:r[3], r[0]:r[2]]
            box = bbox(sub)
            if box is not None and self.caret_like(prev, cur, box, caret):
                carets[w] = box
        # the newest action first: where its region overlaps an older action's, a change is the newest's
        # (the script acts again only once its last action showed; a slow older one is not waited for)
        for o in reversed(self.open):
            mask = np.zeros_like(rem)
            for x0, y0, x1, y1 in o.region:
                mask[y0:y1, x0:x1] = True
            hit = rem & mask
            box = bbox(hit)
            if box is None:
                continue
            caret_only = next((w for w, cb in carets.items() if box == cb), None)
            if caret_only is not None:
                seen = self.caret_at.get(caret_only)
                moved = seen is None or not overlaps(seen, carets[caret_only])
                if o.landed is not None or o.kind not in TYPING or o.widget != caret_only or not moved:
                    continue  # the caret blinking in place, not this action's effect
            causes.append(o.kind)
            if o.landed is None:
                o.landed = t
            rem &= ~mask
            if o.widget is not None:
                self.caret_at[o.widget] = None
        for w, cb in carets.items():
            x0, y0, x1, y1 = cb
            if rem[y0:y1, x0:x1].any():
                causes.append("caret_blink")
                rem[y0:y1, x0:x1] = False
                self.caret_at[w] = cb
        if rem.any():
            p0, p1 = tuple(frames[index - 1]["pointer"]), tuple(info["pointer"])
            if p0 != p1:
                for x0, y0, x1, y1 in (pointer_box(p0), pointer_box(p1)):
                    if rem[y0:y1, x0:x1].any():
                        rem[y0:y1, x0:x1] = False
                        if "pointer_move" not in causes:
                            causes.append("pointer_move")
        if rem.any():
            box = bbox(rem)
            self.errors.append(f"frame {index} t={t:.2f}: an unexplained change in {box} "
                               f"(open: {[(o.kind, round(o.t, 2)) for o in self.open]}, focused {sorted(map(str, focused))})")
            causes.append("unexplained")
        order = {c: i for i, c in enumerate(CATEGORIES)}
        causes = sorted(set(causes), key=lambda c: order.get(c, len(order)))
        label = "meaningful" if any(c in MEANINGFUL for c in causes) else "trivial"
        return label, causes[0], causes


def label_session(log_path: Path) -> tuple[list[dict[str, Any]], list[str], list[str], list[str]]:
    """Labels of every frame, the errors and warnings, and the frames' digests."""
    log = json.loads(log_path.read_text())
    labeller = Labeller(log)
    labels: list[dict[str, Any]] = []
    digests: list[str] = []
    prev: np.ndarray | None = None
    for index, frame in enumerate(raw_frames(log_path.parent / "frames.raw")):
        if index >= len(log["frames"]):
            break
        label, category, causes = labeller.label(index, prev, frame)
        labels.append({"index": index, "t": log["frames"][index]["t"], "label": label, "category": category,
                       "causes": causes})
        digests.append(hashlib.sha1(frame.data).hexdigest())
        prev = frame
    return labels, labeller.errors, labeller.warnings, digests


def encode(work: Path, video: Path, frames: int) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgra", "-s", f"{W}x{H}",
                    "-r", str(FPS), "-i", str(work / "frames.raw"), "-frames:v", str(frames), "-c:v", "libx264rgb",
                    "-qp", "0", "-preset", "veryslow", "-pix_fmt", "bgr24", str(video)], check=True)


def check_decode(video: Path, digests: list[str]) -> None:
    """The stored video decodes to exactly the recorded frames."""
    proc = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-i", str(video), "-f", "rawvideo", "-pix_fmt", "bgra", "-"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    for index, digest in enumerate(digests):
        data = proc.stdout.read(FRAME_BYTES)
        if len(data) != FRAME_BYTES or hashlib.sha1(data).hexdigest() != digest:
            proc.kill()
            sys.exit(f"record_corpus: frame {index} of {video} does not decode to the recorded pixels")
    if proc.stdout.read(1) or proc.wait() != 0:
        sys.exit(f"record_corpus: {video} holds more frames than were recorded, or ffmpeg failed")


def counts_of(labels: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    by_category = Counter(f"{e['label']}/{e['category']}" for e in labels)
    by_cause = Counter(c for e in labels for c in e["causes"])
    return dict(sorted(by_category.items())), dict(sorted(by_cause.items()))


def finish(spec: Spec, work: Path, out: Path) -> dict[str, Any]:
    """Labels, encodes and checks a recorded session; writes session.mkv and labels.json."""
    log_path = work / "log.json"
    log = json.loads(log_path.read_text())
    labels, errors, warnings, digests = label_session(log_path)
    for w in warnings:
        print("warning:", w)
    if errors:
        for e in errors[:40]:
            print("error:", e)
        sys.exit(f"record_corpus: {len(errors)} frames of {spec.name} hold changes no cause explains")
    out.mkdir(parents=True, exist_ok=True)
    video = out / "session.mkv"
    encode(work, video, len(labels))
    check_decode(video, digests)
    by_category, by_cause = counts_of(labels)
    t = spec.theme
    meta = {
        "width": W, "height": H, "fps": FPS, "seed": spec.seed, "video": video.name, "split": spec.split,
        "session": spec.name, "theme": t.name, "openbox_theme": t.openbox, "terminal_font": " ".join(spec.term_font),
        "editor": spec.editor, "page_font": spec.page_font, "layout": {
            k: v for k, v in vars(spec.layout).items()},
        "regions": log["regions"], "widgets": log["widgets"],
        "counts": by_category, "cause_counts": by_cause, "no_effect": warnings, "frames": labels,
    }
    text = json.dumps(meta, indent=0)
    (out / "labels.json").write_text(text + "\n")
    size = video.stat().st_size + (out / "labels.json").stat().st_size
    print(json.dumps(by_category, indent=1))
    print(f"{out}: {len(labels)} frames, {size / 1e6:.2f} MB")
    return {"frames": len(labels), "bytes": size, "counts": by_category, "cause_counts": by_cause}


SUMMARY_HEAD = """# Labelled corpus of desktop sessions

Recorded by `scripts/record_corpus.py` (its docstring says how to run it; `manifest.json`
holds the same numbers and each session's seed, theme, fonts and layout). Each session
folder holds `session.mkv` (1920x1080, 4 fps, libx264rgb -qp 0: lossless) and
`labels.json` (per frame: index, t, label, category, causes; the format of
`tests/data/session/labels.json`, plus `causes`).

- `heldout/`: recorded before the tuning it is held out from; never tune on it. h1-h3 were
  recorded with the tuning part and held out from the first model; once used to choose between two
  variants of it, they joined the tuning data. h4-navy and h5-mint were recorded and committed then,
  before the model's next changes; scored once after them, they joined the tuning data too.
  h6-amber, h7-sky and h8-rose were recorded and committed then, before the model's next
  changes; scored once after them, they joined the tuning data too. So did h9-teal, h10-sand
  and h11-graphite, recorded and committed then and scored once after the model's next changes
  (clock ticks are rarely a frame's first cause: 10 frames have that category, 630 a tick).
  h12-lilac, h13-ember and h14-ice were recorded and committed then, before the model was
  scored on them; they are held out now.
- `tuning/`: for tuning the change-judgement model.

How the labels are made and checked: the recorder logs every action it takes
(kind, time, the windows it touches) and knows where the animated things are
(the clocks' and the video's windows, the page's spinner, GIF and progress bar,
found on the screen through a mark the page draws). Each frame's changed pixels
are then attributed: to the animated regions (a region going from blank to shown
is animation_start, back to blank animation_stop, the progress bar turning green
progress_complete, any other change there animation / spinner / clock_tick), to
the newest open action whose windows hold them (from when it was done until 1 s
after its effect first showed), to the focused widget's caret (a change the size
of a caret, at the place it last blinked; a caret appearing elsewhere right after
a keystroke is that keystroke's effect, e.g. a typed space), and to the pointer's
old and new places when it moved. A changed pixel none of these explains fails
the recording. `labels.json` also keeps the regions, the widgets and the actions
that showed no effect (`no_effect`, e.g. a wheel click at the end of a page).

The two parts share no seed, window layout, font or colour theme. A frame's
`category` is its first cause in the order of the table (meaningful causes
first); `causes` lists every category that changed in it. Counts below:
frames by category, and in brackets frames having that cause.
"""


def summary(out: Path) -> None:
    """tests/data/corpus/README.md and manifest.json from the sessions present."""
    sessions: list[dict[str, Any]] = []
    for spec in SESSIONS:
        folder = out / spec.split / spec.name
        if not (folder / "labels.json").exists():
            continue
        meta = json.loads((folder / "labels.json").read_text())
        labels = meta["frames"]
        by_category = Counter(e["category"] for e in labels)
        by_cause = Counter(c for e in labels for c in e["causes"])
        size = (folder / "session.mkv").stat().st_size + (folder / "labels.json").stat().st_size
        sessions.append({
            "name": spec.name, "split": spec.split, "seed": spec.seed, "frames": len(labels),
            "seconds": round(float(labels[-1]["t"]), 1), "bytes": size, "theme": spec.theme.name,
            "openbox_theme": spec.theme.openbox, "terminal_font": " ".join(spec.term_font), "editor": spec.editor,
            "page_font": spec.page_font, "layout": vars(spec.layout), "episode_weights": dict(spec.weights),
            "labels": dict(Counter(e["label"] for e in labels)),
            "categories": dict(by_category), "causes": dict(by_cause),
        })
    (out / "manifest.json").write_text(json.dumps({"sessions": sessions}, indent=1) + "\n")
    lines = [SUMMARY_HEAD]
    held = [s for s in sessions if s["split"] == "heldout"]
    if held:
        short = [c for c in CATEGORIES if c != "first_frame" and sum(s["categories"].get(c, 0) for s in held) < 20]
        lines.append("Held-out part: " + (f"fewer than 20 frames of {', '.join(short)}" if short else
                                          "at least 20 frames of every category (by category; first_frame excepted)") + ".")
    for split in ("heldout", "tuning"):
        part = [s for s in sessions if s["split"] == split]
        if not part:
            continue
        lines.append(f"\n## {split}\n")
        lines.append("| session | seed | frames | seconds | MB | theme | terminal font | editor | page font |")
        lines.append("|---|---:|---:|---:|---:|---|---|---|---|")
        for s in part:
            lines.append(
                f"| {s['name']} | {s['seed']} | {s['frames']} | {s['seconds']} | {int(s['bytes']) / 1e6:.2f} "
                f"| {s['theme']} (openbox {s['openbox_theme']}) | {s['terminal_font']} | {s['editor']} | {s['page_font']} |"
            )
        lines.append("")
        lines.append("| label: category | " + " | ".join(str(s["name"]) for s in part) + " | all |")
        lines.append("|---|" + "---:|" * (len(part) + 1))
        rows = [("meaningful", c) for c in MEANINGFUL] + [("trivial", c) for c in TRIVIAL] + [("none", "idle")]
        for label, c in rows:
            cells = [f"{s['categories'].get(c, 0)} ({s['causes'].get(c, 0)})" for s in part]
            total_cat = sum(s["categories"].get(c, 0) for s in part)
            total_cause = sum(s["causes"].get(c, 0) for s in part)
            cause = "" if c == "idle" else f" ({total_cause})"
            lines.append(f"| {label}: {c} | " + " | ".join(x if c != "idle" else x.split(" ")[0] for x in cells)
                         + f" | {total_cat}{cause} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("heldout", "tuning"), required=True)
    parser.add_argument("--session", action="append", help="only these sessions (by name)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "corpus")
    parser.add_argument("--work", type=Path, help="keep the raw frames and the log here (default: a temporary folder)")
    parser.add_argument("--relabel", action="store_true", help="label again from the raw frames kept in --work")
    parser.add_argument("--probe", type=Path, help="only set the desktop up and save a screenshot here")
    parser.add_argument("--frames", type=int, help="frames per session (default: each session's own)")
    parser.add_argument("--summary", action="store_true", help="only write the corpus README.md and manifest.json")
    args = parser.parse_args()
    if args.summary:
        summary(args.out)
        return
    chosen = [s for s in SESSIONS if s.split == args.split and (not args.session or s.name in args.session)]
    if not chosen:
        sys.exit("record_corpus: no such session")
    for spec in chosen:
        if args.frames:
            spec = Spec(**{**vars(spec), "frames": args.frames})
        if args.probe:
            record(spec, Path(tempfile.gettempdir()), args.probe)
            continue
        work = args.work / spec.name if args.work else Path(tempfile.mkdtemp(prefix="jarvis-corpus-work-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            if not args.relabel:
                record(spec, work)
            finish(spec, work, args.out / spec.split / spec.name)
            summary(args.out)
        finally:
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
