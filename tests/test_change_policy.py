"""procs.change_policy on synthetic frames, one test per category of the
semantics (its module docstring), driven like the analysis stage drives it:
each frame is compared with the reference (the last frame kept) and a frame
with a meaningful change becomes the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import AnalysisConfig
from procs import kernels
from procs.change_policy import ChangePolicy, Verdict

T = 16  # tile size
H, W = 160, 320
WHITE, BLACK, GRAY = 255, 0, 128
CELL_W, CELL_H = 6, 13
PARAMS = AnalysisConfig(tile=T, large_change_px=64 * 64, toggle_max_px=24 * 24)


class Screen:
    """The stage's side: the frame on screen, the reference, the model; with
    `bands`, the rows of tiles whose bands' digests are the reference's are
    marked known equal, as the stage marks them from capture's digests."""

    def __init__(self, params: AnalysisConfig = PARAMS, bands: bool = True) -> None:
        self.frame = np.full((H, W, 4), WHITE, np.uint8)
        self.ref = self.frame.copy()
        self.params = params
        self.policy = ChangePolicy(params, self.frame.shape)
        self.bands = bands
        self.last: Verdict | None = None

    def show(self, t: float) -> bool:
        """Judges the frame on screen at time t; True when it is kept."""
        frame = self.frame.copy()
        known = None
        if self.bands:
            known = kernels.known_equal_rows(kernels.frame_digests(frame)[1], kernels.frame_digests(self.ref)[1], H,
                                             self.params.tile)
        verdict = self.last = self.policy.judge(t, frame, self.ref, known_equal=known)
        self.policy.settle(frame, verdict.kept)
        if verdict.kept:
            self.ref = frame
        return verdict.kept

    def block(self, x: int, y: int, w: int = CELL_W, h: int = CELL_H, colour: int = BLACK) -> None:
        self.frame[y : y + h, x : x + w, :3] = colour

    def glyph(self, x: int, y: int, seed: int) -> None:
        """A character: a sparse pattern in the cell, never a full block."""
        mask = np.random.default_rng(seed).random((CELL_H, CELL_W)) < 0.3
        mask[0, 0], mask[-1, -1] = True, False
        self.frame[y : y + CELL_H, x : x + CELL_W, :3][mask] = BLACK


def blink(s: Screen, x: int, y: int, start: float, end: float, period: float = 0.5, w: int = CELL_W,
          h: int = CELL_H) -> list[bool]:
    """A caret at (x, y) switching every `period`; what was kept."""
    kept, t = [], start
    on = bool(s.frame[y, x, 0] != BLACK)
    while t < end:
        s.block(x, y, w, h, BLACK if on else WHITE)
        kept.append(s.show(t))
        on, t = not on, t + period
    return kept


def caret_gone_off() -> Screen:
    """A block caret at (20, 40) that blinked for 5 s and is off now."""
    s = Screen()
    s.block(20, 40)
    assert s.show(0.0)
    blink(s, 20, 40, 0.5, 5.0)
    assert s.frame[40, 20, 0] == WHITE
    return s


def test_a_caret_blinking_in_place_is_dropped_block_underline_and_ibeam() -> None:
    for w, h in ((CELL_W, CELL_H), (CELL_W, 2), (1, CELL_H)):
        s = Screen()
        s.glyph(20, 40, seed=1)
        assert s.show(0.1)
        kept = blink(s, 38, 40, 0.5, 20.0, w=w, h=h)
        assert kept[0], "a caret appearing where none was is the caret moving: kept"
        assert not any(kept[1:]), (w, h, kept)


def test_a_block_caret_over_a_character_inverts_it_and_is_dropped_once_learned() -> None:
    s = Screen()
    s.glyph(20, 40, seed=2)
    assert s.show(0.1)
    kept, t = [], 0.5
    for _ in range(20):
        s.frame[40 : 40 + CELL_H, 20 : 20 + CELL_W, :3] = 255 - s.frame[40 : 40 + CELL_H, 20 : 20 + CELL_W, :3]
        kept.append(s.show(t))
        t += 0.5
    assert all(kept[:2]) and not any(kept[2:]), "two-coloured swaps: learned in two flips"


def test_typed_characters_spaces_and_deletes_are_kept_the_blinks_between_dropped() -> None:
    s = Screen()
    x, y = 20, 40
    s.block(x, y)
    assert s.show(0.0)
    blink(s, x, y, 0.5, 3.0)
    t = 3.0
    rng = np.random.default_rng(3)
    for i in range(30):
        t += float(rng.choice([0.25, 0.25, 0.5, 0.75, 1.5]))
        s.block(x, y, colour=WHITE)  # the caret leaves its cell...
        kind = ["char", "space", "delete"][i % 3]
        if kind == "char":
            s.glyph(x, y, seed=i)
            x += CELL_W
        elif kind == "space":
            x += CELL_W
        else:
            x -= CELL_W
            s.block(x, y, colour=WHITE)
        s.block(x, y)  # ...and shows after the input
        assert s.show(t), f"{kind} {i} at {t}s was dropped"
        if rng.random() < 0.5:  # a blink or two before the next key
            t += 0.25
            s.block(x, y, colour=WHITE)
            assert not s.show(t), f"the blink after {kind} {i} was kept"
            t += 0.25
            s.block(x, y)
            assert not s.show(t)


def test_a_caret_moved_while_it_was_off_is_input() -> None:
    s = caret_gone_off()
    s.block(26, 40)  # a space typed: the caret shows one cell on
    assert s.show(5.2)


def test_a_dot_typed_is_no_caret_flip() -> None:
    s = caret_gone_off()
    s.block(21, 50, 2, 2)  # a full stop typed while the caret is off
    assert s.show(5.1)


def test_the_caret_coming_back_on_after_keys_typed_while_it_was_off_is_a_blink() -> None:
    s = caret_gone_off()
    s.glyph(20, 40, seed=5)  # a key typed while the caret is off: no caret drawn
    assert s.show(5.1)
    s.block(26, 40)  # the caret comes back on right after it
    assert not s.show(5.5), "the caret's next phase after a key is no input"
    s.block(26, 40, colour=WHITE)
    assert not s.show(6.0)


def test_a_caret_turning_on_inside_output_long_after_it_was_drawn_has_moved() -> None:
    for after, kept in ((0.25, False), (3.0, True)):
        s = Screen()
        for x in (20, 26, 32, 62, 68):  # a line of output, a gap of blank cells in it
            s.glyph(x, 40, seed=x)
        assert s.show(1.0)
        s.block(44, 40)  # a caret turning on in the gap
        assert s.show(1.0 + after) == kept, f"{after} s after the output: its first blink, or the caret moved"


def test_a_line_typed_where_no_caret_was_seen_is_kept_however_fast() -> None:
    # An I-beam drawn with each glyph and never seen blinking; 32-pixel tiles
    # hold eight 4-pixel cells, so each tile changes fast enough to look animated.
    s = Screen(dataclasses.replace(PARAMS, tile=32))
    rng = np.random.default_rng(7)
    x, t = 20, 0.0
    for i in range(24):
        t += 0.25
        s.frame[40 : 40 + CELL_H, x, :3] = WHITE  # the I-beam leaves...
        glyph = rng.random((CELL_H, 3)) < 0.4
        glyph[0, 0] = True
        s.frame[40 : 40 + CELL_H, x : x + 3, :3][glyph] = BLACK  # ...a glyph takes its place...
        s.frame[40 : 40 + CELL_H, x + 4, :3] = BLACK  # ...and it shows after it
        assert s.show(t), f"glyph {i} at {t}s was dropped"
        x += 4


def test_squares_taking_turns_in_an_animation_are_no_caret_moving() -> None:
    # One solid square off and one on, the same size, in each frame: were a
    # square a caret, each frame would be the caret moving (input, kept).
    s = Screen()
    places = (100, 148, 196)
    s.block(places[0], 100, 12, 12)
    assert s.show(0.0)
    kept = []
    for i in range(1, 48):
        s.block(places[(i - 1) % 3], 100, 12, 12, WHITE)
        s.block(places[i % 3], 100, 12, 12)
        kept.append(s.show(i * 0.25))
    assert not any(kept[12:]), kept


def test_clock_seconds_are_learned_analog_hand_and_digital_digits() -> None:
    s = Screen()
    cx, cy = 240, 60
    kept = []
    for second in range(1, 60):
        t = 100.0 + second + 0.02 * (second % 3)  # captures land a little after the tick
        s.frame[cy - 40 : cy + 40, cx - 40 : cx + 40, :3] = WHITE
        angle = np.radians(6 * second)
        for r in range(38):  # the second hand, from the hub out
            s.frame[int(cy - r * np.cos(angle)), int(cx + r * np.sin(angle)), :3] = BLACK
        s.frame[120 : 120 + CELL_H, 20 : 20 + CELL_W, :3] = WHITE  # a digital clock's last digit
        s.glyph(20, 120, seed=second % 10)
        kept.append(s.show(t))
    learning = PARAMS.animated_changes
    assert all(kept[: learning - 1]), f"unlearned ticks are changes: {kept}"
    assert not any(kept[learning:]), kept


def test_a_spinner_in_a_fixed_place_is_dropped_after_it_is_learned() -> None:
    s = Screen()
    kept = []
    for i in range(40):
        s.frame[60:76, 100:116, :3] = WHITE
        s.frame[60:76, 100:116, :3][np.roll(np.eye(16, dtype=bool), i % 8, axis=1)] = BLACK
        kept.append(s.show(0.25 * i))
    assert sum(kept) <= PARAMS.animated_changes, kept
    assert not any(kept[PARAMS.animated_changes :]), kept


def test_a_spinner_stopping_and_starting_again_is_kept_and_relearned_sooner() -> None:
    s = Screen(dataclasses.replace(PARAMS, relearn_changes=3))
    t = 0.0
    for run in range(2):
        kept = []
        for i in range(20):
            s.frame[60:76, 100:116, :3] = WHITE
            s.frame[60:76, 100:116, :3][np.roll(np.eye(16, dtype=bool), i % 8, axis=1)] = BLACK
            kept.append(s.show(t))
            t += 0.25
        learned = s.params.animated_changes if run == 0 else s.params.relearn_changes  # known sooner where it was
        assert kept[0] and not any(kept[learned:]), (run, kept)
        s.frame[60:76, 100:116, :3] = WHITE  # hidden: its place is blank again
        assert s.show(t), f"run {run}: the spinner stopping was dropped"
        t += 3.0


def test_a_spinner_shown_again_at_its_place_is_known_from_its_second_frame() -> None:
    s = Screen()  # the defaults: no relearning by change count
    t = 0.0
    for run in range(3):
        kept = []
        for i in range(20):
            s.frame[60:76, 100:116, :3] = WHITE
            s.frame[60:76, 100:116, :3][np.roll(np.eye(16, dtype=bool), (3 * i + run) % 8, axis=1)] = BLACK
            kept.append(s.show(t))
            t += 0.25
        if run == 0:
            assert all(kept[: PARAMS.animated_changes - 1]) and not any(kept[PARAMS.animated_changes :]), kept
        else:
            assert kept[0], f"run {run}: the spinner starting again was dropped"
            assert not any(kept[1:]), f"run {run}: its frames are known: {kept}"
        s.frame[60:76, 100:116, :3] = WHITE
        assert s.show(t), f"run {run}: the spinner stopping was dropped"
        t += 4.0


def test_a_ball_jumping_back_inside_a_video_is_the_video_going_on() -> None:
    s = Screen()
    s.frame[30:110, 150:310, :3] = GRAY  # the player's flat background
    assert s.show(0.0)
    kept, wraps = [], []
    for i in range(1, 100):
        x = 152 + (10 * i) % 100  # the ball crosses and jumps back to the left edge
        wraps.append(x < 152 + 10)
        s.frame[30:110, 150:310, :3] = GRAY
        s.frame[40:64, x : x + 48, :3] = (200, 40, 40)  # larger than a caret, two colours
        s.frame[64:88, x : x + 48, :3] = (40, 40, 200)
        kept.append(s.show(0.25 * i))
    learned = kept.index(False)  # its two edges are separate changes, learned from their neighbourhood
    assert learned <= 2 * PARAMS.animated_changes, kept
    assert sum(wraps[learned:]) >= 5, "the ball jumps back several times"
    assert not any(kept[learned:]), f"a jump back is no start or end of the video: {kept}"
    s.frame[30:110, 150:310, :3] = GRAY  # the video stops: the ball is gone
    assert s.show(25.0)


def test_a_progress_bar_completing_is_kept_its_steps_dropped() -> None:
    s = Screen()
    s.frame[100:110, 40:240, :3] = 200  # the empty bar
    assert s.show(0.0)
    kept = []
    for step in range(1, 40):
        s.frame[100:110, 40 : 40 + 5 * step, :3] = 90  # fills in steps
        kept.append(s.show(0.25 * step))
    assert not any(kept[PARAMS.animated_changes :]), kept
    s.frame[100:110, 40:240, :3] = (40, 180, 40)  # done: the whole bar turns green
    assert s.show(10.25)


def test_a_bordered_progress_bar_starting_over_at_its_place_is_dropped_completing_kept() -> None:
    s = Screen()
    s.frame[99:111, 39:241, :3] = 90  # the bar's border, in the colour it fills with
    s.frame[100:110, 40:240, :3] = 200  # the empty track
    assert s.show(0.0)
    t = 0.0
    for run in range(2):
        kept = []
        for step in range(1, 40):
            t += 0.25
            s.frame[100:110, 40 : 40 + 5 * step, :3] = 90  # grows block by block
            kept.append(s.show(t))
        if run == 0:
            assert kept[0] and not any(kept[1:]), f"the first step starts it, the others go on: {kept}"
        else:
            assert not any(kept), f"starting over where it grew is the bar going on: {kept}"
        t += 0.25
        s.frame[100:110, 40:240, :3] = (40, 180, 40)  # done: the whole bar turns green
        assert s.show(t), f"run {run}: the bar completing was dropped"
        t += 2.0
        s.frame[100:110, 40:240, :3] = 200  # empty again
        s.show(t)


def test_an_ibeam_over_the_edge_of_a_glyph_blinks_and_moving_to_the_next_line_is_kept() -> None:
    s = Screen()
    x, y = 20, 40
    s.glyph(x, y, seed=7)
    s.frame[y + 2 : y + 5, x + CELL_W, :3] = GRAY  # the glyph's anti-aliased edge reaches the next column
    s.block(x + CELL_W, y, 1, CELL_H)  # typed: the I-beam drawn over that column
    assert s.show(0.0)
    under = s.frame[y : y + CELL_H, x + CELL_W, :3].copy()
    under[...] = WHITE
    under[2:5] = GRAY  # what the I-beam covers: background and the glyph's edge
    t, kept = 0.0, []
    for i in range(12):
        t += 0.5
        s.frame[y : y + CELL_H, x + CELL_W, :3] = under if i % 2 == 0 else BLACK
        kept.append(s.show(t))
    assert not any(kept), f"the I-beam blinking over the glyph's edge is no input: {kept}"
    # Down a few lines: in one frame the I-beam goes off here and on at that line's start.
    s.frame[y : y + CELL_H, x + CELL_W, :3] = under
    s.block(x, y + 60, 1, CELL_H)
    assert s.show(t + 0.5), "the caret appearing on the next line is kept"
    t += 0.5
    for i in range(4):  # blinking there (on again at the end)
        t += 0.5
        s.block(x, y + 60, 1, CELL_H, colour=WHITE if i % 2 == 0 else BLACK)
        assert not s.show(t)
    # Up and down again between places it blinked at: off at one and on at the other at once.
    for i in range(4):
        t += 0.5
        s.frame[y : y + CELL_H, x + CELL_W, :3] = BLACK if i % 2 == 0 else under
        s.block(x, y + 60, 1, CELL_H, colour=WHITE if i % 2 == 0 else BLACK)
        assert s.show(t), f"move {i}: a caret moving is kept, also between places it blinked at"


def test_video_in_a_region_is_sampled_after_its_first_frames_and_stopping_is_not_hidden() -> None:
    s = Screen()
    rng = np.random.default_rng(4)
    kept = []
    t = 0.0
    for _ in range(200):  # 50 s at 4 fps
        s.frame[40:88, 160:224, :3] = rng.integers(0, 256, (48, 64, 3), np.uint8)
        kept.append(s.show(t))
        t += 0.25
    learning = PARAMS.animated_changes
    assert all(kept[: learning - 1]) and sum(kept[learning:]) == 1, "learned, then one sample at 30 s"
    assert kept.index(True, learning) * 0.25 >= PARAMS.animation_sample_s - 1
    s.frame[40:88, 160:224, :3] = GRAY  # the player closes
    s.frame[20:30, 20:60, :3] = BLACK  # ... and something else shows
    assert s.show(t)


def pointer(s: Screen, x: int, y: int, under: np.ndarray | None = None) -> np.ndarray:
    """Draws an arrow sprite at (x, y) and returns what it covered."""
    covered = s.frame[y : y + 12, x : x + 8].copy()
    for r in range(12):
        s.frame[y + r, x : x + min(r + 1, 8), :3] = BLACK
        s.frame[y + r, x + min(r, 7), :3] = GRAY
    return covered


def test_a_frame_going_on_for_another_change_samples_the_video_too() -> None:
    s = Screen()
    rng = np.random.default_rng(6)
    kept, t = [], 0.0
    for i in range(240):  # 60 s at 4 fps
        s.frame[40:88, 160:224, :3] = rng.integers(0, 256, (48, 64, 3), np.uint8)
        if i == 80:  # 20 s in: a dialog opens elsewhere
            s.frame[100:150, 10:120, :3] = GRAY
        kept.append(s.show(t))
        t += 0.25
    assert kept[80], "the dialog was dropped"
    later = [i for i in range(PARAMS.animated_changes, 240) if kept[i] and i != 80]
    assert later and all(i * 0.25 >= 20 + PARAMS.animation_sample_s - 1 for i in later), later


def test_the_pointer_moving_over_unchanged_content_is_dropped_once_learned() -> None:
    s = Screen()
    s.frame[100:150, 0:150, :3] = 200  # some content to move over
    under = pointer(s, 30, 30)
    at = (30, 30)
    assert s.show(0.0)
    kept = []
    # a flick across the screen first (each position clear of the last), then slow moves (overlapping)
    path = [(30 + 70 * i, 30 + 10 * i) for i in range(1, 4)] + [(240 - 5 * i, 60 + 3 * i) for i in range(1, 25)]
    for i, to in enumerate(path):
        s.frame[at[1] : at[1] + 12, at[0] : at[0] + 8] = under
        at = to
        under = pointer(s, *at)
        kept.append(s.show(0.1 * (i + 1)))
    assert all(kept[:2]) and not any(kept[3:]), "kept until seen roaming across pointer_span_px"
    s.glyph(250, 20, seed=5)  # something else changes while the pointer rests
    assert s.show(4.0)


def test_more_pointer_shapes_than_remembered_replace_the_least_used() -> None:
    s = Screen()
    t = 0.0

    def flick(shape: int, row: int) -> list[bool]:
        """Pointer shape `shape` moved across the screen in three jumps; what was kept."""
        nonlocal t
        size = 6 + 3 * shape
        sprite = np.zeros((size, size // 2 + 1, 3), np.uint8)
        sprite[::2] = 60 + 30 * shape
        kept, at = [], None
        for step in range(3):
            if at is not None:
                s.frame[at[1] : at[1] + sprite.shape[0], at[0] : at[0] + sprite.shape[1], :3] = WHITE
            at = (20 + 110 * step, row)
            s.frame[at[1] : at[1] + sprite.shape[0], at[0] : at[0] + sprite.shape[1], :3] = sprite
            kept.append(s.show(t))
            t += 0.1
        assert at is not None
        s.frame[at[1] : at[1] + sprite.shape[0], at[0] : at[0] + sprite.shape[1], :3] = WHITE
        s.show(t)
        t += 0.1
        return kept

    for shape in range(4):
        flick(shape, 20 + 30 * shape)
    assert not any(flick(0, 20)[1:]), "a known shape is the pointer"  # shape 0 used again: shape 1 is the least used
    flick(4, 130)
    assert len(s.policy.sprites) == 4
    assert not any(flick(0, 20)[1:]) and not any(flick(4, 130)[1:])


def test_switching_back_and_forth_between_windows_is_always_kept() -> None:
    s = Screen()
    a, b = np.full((80, 120, 3), 230, np.uint8), np.full((80, 120, 3), 90, np.uint8)
    b[10:20, 10:100] = BLACK
    for i in range(12):
        s.frame[20:100, 40:160, :3] = a if i % 2 else b
        assert s.show(0.3 * i), f"switch {i} was dropped"


def test_undoing_a_change_once_is_kept_a_typo_typed_and_deleted() -> None:
    s = Screen()
    s.glyph(200, 100, seed=6)
    assert s.show(1.0)
    s.frame[100 : 100 + CELL_H, 200 : 200 + CELL_W, :3] = WHITE
    assert s.show(1.25)


def test_a_dialog_opening_over_a_ticking_clock_is_kept() -> None:
    s = Screen()
    for second in range(1, 20):
        s.frame[40:56, 40:56, :3] = WHITE
        s.glyph(45, 41, seed=second)
        s.show(float(second))
    s.frame[30:90, 30:120, :3] = GRAY
    assert s.show(20.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, H - 1), st.integers(0, W - 1), st.integers(1, 60), st.integers(1, 60),
                          st.integers(0, 255)), min_size=1, max_size=40),
       st.integers(0, 2**32 - 1))
def test_invariants_under_random_changes(rects: list[tuple[int, int, int, int, int]], seed: int) -> None:
    """Equal to the reference: never meaningful; a change over a window-sized
    area: never trivial; the memory stays within its bound; reading only the
    rows of tiles whose bands differ from the reference's decides as reading
    them all."""
    s, whole = Screen(), Screen(bands=False)
    rng = np.random.default_rng(seed)
    bound = s.policy.memory_bytes + 4 * (s.params.pointer_max_px ** 2 * 4)
    t = 0.0
    for y, x, h, w, colour in rects:
        t += float(rng.choice([0.1, 0.25, 0.5, 1.0]))
        s.frame[y : y + h, x : x + w, :3] = colour
        whole.frame[...] = s.frame
        same = np.array_equal(s.frame, s.ref)
        kept = s.show(t)
        assert not (same and kept), "a frame equal to the reference was kept"
        assert s.policy.memory_bytes <= bound
        assert whole.show(t) == kept and s.last is not None and whole.last is not None
        assert (s.last.meaningful == whole.last.meaningful).all() and s.last.causes == whole.last.causes
        assert (s.last.counts == whole.last.counts).all()
    s.frame[:, :, :3] = rng.integers(0, 256, (H, W, 3), np.uint8)  # far more than a window
    assert s.show(t + 0.25)


def test_packed_colours_do_not_depend_on_the_strides() -> None:
    from procs.change_policy import _packed

    frame = np.random.default_rng(4).integers(0, 256, (9, 7, 4), np.uint8)
    column = frame[:, 2]  # pixels a row apart: not the one-word read
    assert (_packed(frame[:, 2:3]) == _packed(column[None])).all()
    assert (_packed(frame[:, 2:3]) != _packed(frame[:, 2:3, ::-1][..., 1:])).any(), "the order of the channels counts"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_tile_rectangles_cover_the_set_tiles_exactly_once(rows: int, cols: int, seed: int, density: float) -> None:
    from procs.change_policy import _tile_rects

    mask = np.random.default_rng(seed).random((rows, cols)) < density
    covered = np.zeros((rows, cols), np.int64)
    for ty0, ty1, tx0, tx1 in _tile_rects(mask):
        assert 0 <= ty0 < ty1 <= rows and 0 <= tx0 < tx1 <= cols
        covered[ty0:ty1, tx0:tx1] += 1
    assert (covered == mask).all(), "every set tile once, no other"
    if mask.all():
        assert _tile_rects(mask) == [(0, rows, 0, cols)], "a block is one rectangle"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=9), min_size=1, max_size=5).filter(
    lambda rows: len({len(r) for r in rows}) == 1))
def test_the_median_of_rows_equals_numpys(rows: list[list[float]]) -> None:
    from procs.change_policy import _median

    a = np.array(rows)
    assert np.array_equal(_median(a), np.median(a, axis=-1))
    assert float(_median(a[0])) == float(np.median(a[0]))
    ints = a.astype(np.int64)
    assert float(_median(ints[0])) == float(np.median(ints[0]))


def test_band_digests_the_stage_cannot_use_are_refused() -> None:
    """Capture's band digests come through the hand-off: anything but bytes of
    one digest per band of the frame's height leaves every row to be read."""
    from pipeline import protocol
    from procs.analysis import usable_bands

    good = kernels.frame_digests(np.zeros((1080, 8, 4), np.uint8))[1]
    assert usable_bands({protocol.BAND_DIGESTS_KEY: good}, 1080) == good
    for bad in (None, good[:-8], good + bytes(8), good[:-1], "x" * len(good), list(good), 7, True):
        assert usable_bands({protocol.BAND_DIGESTS_KEY: bad}, 1080) is None, bad
    assert usable_bands({}, 1080) is None
    assert usable_bands({protocol.BAND_DIGESTS_KEY: good}, 1100) is None, "another height has more bands"
