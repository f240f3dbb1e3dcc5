"""The change policy the analysis stage used before the per-tile temporal model
(procs/change_policy.py), kept as a peer for scripts/eval_policy.py: which
changed tiles matter, judged tile by tile against the reference.

The stage compares each frame with its monitor's reference frame (the last one
forwarded) and hands the policy every tile that differs: its pixels and content
signature now and in the reference. How much changed cannot separate a typed
character from a caret blink or a clock tick (each a few hundred pixels); where
and how a change behaves over time can. A changed tile is trivial when it
- toggles: flips between two contents it has flipped between recently, or
  goes A, B, A, B within `flicker_s` (a blinking caret cell, a hover flicker);
- flips a small solid block (one colour to one colour, a caret's block, also
  across tile borders) of a shape seen toggling, or flips one back quickly
  (on, off, on): the first blinks of a caret that just moved on, where the
  tile shows content it never showed. Blocks going off in one place and on in
  another in the same frame are a caret moving (a typed space), not a blink;
- is volatile: it keeps changing to new content on a steady rhythm (a clock's
  hub, a spinner) and this change comes on the beat; a change connected to it
  and mostly made of such tiles is the same moving thing (a clock hand
  sweeping out from its hub).
Any other change, however small (one typed character, a character typed into
the cell the caret just blinked off, a deleted one, a window switched back, a
dialog closed), is meaningful: undoing a change once is not a toggle.
Times are the frames' capture times, so a replay faster than real time is
judged as it was recorded.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

Tile = tuple[int, int]  # (row, column) in the tile grid


@dataclass(frozen=True)
class PolicyParams:
    toggle_s: float = 10.0  # a toggle pair not seen flipping for this long is forgotten
    flicker_s: float = 2.5  # A, B, A, B, A within this long is a toggle (a caret blinks about once a second)
    shape_s: float = 60.0  # a flipping solid block's shape is remembered this long
    block_share: float = 1 / 3  # a caret's block covers at most this share of a tile (larger blocks are content)
    volatile_changes: int = 6  # steady intervals needed to call a tile volatile (typing can keep a beat for a few)
    volatile_jitter: float = 0.25  # allowed deviation of an interval from their median
    volatile_min_period_s: float = 0.4
    volatile_share: float = 1 / 3  # share of volatile tiles a connected change needs to ride on them


class TileChange(NamedTuple):
    sig: int  # signature of the tile's content in the frame
    ref_sig: int  # ... and in the reference frame
    pixels: np.ndarray  # the tile's pixels in the frame (read during judge, not kept)
    ref_pixels: np.ndarray  # ... and in the reference frame
    #: Pixels over the change threshold, when known (-1: not known). Every one of them
    #: differs, so more than a caret block's share rules out a block flip at once.
    over_threshold: int = -1


class Flip(NamedTuple):
    """A change that switches a solid block between two colours."""

    box: tuple[int, int, int, int]  # (top, left, bottom, right) in the tile, bottom and right exclusive
    before: bytes  # the colour before
    after: bytes  # ... and after


@dataclass(frozen=True)
class Verdict:
    meaningful: list[Tile]
    trivial: int


@dataclass
class _TileMemory:
    sig: int  # the content it showed last
    pixels: np.ndarray
    since: float = 0.0  # when it started to show it
    history: collections.deque[tuple[int, float]] = field(
        default_factory=lambda: collections.deque(maxlen=3)
    )  # contents before, since
    pairs: dict[frozenset[int], float] = field(default_factory=dict)  # toggle pairs, last flipped at
    changes: collections.deque[float] = field(default_factory=collections.deque)  # times of changes to new content
    judged_at: int = -1  # the last judged frame in which it differed from the reference
    trivial: bool = False  # its verdict then


@dataclass
class ChangePolicy:
    """The tile memory of one monitor. Bounded: one entry per grid tile ever
    changed (its last content's pixels, tile x tile x 4 bytes, and a few
    signatures and times: about 9 KB measured with 32-pixel tiles), and the
    block shapes seen within shape_s. At 1080p that is at most 2040 tiles,
    about 18 MB once every tile has changed; it grows towards that as activity
    reaches new parts of the screen (the synthetic desktop at 10 fps: 791 tiles
    after 1 minute, 1255 after 10, about 0.4 MB a minute meanwhile)."""

    params: PolicyParams = field(default_factory=PolicyParams)
    tile: int = 32  # the tile size of the grid, pixels
    tiles: dict[Tile, _TileMemory] = field(default_factory=dict)
    # (height, width) of solid blocks seen toggling (a caret's block), last seen at
    flip_shapes: dict[tuple[int, int], float] = field(default_factory=dict)
    frames: int = 0

    def judge(self, now: float, changed: Mapping[Tile, TileChange]) -> Verdict:
        """The verdict on one frame: `changed` holds every tile that differs
        from the reference frame; `now` is the frame's capture time (seconds)."""
        verdicts: dict[Tile, bool] = {}  # tile -> trivial
        fresh: dict[Tile, frozenset[int]] = {}  # tiles that changed since the last frame -> their (before, now) pair
        flips: dict[Tile, Flip] = {}
        back: set[Tile] = set()  # tiles back to the content they showed just before, quickly (A, B, now A)
        for key, change in changed.items():
            memory = self.tiles.get(key)
            if memory is None:
                memory = self.tiles[key] = _TileMemory(change.ref_sig, change.ref_pixels.copy())
            elif memory.judged_at != self.frames - 1 and memory.sig != change.ref_sig:
                # It went back to the reference's content in a frame that matched the reference.
                self._change(memory, change.ref_sig, change.ref_pixels, now)
            memory.judged_at = self.frames
            if change.sig == memory.sig:
                verdicts[key] = memory.trivial  # unchanged since it was last judged
                continue
            fresh[key] = frozenset((memory.sig, change.sig))
            previous = memory.history[-1] if memory.history else None
            if previous is not None and previous[0] == change.sig and now - previous[1] <= self.params.flicker_s:
                back.add(key)
            verdicts[key], flip = self._change(memory, change.sig, change.pixels, now, change.over_threshold)
            if flip is not None:
                flips[key] = flip
        self._judge_blocks(now, flips, verdicts, back)
        beats = {}
        for key in fresh:
            memory = self.tiles[key]
            if verdicts[key]:
                memory.pairs[fresh[key]] = now
            else:
                memory.changes.append(now)
                while len(memory.changes) > self.params.volatile_changes + 1:
                    memory.changes.popleft()
            beats[key] = self._on_beat(memory, now)
        self._ride_volatile(verdicts, beats)
        for key, trivial in verdicts.items():
            self.tiles[key].trivial = trivial
        self.frames += 1
        meaningful = [key for key, trivial in verdicts.items() if not trivial]
        return Verdict(meaningful, len(verdicts) - len(meaningful))

    def _judge_blocks(self, now: float, flips: dict[Tile, Flip], verdicts: dict[Tile, bool], back: set[Tile]) -> None:
        """Solid blocks switched in this frame (a block across tile borders is
        one block): a block of a shape seen toggling is a toggle too; a block
        whose tiles all toggled, or switched back quickly (on, off, on), teaches
        its shape. Blocks switching both ways in one frame are a caret moving
        (a typed space): not toggles."""
        toggled = []
        for shape, tiles in _blocks(flips, self.tile):
            known = now - self.flip_shapes.get(shape, -math.inf) <= self.params.shape_s
            if known or all(verdicts[t] or t in back for t in tiles):
                if shape not in self.flip_shapes:  # shapes not seen for shape_s are forgotten: the memory stays small
                    self.flip_shapes = {k: t for k, t in self.flip_shapes.items() if now - t <= self.params.shape_s}
                self.flip_shapes[shape] = now
                verdicts.update(dict.fromkeys(tiles, True))
                toggled.append(tiles)
        if len({(flips[t[0]].before, flips[t[0]].after) for t in toggled}) > 1:
            for tiles in toggled:
                verdicts.update(dict.fromkeys(tiles, False))

    def _change(self, memory: _TileMemory, sig: int, pixels: np.ndarray, now: float,
                over_threshold: int = -1) -> tuple[bool, Flip | None]:
        """Records the tile's content changing to `sig`: whether the change is a
        toggle (a known pair, or A, B, A, B, A quickly), and the change as a
        Flip if it switched a small solid block."""
        p = self.params
        pair = frozenset((memory.sig, sig))
        memory.pairs = {k: t for k, t in memory.pairs.items() if now - t <= p.toggle_s}
        too_many = over_threshold > p.block_share * pixels.shape[0] * pixels.shape[1]
        flip = None if too_many else _flip(pixels, memory.pixels, p.block_share)
        toggle = pair in memory.pairs
        if not toggle and len(memory.history) == memory.history.maxlen:
            # A, B, A, B, now A: quickly (back and forth once is a user's undo or switch back)
            (a0, since), (b0, _), (a1, _) = memory.history
            toggle = a0 == a1 == sig and b0 == memory.sig and now - since <= p.flicker_s
        memory.history.append((memory.sig, memory.since))
        memory.sig, memory.pixels, memory.since = sig, pixels.copy(), now
        return toggle, flip

    def _on_beat(self, memory: _TileMemory, now: float) -> bool:
        """Volatile (its changes to new content come on a steady rhythm; one
        interval off the beat, a late capture, is forgiven) and this change
        comes on the beat."""
        p = self.params
        times = list(memory.changes)
        if len(times) <= p.volatile_changes or times[-1] != now:
            return False
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        *before, latest = gaps
        period = statistics.median(before)

        def on_beat(gap: float) -> bool:
            return abs(gap - period) <= p.volatile_jitter * period

        return period >= p.volatile_min_period_s and on_beat(latest) and sum(map(on_beat, before)) >= len(before) - 1

    def _ride_volatile(self, verdicts: dict[Tile, bool], fresh: Mapping[Tile, bool]) -> None:
        """Fresh changes connected (8-neighbours) to a volatile tile's change on
        its beat, in a patch at least `volatile_share` volatile, are trivial."""
        seen: set[Tile] = set()
        for start in fresh:
            if start in seen:
                continue
            patch, stack = [], [start]
            seen.add(start)
            while stack:
                y, x = stack.pop()
                patch.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        n = (y + dy, x + dx)
                        if n in fresh and n not in seen:
                            seen.add(n)
                            stack.append(n)
            volatile = sum(fresh[t] for t in patch)
            if volatile and volatile >= self.params.volatile_share * len(patch):
                for t in patch:
                    verdicts[t] = True


def _flip(pixels: np.ndarray, before: np.ndarray, share: float) -> Flip | None:
    """The change as a Flip when the changed pixels fill a small rectangle (at
    most `share` of the tile), all of one colour before and all of one colour
    after (a caret's block); else None."""
    diff = np.any(pixels != before, axis=-1) if pixels.ndim == 3 else pixels != before
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if len(rows) == 0:
        return None
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if diff[box].size > share * diff.size or not diff[box].all():
        return None
    old, new = before[box].reshape(-1, *before.shape[2:]), pixels[box].reshape(-1, *pixels.shape[2:])
    if not ((old == old[0]).all() and (new == new[0]).all()):
        return None
    return Flip((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1), old[0].tobytes(), new[0].tobytes())


def _blocks(flips: Mapping[Tile, Flip], tile: int) -> list[tuple[tuple[int, int], list[Tile]]]:
    """Flips that together fill one rectangle of one colour change (a block
    across tile borders), as ((height, width), tiles); other groups are left out."""
    boxes = {k: (k[0] * tile + f.box[0], k[1] * tile + f.box[1], k[0] * tile + f.box[2], k[1] * tile + f.box[3])
             for k, f in flips.items()}
    groups: list[list[Tile]] = []
    for key in sorted(boxes):
        y0, x0, y1, x1 = boxes[key]
        touching = [g for g in groups if any(
            flips[o][1:] == flips[key][1:] and (
                (boxes[o][2] == y0 or boxes[o][0] == y1) and boxes[o][1] < x1 and x0 < boxes[o][3]
                or (boxes[o][3] == x0 or boxes[o][1] == x1) and boxes[o][0] < y1 and y0 < boxes[o][2])
            for o in g)]
        merged = [key] + [t for g in touching for t in g]
        groups = [g for g in groups if g not in touching] + [merged]
    found = []
    for g in groups:
        top, left = min(boxes[t][0] for t in g), min(boxes[t][1] for t in g)
        bottom, right = max(boxes[t][2] for t in g), max(boxes[t][3] for t in g)
        area = sum((boxes[t][2] - boxes[t][0]) * (boxes[t][3] - boxes[t][1]) for t in g)
        if area == (bottom - top) * (right - left):
            found.append(((bottom - top, right - left), g))
    return found
