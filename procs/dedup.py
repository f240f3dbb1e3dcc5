"""The dedup stage: drops frames whose pixels are identical to a recently seen
frame of the same monitor (an exact, time-windowed set of frame hashes), which
also catches A/B/A/B alternation; everything else goes on to analysis. A
rotating Bloom filter is the cheap first look; a hit is confirmed in the exact
set, so a false positive never drops a real change.

A repeat counts only of a frame seen since the monitor's last forwarded one
(analysis's `frame.changed`): once a different frame went on, the screen
returning to an earlier picture (a typo typed and deleted, a window raised and
lowered) is news downstream, whose picture is the frame forwarded last. The
event travels through the event proxy, so a repeat arriving within about a
millisecond of that frame's forwarding can still be dropped as before. Any
local program can publish on the bus, so a `frame.changed` counts only for a
frame this dedup passed on itself (its monitor, seq and ring generation)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Annotated, Any

import jarvis_rust_core as jrc
from pipeline import protocol, schemas
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
        self.forwarded: dict[int, int] = {}  # monitor -> seq of its last forwarded frame
        #: (monitor, seq) of frames recently let through, the only ones a frame.changed may name.
        self.passed: collections.OrderedDict[tuple[int, int], None] = collections.OrderedDict()
        self.max_passed = max(64, max_hashes)
        self.repeats_of_older = 0  # identical to a frame from before the last forwarded one: passed on

    def forwarded_seq(self, monitor: int, seq: int) -> bool:
        """Frame `seq` of `monitor` went on to forward: older frames are no
        longer what downstream shows. False (ignored) for a frame this dedup
        did not pass on."""
        if (monitor, seq) not in self.passed:
            return False
        self.forwarded[monitor] = max(seq, self.forwarded.get(monitor, seq))
        return True

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
        if seen is not None and seen[1] < self.forwarded.get(monitor, -1):
            self.repeats_of_older += 1
            seen = None
        if seen is None:
            self.passed[(monitor, seq)] = None
            while len(self.passed) > self.max_passed:
                self.passed.popitem(last=False)
            return None
        return seen[1]


class DedupStats(schemas.StageStats, kw_only=True):
    recent_hashes: Annotated[int, schemas.doc("hashes of recent frames it compares with")] = 0
    bloom_false_positives_or_expired: Annotated[int, schemas.doc(
        "Bloom filter hits that were no repeat of a frame still held")] = 0
    repeats_of_older_frames_passed: Annotated[int, schemas.doc(
        "repeats of frames older than the recent ones, passed on")] = 0


class Dedup(stage.Stage):
    subscriptions = ("frame.changed",)
    Stats = DedupStats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = RecentFrames(self.cfg.dedup.max_hashes)

    def on_event(self, topic: str, body: dict[str, Any]) -> None:
        ref = body["ref"]  # checked against the frame.changed schema
        if ref["ring_gen"] != self.mem.generation or not self.frames.forwarded_seq(ref["monitor"], ref["seq"]):
            self._reject("forged_event", f"ignored frame.changed of a frame dedup never passed on (seq {ref['seq']})")

    def _limit(self) -> int:
        cap = self.cfg.dedup.max_hashes
        return max(16, cap // 4) if self.pressure in ("high", "critical") else cap

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        digest = digest_of(extra, lambda: self.mem.read(ref))
        # The capture time, as analysis judges by it: the window holds at any replay speed.
        of_seq = self.frames.check(ref.monitor, digest, ref.seq, ref.t_mono_ns / 1e9, self._limit(), self.cfg.dedup.window_s)
        if of_seq is not None:
            self.finish(ref, "duplicate", of_seq=of_seq)
        else:
            self.pass_on(ref, extra)

    def extra_stats(self) -> dict[str, Any]:
        return {
            "recent_hashes": len(self.frames.recent),
            "bloom_false_positives_or_expired": self.frames.bloom_false_positives,
            "repeats_of_older_frames_passed": self.frames.repeats_of_older,
        }


if __name__ == "__main__":
    stage.main(Dedup)
