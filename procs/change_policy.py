"""Which changed tiles matter: the per-tile change policy of the analysis stage,
kept free of rings, sockets and clocks so it can be driven by synthetic tile
histories.

The stage compares each frame with its monitor's reference frame (the last one
forwarded) and hands the policy every tile that differs: its pixels and content
signature now and in the reference. How much changed cannot separate a typed
character from a caret blink or a clock tick (each a few hundred pixels); where
and how a change behaves over time can. A changed tile is trivial when
- it toggles: it flips between two contents it has flipped between before (a
  blinking caret cell, a hover flicker), or it undoes part of its last change,
  putting back exactly the pixels that change had replaced (the first blink of
  a caret that just moved: the typed character stays, the caret cell goes
  blank), which makes the two contents a toggle pair too;
- it is volatile: it keeps changing to new content on a steady rhythm on its
  own (a clock's hub, a spinner), and the change comes on the beat; a change
  connected to a volatile tile's change and mostly made of volatile tiles is
  the same moving thing (a clock hand sweeping out from its hub).
Any other change, however small (one typed character, a deleted one, a window
switched back), is meaningful. Undoing a whole change (deleting what was just
typed, closing a dialog) is not a toggle: only a change repeated both ways is.
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
    flicker_s: float = 2.0  # A, B, A, B within this long is a toggle (a caret blinks about once a second)
    shape_s: float = 60.0  # a flipping solid rectangle's shape is remembered this long
    volatile_changes: int = 6  # steady intervals needed to call a tile volatile (typing can keep a beat for a few)
    volatile_jitter: float = 0.25  # allowed deviation of an interval from their median
    volatile_min_period_s: float = 0.4
    volatile_share: float = 1 / 3  # share of volatile tiles a connected change needs to ride on them


class TileChange(NamedTuple):
    sig: int  # signature of the tile's content in the frame
    ref_sig: int  # ... and in the reference frame
    pixels: np.ndarray  # the tile's pixels in the frame (read during judge, not kept)
    ref_pixels: np.ndarray  # ... and in the reference frame


class Flip(NamedTuple):
    """A change that switches a solid block between two colours."""

    shape: tuple[int, int]  # (height, width)
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
    history: collections.deque[tuple[int, float]] = field(default_factory=lambda: collections.deque(maxlen=2))  # contents before, since
    pairs: dict[frozenset[int], float] = field(default_factory=dict)  # toggle pairs, last flipped at
    changes: collections.deque[float] = field(default_factory=collections.deque)  # times of changes to new content
    judged_at: int = -1  # the last judged frame in which it differed from the reference
    trivial: bool = False  # its verdict then


@dataclass
class ChangePolicy:
    """The tile memory of one monitor."""

    params: PolicyParams = field(default_factory=PolicyParams)
    tiles: dict[Tile, _TileMemory] = field(default_factory=dict)
    # (height, width) of solid rectangles seen flipping (a caret's block), last seen at
    flip_shapes: dict[tuple[int, int], float] = field(default_factory=dict)
    frames: int = 0

    def judge(self, now: float, changed: Mapping[Tile, TileChange]) -> Verdict:
        """The verdict on one frame: `changed` holds every tile that differs
        from the reference frame; `now` is the frame's capture time (seconds)."""
        verdicts: dict[Tile, bool] = {}  # tile -> trivial
        fresh: dict[Tile, bool] = {}  # tiles that changed since the last frame -> volatile and on the beat
        flips: dict[Tile, Flip] = {}  # toggles that switched a solid block
        for key, change in changed.items():
            memory = self.tiles.get(key)
            if memory is None:
                memory = self.tiles[key] = _TileMemory(change.ref_sig, change.ref_pixels.copy())
            elif memory.judged_at != self.frames - 1 and memory.sig != change.ref_sig:
                # It went back to the reference's content in a frame that matched the reference.
                self._change(memory, change.ref_sig, change.ref_pixels, now, observed=False)
            if change.sig == memory.sig:
                verdicts[key] = memory.trivial  # unchanged since it was last judged
            else:
                verdicts[key], flip = self._change(memory, change.sig, change.pixels, now, observed=True)
                if verdicts[key] and flip is not None:
                    flips[key] = flip
                fresh[key] = self._on_beat(memory, now)
            memory.judged_at = self.frames
        if len({(f.before, f.after) for f in flips.values()}) > 1:
            # Blocks switched off here and on there in one frame: a caret that moved (a typed space), not a blink.
            verdicts.update(dict.fromkeys(flips, False))
        self._ride_volatile(verdicts, fresh)
        for key, trivial in verdicts.items():
            self.tiles[key].trivial = trivial
        self.frames += 1
        meaningful = [key for key, trivial in verdicts.items() if not trivial]
        return Verdict(meaningful, len(verdicts) - len(meaningful))

    def _change(self, memory: _TileMemory, sig: int, pixels: np.ndarray, now: float, *,
                observed: bool) -> tuple[bool, Flip | None]:
        """Records the tile's content changing to `sig`: whether the change is a
        toggle (a known pair, A, B, A, B quickly, or a solid block of a shape
        seen flipping), and the change as a Flip if it switched a solid block."""
        p = self.params
        pair = frozenset((memory.sig, sig))
        memory.pairs = {k: t for k, t in memory.pairs.items() if now - t <= p.toggle_s}
        flip = _flip(pixels, memory.pixels)
        toggle = pair in memory.pairs
        if not toggle and len(memory.history) >= 2:
            (b, _), (a, a_since) = memory.history[-1], memory.history[-2]
            toggle = b == sig and a == memory.sig and now - a_since <= p.flicker_s  # A, B, A, now B: quickly
        if not toggle and flip is not None:
            toggle = now - self.flip_shapes.get(flip.shape, -math.inf) <= p.shape_s
        if toggle:
            memory.pairs[pair] = now
            if flip is not None:
                self.flip_shapes[flip.shape] = now
        elif observed:
            memory.changes.append(now)
            while len(memory.changes) > p.volatile_changes + 1:
                memory.changes.popleft()
        memory.history.append((memory.sig, memory.since))
        memory.sig, memory.pixels, memory.since = sig, pixels.copy(), now
        return toggle, flip

    def _on_beat(self, memory: _TileMemory, now: float) -> bool:
        """Volatile (its changes to new content come on a steady rhythm) and this change is one of them."""
        p = self.params
        times = list(memory.changes)
        if len(times) <= p.volatile_changes or times[-1] != now:
            return False
        gaps = [b - a for a, b in zip(times, times[1:])]
        period = statistics.median(gaps[:-1])
        return period >= p.volatile_min_period_s and all(abs(g - period) <= p.volatile_jitter * period for g in gaps)

    def _ride_volatile(self, verdicts: dict[Tile, bool], fresh: dict[Tile, bool]) -> None:
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


def _flip(pixels: np.ndarray, before: np.ndarray) -> Flip | None:
    """The change as a Flip when the changed pixels fill a rectangle, all of
    one colour before and all of one colour after (a caret's block); else None."""
    diff = np.any(pixels != before, axis=-1) if pixels.ndim == 3 else pixels != before
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if len(rows) == 0:
        return None
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if not diff[box].all():
        return None
    old, new = before[box].reshape(-1, *before.shape[2:]), pixels[box].reshape(-1, *pixels.shape[2:])
    if not ((old == old[0]).all() and (new == new[0]).all()):
        return None
    return Flip((int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)), old[0].tobytes(), new[0].tobytes())
