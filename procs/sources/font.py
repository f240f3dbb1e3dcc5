"""A built-in 5x7 bitmap font for ASCII 32-126, drawn at 2x scale in 12x16 cells.

Built in so the synthetic desktop needs no font files and renders the same
pixels everywhere. At this size one glyph lights 30-130 pixels, about what a
typed character changes on a real screen.
"""

from __future__ import annotations

from functools import cache

import numpy as np

CELL_W = 12
CELL_H = 16
SCALE = 2
FIRST = 32
LAST = 126

# Each glyph: 7 rows of 5 bits as 14 hex digits, the leftmost pixel in bit 4.
_ROWS = "".join(
    (
        "00000000000000 04040404040004 0A0A0A00000000 0A0A1F0A1F0A0A 040F140E051E04 18190204081303",  #  !"#$%
        "0C12140815120D 0C040800000000 02040808080402 08040202020408 0004150E150400 0004041F040400",  # &'()*+
        "000000000C0408 0000001F000000 00000000000C0C 00010204081000 0E11131519110E 040C040404040E",  # ,-./01
        "0E11010204081F 1F02040201110E 02060A121F0202 1F101E0101110E 0608101E11110E 1F010204080808",  # 234567
        "0E11110E11110E 0E11110F01020C 000C0C000C0C00 000C0C000C0408 02040810080402 00001F001F0000",  # 89:;<=
        "08040201020408 0E110102040004 0E11010D15150E 0E1111111F1111 1E11111E11111E 0E11101010110E",  # >?@ABC
        "1C12111111121C 1F10101E10101F 1F10101E101010 0E11101711110F 1111111F111111 0E04040404040E",  # DEFGHI
        "0702020202120C 11121418141211 1010101010101F 111B1515111111 11111915131111 0E11111111110E",  # JKLMNO
        "1E11111E101010 0E11111115120D 1E11111E141211 0F10100E01011E 1F040404040404 1111111111110E",  # PQRSTU
        "11111111110A04 1111111515150A 11110A040A1111 1111110A040404 1F01020408101F 0E08080808080E",  # VWXYZ[
        "00100804020100 0E02020202020E 040A1100000000 0000000000001F 08040200000000 00000E010F110F",  # \]^_`a
        "1010161911111E 00000E1010110E 01010D1311110F 00000E111F100E 0609081C080808 000F11110F010E",  # bcdefg
        "10101619111111 04000C0404040E 0200060202120C 10101214181412 0C04040404040E 00001A15151111",  # hijklm
        "00001619111111 00000E1111110E 00001E111E1010 00000D130F0101 00001619101010 00000E100E011E",  # nopqrs
        "08081C08080906 0000111111130D 00001111110A04 0000111115150A 0000110A040A11 000011110F010E",  # tuvwxy
        "00001F0204081F 02040408040402 04040404040404 08040402040408 00000815020000",  # z{|}~
    )
).replace(" ", "")


@cache
def glyph_masks() -> np.ndarray:
    """(95, CELL_H, CELL_W) bool: which pixels of each character's cell are lit."""
    rows = np.array([int(_ROWS[i : i + 2], 16) for i in range(0, len(_ROWS), 2)], dtype=np.uint8)
    bits = np.unpackbits(rows.reshape(-1, 7, 1), axis=2)[:, :, 3:]  # keep the low 5 bits
    scaled = bits.repeat(SCALE, axis=1).repeat(SCALE, axis=2).astype(bool)
    masks = np.zeros((LAST - FIRST + 1, CELL_H, CELL_W), dtype=bool)
    # Centre the 10x14 glyph in the cell so neighbouring characters never touch.
    masks[:, 1 : 1 + 7 * SCALE, 1 : 1 + 5 * SCALE] = scaled
    return masks


@cache
def atlas(fg: tuple[int, int, int, int], bg: tuple[int, int, int, int]) -> Atlas:
    """The shared atlas of a colour pair (building one costs about a millisecond)."""
    return Atlas(fg, bg)


class Atlas:
    """Every glyph pre-rendered in one colour pair, so a whole line of text is
    one fancy-indexing operation instead of a Python loop over characters."""

    def __init__(self, fg: tuple[int, int, int, int], bg: tuple[int, int, int, int]) -> None:
        masks = glyph_masks()
        self.tiles = np.where(masks[..., None], np.array(fg, np.uint8), np.array(bg, np.uint8))

    def line(self, text: str) -> np.ndarray:
        """(CELL_H, CELL_W * len(text), 4): the text in this atlas's colours;
        characters outside ASCII 32-126 show as '?'."""
        codes = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.intp) - FIRST
        codes[(codes < 0) | (codes > LAST - FIRST)] = ord("?") - FIRST
        cells = self.tiles[codes]
        return cells.transpose(1, 0, 2, 3).reshape(CELL_H, CELL_W * len(text), 4)

    def draw(self, dst: np.ndarray, x: int, y: int, text: str) -> None:
        """Draws text with its top-left corner at (x, y), clipped to dst."""
        max_chars = max(0, (dst.shape[1] - x) // CELL_W)
        text = text[:max_chars]
        if not text or y < 0 or y + CELL_H > dst.shape[0]:
            return
        dst[y : y + CELL_H, x : x + CELL_W * len(text)] = self.line(text)
