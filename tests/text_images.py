"""Text-heavy test images: lines of the synthetic desktop's font on a flat background."""

from __future__ import annotations

import numpy as np

from procs.sources.font import atlas


def text_image(w: int, h: int) -> np.ndarray:
    """BGRA, w x h: what forward sends as PNG (text-heavy)."""
    img = np.full((h, w, 4), 255, np.uint8)
    line = atlas((20, 20, 20, 255), (255, 255, 255, 255)).line("def forward(frame): return crop(frame)  " * 12)
    for y in range(8, h - 16, 20):
        img[y : y + 16, 4 : w - 4] = line[:, : w - 8]
    return img
