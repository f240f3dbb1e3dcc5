"""A minimal PNG decoder and encoder (zlib + numpy), so replaying and saving
frames needs no imaging library.

Decodes 8-bit gray, gray+alpha, RGB and RGBA, non-interlaced, all five filter
types; anything else (16-bit, palette, interlaced) is a PngError that says so.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH = range(5)
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_COLOUR_NAMES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


class PngError(ValueError):
    """Not a PNG this decoder reads; the message names the file and the reason."""


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    channels: int


def _parse_header(head: bytes, name: str) -> PngHeader:
    if head[:8] != SIGNATURE:
        raise PngError(f"{name}: not a PNG file (bad signature)")
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise PngError(f"{name}: truncated or malformed PNG (no IHDR chunk first)")
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if colour not in _CHANNELS:
        kind = _COLOUR_NAMES.get(colour, f"colour type {colour}")
        raise PngError(f"{name}: {kind} PNGs are not supported; save it as 8-bit gray, RGB or RGBA")
    if depth != 8:
        raise PngError(f"{name}: {depth}-bit PNGs are not supported; save it with 8 bits per sample")
    if interlace:
        raise PngError(f"{name}: interlaced PNGs are not supported; save it without interlacing")
    if width == 0 or height == 0:
        raise PngError(f"{name}: the image is empty ({width}x{height})")
    return PngHeader(width, height, _CHANNELS[colour])


def read_header(path: str | Path) -> PngHeader:
    """The size and channel count, from the first 33 bytes; raises PngError for
    a file this decoder cannot read."""
    try:
        with open(path, "rb") as f:
            return _parse_header(f.read(33), str(path))
    except OSError as exc:
        raise PngError(f"{path}: cannot read: {exc.strerror}") from exc


def decode_png(data: bytes, name: str = "PNG") -> np.ndarray:
    """(H, W, C) uint8 in the file's own channel order: gray, gray+alpha, RGB or RGBA."""
    header = _parse_header(data[:33], name)
    idat = []
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise PngError(f"{name}: truncated PNG (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(crc) != 4 or zlib.crc32(ctype + body) != int.from_bytes(crc, "big"):
            raise PngError(f"{name}: corrupt PNG (chunk {ctype!r} is truncated or fails its CRC)")
        if ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise PngError(f"{name}: corrupt PNG image data ({exc})") from exc
    stride = header.width * header.channels
    if len(raw) != header.height * (stride + 1):
        raise PngError(f"{name}: corrupt PNG (image data is {len(raw)} bytes, expected {header.height * (stride + 1)})")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(header.height, stride + 1)
    pixels = _unfilter(rows[:, 1:], rows[:, 0], header.channels, name)
    return pixels.reshape(header.height, header.width, header.channels)


def read_png(path: str | Path) -> np.ndarray:
    """The image in the file's own channel order (see decode_png)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PngError(f"{path}: cannot read: {exc.strerror}") from exc
    return decode_png(data, str(path))


def to_bgra(image: np.ndarray) -> np.ndarray:
    """(H, W, 4) BGRA from a decoded image of 1 to 4 channels; opaque where it had no alpha."""
    height, width, channels = image.shape
    out = np.empty((height, width, 4), dtype=np.uint8)
    if channels <= 2:
        out[..., :3] = image[..., :1]
    else:
        out[..., :3] = image[..., 2::-1]
    out[..., 3] = image[..., -1] if channels in (2, 4) else 255
    return out


def read_png_bgra(path: str | Path) -> np.ndarray:
    return to_bgra(read_png(path))


def _unfilter(filtered: np.ndarray, types: np.ndarray, bpp: int, name: str) -> np.ndarray:
    out = np.empty_like(filtered)
    prev = np.zeros(filtered.shape[1], dtype=np.uint8)
    for y, ftype in enumerate(types.tolist()):
        line = filtered[y]
        if ftype == FILTER_NONE:
            out[y] = line
        elif ftype == FILTER_SUB:
            # Each byte adds the reconstructed byte bpp to the left: a running
            # sum per channel, which uint8 wraps modulo 256 as PNG requires.
            out[y] = line.reshape(-1, bpp).cumsum(axis=0, dtype=np.uint8).reshape(-1)
        elif ftype == FILTER_UP:
            np.add(line, prev, out=out[y])
        elif ftype == FILTER_AVERAGE:
            out[y] = _unaverage(line, prev, bpp)
        elif ftype == FILTER_PAETH:
            out[y] = _unpaeth(line, prev, bpp)
        else:
            raise PngError(f"{name}: corrupt PNG (row {y} has filter type {ftype})")
        prev = out[y]
    return out


# Average and Paeth predict each byte from the reconstructed byte to its left,
# a serial dependency numpy cannot express, so they run as plain loops over ints.

def _unaverage(line: np.ndarray, prev: np.ndarray, bpp: int) -> list[int]:
    f, b = line.tolist(), prev.tolist()
    out = [(f[i] + (b[i] >> 1)) & 255 for i in range(bpp)]
    for i in range(bpp, len(f)):
        out.append((f[i] + ((out[i - bpp] + b[i]) >> 1)) & 255)
    return out


def _unpaeth(line: np.ndarray, prev: np.ndarray, bpp: int) -> list[int]:
    f, b = line.tolist(), prev.tolist()
    out = [(f[i] + b[i]) & 255 for i in range(bpp)]  # no left neighbour: Paeth picks the byte above
    for i in range(bpp, len(f)):
        a, up, c = out[i - bpp], b[i], b[i - bpp]
        pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
        out.append((f[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255)
    return out


def _filter(rows: np.ndarray, ftype: int, bpp: int) -> np.ndarray:
    """The whole image filtered with one filter type: every row's raw bytes are
    known when encoding, so unlike decoding this vectorises fully."""
    if ftype == FILTER_NONE:
        return rows
    a = np.zeros_like(rows)
    a[:, bpp:] = rows[:, :-bpp]
    b = np.zeros_like(rows)
    b[1:] = rows[:-1]
    if ftype == FILTER_SUB:
        pred = a
    elif ftype == FILTER_UP:
        pred = b
    elif ftype == FILTER_AVERAGE:
        pred = ((a.astype(np.uint16) + b) >> 1).astype(np.uint8)
    elif ftype == FILTER_PAETH:
        c = np.zeros_like(rows)
        c[1:, bpp:] = rows[:-1, :-bpp]
        ia, ib, ic = (x.astype(np.int16) for x in (a, b, c))
        pa, pb, pc = np.abs(ib - ic), np.abs(ia - ic), np.abs(ia + ib - 2 * ic)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    else:
        raise ValueError(f"PNG filter type must be 0-4, not {ftype}")
    filtered: np.ndarray = rows - pred
    return filtered


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def encode_png(image: np.ndarray, *, filter_type: int = FILTER_UP, level: int = 6) -> bytes:
    """PNG bytes of a uint8 image: (H, W, 4) is BGRA (a frame; stored as RGBA,
    alpha kept), (H, W, 3) RGB, (H, W) gray. Rows may be padded."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"write_png takes uint8 (H, W), (H, W, 3) RGB or (H, W, 4) BGRA, not {image.dtype} {image.shape}")
    if image.ndim == 2:
        colour, pixels = 0, image[..., None]
    elif image.shape[2] == 3:
        colour, pixels = 2, image
    else:
        colour, pixels = 6, image[..., [2, 1, 0, 3]]
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    raw = np.empty((height, width * channels + 1), dtype=np.uint8)
    raw[:, 0] = filter_type
    raw[:, 1:] = _filter(rows, filter_type, channels)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b"")


def write_png(path: str | Path, image: np.ndarray, *, filter_type: int = FILTER_UP, level: int = 6) -> None:
    """Writes image (see encode_png) as a PNG file."""
    Path(path).write_bytes(encode_png(image, filter_type=filter_type, level=level))
