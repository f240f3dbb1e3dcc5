"""Preparing what forward sends: which part of a frame, masked, downscaled and
encoded the way Claude reads it best.

Crop rule: the union of the changed regions, grown by a margin and to at least
`min_crop` pixels per side, is sent on its own when it covers at most
`crop_max_fraction` of the frame (a small change reads on its own and costs
fewer tokens); a keep-alive frame, a frame without regions or a change spread
over most of the screen goes whole.

Size rule (Anthropic's vision guide): long edge at most `max_long_edge`
(1568) and at most `max_pixels` (1456x819 for 16:9), aspect ratio kept,
area averaging (kernels.resize_box: each output pixel is the mean of the
input pixels it covers, partly covered ones by their share, so a thin glyph
stroke is softened, never dropped or doubled as by nearest-neighbour or by
Pillow's box filter, which takes input pixels whole or not at all).

Format rule: PNG for text-heavy crops, JPEG otherwise. A crop is taken as
text-heavy when most of its neighbouring pixels are identical (flat UI
backgrounds, at least `TEXT_FLAT`) and it has sharp edges (glyphs, at least
`TEXT_EDGES` of pixel pairs differing by more than 64 levels): JPEG smears
glyph edges, while PNG compresses flat areas well. Whole frames go as JPEG:
they are downscaled anyway (small text is already softened), and PNG costs
twice the encode time there (BENCHMARKS.md, Forward). A PNG over the size
limit falls back to JPEG.
"""

from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from procs import kernels

#: The API's limit per image (after base64) and per request.
MAX_IMAGE_B64_BYTES = 5 * 2**20
MAX_REQUEST_BYTES = 32 * 2**20
TEXT_FLAT = 0.55
TEXT_EDGES = 0.01


@dataclass(frozen=True)
class Geometry:
    """What image preparation needs from forward's configuration."""

    crop_margin: int = 32
    min_crop: int = 200
    crop_max_fraction: float = 0.5
    max_long_edge: int = 1568
    max_pixels: int = 1456 * 819
    jpeg_quality: int = 80
    png_for_text: bool = True

    @classmethod
    def from_config(cls, f: Any) -> Geometry:
        return cls(f.crop_margin, f.min_crop, f.crop_max_fraction, f.max_long_edge, f.max_pixels,
                   f.jpeg_quality, f.png_for_text)


@dataclass
class Encoded:
    media_type: str
    data: bytes
    width: int
    height: int
    encode_ms: float

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def b64_len(self) -> int:
        return 4 * math.ceil(len(self.data) / 3)

    @property
    def suffix(self) -> str:
        return ".png" if self.media_type == "image/png" else ".jpg"


def crop_box(width: int, height: int, regions: list[list[int]], g: Geometry) -> list[int]:
    """[x, y, w, h] of the part of a `width` x `height` frame to send."""
    whole = [0, 0, width, height]
    if not regions:
        return whole
    x0 = min(r[0] for r in regions) - g.crop_margin
    y0 = min(r[1] for r in regions) - g.crop_margin
    x1 = max(r[0] + r[2] for r in regions) + g.crop_margin
    y1 = max(r[1] + r[3] for r in regions) + g.crop_margin
    x0, x1 = _grow(x0, x1, g.min_crop, width)
    y0, y1 = _grow(y0, y1, g.min_crop, height)
    if (x1 - x0) * (y1 - y0) > g.crop_max_fraction * width * height:
        return whole
    return [x0, y0, x1 - x0, y1 - y0]


def _grow(lo: int, hi: int, least: int, limit: int) -> tuple[int, int]:
    """[lo, hi) clamped to [0, limit) and grown evenly to `least` where the frame allows."""
    lo, hi = max(0, lo), min(limit, hi)
    short = least - (hi - lo)
    if short > 0:
        lo -= short // 2
        hi += short - short // 2
        if lo < 0:
            hi, lo = min(limit, hi - lo), 0
        if hi > limit:
            lo, hi = max(0, lo - (hi - limit)), limit
    return lo, hi


def fit_size(width: int, height: int, g: Geometry) -> tuple[int, int]:
    """The size an image is sent at: within the long-edge and pixel limits."""
    scale = min(1.0, g.max_long_edge / max(width, height), math.sqrt(g.max_pixels / (width * height)))
    if scale >= 1.0:
        return width, height
    # The epsilon keeps exact fits exact (1920x1080 -> 1456x819), despite float rounding.
    return max(1, math.floor(width * scale + 1e-6)), max(1, math.floor(height * scale + 1e-6))


def tokens(width: int, height: int) -> int:
    """Anthropic's estimate of an image's input tokens."""
    return math.ceil(width * height / 750)


def apply_masks(pixels: np.ndarray, monitor: int, origin: tuple[int, int], masks: list[list[int]]) -> int:
    """Blacks out (opaque black) every mask [monitor, x, y, w, h] (monitor 0:
    all) in `pixels`, a copy whose top-left is `origin` in frame coordinates.
    Returns how many masks touched it."""
    hit = 0
    ox, oy = origin
    h, w = pixels.shape[:2]
    for m_monitor, mx, my, mw, mh in masks:
        if m_monitor not in (0, monitor):
            continue
        x0, y0 = max(0, mx - ox), max(0, my - oy)
        x1, y1 = min(w, mx + mw - ox), min(h, my + mh - oy)
        if x0 < x1 and y0 < y1:
            pixels[y0:y1, x0:x1, :3] = 0
            pixels[y0:y1, x0:x1, 3:] = 255
            hit += 1
    return hit


def rgb_image(bgra: np.ndarray, g: Geometry) -> Image.Image:
    """A Pillow RGB image of an (H, W, 4) BGRA array at the size it is sent
    at (fit_size), area-averaged (1080p to 1456x819: ~5 ms in the core where
    Pillow's BOX filter and the BGRA conversion took 14)."""
    h, w = bgra.shape[:2]
    size = fit_size(w, h, g)
    if size == (w, h):
        return Image.frombuffer("RGB", (w, h), np.ascontiguousarray(bgra), "raw", "BGRX", 0, 1)
    return Image.fromarray(kernels.resize_box(bgra, *size), "RGB")


def text_heavy(img: Image.Image) -> bool:
    luma = np.asarray(img.convert("L"), dtype=np.int16)
    if luma.shape[1] < 2:
        return False
    dx = np.abs(np.diff(luma, axis=1))
    return bool(np.mean(dx == 0) >= TEXT_FLAT and np.mean(dx > 64) >= TEXT_EDGES)


def encode(bgra: np.ndarray, g: Geometry, fmt: str = "auto", *, whole: bool = False) -> Encoded:
    """Downscales and encodes a BGRA copy (`whole`: of a whole frame, else a
    crop); `fmt` "auto" applies the format rule, "jpeg" or "png" force one."""
    start = time.perf_counter()
    img = rgb_image(bgra, g)
    png = fmt == "png" or (fmt == "auto" and not whole and g.png_for_text and text_heavy(img))
    data, media = b"", ""
    if png:
        data, media = _save(img, "PNG", compress_level=1), "image/png"
    if not png or (fmt == "auto" and 4 * math.ceil(len(data) / 3) > MAX_IMAGE_B64_BYTES):
        quality = g.jpeg_quality
        data, media = _save(img, "JPEG", quality=quality), "image/jpeg"
        while 4 * math.ceil(len(data) / 3) > MAX_IMAGE_B64_BYTES and quality > 20:
            quality -= 15
            data = _save(img, "JPEG", quality=quality)
    return Encoded(media, data, img.width, img.height, (time.perf_counter() - start) * 1e3)


def _save(img: Image.Image, fmt: str, **opts: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()
