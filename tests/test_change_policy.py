"""procs.change_policy on synthetic tile histories: a small screen of 16 px
tiles driven like the analysis stage drives it (tiles that differ from the
reference are judged; a frame with a meaningful tile becomes the reference)."""

from __future__ import annotations

import hashlib

import numpy as np

from procs.change_policy import ChangePolicy, Tile, TileChange

T = 16  # tile size
WHITE, BLACK = 255, 0
CELL_W, CELL_H = 6, 13


def blank() -> np.ndarray:
    return np.full((T, T, 4), WHITE, np.uint8)


def block(tile: np.ndarray, x: int, on: bool = True) -> np.ndarray:
    """A caret's block at column x, switched on (black) or off (white)."""
    out = tile.copy()
    out[1 : 1 + CELL_H, x : x + CELL_W, :3] = BLACK if on else WHITE
    return out


def glyph(tile: np.ndarray, x: int, seed: int) -> np.ndarray:
    """A character at column x: a sparse pattern of black pixels in the cell (never a full block)."""
    out = tile.copy()
    rng = np.random.default_rng(seed)
    mask = rng.random((CELL_H, CELL_W)) < 0.3
    mask[0, 0], mask[-1, -1] = True, False
    out[1 : 1 + CELL_H, x : x + CELL_W, :3][mask] = BLACK
    return out


def hand(angle: int) -> np.ndarray:
    """A clock hub tile with the hand at `angle`: a thin line, and a distinct
    mark per angle (a hub's pixels differ from one second to the next)."""
    out = blank()
    out[0, angle // 6 % T, :3] = out[T - 1, angle // (6 * T) % T, :3] = BLACK
    for r in range(T):
        y = int(T / 2 + r * np.sin(np.radians(angle)) / 2)
        x = int(T / 2 + r * np.cos(np.radians(angle)) / 2)
        out[min(max(y, 0), T - 1), min(max(x, 0), T - 1), :3] = BLACK
    return out


class Screen:
    """The stage's side: current tiles, the reference, and the policy."""

    def __init__(self, tiles: dict[Tile, np.ndarray]) -> None:
        self.now = {k: v.copy() for k, v in tiles.items()}
        self.ref = {k: v.copy() for k, v in tiles.items()}
        self.policy = ChangePolicy(tile=T)

    def show(self, t: float) -> bool:
        """Judges the current tiles at time t; True when the frame is kept (becomes the reference)."""
        changed = {
            k: TileChange(sig(v), sig(self.ref[k]), v, self.ref[k])
            for k, v in self.now.items() if not np.array_equal(v, self.ref[k])
        }
        verdict = self.policy.judge(t, changed)
        if verdict.meaningful:
            self.ref = {k: v.copy() for k, v in self.now.items()}
        return bool(verdict.meaningful)


def sig(tile: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(tile.tobytes(), digest_size=8).digest(), "little")


def blink(screen: Screen, key: Tile, x: int, start: float, end: float, period: float = 0.5) -> list[bool]:
    """The caret in tile `key` at column x switches every `period` from start to end; what was kept."""
    kept, t, on = [], start, not bool(screen.now[key][2, x, 0] == BLACK)
    while t < end:
        screen.now[key] = block(screen.now[key], x, on)
        kept.append(screen.show(t))
        on, t = not on, t + period
    return kept


def test_a_blinking_caret_is_learned_within_three_flips_and_dropped_after() -> None:
    screen = Screen({(0, 0): block(blank(), 2), (0, 1): blank()})
    kept = blink(screen, (0, 0), 2, start=0.5, end=20.0)
    assert not any(kept[3:]), kept


def test_a_clock_ticking_every_second_is_learned_as_volatile_with_its_hand() -> None:
    tiles = {(y, x): blank() for y in range(3) for x in range(3)}
    tiles[(1, 1)] = hand(0)
    screen = Screen(tiles)
    kept = []
    for second in range(1, 40):
        t = 100.0 + second + 0.01 * (second % 3)  # captures land a little after the tick
        screen.now[(1, 1)] = hand(6 * second)
        # the hand's tip crosses the neighbouring tiles now and then, each time with new content
        tip = [(0, 2), (1, 2), (2, 2), (2, 1)][second // 10 % 4]
        for k in ((0, 2), (1, 2), (2, 2), (2, 1)):
            screen.now[k] = hand(6 * second + 1) if k == tip else blank()
        kept.append(screen.show(t))
    learning = ChangePolicy().params.volatile_changes  # steady intervals before it is judged volatile
    assert all(kept[:learning]), f"unlearned ticks are changes: {kept}"
    assert not any(kept[learning:]), kept


def test_typed_characters_at_irregular_times_are_kept_and_the_caret_between_them_dropped() -> None:
    screen = Screen({(0, 0): block(blank(), 0), (0, 1): blank()})
    blink(screen, (0, 0), 0, 0.5, 3.0, period=0.45)
    typed_at = [3.1, 3.35, 4.3, 4.45, 6.2, 7.9]
    t, x = 3.0, 0
    for i, at in enumerate(typed_at):
        # blinks until the next key...
        while t + 0.45 < at:
            t += 0.45
            screen.now[(0, 0)] = block(screen.now[(0, 0)], x, not bool(screen.now[(0, 0)][2, x, 0] == BLACK))
            assert not screen.show(t), f"a blink at {t:.2f}s before character {i} was kept"
        # ...the character replaces the caret's cell, and the caret shows in the next one
        line = glyph(block(screen.now[(0, 0)], x, on=False), x, seed=i)
        if x + 2 * CELL_W <= T:
            x += CELL_W
        else:
            line, x = blank(), 0  # the line scrolled away
        screen.now[(0, 0)] = block(line, x)
        assert screen.show(at), f"character {i} at {at}s was dropped"
        t = at


def test_a_character_typed_into_the_cell_the_caret_just_blinked_off_is_kept() -> None:
    screen = Screen({(0, 0): block(blank(), 0)})
    blink(screen, (0, 0), 0, 0.5, 5.0)
    screen.now[(0, 0)] = block(screen.now[(0, 0)], 0, on=False)
    screen.show(5.0)
    # the glyph's pixels are a part of the block's: put back where the caret was, yet new content
    screen.now[(0, 0)] = glyph(screen.now[(0, 0)], 0, seed=7)
    assert screen.show(5.2)


def test_undoing_a_change_is_kept_a_delete_a_window_switched_back_a_dialog_closed() -> None:
    screen = Screen({(0, 0): blank(), (0, 1): glyph(blank(), 4, seed=1)})
    typed = glyph(blank(), 0, seed=2)
    screen.now[(0, 0)] = typed
    assert screen.show(1.0)
    screen.now[(0, 0)] = blank()  # deleted: back to what it showed a second ago
    assert screen.show(1.3)
    other, mine = glyph(blank(), 8, seed=3), screen.now[(0, 1)]
    for i, content in enumerate([other, mine, other, mine]):  # switching windows back and forth
        screen.now[(0, 1)] = content
        assert screen.show(3.0 + 1.5 * i), f"switch {i} was dropped"


def test_a_caret_block_moving_one_cell_is_kept_though_each_part_looks_like_a_blink() -> None:
    screen = Screen({(0, 0): block(blank(), 8), (0, 1): blank()})
    blink(screen, (0, 0), 8, 0.5, 5.0)
    screen.now[(0, 0)] = block(glyph(blank(), 2, seed=4), 8)  # a character typed: kept, the caret shows after it
    assert screen.show(5.0)
    # a space typed at the end of the line: the block goes off here and on in the next tile
    screen.now[(0, 0)] = block(screen.now[(0, 0)], 8, on=False)
    screen.now[(0, 1)] = block(blank(), 0)
    assert screen.show(5.3)


def test_a_dialog_opening_over_a_ticking_clock_is_kept() -> None:
    tiles = {(y, x): blank() for y in range(3) for x in range(4)}
    screen = Screen(tiles)
    for second in range(1, 20):
        screen.now[(1, 1)] = hand(6 * second)
        screen.show(float(second))
    dialog = glyph(np.full((T, T, 4), 200, np.uint8), 4, seed=9)
    screen.now[(1, 1)] = hand(6 * 20)
    for k in ((0, 1), (0, 2), (1, 2), (2, 1), (2, 2), (1, 3)):
        screen.now[k] = dialog
    assert screen.show(20.0 + 1.0)


def test_the_first_blink_of_a_caret_across_a_tile_border_is_known_by_its_block() -> None:
    def straddling(on: bool) -> tuple[np.ndarray, np.ndarray]:
        """The caret's block at rows 10..22 of a two-tile column: 6 rows in the upper tile, 7 in the lower."""
        upper, lower = glyph(blank(), 0, seed=5), blank()
        upper[10:, 8 : 8 + CELL_W, :3] = BLACK if on else WHITE
        lower[: CELL_H - 6, 8 : 8 + CELL_W, :3] = BLACK if on else WHITE
        return upper, lower

    screen = Screen({(0, 0): blank(), (1, 0): blank(), (0, 1): block(blank(), 2)})
    blink(screen, (0, 1), 2, 0.5, 5.0)  # the caret blinks in one tile: its block's shape is learned
    screen.now[(0, 1)] = blank()
    screen.now[(0, 0)], screen.now[(1, 0)] = straddling(on=True)  # a character typed on the next line
    assert screen.show(5.2)
    screen.now[(0, 0)], screen.now[(1, 0)] = straddling(on=False)
    assert not screen.show(5.5), "the same block switched off, in two tiles' parts, is a blink"
    screen.now[(0, 0)], screen.now[(1, 0)] = straddling(on=True)
    assert not screen.show(6.0)
