"""The wire protocol: the hand-off message and the frame-state tables.

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
PROTOCOL_VERSION: tuple[int, int] = (1, 3)
MAX_HANDOFF_BYTES = 512
assert MAX_HANDOFF_BYTES <= HANDOFF_RECORD_BYTES, "a hand-off message must fit a record of the ring's hand-off queues"
MAX_EVENT_BYTES = 64 * 1024

#: Ring fields of a FrameRef, in wire order.
FRAME_REF_FIELDS: tuple[str, ...] = tuple(FrameRef.FIELDS)
_RESERVED_KEYS = frozenset(FRAME_REF_FIELDS) | {"v"}
#: Extra field set by capture: the frame's pixel hash (kernels.fingerprint),
#: computed right after the write while the pixels are still in cache.
PIXEL_HASH_KEY = "pixel_hash"
#: Extra field set by capture on a frame downscaled to fit the ring: the
#: [width, height] the screen had (see capture.oversize).
SCALED_FROM_KEY = "scaled_from"


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


# --------------------------------------------------------------------------
# Events: one endpoint (the supervisor's proxy), ZeroMQ multipart messages
# [topic, msgpack body]. Topics end in a dot-free word; subscribe to whole
# words ("frame." gets every frame event). Bodies are maps of JSON-compatible
# values under MAX_EVENT_BYTES. Messages published before a subscriber joins
# are not replayed: ask the supervisor (`status`) for current state.


@dataclass(frozen=True)
class Topic:
    name: str
    publisher: str
    doc: str
    fields: tuple[tuple[str, str], ...]


_REF = ("ref", "the frame's FrameRef fields (as in a hand-off message, without 'v')")
_STAGE = ("stage", "the publishing stage")

TOPICS: tuple[Topic, ...] = (
    Topic("frame.captured", "capture", "a frame was written into the ring",
          (_REF, _STAGE, ("label", "replays of labelled sessions: the frame's recorded label (optional)"),
           ("scaled_from", "[width, height] of a screen larger than the ring's slots, downscaled to fit (optional)"))),
    Topic("frame.duplicate", "dedup", "terminal: identical to a recently seen "
        "frame", (_REF, _STAGE, ("of_seq", "seq of the frame it repeats"))),
    Topic("frame.unchanged", "analysis", "terminal: no meaningful change against the reference frame",
          (_REF, _STAGE, ("changed_ratio", "fraction of pixels changed"), ("why", "what was seen: trivial tiles, nothing"))),
    Topic("frame.changed", "analysis", "a meaningful change; the frame goes on to forward",
          (_REF, _STAGE, ("changed_ratio", "fraction of pixels changed"), ("regions", "changed regions [[x, y, w, h], ...]"),
           ("keepalive", "true when sent on only because of the quiet time"))),
    Topic("frame.dropped", "any stage", "terminal: dropped for a reason of DROP_REASONS",
          (_REF, _STAGE, ("reason", "one of the drop reasons"))),
    Topic("forward.sent", "forward", "terminal: frames whose request Claude answered",
          (("refs", "FrameRefs in the request"), ("request_id", "journal id of the request"),
           ("attempts", "tries it took"), ("latency_ms", "from the last try's start to the answer"))),
    Topic("forward.dry_run", "forward", "terminal: frames written to the outbox instead of sent",
          (("refs", "FrameRefs in the request"), ("request_id", "journal id of the request"),
           ("path", "the request's folder in the outbox"), ("images", "[{media_type, width, height, bytes}, ...]"),
           ("tokens_estimate", "estimated image input tokens"))),
    Topic("forward.error", "forward", "a try failed (retry_in_s set: it is tried again), a request failed, "
          "or forwarding stopped",
          (("error", "what went wrong (never the key)"), ("kind", "rate_limited, overloaded, server, timeout, "
           "connection, conflict, auth, unknown_model, spend_limit, bad_request, malformed, internal, key, "
               "outbox"), ("request_id", "the request"),
           ("attempt", "which try failed"), ("retry_in_s", "seconds until the next try, or null"),
           ("stopped", "true when forwarding stopped until the pipeline is restarted"))),
    Topic("insight", "forward", "what Claude reported about frames (through the report tool; an answer "
          "without a usable report is a forward.error of kind malformed instead)",
          (("text", "the report for people: the summary, then one line per item (kind: text)"),
           ("attention_needed", "true when something needs the person now: subscribe to these"),
           ("summary", "what the person is doing, one sentence"),
           ("items", "[{kind: error | warning | question | reminder | progress | other, text, image (1-based "
            "screenshot number) or null, region ([x, y, w, h] in that screenshot) or null}]"),
           ("model", "the model that answered"), ("refs", "the frames"),
           ("capture_times", "the frames' capture times (UTC, ISO 8601)"),
           ("usage", "{input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens}"),
           ("cost_usd", "at forward.price"), ("tokens_estimate", "estimated image input tokens"),
           ("latency_ms", "from the request's start to the answer"), ("request_id", "journal id"))),
    Topic("stage.started", "supervisor", "a stage process is running and attached",
          (_STAGE, ("pid", "process id"), ("incarnation", "how many times this stage was started"))),
    Topic("stage.stopped", "supervisor", "a stage was stopped on command (not a crash)",
          (_STAGE, ("pid", "process id"), ("exit", "exit status"))),
    Topic("stage.crashed", "supervisor", "a stage died without being told to",
          (_STAGE, ("pid", "process id"), ("exit", "exit status, or -N for signal N"),
           ("reclaimed", "frames whose holds were taken back"))),
    Topic("stage.restarted", "supervisor", "a crashed stage was started again",
          (_STAGE, ("pid", "new process id"), ("restarts", "restarts so far"), ("down_ms", "time without the stage"))),
    Topic("stage.hung", "supervisor", "a stage missed its heartbeat for supervisor.hang_after_s and was killed "
          "(then restarted like a crash)",
          (_STAGE, ("pid", "process id"), ("silent_s", "seconds since its last heartbeat"))),
    Topic("stage.failed", "supervisor", "a stage crashed too often and is not restarted again",
          (_STAGE, ("restarts", "restarts within the period"), ("period_s", "the restart-intensity period"))),
    Topic("stats.<stage>", "each stage", "counters and timings, once per stats interval",
          (_STAGE, ("frames_in", "frames received"), ("frames_out", "frames passed on"),
           ("drops", "{reason: count}"), ("terminal", "{state: count} decided here"),
           ("proc_ms", "{p50, p95, p99} of per-frame processing time over the last 512 frames"),
           ("since_capture_ms", "{p50, p95, p99} from capture to arrival here, last 512 frames"),
           ("rejected", "{kind: count} of bad messages"), ("pid", "the stage's process id"),
           ("cpu_percent", "% of one core, sampled every supervisor.sample_interval_s"),
           ("private_mb", "memory only this stage holds, MB (pipeline/usage.py), sampled with the CPU"),
           ("applied", "the control state it applies: {paused, pressure, version}"),
           ("forward_state", "forward only: what its sender is doing (dry_run, sending, failing: why)"),
           ("malformed_answers", "forward only: answers without a usable report (each also a forward.error)"))),
    Topic("memory.pressure", "supervisor", "the memory governor changed level",
          (("level", "low, medium, high or critical"), ("used_mb", "stages' private memory plus the ring"),
           ("budget_mb", "the configured budget"), ("actions", "what the stages do about it"))),
    Topic("capture.geometry_changed", "capture", "monitors appeared, vanished or changed size",
          (("monitors", "[{index, left, top, width, height, scale}, ...] (scale: pixels per point)"),)),
    Topic("capture.oversize", "capture", "a monitor is larger than the ring's slots",
          (("monitor", "monitor index"), ("width", "its width"), ("height", "its height"),
           ("max_width", "the ring's largest frame width"), ("max_height", "the ring's largest frame height"),
           ("action", "what capture does about it"))),
    Topic("control.paused", "supervisor", "nothing leaves the machine until resumed", ()),
    Topic("control.resumed", "supervisor", "forwarding may go on", ()),
)
TOPIC_NAMES: frozenset[str] = frozenset(t.name for t in TOPICS)


def topic_known(topic: str) -> bool:
    return topic in TOPIC_NAMES or (topic.startswith("stats.") and "." not in topic[6:] and len(topic) > 6)


def encode_event(topic: str, body: Mapping[str, Any]) -> list[bytes]:
    if not topic_known(topic):
        raise ProtocolError(f"unknown event topic {topic!r}; topics are listed in pipeline.protocol.TOPICS")
    data: bytes = msgpack.packb(dict(body), use_bin_type=True)
    if len(data) > MAX_EVENT_BYTES:
        raise ProtocolError(f"event {topic} body is {len(data)} bytes, over {MAX_EVENT_BYTES}")
    return [topic.encode(), data]


def decode_event(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    if len(frames) != 2:
        raise ProtocolError(f"an event has 2 frames (topic, body), got {len(frames)}")
    topic = bytes(frames[0]).decode("ascii", errors="replace")
    if len(frames[1]) > MAX_EVENT_BYTES:
        raise ProtocolError(f"event body of {len(frames[1])} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        body = msgpack.unpackb(frames[1], raw=False)
    except Exception as exc:
        raise ProtocolError(f"event {topic}: body is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"event {topic}: body is not a map")
    return topic, body


# --------------------------------------------------------------------------
# Control: a request/reply endpoint of the supervisor. Requests and replies are
# msgpack maps; every reply has "ok" and either "result" or "error".

CONTROL_COMMANDS: dict[str, str] = {
    "ping": "liveness check; result: {pid, instance, versions}",
    "status": "result: {instance, pid, uptime_s, paused, control: {paused, pressure, version}, errors: [control "
              "mismatches], rejected, source, forward_mode, forward_state, forward_cost_usd, memory, counters, stages: "
                  "[{name, state, pid, "
              "uptime_s, restarts, incarnation, heartbeat_age_s, applied, control_mismatch, cpu_percent, pss_mb, fps "
              "(null when not current), frames_in, frames_out, drops, terminal, rejected, p95_ms, latency_p95_ms}]}",
    "restart": "args: {stage}; drains and restarts one stage",
    "pause": "stops everything leaving the machine at once; kept in the data directory across restarts",
    "resume": "lets forwarding go on",
    "down": "stops the pipeline in the shutdown order and removes its files",
}


def events_markdown() -> str:
    """docs/events.md: the topics and commands, generated from this module."""
    out = ["# Events and commands", "",
           "Generated from `pipeline/protocol.py` by `scripts/gen_docs.py`; do not edit by hand.", "",
           "Events are ZeroMQ multipart messages `[topic, msgpack body]` on the instance's",
           "`events.sock` (XPUB). Subscribe to whole words: `frame.` receives every frame event.", "",
           f"Hand-off messages (stage to stage) carry a FrameRef, protocol version {PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]},",
           f"at most {MAX_HANDOFF_BYTES} bytes; fields: {', '.join(FRAME_REF_FIELDS)}, v.", "",
           "## Topics", ""]
    for t in TOPICS:
        out.append(f"### `{t.name}` ({t.publisher})")
        out.append("")
        out.append(t.doc + ".")
        out.append("")
        for name, doc in t.fields:
            out.append(f"- `{name}`: {doc}")
        out.append("")
    out += ["## Terminal states", "", "| state | decided by | topic | meaning |", "|---|---|---|---|"]
    out += [f"| `{s.name}` | {s.decided_by} | `{s.topic}` | {s.meaning} |" for s in TERMINAL_STATES]
    out += ["", "| drop reason | decided by | meaning |", "|---|---|---|"]
    out += [f"| `{r.name}` | {r.decided_by} | {r.meaning} |" for r in DROP_REASONS]
    out += ["", "## Control commands", "", "Requests `{cmd, ...args}` on `control.sock` (REQ/REP), replies `{ok, "
        "result | error}`.", ""]
    out += [f"- `{name}`: {doc}" for name, doc in CONTROL_COMMANDS.items()]
    return "\n".join(out) + "\n"
