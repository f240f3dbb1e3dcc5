"""The dedup stage: drops frames whose pixels are identical to a recently seen
frame of the same monitor (an exact, time-windowed set of frame hashes), which
also catches A/B/A/B alternation; everything else goes on to analysis. A
rotating Bloom filter is the cheap first look; a hit is confirmed in the exact
set, so a false positive never drops a real change."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

import jarvis_rust_core as jrc

from pipeline import protocol
from procs import kernels, stage

_MIX = 0x9E3779B97F4A7C15  # spreads monitor numbers over the hash bits


def digest_of(extra: dict[str, Any], pixels: Callable[[], Any]) -> int:
    """The frame's pixel hash: capture's (in the hand-off message) when there,
    else computed here from `pixels()` (a replayed or foreign frame)."""
    digest = extra.get(protocol.PIXEL_HASH_KEY)
    if isinstance(digest, int) and not isinstance(digest, bool):
        return digest
    return kernels.fingerprint(pixels())


class RecentFrames:
    """The per-frame decision, apart from the stage so the benchmark measures
    exactly this: an exact set of (monitor, hash) -> (seen at, seq), oldest
    first, behind a rotating Bloom filter."""

    def __init__(self, max_hashes: int) -> None:
        self.recent: collections.OrderedDict[tuple[int, int], tuple[float, int]] = collections.OrderedDict()
        self.bloom = jrc.RotatingBloomFilter(max_hashes, 0.01)
        self.bloom_false_positives = 0

    def check(self, monitor: int, digest: int, seq: int, now: float, limit: int, window: float) -> int | None:
        """Records the frame; returns the seq of a recent identical frame of
        the same monitor, or None."""
        recent = self.recent
        while recent and (len(recent) > limit or now - next(iter(recent.values()))[0] > window):
            recent.popitem(last=False)
        key = (monitor, digest)
        bloom_key = digest ^ (monitor * _MIX & 0xFFFFFFFFFFFFFFFF)
        seen = None
        if bloom_key in self.bloom:
            seen = recent.get(key)
            self.bloom_false_positives += seen is None
        else:
            self.bloom.add(bloom_key)
        recent[key] = (now, seq)
        recent.move_to_end(key)
        return None if seen is None else seen[1]


class Dedup(stage.Stage):
    name = "dedup"
    previous = "capture"
    next = "analysis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = RecentFrames(self.cfg.dedup.max_hashes)

    def _limit(self) -> int:
        cap = self.cfg.dedup.max_hashes
        return max(16, cap // 4) if self.pressure in ("high", "critical") else cap

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        digest = digest_of(extra, lambda: self.mem.read(ref))
        of_seq = self.frames.check(ref.monitor, digest, ref.seq, time.monotonic(), self._limit(), self.cfg.dedup.window_s)
        if of_seq is not None:
            self.finish(ref, "duplicate", of_seq=of_seq)
        else:
            self.pass_on(ref, extra)

    def extra_stats(self) -> dict[str, Any]:
        return {
            "recent_hashes": len(self.frames.recent),
            "bloom_false_positives_or_expired": self.frames.bloom_false_positives,
        }


if __name__ == "__main__":
    stage.main(Dedup)
