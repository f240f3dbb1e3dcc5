#!/usr/bin/env python3
"""Relabels the typed spaces of the labelled desktop session (tests/data/session,
scripts/record_session.py) from its pixels.

The recorder took a change confined to one character cell that switches the
whole cell from one colour to another for the xterm's caret blinking, also
right after a keystroke; but a space typed while the caret is off shows only as
the caret coming back on one cell further right. Such a frame is a typed space
(meaningful), not a blink: the caret block appears (off -> on) at another cell
than where it was last seen on, on the same row, to the right of it, with a
blank cell before it (what was typed last is a space; a typed character would
show there, and output or a new prompt puts the caret elsewhere, or further left
on the bottom row).

A space typed while the caret is on shows as the caret moving one cell right,
leaving a blank cell: the recorder labelled that meaningful/typed_char; its
category becomes typed_space (the label stays).

The caret is found in every frame as a solid block of the terminal's cursor
colour the size of a cell; the session is decoded with ffmpeg (as
scripts/eval_policy.py does). The frames relabelled become
meaningful/typed_space; labels.json keeps its format (counts updated).

    .venv/bin/python scripts/relabel_session.py tests/data/session
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from eval_policy import decode  # the session's frames, one at a time (scripts/ is on the path)

CELL = (6, 13)  # the session's xterm "fixed" font: a character cell in pixels (w, h)
TERMINAL = (40, 40, 40 + 110 * 6 + 8, 40 + 34 * 13 + 8)  # the xterm's window (110x34 cells at +40+40)
CURSOR = (0, 0, 0)  # xterm's cursor: a block in the foreground colour (black)


def caret_cells(frame: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of the solid cursor-coloured cell-sized blocks in the terminal."""
    x0, y0, x1, y1 = TERMINAL
    part = frame[y0:y1, x0:x1, :3]
    solid = np.all(part == np.array(CURSOR[::-1], np.uint8), axis=2).astype(np.int32)
    s = np.pad(solid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    w, h = CELL
    sums = s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]
    ys, xs = np.nonzero(sums == w * h)
    return [(x0 + int(x), y0 + int(y)) for x, y in zip(xs, ys, strict=False)]


def blank(frame: np.ndarray, x: int, y: int) -> bool:
    cell = frame[y:y + CELL[1], x:x + CELL[0], :3].reshape(-1, 3)
    return bool((cell == cell[0]).all()) and tuple(int(v) for v in cell[0]) != CURSOR


def relabel(session: Path) -> dict[str, int]:
    meta = json.loads((session / "labels.json").read_text())
    frames = meta["frames"]
    last_on: tuple[int, int] | None = None
    previous: np.ndarray | None = None
    stats: Counter[str] = Counter()
    for entry, frame in zip(frames, decode(session / meta["video"], meta["width"], meta["height"]), strict=False):
        cells = caret_cells(frame)
        on = cells[0] if len(cells) == 1 else None
        if entry["label"] == "meaningful" and entry["category"] == "typed_char" and on is not None \
                and last_on is not None and previous is not None and on == (last_on[0] + CELL[0], last_on[1]) \
                and blank(frame, *last_on):
            changed = np.any(previous[..., :3] != frame[..., :3], axis=2)
            changed[last_on[1]:last_on[1] + CELL[1], last_on[0]:on[0] + CELL[0]] = False
            x0, y0, x1, y1 = TERMINAL
            if not changed[y0:y1, x0:x1].any():  # in the terminal only the caret moved on, over a blank: a space typed
                entry["category"] = "typed_space"
                stats["typed_char -> typed_space (caret on when typed)"] += 1
        if entry["label"] == "trivial" and entry["category"] == "caret_blink" and on is not None and last_on is not None \
                and on != last_on:
            stats["caret on at another cell"] += 1
            x, y = on
            if y != last_on[1] or x < last_on[0]:
                stats["... on another row, or to the left (output, a new prompt, a delete)"] += 1
            elif not blank(frame, x - CELL[0], y):
                stats["... after a typed character"] += 1
            else:
                entry["label"], entry["category"] = "meaningful", "typed_space"
                stats["trivial/caret_blink -> meaningful/typed_space"] += 1
        if on is not None:
            last_on = on
        previous = frame
    counts: Counter[str] = Counter(f"{e['label']}/{e['category']}" for e in frames)
    meta["counts"] = dict(counts)
    (session / "labels.json").write_text(json.dumps(meta, indent=0) + "\n")
    return dict(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("session", type=Path, help="folder with session.mkv and labels.json")
    args = parser.parse_args()
    stats = relabel(args.session)
    for what in ("trivial/caret_blink -> meaningful/typed_space", "typed_char -> typed_space (caret on when typed)"):
        stats.setdefault(what, 0)
    for what, n in stats.items():
        print(f"{what}: {n}")


if __name__ == "__main__":
    main()
