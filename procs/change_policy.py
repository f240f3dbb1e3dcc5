"""Which changes matter: the per-tile temporal model of the analysis stage,
kept free of rings, sockets and clocks so tests can drive it with synthetic
frames.

Semantics, stated once (docs/change-judgement.md is generated from this text):
- Meaningful: anything a person would want to know changed. Text added or
  removed, spaces and line breaks included (the caret moving to a new place is
  input); command output; scrolling; every focus or window change, also when
  switching back and forth between the same windows (large changes are never
  discarded because they toggle); windows opening, closing, moving, resizing;
  dialogs and notifications appearing or going; an animation or video starting
  or stopping; a progress bar completing.
- Trivial: changes that carry no new information. A caret blinking in place
  (block, underline, I-beam); clock seconds; spinners, throbbers and progress
  animations in a fixed place while they run; continuous animation or video in
  a fixed region after its first frame (sampled again every
  `animation_sample_s`); the mouse pointer moving over unchanged content.
- None: nothing changed (dedup drops those before analysis).

How: the stage compares each frame with its monitor's reference (the last
frame forwarded) and hands the model the changed pixels per tile (reading
only the rows of tiles whose bands of rows differ from the reference's:
capture sends each band's digest with the frame). The model
keeps the pixels of the tiles that differed from the reference in the frame
before (every other tile showed the reference then), so it sees what changed
since the previous frame ("fresh" tiles); per tile it keeps a short history of
content signatures and change times. Fresh tiles are grouped into connected
changes (8-neighbour tiles); each change, in this order, is
- meaningful when its changed pixels' box covers more than `large_change_px`
  (a window-sized change is never trivial);
- trivial when it is explained by the pointer: a sprite found in this frame
  or the previous one, and every changed pixel inside where it is or was.
  Sprites are learned from a small change that reappears, same content,
  elsewhere in the same frame; one counts as the pointer once seen across
  more than `pointer_span_px` (a spinner's dot keeps to its place), and a
  solid bar or one no thicker than `caret_bar_px` never does (a text caret
  moving);
- trivial when it is a progress bar going on: a solid block that takes the
  colour of the whole column on one side of it and leaves that of the other
  (the bar growing into its track), on the rows where a bar grew within
  `relearn_s`, in or beside the span it grew over (starting over too); the
  first step at a place is the bar starting (meaningful), and the bar filling
  or emptying at once is a jump from its steps (below);
- trivial when it is a caret flip in place: the changed pixels fill a
  caret-sized rectangle (at least `caret_min_px` long: a dot typed is no
  caret; a block taller than wide, a character cell: a square is none) and
  swap colours one for one (a block, underline or
  I-beam switching on or off, or a block over a character inverting it, this
  one once seen flipping twice; an I-beam or underline no thicker than
  `caret_bar_px` may cover the anti-aliased edge of a glyph: one side one
  colour, not the one around it, the other mostly the colour around it),
  at a rectangle where a flip was seen within
  `blink_memory_s` or inside a meaningful change of the last
  `caret_first_blink_s` (the first blink of a caret that typing just drew;
  later, a caret turning on or off there has moved), or a solid one right
  after what input last
  drew with no flip seen since (the caret coming back on after keys typed
  while it was off; had it been on, it would have been seen going off); a
  flip anywhere else is the caret moving (a typed space): meaningful, and so
  are two flips of one size in a frame, one off and one on (a caret cannot
  blink at two places at once: it moved, as to the next line);
- meaningful when it is input at the caret: it touches where the caret was
  seen, or where such input just went and it moves on from there (typing is
  never taken for animation, however fast; a spinner beside a text field is
  not carried along); or, where no caret was seen (an I-beam drawn with each
  glyph), a glyph-sized change starting where the last small meaningful one
  ended, on its rows, on a place that was blank: a line being written (not
  on animated tiles: a spinner's next step);
- trivial when it rides on animation: at least `ride_share` of its tiles are
  animated, i.e. changed `animated_changes` times in quick succession (gaps
  typically at most `fast_gap_s`, none over twice that: a spinner, a video)
  or on a steady beat (a clock), until they rest for `animated_hold_s` (or
  three beats), or only `relearn_changes` where an animation was within
  `relearn_s` (a spinner shown again); a change larger than a caret's pair
  of cells also counts the changes in quick succession within
  `animation_reach_tiles` around it (a ball moving inside a video; a clock's
  beat does not spread); and in a small change (at most twice
  `pointer_max_px` a side) a tile going from one content it showed while
  animating to another (the last `SEEN` kept per tile) is animated at once
  when the change is no larger than the animation's steps: a spinner, a GIF
  or a progress bar shown again at its place is known from its second
  frame. The tiles of such a change count as animated from then on (a clock
  hand sweeping out from its hub). A region animated in quick succession
  (video, a GIF) is sampled again when no frame showing it went on for
  `animation_sample_s`, once for the whole region animating together (tiles
  animated within that time, connected); a steady beat (a clock) is not. Something appearing on a
  blank place (one colour before, the colour around it) starts an animation
  (meaningful) unless that place is still animated. An animation that stops
  (its place left blank, the colour around it) or changes state (more than
  `animation_jump` times the pixels of its last step: a progress bar turning
  "done") is meaningful; but a small thing that left a place blank and
  appeared, the same, on a blank place elsewhere in the same frame, where
  either place animated (a ball jumping back inside a video), is the
  animation going on;
- trivial when every tile toggles (back and forth between two contents seen
  flipping within `toggle_s`, or A, B, A, B, A within `flicker_s`) and the
  change is small (`toggle_max_px`): a hover flicker; undoing a change once
  (a typo deleted, a window switched back) is not a toggle;
- meaningful otherwise, however small.
A tile stays meaningful until the frame showing it is forwarded (it becomes
the reference). Times are capture times, so a replay is judged as recorded.

Memory per monitor is bounded: a frame-sized buffer of which only the tiles
that differed from the reference are ever written (pages never written take
no memory), four histories of `HISTORY` entries, `SEEN` contents and a few
numbers per tile (353 bytes: 0.72 MB at 1080p with 32-pixel tiles,
`memory_bytes`), at most
`MAX_SPRITES` pointer sprites of at most `pointer_max_px` squared pixels,
`MAX_PLACES` caret, change and progress-bar rectangles, and the toggle pairs of each tile
seen within `toggle_s`. Learning is bounded too: a new clock, spinner or
video is kept for its first `animated_changes` - 1 changes, then dropped
(`relearn_changes` - 1 where something animated before); shown again at its
place, only its first frame is kept while its contents are remembered.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.ma  # noqa: F401  (np.unique imports it on first use: a 20 ms stall in the middle of a frame)

import jarvis_rust_core as jrc
from pipeline.config import AnalysisConfig
from procs import kernels

HISTORY = 8  # signatures and change times kept per tile
SEEN = 8  # contents remembered per tile from its animations
MAX_SPRITES = 4
MAX_PLACES = 16
MEANINGFUL = ("meaningful", "sample", "input", "animation_end")  # causes that make a change meaningful

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1 and y1 exclusive


@dataclass(frozen=True)
class Verdict:
    meaningful: np.ndarray  # bool per tile: the tiles whose change matters
    causes: collections.Counter[str]  # what each connected change was judged to be
    counts: np.ndarray  # pixels changed per tile against the reference
    rows_skipped: int = 0  # rows of tiles not read: known to show the reference, none shadowed

    @property
    def kept(self) -> bool:
        return bool(self.meaningful.any())


@dataclass(eq=False)
class _Sprite:
    pixels: np.ndarray  # (h, w, colours)
    mask: np.ndarray  # (h, w) bool: the pixels that are the sprite's
    used: float
    seen: Box  # the box of the places it was seen at (top-left corners)

    def saw(self, at: tuple[int, int] | None) -> None:
        if at is not None:
            x, y = at
            self.seen = (min(self.seen[0], x), min(self.seen[1], y), max(self.seen[2], x), max(self.seen[3], y))

    def roams(self, span: int) -> bool:
        """Seen across more than `span` pixels: the pointer, not a part of
        something animating in its place (a spinner's dot)."""
        return self.seen[2] - self.seen[0] > span or self.seen[3] - self.seen[1] > span


class _Change:
    """Connected fresh tiles (`ys`, `xs`): their changed pixels' box, and
    (computed only when a rule looks at pixels) the changed pixels within it."""

    def __init__(self, ys: np.ndarray, xs: np.ndarray, box: Box, mask: np.ndarray | None = None,
                 source: tuple[np.ndarray, Callable[[Box], np.ndarray], int] | None = None) -> None:
        self.ys, self.xs, self.box, self._mask, self._source = ys, xs, box, mask, source
        self._before: np.ndarray | None = None

    @property
    def tiles(self) -> list[tuple[int, int]]:
        return list(zip(self.ys.tolist(), self.xs.tolist(), strict=False))

    @property
    def before(self) -> np.ndarray:
        """The previous frame's pixels in the box (read once)."""
        if self._before is None:
            assert self._source is not None
            self._before = self._source[1](self.box)
        return self._before

    @functools.cached_property
    def grows(self) -> bool:
        """Its block went from one colour to another, the colours of the
        whole columns on either side of it: a bar growing into its track (a
        progress bar), not a caret (beside a caret is a glyph's edge or the
        background, on both sides). Cheapest tests first: asked of every
        small change."""
        assert self._source is not None
        frame = self._source[0]
        x0, y0, x1, y1 = self.box
        if x1 - x0 < 3 or x0 < 1 or x1 >= frame.shape[1]:
            return False  # (an I-beam's neighbour may be a glyph's stem)
        left, right = (_packed(frame[y0:y1, x : x + 1]) for x in (x0 - 1, x1))
        if not ((left == left[0]).all() and (right == right[0]).all()) or left[0] == right[0]:
            return False
        now = _packed(frame[y0:y1, x0:x1])
        if not (now == now[0]).all() or now[0] not in (left[0], right[0]):
            return False
        was = _packed(self.before)
        return bool((was == was[0]).all() and was[0] == (right[0] if now[0] == left[0] else left[0]))

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            assert self._source is not None
            frame, _, t = self._source
            x0, y0, x1, y1 = self.box
            diff = _differs(frame[y0:y1, x0:x1], self.before)
            # The change's own tiles, at pixel resolution, over its box.
            ty0, tx0 = y0 // t, x0 // t
            tiles = np.zeros(((y1 - 1) // t - ty0 + 1, (x1 - 1) // t - tx0 + 1), bool)
            tiles[self.ys - ty0, self.xs - tx0] = True
            if tiles.all():  # (a band or a block of tiles: the box is all the change's)
                self._mask = diff
            else:
                inside = np.repeat(np.repeat(tiles, t, axis=0), t, axis=1)[y0 - ty0 * t : y1 - ty0 * t,
                                                                            x0 - tx0 * t : x1 - tx0 * t]
                self._mask = diff & inside
        return self._mask

    @property
    def pixels(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class ChangePolicy:
    """The model of one monitor's screen: `judge` each frame that reached
    analysis, then `settle` it (whether it became the reference)."""

    params: AnalysisConfig
    shape: tuple[int, ...]  # of the frames
    tile: int = field(init=False)
    shadow: np.ndarray = field(init=False)  # the tiles that differ from the reference (verdict > 0)
    reference: np.ndarray = field(init=False)  # during judge: the reference frame
    shadowed: np.ndarray = field(init=False)  # during judge: the tiles `shadow` holds
    sigs_now: np.ndarray = field(init=False)  # during judge: the fresh tiles' signatures
    unsettled: np.ndarray | None = None  # after judge: the tiles to keep in `shadow` unless the frame is kept
    verdict: np.ndarray = field(init=False)  # per tile: 0 as the reference, 1 trivial change, 2 meaningful change
    # Histories are (HISTORY, rows, cols), newest last: moving them on is a
    # copy of whole planes, not a gather and scatter per tile.
    sigs: np.ndarray = field(init=False)  # per tile, its last HISTORY contents
    times: np.ndarray = field(init=False)  # ... and when it changed to each
    changes: np.ndarray = field(init=False)  # per tile, times of its last HISTORY animation-relevant changes
    nearby: np.ndarray = field(init=False)  # ... of changes of it or a tile within animation_reach_tiles
    animated_until: np.ndarray = field(init=False)
    sampled_at: np.ndarray = field(init=False)
    step_px: np.ndarray = field(init=False)
    animated_at: np.ndarray = field(init=False)  # when each tile was last part of an animation
    frames_seen: np.ndarray = field(init=False)  # per tile, the contents it showed while animating (newest replaced)
    pairs: dict[tuple[int, int], dict[frozenset[int], float]] = field(default_factory=dict)
    sprites: list[_Sprite] = field(default_factory=list)
    flips: collections.deque[tuple[Box, float]] = field(default_factory=lambda: collections.deque(maxlen=MAX_PLACES))
    meant: collections.deque[tuple[Box, float]] = field(default_factory=lambda: collections.deque(maxlen=MAX_PLACES))
    typed: collections.deque[tuple[Box, float]] = field(default_factory=lambda: collections.deque(maxlen=MAX_PLACES))
    bars: dict[tuple[int, int], tuple[int, int, float]] = field(default_factory=dict)  # rows -> span grown, when
    frames: int = 0
    judged_at: float = -np.inf  # the capture time of the frame judged last
    moved: dict[int, _Change] = field(default_factory=dict)  # during judge: see _moves
    turned: dict[int, tuple[tuple[int, int], str]] = field(default_factory=dict)  # during judge: see _caret
    gpu: jrc.GpuKernels | None = None  # where the per-pixel pass runs (procs.backend); None: the CPU

    def __post_init__(self) -> None:
        self.tile = self.params.tile
        h, w = self.shape[:2]
        rows, cols = -(-h // self.tile), -(-w // self.tile)
        self.shadow = np.empty(self.shape, np.uint8)  # written tile by tile: untouched pages stay unallocated
        self.verdict = np.zeros((rows, cols), np.int8)
        self.sigs = np.zeros((HISTORY, rows, cols), np.uint64)
        self.times = np.full((HISTORY, rows, cols), -np.inf)
        self.changes = np.full((HISTORY, rows, cols), -np.inf)
        self.nearby = np.full((HISTORY, rows, cols), -np.inf)
        self.animated_until = np.full((rows, cols), -np.inf)
        self.sampled_at = np.full((rows, cols), -np.inf)
        self.step_px = np.zeros((rows, cols), np.int64)  # changed pixels of the last animation step a tile took part in
        self.frames_seen = np.zeros((rows, cols, SEEN), np.uint64)
        self.animated_at = np.full((rows, cols), -np.inf)

    @property
    def memory_bytes(self) -> int:
        arrays = (self.verdict, self.sigs, self.times, self.changes, self.nearby, self.animated_until, self.sampled_at,
                  self.step_px, self.animated_at, self.frames_seen)
        return sum(a.nbytes for a in arrays) + sum(s.pixels.nbytes + s.mask.nbytes for s in self.sprites)

    def settle(self, frame: np.ndarray | None, kept: bool) -> None:
        """After `judge`: the frame became the reference (`kept`), or not (the
        tiles where it differs from the reference are remembered; with no
        `frame`, its pixels are gone: those tiles count as the reference's
        again and are judged afresh when they next differ)."""
        assert self.unsettled is not None, "settle follows judge"
        if kept:
            self.verdict[...] = 0
            # What goes on shows every animated region: a sample of each.
            self.sampled_at[np.isfinite(self.sampled_at)] = self.judged_at
        elif frame is None:
            self.verdict[self.unsettled] = 0
        else:
            t = self.tile
            for ty0, ty1, tx0, tx1 in _tile_rects(self.unsettled):
                self.shadow[ty0 * t : ty1 * t, tx0 * t : tx1 * t] = frame[ty0 * t : ty1 * t, tx0 * t : tx1 * t]
        self.unsettled = None

    def judge(self, now: float, frame: np.ndarray, reference: np.ndarray, keys: tuple[int, int] | None = None,
              known_equal: np.ndarray | None = None) -> Verdict:
        """The verdict on `frame` (capture time `now`, seconds) against the
        reference (the last frame kept); `keys` name their pixels for the GPU,
        `known_equal` the rows of tiles known to show the reference
        (kernels.change_pass). A GpuError leaves the model as it was: the
        frame can be judged again on the CPU."""
        assert self.unsettled is None, "each judged frame is settled before the next"
        self.reference = reference
        self.shadowed = self.verdict > 0
        if self.gpu is not None:
            known_equal = None  # (read whole there)
        if known_equal is not None:
            # A shadowed row may have changed back to the reference: it is read (the kernel would read it too).
            known_equal = known_equal & ~self.shadowed.any(axis=1)
        # Tiles that differed from the reference in the previous frame are
        # compared with what they showed then; the others showed the reference.
        counts, fresh, boxes, _ = kernels.change_pass(
            frame, reference, self.shadow if self.shadowed.any() else None, self.shadowed,
            self.params.threshold, self.tile, signatures=False, gpu=self.gpu, keys=keys, known_equal=known_equal)
        changed_now = counts > 0
        self.verdict[~changed_now] = 0
        causes: collections.Counter[str] = collections.Counter()
        ys, xs, sizes, changes = self._changes(frame, fresh, boxes)
        # Contents matter only where a change is not window-sized (hashing a
        # whole frame's tiles would cost more than the rest of the pass): 0 elsewhere.
        hashed = np.zeros_like(fresh)
        for c in changes:
            if _area(c.box) <= self.params.large_change_px:
                hashed[c.ys, c.xs] = True
        sigs = kernels.tile_signatures(frame, hashed, self.tile) if hashed.any() else np.zeros(fresh.shape, np.uint64)
        self.sigs_now = sigs
        judged = self._judge_changes(now, frame, changes, causes)
        meaningful = np.zeros_like(fresh)
        counted = np.zeros_like(fresh)  # changes that count for animation rhythms
        meaningful[ys, xs] = np.repeat(np.array([c in MEANINGFUL for c in judged], bool), sizes)
        counted[ys, xs] = np.repeat(np.array([c not in ("pointer", "caret", "input", "progress") for c in judged], bool), sizes)
        judged_now = fresh & changed_now
        self.verdict[judged_now & meaningful] = 2
        self.verdict[judged_now & ~meaningful] = np.maximum(self.verdict[judged_now & ~meaningful], 1)
        self._remember(fresh, now, sigs, counted)
        self.unsettled = fresh & changed_now
        self.frames += 1
        self.judged_at = now
        skipped = int(np.count_nonzero(known_equal)) if known_equal is not None else 0
        return Verdict(self.verdict == 2, causes, counts, skipped)

    def previous(self, box: Box) -> np.ndarray:
        """The previous frame's pixels in `box` (during judge)."""
        x0, y0, x1, y1 = box
        out = self.reference[y0:y1, x0:x1].copy()
        t = self.tile
        oy, ox = y0 // t, x0 // t
        for ty0, ty1, tx0, tx1 in _tile_rects(self.shadowed[oy : -(-y1 // t), ox : -(-x1 // t)]):
            py0, py1 = max((oy + ty0) * t, y0), min((oy + ty1) * t, y1)
            px0, px1 = max((ox + tx0) * t, x0), min((ox + tx1) * t, x1)
            out[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] = self.shadow[py0:py1, px0:px1]
        return out

    # ------------------------------------------------------------------ changes

    def _changes(self, frame: np.ndarray, fresh: np.ndarray,
                 boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[_Change]]:
        """Fresh tiles grouped into connected changes (8-neighbour tiles): the
        tiles change after change, how many each change has, and the changes."""
        if not fresh.any():
            none = np.zeros(0, np.intp)
            return none, none, none, []
        _, ys, xs, starts, union = kernels.change_groups(fresh, boxes)
        ends = starts[1:].tolist()
        changes = [_Change(ys[s:e], xs[s:e], (x0, y0, x1, y1), source=(frame, self.previous, self.tile))
                   for s, e, (x0, y0, x1, y1) in zip(starts[:-1].tolist(), ends, union.tolist(), strict=True)]
        return ys, xs, np.diff(starts), changes

    def _judge_changes(self, now: float, frame: np.ndarray, changes: list[_Change],
                       causes: collections.Counter[str]) -> list[str]:
        """The cause of each change."""
        p = self.params
        causes_of: dict[int, str] = {}
        lines: set[int] = set()  # input judged by `_writes_line`
        small = [i for i, c in enumerate(changes) if _area(c.box) <= p.large_change_px]
        for i in self._pointer(now, frame, [changes[i] for i in small]):
            causes_of[small[i]] = "pointer"
        self.moved = self._moves(frame, [c for i, c in enumerate(changes) if i not in causes_of])
        self.turned = {}
        for i, c in enumerate(changes):
            if i in causes_of:
                continue
            if _area(c.box) > p.large_change_px:
                causes_of[i] = "meaningful"
            elif self._progress(now, frame, c):
                causes_of[i] = "progress"
            elif self._caret(now, frame, c):
                causes_of[i] = "caret"
            elif self._at_caret(now, c):
                causes_of[i] = "input"
            elif self._writes_line(now, c):
                causes_of[i] = "input"
                lines.add(i)
            elif (animated := self._animated(now, frame, c)) is not None:
                causes_of[i] = animated
            elif _area(c.box) <= p.toggle_max_px and all(self._toggles(now, t) for t in c.tiles):
                causes_of[i] = "toggle"
            else:
                causes_of[i] = "meaningful"
        # A caret cannot blink off at one place and on at another at once: that is it moving (a newline).
        flipped = [(i, d) for i, c in enumerate(changes) if causes_of[i] == "caret" and (d := self.turned.get(id(c)))]
        for i, (size, way) in flipped:
            if any(size == other and way != theirs for j, (other, theirs) in flipped if j != i):
                causes_of[i] = "input"
        for i, c in enumerate(changes):
            cause = causes_of[i]
            causes[cause] += 1
            if cause in MEANINGFUL:
                self.meant.append((c.box, now))
            if cause == "input" and i not in lines and _fits(c.box, 2 * p.caret_max_height_px):
                self.typed.append((c.box, now))
        return [causes_of[i] for i in range(len(changes))]

    # ------------------------------------------------------------------ pointer

    def _pointer(self, now: float, frame: np.ndarray, changes: list[_Change]) -> set[int]:
        """The changes the pointer explains: every changed pixel inside a known
        sprite found in this frame or the previous one (not at the same place
        in both). Unexplained small changes teach a sprite when one of them
        shows, elsewhere, what another showed before."""
        p = self.params
        pointer_sized = [i for i, c in enumerate(changes) if _fits(c.box, 2 * p.pointer_max_px)]
        explained = set()
        for i in pointer_sized:
            c = changes[i]
            for sprite in self.sprites:
                now_at = _find(lambda box: frame[box[1] : box[3], box[0] : box[2]], self.shape, sprite, c.box,
                               p.pointer_match)
                before_at = _find(self.previous, self.shape, sprite, c.box, p.pointer_match)
                if (now_at or before_at) and now_at != before_at and _covers(c, [now_at, before_at], sprite):
                    sprite.used = now
                    sprite.saw(now_at)
                    sprite.saw(before_at)
                    if sprite.roams(p.pointer_span_px):
                        explained.add(i)
                    break
        # Learning: separate blobs of changed pixels (two may share a change, or a tile).
        of = {i: _blobs(changes[i]) for i in pointer_sized if i not in explained}
        blobs = [(i, b) for i, found in of.items() if all(_fits(b.box, p.pointer_max_px) for b in found) for b in found]
        moved: set[int] = set()
        alike: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)  # only same-shaped blobs can match
        for k, (_, blob) in enumerate(blobs):
            alike[blob.mask.shape].append(k)
        for ks in alike.values():
            for a in ks:
                for b in ks:
                    gone, came = blobs[a][1], blobs[b][1]
                    if a != b and not {a, b} & moved and self._moved(gone, came, frame):
                        if self._learn(gone, came, frame, now).roams(p.pointer_span_px):
                            moved |= {a, b}
        for i in {i for i, _ in blobs}:
            if all(k in moved for k, (j, _) in enumerate(blobs) if j == i):
                explained.add(i)
        return explained

    def _moves(self, frame: np.ndarray, changes: list[_Change]) -> dict[int, _Change]:
        """Small things that left one place blank and appeared, the same, at
        another (a ball jumping back inside a video): by id, each change with
        the other of its pair."""
        p = self.params
        small = [c for c in changes if _fits(c.box, 2 * p.pointer_max_px)][:MAX_PLACES]  # bounded work per frame
        # One colour inside the box only (the thing may touch its region's
        # edge); a solid thing leaves and takes one colour either way.
        gone = [c for c in small if self._blanked(frame, c, border=0)]
        came = [c for c in small if self._appeared(c, border=0)]
        pairs: dict[int, _Change] = {}
        for g in gone:
            for c in came:
                if c is not g and id(c) not in pairs and id(g) not in pairs and self._moved(g, c, frame):
                    pairs[id(g)], pairs[id(c)] = c, g
                    break
        return pairs

    def _moved(self, gone: _Change, came: _Change, frame: np.ndarray) -> bool:
        """What `gone`'s pixels showed in the previous frame shows at `came`'s
        place in this one (same size, same content)."""
        if gone.mask.shape != came.mask.shape or gone.pixels < 8:
            return False
        cx, cy, cx1, cy1 = came.box
        before = _colours(gone.before)[gone.mask]
        after = _colours(frame[cy:cy1, cx:cx1])[gone.mask]
        return bool(np.mean(np.all(before == after, axis=-1)) >= self.params.pointer_match)

    def _learn(self, gone: _Change, came: _Change, frame: np.ndarray, now: float) -> _Sprite:
        """The sprite that moved from `gone` to `came` (a known one, or a new
        one remembered); a solid bar (one colour) or one no thicker than
        `caret_bar_px` (a text caret moving) is never the pointer."""
        x0, y0, x1, y1 = came.box
        pixels = _colours(frame[y0:y1, x0:x1]).copy()
        gx, gy = gone.box[0], gone.box[1]
        sprite = _Sprite(pixels, came.mask.copy(), now, (min(gx, x0), min(gy, y0), max(gx, x0), max(gy, y0)))
        if len(np.unique(_packed(pixels)[came.mask.reshape(-1)])) < 2 or min(x1 - x0, y1 - y0) <= self.params.caret_bar_px:
            sprite.seen = (x0, y0, x0, y0)  # never roams (a bar as thin as an I-beam may be the text caret)
            return sprite
        for known in self.sprites:
            if known.mask.shape == sprite.mask.shape and np.array_equal(known.mask, sprite.mask) and np.array_equal(
                    known.pixels[known.mask], pixels[came.mask]):
                known.used = now
                known.saw((gone.box[0], gone.box[1]))
                known.saw((x0, y0))
                return known
        if len(self.sprites) >= MAX_SPRITES:
            del self.sprites[min(range(len(self.sprites)), key=lambda k: self.sprites[k].used)]
        self.sprites.append(sprite)
        return sprite

    # ------------------------------------------------------------------ progress

    def _progress(self, now: float, frame: np.ndarray, c: _Change) -> bool:
        """A bar growing by a solid block into its track (`_Change.grows`) where a bar
        grew on the same rows within `relearn_s`, in or right beside the span
        it grew over: a progress bar going on, also starting over. The first
        step at a place is the bar starting to move (meaningful)."""
        p = self.params
        x0, y0, x1, y1 = c.box
        if not _fits(c.box, 2 * p.pointer_max_px) or not c.grows or not c.mask.all():
            return False
        bar = self.bars.pop((y0, y1), None)
        # (an anti-aliased edge may leave a column between steps)
        on = bar is not None and now - bar[2] <= p.relearn_s and x0 <= bar[1] + 1 and bar[0] <= x1 + 1
        if bar is not None and on:
            x0, x1 = min(x0, bar[0]), max(x1, bar[1])
        if len(self.bars) >= MAX_PLACES:
            del self.bars[min(self.bars, key=lambda k: self.bars[k][2])]
        self.bars[(y0, y1)] = (x0, x1, now)
        self.step_px[c.ys, c.xs] = c.pixels  # the bar filling or emptying at once is then a jump: it matters
        return on

    # ------------------------------------------------------------------ caret

    def _caret(self, now: float, frame: np.ndarray, c: _Change) -> bool:
        """A caret flip in place (see the module docstring); every flip's
        rectangle is remembered, also one judged a move."""
        p = self.params
        x0, y0, x1, y1 = c.box
        if x1 - x0 > p.caret_max_width_px or y1 - y0 > p.caret_max_height_px or not c.mask.all():
            return False
        if max(x1 - x0, y1 - y0) < p.caret_min_px:
            return False  # a dot or a comma typed, no caret
        if min(x1 - x0, y1 - y0) > p.caret_bar_px and x1 - x0 >= y1 - y0:
            return False  # a block caret is a character cell, taller than wide: a square is no caret
        before, after = _packed(c.before), _packed(frame[y0:y1, x0:x1])
        pairs = np.unique(before << 32 | after)
        around = self._around(frame, c.box)
        if len(np.unique(before)) == len(pairs) == len(np.unique(after)):
            # A solid bar or block switching (one colour to one colour) is a caret; a
            # swap of two colours may also be a block moving one cell and back (a
            # space typed and deleted): in place only once seen flipping twice.
            solid = len(pairs) == 1
            if solid and c.grows:
                return False  # a bar growing by a block (progress), not a caret
        elif min(x1 - x0, y1 - y0) <= p.caret_bar_px and (
            _over_glyph(before, after, around) or _over_glyph(after, before, around)
        ):
            solid = True  # an I-beam over the edge of a glyph: what it covered is not one colour
        else:
            return False  # not a caret switching
        seen = sum(box == c.box and now - t <= p.blink_memory_s for box, t in self.flips)
        in_place = seen >= (1 if solid else 2)
        # A solid caret inside what input just drew is that input's caret.
        drawn = solid and any(_inside(c.box, box) and now - t <= p.caret_first_blink_s for box, t in self.meant)
        follows = solid and self._after_input(now, c.box)
        self.flips.append((c.box, now))
        if solid:
            # Which way it turned: off takes the colour around it, on leaves it.
            gone = bool((after == around).all()) or _over_glyph(before, after, around)
            self.turned[id(c)] = ((x1 - x0, y1 - y0), "off" if gone else "on")
        return in_place or drawn or follows

    def _around(self, frame: np.ndarray, box: Box) -> int:
        """The colour most common among the pixels just around `box` in
        `frame` (packed; -1 when the box fills the frame)."""
        h, w = self.shape[:2]
        x0, y0, x1, y1 = box
        rows = [frame[y, max(x0 - 1, 0) : min(x1 + 1, w)] for y in (y0 - 1, y1) if 0 <= y < h]
        cols = [frame[y0:y1, x] for x in (x0 - 1, x1) if 0 <= x < w]
        ring = np.concatenate([_packed(a[None]) for a in rows + cols]) if rows or cols else np.zeros(0, np.int64)
        if not len(ring):
            return -1
        values, counts = np.unique(ring, return_counts=True)
        return int(values[np.argmax(counts)])

    def _after_input(self, now: float, box: Box) -> bool:
        """`box` lies right after what input last drew, with no flip since:
        the caret coming back on after keys typed while it was off (had it
        been on, it would have been seen going off: a typed space)."""
        p = self.params
        typed = [(b, t) for b, t in self.meant if _fits(b, 2 * p.caret_max_height_px) and now - t <= p.blink_memory_s]
        if not typed:
            return False
        last, at = typed[-1]
        beside = 0 <= box[0] - last[2] <= p.caret_max_width_px // 4 and box[1] < last[3] and last[1] < box[3]
        return beside and not any(t > at and _touches(b, box, (p.caret_max_width_px, 0)) for b, t in self.flips)

    def _at_caret(self, now: float, c: _Change) -> bool:
        """The change touches where the caret was seen (a flip), or where input
        at the caret just went and it moves on from there: typing, not
        animation, however fast (something changing in place beside it, a
        spinner, is not carried along)."""
        p = self.params
        reach = (p.caret_max_width_px, p.caret_max_height_px // 2)
        if any(now - t <= p.blink_memory_s and _touches(c.box, box, reach) for box, t in self.flips):
            return True
        return any(now - t <= p.blink_memory_s and _touches(c.box, box, reach)
                   and _overlap(c.box, box) <= 0.75 * _area(c.box) for box, t in self.typed)

    def _writes_line(self, now: float, c: _Change) -> bool:
        """Where no caret was seen (an I-beam drawn with each glyph): a
        glyph-sized change starting where the last small meaningful one
        ended, on its rows, on a place that was blank (that change's caret
        apart) is the line being written. Not on animated tiles (a spinner's
        next step), and it leads nowhere further (`typed` keeps only input at
        a caret seen)."""
        p = self.params
        x0, y0, x1, y1 = c.box
        glyph_sized = (p.caret_max_width_px, p.caret_max_height_px)
        if not _within(c.box, glyph_sized) or id(c) in self.moved or (self.animated_until[c.ys, c.xs] >= now).any():
            return False
        near = p.caret_max_width_px // 4
        for b, t in self.meant:
            if now - t <= p.blink_memory_s and abs(x0 - b[2]) <= near and b[0] < x0 and _within(b, glyph_sized) \
                    and 2 * (min(y1, b[3]) - max(y0, b[1])) >= min(y1 - y0, b[3] - b[1]):
                fresh = _packed(c.before[:, max(0, b[2] - x0) :])  # (that change's caret apart)
                if len(fresh) and (fresh == fresh[0]).all():
                    return True
        return False

    # ------------------------------------------------------------------ animation

    def _animated(self, now: float, frame: np.ndarray, c: _Change) -> str | None:
        """'animation' when the change rides on animated tiles, 'sample' when
        that animation is due to be sampled again, 'animation_end' when it
        stopped or changed state; None when it does not ride on any."""
        p = self.params
        ys, xs = c.ys, c.xs
        before, after = self.sigs[-1, ys, xs], self.sigs_now[ys, xs]
        seen = self.frames_seen[ys, xs]
        # Going from one frame it showed animating to another: the animation again.
        again = (before[:, None] == seen).any(axis=1) & (after[:, None] == seen).any(axis=1) & (before != 0)
        again &= _fits(c.box, 2 * p.pointer_max_px)  # small things shown again (a whole player's start is no step)
        held, rhythm = self.animated_until[ys, xs] >= now, self._rhythm(now, c)
        animated = held | rhythm | again
        other = self.moved.get(id(c))
        if other is not None and (self.animated_until[other.ys, other.xs] >= now).any():
            animated[:] = True  # what animated there jumped here (the other place left blank is no end)
        elif not animated.any() or animated.sum() < p.ride_share * len(ys):
            return None
        elif not held.any() and self._appeared(c):
            return None  # something appearing on a blank place starts, it does not go on
        times = self.nearby[:, ys[animated], xs[animated]].T
        known = times[0][np.isfinite(times[0])]  # the first animated tile's beat sets how long it holds
        hold = max(p.animated_hold_s, 3 * float(_median(np.diff(known))) if len(known) > 1 else 0.0)
        # An animation stopping (its place blank again) or changing state (a
        # progress bar turning "done": far more pixels than its steps) matters.
        steps = self.step_px[ys[animated], xs[animated]]
        usual = float(_median(steps[steps > 0])) if (steps > 0).any() else 0.0
        if not (held.any() or rhythm.any() or other is not None or usual):
            return None  # contents seen animating, but no step to compare with: not known to go on
        if other is None and (self._blanked(frame, c) or (usual and c.pixels > p.animation_jump * usual)):
            self.animated_until[ys, xs] = -np.inf  # (the last step stays: the animation shown again is compared with it)
            return "animation_end"
        self.step_px[ys, xs] = c.pixels
        self._saw(ys, xs, before)
        self._saw(ys, xs, after)
        self.animated_until[ys, xs] = np.maximum(self.animated_until[ys, xs], now + hold)
        self.animated_at[ys, xs] = now
        self.sampled_at[ys, xs] = np.where(np.isfinite(self.sampled_at[ys, xs]), self.sampled_at[ys, xs], now)
        # Video and GIFs are sampled (what they show moves on); a clock's beat is not.
        fast = bool((now - times[:, -1] <= p.fast_gap_s).any())
        if fast and (now - self.sampled_at[ys, xs]).min() >= p.animation_sample_s:
            # One sample for the whole region animating together (a ball moving about a video).
            labels = kernels.tile_groups(now - self.animated_at <= p.animation_sample_s)
            region = np.isin(labels, np.unique(labels[ys, xs]))
            if (now - self.sampled_at[region]).min() >= p.animation_sample_s:
                self.sampled_at[region] = now
                return "sample"
        return "animation"

    def _saw(self, ys: np.ndarray, xs: np.ndarray, sigs: np.ndarray) -> None:
        """Tiles (ys, xs) showed `sigs` animating: remembered unless known (the oldest goes)."""
        known = (self.frames_seen[ys, xs] == sigs[:, None]).any(axis=1) | (sigs == 0)
        ys, xs, sigs = ys[~known], xs[~known], sigs[~known]
        self.frames_seen[ys, xs] = np.concatenate([self.frames_seen[ys, xs, 1:], sigs[:, None]], axis=1)

    def _appeared(self, c: _Change, border: int = 1) -> bool:
        """The change's place showed one colour before, the colour around it
        (`border` pixels around)."""
        h, w = self.shape[:2]
        x0, y0, x1, y1 = c.box
        around = _packed(self.previous((max(x0 - border, 0), max(y0 - border, 0), min(x1 + border, w),
                                        min(y1 + border, h))))
        return bool((around == around[0]).all())

    def _blanked(self, frame: np.ndarray, c: _Change, border: int = 1) -> bool:
        """The change left its place one colour, the colour around it
        (`border` pixels around): what animated there is gone."""
        h, w = self.shape[:2]
        x0, y0, x1, y1 = c.box
        around = _packed(frame[max(y0 - border, 0) : min(y1 + border, h), max(x0 - border, 0) : min(x1 + border, w)])
        return bool((around == around[0]).all())

    def _rhythm(self, now: float, c: _Change) -> np.ndarray:
        """Per tile of `c`: this change (not yet recorded) completes
        `animated_changes` changes of the tile in quick succession or on a
        steady beat; or, for a change larger than a caret's pair of cells
        (typing moves on a cell at a time), of the tiles around it (something
        moving about inside a video)."""
        p = self.params
        ys, xs = c.ys, c.xs
        recent = np.full((len(ys), 1), now)
        own_times = np.concatenate([self.changes[HISTORY - p.animated_changes + 1 :, ys, xs].T, recent], axis=1)
        small = _area(c.box) <= 2 * p.caret_max_width_px * p.caret_max_height_px
        if small:
            own, around = self._beats(own_times)[1], None
        else:
            # Only quick succession spreads (a clock's beat does not make its neighbours animated).
            near_times = np.concatenate([self.nearby[HISTORY - p.animated_changes + 1 :, ys, xs].T, recent], axis=1)
            fast, either = self._beats(np.concatenate([own_times, near_times]))  # (one call for both: rows of the same length)
            own, around = either[: len(ys)], fast[len(ys) :]
        # A place that animated before (a spinner shown again, a page loading again) is known sooner
        # (with as many changes as animated_changes, that is `own` already).
        again = now - self.animated_at[ys, xs] <= p.relearn_s
        if p.relearn_changes != p.animated_changes and again.any():
            quick = self._beats(np.concatenate([self.changes[HISTORY - p.relearn_changes + 1 :, ys, xs].T, recent], axis=1))[1]
            own |= again & quick
        return own if around is None else np.asarray(own | around, bool)

    def _beats(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of change times: in quick succession; in quick succession or on a steady beat."""
        p = self.params
        known = np.isfinite(times[:, 0])
        gaps = np.diff(np.where(known[:, None], times, 0.0), axis=1)
        beat = _median(gaps)
        # Quick succession: typically one gap apart, none more than two (a late capture).
        fast = (beat <= p.fast_gap_s) & (gaps <= 2 * p.fast_gap_s).all(axis=1)
        beats = (beat >= p.steady_min_period_s) & (np.abs(gaps - beat[:, None]) <= p.steady_jitter * beat[:, None]).all(axis=1)
        return np.asarray(known & fast, bool), np.asarray(known & (fast | beats), bool)

    # ------------------------------------------------------------------ toggles

    def _toggles(self, now: float, t: tuple[int, int]) -> bool:
        p = self.params
        sig = int(self.sigs_now[t])
        last = int(self.sigs[-1][t])
        pair = frozenset((last, sig))
        known = self.pairs.setdefault(t, {})
        for k in [k for k, at in known.items() if now - at > p.toggle_s]:
            del known[k]
        if pair in known:
            known[pair] = now
            return True
        a0, b0, a1 = (int(s) for s in self.sigs[-3:, t[0], t[1]])
        if a0 == a1 == sig and b0 == last and now - float(self.times[-3][t]) <= p.flicker_s:
            known[pair] = now  # A, B, A, B, now A
            return True
        return False

    def _remember(self, fresh: np.ndarray, now: float, sigs: np.ndarray, counted: np.ndarray) -> None:
        """The `fresh` tiles now show new content (`sigs`): their histories
        move on (the change times only where the change counts for rhythms)."""
        if not fresh.any():
            return
        _push(self.sigs, fresh, sigs)
        _push(self.times, fresh, now)
        counted = counted & fresh
        _push(self.changes, counted, now)
        # Each change also counts for the tiles around it: something moving
        # about in a region (a ball in a video) keeps the whole region busy.
        r = self.params.animation_reach_tiles
        wide = counted.copy()  # grown along rows, then along columns: the square around each
        for d in range(1, r + 1):
            wide[:, d:] |= counted[:, :-d]
            wide[:, :-d] |= counted[:, d:]
        grown = wide.copy()
        for d in range(1, r + 1):
            grown[d:] |= wide[:-d]
            grown[:-d] |= wide[d:]
        _push(self.nearby, grown, now)


def _tile_rects(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The set tiles of `mask` as rectangles (ty0, ty1, tx0, tx1; ends
    exclusive): runs along rows, each grown down while the rows below have
    the same run. A band or a block is one rectangle: one copy, not one per tile."""
    if not mask.any():
        return []
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    (ys, x0s), (_, x1s) = np.nonzero(edges == 1), np.nonzero(edges == -1)  # (row-major: the runs' starts and ends pair up)
    rects: list[tuple[int, int, int, int]] = []
    growing: dict[tuple[int, int], list[int]] = {}  # run -> [first row, last row]
    for y, x0, x1 in zip(ys.tolist(), x0s.tolist(), x1s.tolist(), strict=True):
        rows = growing.get((x0, x1))
        if rows is not None and rows[1] == y - 1:
            rows[1] = y
            continue
        if rows is not None:
            rects.append((rows[0], rows[1] + 1, x0, x1))
        growing[(x0, x1)] = [y, y]
    rects += [(y0, y1 + 1, x0, x1) for (x0, x1), (y0, y1) in growing.items()]
    return rects


def _median(a: np.ndarray) -> np.ndarray:
    """np.median(a, axis=-1), for the few values of a history or a change
    (np.median's general path costs more than the sort)."""
    s, n = np.sort(a, axis=-1), a.shape[-1]
    return s[..., n // 2] if n % 2 else (s[..., n // 2 - 1] + s[..., n // 2]) / 2


def _push(history: np.ndarray, where: np.ndarray, new: np.ndarray | float) -> None:
    """The tiles `where` is set of `history` (n, rows, cols; newest last)
    forget their oldest entry and take `new` (a map, or one value for all)."""
    if where.all():  # a window-sized change: whole planes move on
        history[:-1] = history[1:]
        history[-1] = new
        return
    np.copyto(history[:-1], history[1:], where=where)
    np.copyto(history[-1], new, where=where)


def _colours(a: np.ndarray) -> np.ndarray:
    """Pixels as (..., colours): alpha left out, gray as one colour."""
    return a[..., :3] if a.ndim == 3 else a[..., None]


def _packed(a: np.ndarray) -> np.ndarray:
    """Each pixel's colour as one integer (flattened), the same for any
    strides: the first channel in the lowest byte."""
    if a.ndim == 3 and a.shape[-1] == 4 and a.dtype == np.uint8 and a.strides[-1] == 1 and a.strides[-2] == 4:
        return (a.view(np.uint32)[..., 0] & np.uint32(0xFFFFFF)).astype(np.uint64).reshape(-1)  # alpha left out
    c = _colours(a).astype(np.uint64)
    out: np.ndarray = c[..., 0].copy()
    for k in range(1, c.shape[-1]):
        out |= c[..., k] << np.uint64(8 * k)  # first channel lowest, as the word read above
    return out.reshape(-1)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[-1] == 4 and a.dtype == np.uint8 and a.strides[-1] == b.strides[-1] == 1 \
            and a.strides[-2] == b.strides[-2] == 4:
        return np.asarray((a.view(np.uint32)[..., 0] ^ b.view(np.uint32)[..., 0]) & np.uint32(0xFFFFFF) != 0, bool)
    return np.asarray(np.any(_colours(a) != _colours(b), axis=-1), bool)


def _over_glyph(caret: np.ndarray, under: np.ndarray, around: int) -> bool:
    """`caret` (one side of a flip, packed colours) is one colour other than
    the one most common around it, and `under` (the other side) mostly that
    colour around: a caret over what it covers (the edge of a glyph beside
    it), not a glyph typed on the background (that side is the colour
    around)."""
    if around < 0 or not (caret == caret[0]).all():
        return False
    return int(caret[0]) != around and 2 * int(np.count_nonzero(under == around)) > len(under)


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _fits(box: Box, side: int) -> bool:
    return _within(box, (side, side))


def _within(box: Box, size: tuple[int, int]) -> bool:
    """The box is at most `size` (width, height)."""
    return box[2] - box[0] <= size[0] and box[3] - box[1] <= size[1]


def _touches(a: Box, b: Box, reach: tuple[int, int]) -> bool:
    """Boxes a and b overlap or lie within `reach` (x, y pixels) of each other."""
    return a[0] < b[2] + reach[0] and b[0] < a[2] + reach[0] and a[1] < b[3] + reach[1] and b[1] < a[3] + reach[1]


def _overlap(a: Box, b: Box) -> int:
    """Pixels the boxes share."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _inside(inner: Box, outer: Box) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _find(crop: Callable[[Box], np.ndarray], shape: tuple[int, ...], sprite: _Sprite, near: Box,
          match: float) -> tuple[int, int] | None:
    """Where `sprite` shows in a frame (`crop` gives its pixels in a box)
    overlapping box `near` (x, y of its top-left), if anywhere: candidates
    where three of its pixels match, each then checked whole."""
    sh, sw = sprite.mask.shape
    h, w = shape[:2]
    ys, xs = max(near[1] - sh + 1, 0), max(near[0] - sw + 1, 0)
    ny, nx = min(near[3], h - sh + 1) - ys, min(near[2], w - sw + 1) - xs
    if ny <= 0 or nx <= 0:
        return None
    colours = _colours(crop((xs, ys, xs + nx + sw - 1, ys + ny + sh - 1)))
    my, mx = np.nonzero(sprite.mask)
    hits = np.ones((ny, nx), bool)
    for k in (0, len(my) - 1, len(my) // 2):
        hits &= np.all(colours[my[k] : my[k] + ny, mx[k] : mx[k] + nx] == sprite.pixels[my[k], mx[k]], axis=-1)
    want = sprite.pixels[sprite.mask]
    for cy, cx in np.argwhere(hits).tolist():
        got = colours[cy : cy + sh, cx : cx + sw][sprite.mask]
        if np.count_nonzero(np.all(got == want, axis=-1)) >= match * len(want):
            return xs + cx, ys + cy
    return None


def _blobs(c: _Change) -> list[_Change]:
    """The change's changed pixels as separate 8-connected blobs."""
    labels = kernels.tile_groups(c.mask)
    ys, xs = np.nonzero(labels >= 0)
    if not len(ys):
        return []
    order = np.argsort(labels[ys, xs], kind="stable")
    ys, xs = ys[order], xs[order]
    starts = np.flatnonzero(np.diff(labels[ys, xs], prepend=-1))
    bounds = zip(np.minimum.reduceat(ys, starts).tolist(), np.maximum.reduceat(ys, starts).tolist(),
                 np.minimum.reduceat(xs, starts).tolist(), np.maximum.reduceat(xs, starts).tolist(), strict=False)
    out = []
    for k, (y0, y1, x0, x1) in enumerate(bounds):
        mask = labels[y0 : y1 + 1, x0 : x1 + 1] == k
        box = (c.box[0] + x0, c.box[1] + y0, c.box[0] + x1 + 1, c.box[1] + y1 + 1)
        out.append(_Change(c.ys, c.xs, box, mask, c._source))
    return out


def _covers(c: _Change, places: list[tuple[int, int] | None], sprite: _Sprite) -> bool:
    """Every changed pixel of `c` lies in the sprite's box at one of `places`."""
    sh, sw = sprite.mask.shape
    x0, y0, x1, y1 = c.box
    inside = np.zeros(c.mask.shape, bool)
    for at in places:
        if at is None:
            continue
        ax, ay = at
        inside[max(ay - y0, 0) : max(ay + sh - y0, 0), max(ax - x0, 0) : max(ax + sw - x0, 0)] = True
    return bool(inside[c.mask].all())
