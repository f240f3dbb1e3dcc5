"""Forward's rolling context: what every request repeats before its new
screenshots, so that Claude knows what the screen looked like and what it
said already, and so that consecutive requests share a byte-identical prefix
the API can cache.

Per monitor a reference screenshot (the whole screen, masked, downscaled like
any image sent) is taken when the context begins and renewed at most every
`forward.context_refresh_s`; between renewals it is the same bytes. After the
references come the recent reports, oldest first, each with the capture
times of the frames it was about (fixed once said). The references and
reports together stay under `forward.context_tokens`: the oldest reports
leave first. Nothing in them changes from one request to the next but a
report added at the end, or a reference renewed.

The loop thread owns a Context; each request gets a View of it (immutable
lists), which the sender thread encodes (a reference's image is encoded once
and kept: the same pixels give the same bytes).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from procs.forward.image import Encoded, Geometry, encode, fit_size, tokens


@dataclass(eq=False)
class Reference:
    """The whole screen of one monitor when the context began."""

    monitor: int
    captured: str  # capture time, UTC ISO 8601
    width: int  # of the monitor
    height: int
    taken_at: float  # monotonic seconds, for renewal
    pixels: np.ndarray | None  # (masked) until encoded
    tokens: int
    _image: Encoded | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def image(self, geometry: Geometry) -> Encoded:
        """Its image, encoded the first time it is asked for (by the sender)."""
        with self._lock:
            if self._image is None:
                assert self.pixels is not None
                self._image = encode(self.pixels, geometry, whole=True)
                self.pixels = None  # the encoded bytes are all that is needed from now on
            return self._image


@dataclass(frozen=True)
class Said:
    """A report as the context repeats it."""

    captured: tuple[str, ...]  # capture times of the frames it was about
    text: str
    tokens: int


@dataclass(frozen=True)
class View:
    """The context as one request repeats it."""

    references: tuple[Reference, ...]
    said: tuple[Said, ...]


def text_tokens(text: str) -> int:
    """A text's tokens, estimated (about four characters a token)."""
    return len(text) // 4 + 1


class Context:
    def __init__(self, refresh_s: float, budget_tokens: int, geometry: Geometry) -> None:
        self.refresh_s, self.budget, self.geometry = refresh_s, budget_tokens, geometry
        self.references: dict[int, Reference] = {}
        self.said: list[Said] = []

    @property
    def enabled(self) -> bool:
        return self.refresh_s > 0

    def wants_reference(self, monitor: int, now: float) -> bool:
        """Whether a frame of `monitor` should be copied whole as its reference."""
        ref = self.references.get(monitor)
        return self.enabled and (ref is None or now - ref.taken_at >= self.refresh_s)

    def set_reference(self, monitor: int, captured: str, pixels: np.ndarray, now: float) -> None:
        h, w = pixels.shape[:2]
        self.references[monitor] = Reference(monitor, captured, w, h, now, pixels, tokens(*fit_size(w, h, self.geometry)))
        self._trim()

    def add(self, captured: list[str], text: str) -> None:
        if self.enabled:
            self.said.append(Said(tuple(captured), text, text_tokens(text)))
            self._trim()

    def view(self) -> View | None:
        if not self.enabled or not self.references:
            return None
        return View(tuple(self.references[m] for m in sorted(self.references)), tuple(self.said))

    def _trim(self) -> None:
        used = sum(r.tokens for r in self.references.values()) + sum(s.tokens for s in self.said)
        while self.said and used > self.budget:
            used -= self.said.pop(0).tokens
