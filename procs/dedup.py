"""The dedup stage: drops frames whose pixels are identical to a recently seen
frame of the same monitor (an exact, time-windowed set of frame hashes), which
also catches A/B/A/B alternation; everything else goes on to analysis. A
rotating Bloom filter is the cheap first look; a hit is confirmed in the exact
set, so a false positive never drops a real change."""

from __future__ import annotations

import collections
import time
from typing import Any

import jarvis_rust_core as jrc

from procs import kernels, stage


class Dedup(stage.Stage):
    name = "dedup"
    previous = "capture"
    next = "analysis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (monitor, hash) -> (seen at, seq), oldest first
        self.recent: collections.OrderedDict[tuple[int, int], tuple[float, int]] = collections.OrderedDict()
        self.bloom = jrc.RotatingBloomFilter(self.cfg.dedup.max_hashes, 0.01)
        self.bloom_false_positives = 0

    def _limit(self) -> int:
        cap = self.cfg.dedup.max_hashes
        return max(16, cap // 4) if self.pressure in ("high", "critical") else cap

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        now = time.monotonic()
        digest = kernels.fingerprint(self.mem.read(ref))
        window = self.cfg.dedup.window_s
        while self.recent and (len(self.recent) > self._limit() or now - next(iter(self.recent.values()))[0] > window):
            self.recent.popitem(last=False)
        key = (ref.monitor, digest)
        bloom_key = digest ^ (ref.monitor * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)
        seen = None
        if bloom_key in self.bloom:
            seen = self.recent.get(key)
            self.bloom_false_positives += seen is None
        else:
            self.bloom.add(bloom_key)
        self.recent[key] = (now, ref.seq)
        self.recent.move_to_end(key)
        if seen is not None:
            self.finish(ref, "duplicate", of_seq=seen[1])
        else:
            self.pass_on(ref, extra)

    def extra_stats(self) -> dict[str, Any]:
        return {"recent_hashes": len(self.recent), "bloom_false_positives_or_expired": self.bloom_false_positives}


if __name__ == "__main__":
    stage.main(Dedup)
