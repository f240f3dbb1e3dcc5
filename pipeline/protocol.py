"""The wire protocol: the hand-off message and the frame-state tables (the
events are in pipeline.events, the control commands in pipeline.commands).

This module is the one place that defines them; every stage, tap and tool
imports them from here.

Hand-off message (stage to stage, through the hop's queue in the ring, or
over ZeroMQ when that is full): a msgpack map with
  v          [major, minor] protocol version
  ring_gen   generation of the ring the frame lives in
  slot, seq  where the frame is, and which frame it is
  epoch      incarnation of the sending stage (refs from a dead one are dropped)
  monitor, w, h, stride, fmt   geometry (fmt: BGRA, RGB or GRAY)
  t_mono_ns  capture time on time.monotonic_ns's clock (CLOCK_MONOTONIC; macOS: CLOCK_UPTIME_RAW)
  t_wall_ns  capture time on the wall clock (people, journals)
plus optional extra fields added by later stages. Receivers ignore keys they do
not know (a new field is a minor version); a different major version is refused.
A message stays under MAX_HANDOFF_BYTES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from jarvis_rust_core import COUNTERS, HANDOFF_RECORD_BYTES, FrameRef

# 1.1: pixel_hash; drop reasons insignificant, send_failed, forward_stopped.
# 1.2: drop reasons oversize, next_stage_down; capture.oversize, stage.hung.
# 1.3: insight's attention_needed, summary and items (the report tool); forward's
#      malformed_answers; each monitor's scale in capture.geometry_changed.
# 1.4: analysis.backend; the stats' backend and gpu_ms, analysis's gpu_failures.
# 1.5: band_digests; analysis's tile_rows, tile_rows_skipped and band_digests_refused.
PROTOCOL_VERSION: tuple[int, int] = (1, 5)
MAX_HANDOFF_BYTES = 512
assert MAX_HANDOFF_BYTES <= HANDOFF_RECORD_BYTES, "a hand-off message must fit a record of the ring's hand-off queues"

#: Ring fields of a FrameRef, in wire order.
FRAME_REF_FIELDS: tuple[str, ...] = tuple(FrameRef.FIELDS)
_RESERVED_KEYS = frozenset(FRAME_REF_FIELDS) | {"v"}
#: Extra field set by capture: the frame's pixel hash (kernels.fingerprint),
#: computed right after the write while the pixels are still in cache.
PIXEL_HASH_KEY = "pixel_hash"
#: Extra field set by capture, passed on by dedup: the digests of the frame's
#: bands of rows (kernels.frame_digests, at most kernels.MAX_BANDS of them, as
#: little-endian uint64 bytes); analysis reads only the rows of tiles whose
#: bands differ from its reference's.
BAND_DIGESTS_KEY = "band_digests"
#: Extra field set by capture on a frame downscaled to fit the ring: the
#: [width, height] the screen had (see capture.oversize).
SCALED_FROM_KEY = "scaled_from"
#: The extra fields capture sets (dedup passes them on), for docs/events.md.
CAPTURE_EXTRAS: dict[str, str] = {
    PIXEL_HASH_KEY: "the frame's 64-bit pixel hash (dedup's key)",
    BAND_DIGESTS_KEY: "the 64-bit digests of its bands of rows, little-endian bytes (analysis compares only the "
                      "rows of tiles whose bands differ from its reference's)",
    SCALED_FROM_KEY: "[width, height] of a screen downscaled to fit the ring",
}


class ProtocolError(ValueError):
    """A message that is not a valid hand-off message of this protocol."""


def encode_frame_ref(ref: FrameRef, extra: Mapping[str, Any] | None = None) -> bytes:
    """Encodes a hand-off message: the ref, the protocol version, and `extra`
    fields (JSON-compatible values; their keys must not shadow ref fields)."""
    if not extra:
        return ref.pack(PROTOCOL_VERSION)  # the same map, packed without Python dicts
    body: dict[str, Any] = ref.to_dict()
    body["v"] = list(PROTOCOL_VERSION)
    if extra:
        clash = _RESERVED_KEYS.intersection(extra)
        if clash:
            raise ProtocolError(f"extra fields {sorted(clash)} would shadow FrameRef fields")
        body.update(extra)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_HANDOFF_BYTES:
        raise ProtocolError(
            f"hand-off message is {len(data)} bytes, over the {MAX_HANDOFF_BYTES}-byte limit; "
            "send regions as at most 16 boxes or a tile bitmap"
        )
    return data


def decode_frame_ref(data: bytes) -> tuple[FrameRef, dict[str, Any]]:
    """Decodes and validates a hand-off message; returns the ref and the extra
    fields. Raises ProtocolError for anything malformed, foreign or of another
    major version."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"a hand-off message is bytes, not {type(data).__name__}")
    if len(data) > MAX_HANDOFF_BYTES:
        raise ProtocolError(f"hand-off message of {len(data)} bytes exceeds {MAX_HANDOFF_BYTES}")
    fast = FrameRef.unpack(bytes(data))
    if fast is not None and fast[1][0] == PROTOCOL_VERSION[0]:
        return fast[0], {}
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not a msgpack message: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"a hand-off message is a map, not {type(body).__name__}")
    version = body.get("v")
    if (
        not isinstance(version, (list, tuple))
        or len(version) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in version)
    ):
        raise ProtocolError(f"missing or malformed protocol version 'v': {version!r}")
    if version[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            f"protocol major version {version[0]} is not ours ({PROTOCOL_VERSION[0]}); "
            "stages of different releases cannot be mixed"
        )
    for key in FRAME_REF_FIELDS:
        if isinstance(body.get(key), bool):
            raise ProtocolError(f"FrameRef field {key!r} must not be a bool")
    try:
        ref = FrameRef.from_dict(body)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(exc.args[0] if exc.args else repr(exc)) from None
    extra = {k: v for k, v in body.items() if k not in _RESERVED_KEYS}
    return ref, extra


# --------------------------------------------------------------------------
# Terminal states: every captured frame ends in exactly one, decided by one
# stage, announced on one topic.


@dataclass(frozen=True)
class TerminalState:
    name: str
    decided_by: str
    topic: str
    meaning: str


TERMINAL_STATES: tuple[TerminalState, ...] = (
    TerminalState("duplicate", "dedup", "frame.duplicate", "pixels identical to a recently seen frame (hash, confirmed exactly)"),
    TerminalState("unchanged", "analysis", "frame.unchanged", "changed, but below the change threshold against the "
        "last forwarded frame"),
    TerminalState("forwarded", "forward", "forward.sent", "its request was answered (live; forward.dry_run: written to "
        "the outbox)"),
    TerminalState("dropped", "whoever drops it", "frame.dropped", "dropped for one of DROP_REASONS"),
)


@dataclass(frozen=True)
class DropReason:
    name: str
    decided_by: str
    meaning: str


DROP_REASONS: tuple[DropReason, ...] = (
    DropReason("ring_full", "capture", "no free slot in the ring"),
    DropReason("backpressure", "any sender", "the next stage already had its credit of frames in flight"),
    DropReason("next_stage_down", "any sender", "the next stage is not running (restarting, or failed)"),
    DropReason("rate_limited", "forward", "over the request or token budget"),
    DropReason("paused", "forward", "forwarding is paused"),
    DropReason("batch_overflow", "forward", "the batch queue was full"),
    DropReason("insignificant", "forward", "changed less than forward.min_changed_ratio"),
    DropReason("send_failed", "forward", "its request failed for good (retries spent, or an answer that cannot be used)"),
    DropReason("forward_stopped", "forward", "forwarding stopped: the API refused the key, does not know the model, or "
        "the spend limit is reached"),
    DropReason("stage_crashed", "supervisor or receiver", "held by, or sent by, a stage incarnation that died"),
    DropReason("expired", "any stage", "the frame was gone from the ring when a stage came to use it"),
    DropReason("shutdown", "supervisor", "still in the pipeline when it stopped"),
    DropReason("oversize", "capture", "the screen was larger than the ring's slots and the frame could not be written"),
)

DROP_REASON_NAMES: tuple[str, ...] = tuple(r.name for r in DROP_REASONS)

#: Frames not yet in a terminal state but no longer in the ring: forward has
#: copied them out for a request it has not sent yet.
PENDING_COUNTERS: tuple[str, ...] = ("pending.forward",)

#: Shared counters in the ring header, by name: "captured", one per terminal
#: state other than "dropped", "dropped.<reason>" per drop reason, and the
#: pending ones. captured == terminal states + pending, always; pending is 0
#: once the pipeline is drained.
COUNTER_NAMES: tuple[str, ...] = (
    ("captured",)
    + tuple(s.name for s in TERMINAL_STATES if s.name != "dropped")
    + tuple(f"dropped.{r}" for r in DROP_REASON_NAMES)
    + PENDING_COUNTERS
)
COUNTER_INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTER_NAMES)}
assert len(COUNTER_NAMES) <= COUNTERS, "the ring header has too few counters"


def counter_snapshot(values: Sequence[int]) -> dict[str, int]:
    """Names the ring's raw counters (SharedVisionMemory.counters())."""
    return {name: int(values[i]) for i, name in enumerate(COUNTER_NAMES)}


def terminal_total(snapshot: Mapping[str, int]) -> int:
    """Frames that reached a terminal state; equals `captured` once drained."""
    return sum(v for k, v in snapshot.items() if k != "captured" and k not in PENDING_COUNTERS)
