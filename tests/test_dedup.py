"""Dedup's per-frame decision over the real ring and real hand-off messages:
capture's pixel hash is used when the message has it, and a message without
it (a replayed or foreign frame) is hashed by dedup to the same value."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import jarvis_rust_core as jrc
from pipeline import protocol
from procs import kernels
from procs.dedup import RecentFrames, digest_of


def capture(mem: jrc.SharedVisionMemory, frame: np.ndarray) -> tuple[jrc.FrameRef, int]:
    """What capture does: write into a reserved slot, hash it, commit."""
    res = mem.reserve(frame.shape[1], frame.shape[0], "BGRA", monitor=1)
    np.copyto(res.array, frame)
    digest = kernels.fingerprint(res.array)
    return res.commit(hold=True), digest


def test_capture_hash_and_dedup_hash_agree_and_duplicates_are_found(shm_base: Path) -> None:
    mem = jrc.SharedVisionMemory(name="dd", slots=6, max_width=64, max_height=48, holder="capture")
    try:
        rng = np.random.default_rng(4)
        a = rng.integers(0, 256, (48, 64, 4), dtype=np.uint8)
        b = a.copy()
        b[10, 20, 0] ^= 1  # one channel of one pixel
        frames = RecentFrames(64)
        verdicts, seqs = [], []
        for i, frame in enumerate([a, b, a, b, b]):
            ref, digest = capture(mem, frame)
            with_hash = protocol.decode_frame_ref(protocol.encode_frame_ref(ref, {protocol.PIXEL_HASH_KEY: digest}))[1]
            without = protocol.decode_frame_ref(protocol.encode_frame_ref(ref))[1]
            read_back = mem.read(ref)
            assert digest_of(with_hash, lambda: None) == digest  # capture's hash, no read
            assert digest_of(without, lambda: read_back) == digest
            verdicts.append(frames.check(ref.monitor, digest, ref.seq, float(i), 64, 30.0))
            seqs.append(ref.seq)
            mem.release(ref)
        # A/B/A/B alternation and a repeat: each a duplicate of the latest equal frame
        assert verdicts == [None, None, seqs[0], seqs[1], seqs[3]]
        assert digest_of({protocol.PIXEL_HASH_KEY: True}, lambda: a) == kernels.fingerprint(a), "a bool is not a hash"
    finally:
        mem.close()
