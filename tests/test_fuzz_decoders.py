"""Fuzz tests of every decoder that reads a socket: whatever arrives, only the
documented error type may come out (a message must never take a process down).

- hand-off messages: protocol.decode_frame_ref raises only ProtocolError;
- events: events.decode_event then events.check_event raise only
  ProtocolError or SchemaError;
- control requests and channel messages: schemas.decode / schemas.convert raise
  only SchemaError;
- the channel's framing: Channel.receive raises only ChannelClosed, returns None
  for a message that is not msgpack, and reassembles a stream however it is split.

Each fuzz test also counts what the decoder accepted and refused, and asserts
both happened, so a strategy that never reaches a valid message (or never a bad
one) fails instead of passing vacuously. Deterministic companions check that
the hand-built valid messages are accepted and that targeted breakages are
refused.
"""

from __future__ import annotations

import copy
import functools
import math
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from jarvis_rust_core import FrameRef
from pipeline import commands, events, protocol, schemas
from pipeline.channel import MAX_MESSAGE_BYTES, Channel, ChannelClosed

_FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(max_examples: int) -> settings:
    return settings(_FUZZ, max_examples=max_examples)


U32 = 2**32 - 1
U64 = 2**64 - 1
FIELDS: list[str] = list(FrameRef.FIELDS)
CHANNELS = {"BGRA": 4, "RGB": 3, "GRAY": 1}
MAJOR, MINOR = protocol.PROTOCOL_VERSION

# --------------------------------------------------------------------------
# Value strategies


def _ints(packable: bool) -> st.SearchStrategy[int]:
    """Integers around every width boundary a decoder might mishandle; packable
    ones fit msgpack (-2**63 .. 2**64-1), the others go beyond."""
    edges = [0, 1, -1, 127, 128, 255, 256, 2**31 - 1, 2**31, U32, 2**32, 2**63 - 1, 2**63, U64, -(2**31), -(2**63)]
    parts = [st.integers(-(2**63), U64), st.sampled_from(edges), st.integers(-5, 5)]
    if not packable:
        parts += [st.integers(2**64, 2**80), st.integers(-(2**80), -(2**63) - 1), st.sampled_from([2**64, 2**70, -(2**70)])]
    return st.one_of(*parts)


def _scalars(packable: bool) -> st.SearchStrategy[Any]:
    return st.one_of(
        _ints(packable),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -0.0, 0.5]),
        st.booleans(),
        st.none(),
        st.text(max_size=10),
        st.sampled_from(["", "BGRA", "RGB", "GRAY", "low", "bogus", "yes", "capture", "hb", "state"]),
        st.binary(max_size=10),
    )


def values(packable: bool = True, keys: list[str] | None = None, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any value msgpack can carry (packable), nested: lists and maps whose
    keys are known field names, other text, or bytes."""
    return _values(packable, tuple(keys or FIELDS), max_leaves)


@functools.cache
def _values(packable: bool, keys: tuple[str, ...], max_leaves: int) -> st.SearchStrategy[Any]:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=6), st.binary(max_size=4))
    return st.recursive(
        _scalars(packable),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=4)),
        max_leaves=max_leaves,
    )


def _same(a: Any, b: Any) -> bool:
    """Exact equality of decoded values (types, NaN equal to itself, the sign
    of zero), without recursion: values may be nested a thousand deep."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, list):
            if len(x) != len(y):
                return False
            stack += zip(x, y, strict=False)
        elif isinstance(x, dict):
            if list(x) != list(y):  # keys are str or bytes
                return False
            stack += ((x[k], y[k]) for k in x)
        elif isinstance(x, float):
            if not (math.isnan(x) and math.isnan(y)) and (x != y or math.copysign(1, x) != math.copysign(1, y)):
                return False
        elif x != y:
            return False
    return True


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _nested(depth: int, container: str) -> bytes:
    """A msgpack value `depth` arrays or maps deep (past msgpack's nesting
    limit of 1024 it no longer decodes)."""
    return (b"\x91" if container == "array" else b"\x81\xa1x") * depth + b"\xc0"


def deep(max_depth: int) -> st.SearchStrategy[bytes]:
    depth = st.one_of(st.integers(max(1, max_depth - 150), max_depth), st.integers(1, max_depth))
    return st.builds(_nested, depth, st.sampled_from(["array", "map"]))


def _with_entry(body: dict[str, Any], key: str, packed_value: bytes) -> bytes:
    """msgpack of `body` plus the entry key: packed_value (a fixmap grown by one)."""
    data = _pack(body)
    assert 0x80 <= data[0] < 0x8F, "a map of at most 14 entries"
    return bytes([data[0] + 1]) + data[1:] + _pack(key) + packed_value


# --------------------------------------------------------------------------
# Mutation of a valid message: delete keys, change types, add keys, anywhere
# in the nested maps.


def _dict_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every map inside obj (obj itself included), through maps and lists."""
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        out.append(path)
        for k, v in obj.items():
            out += _dict_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _dict_paths(v, path + (i,))
    return out


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], packable: bool, keys: list[str]) -> Any:
    """`base` with 1..4 random edits; sometimes replaced by a non-map."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = _dict_paths(obj)
        if not paths:
            break
        target = _at(obj, draw(st.sampled_from(paths)))
        op = draw(st.sampled_from(["delete", "retype", "retype", "add", "whole"]))
        if op == "delete" and target:
            del target[draw(st.sampled_from(sorted(target, key=repr)))]
        elif op == "retype" and target:
            target[draw(st.sampled_from(sorted(target, key=repr)))] = draw(values(packable, keys, max_leaves=4))
        elif op == "add":
            key = draw(st.one_of(st.sampled_from(keys), st.text(max_size=6), st.binary(max_size=3)))
            target[key] = draw(values(packable, keys, max_leaves=4))
        elif op == "whole" and draw(st.integers(0, 9)) == 0:
            return draw(values(packable, keys, max_leaves=4))
    return obj


def run_fuzz(name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], str], max_examples: int) -> Counter[str]:
    """Runs `check` (which returns an outcome name, or raises on a bug) over
    `strategy`; returns how often each outcome occurred."""
    outcomes: Counter[str] = Counter()

    @fuzz(max_examples)
    @given(strategy)
    def inner(x: Any) -> None:
        outcome = check(x)
        event(outcome)
        outcomes[outcome] += 1

    # Each caller's examples under its own key in Hypothesis's example database.
    inner.hypothesis.inner_test._hypothesis_internal_add_digest = name.encode()  # type: ignore[attr-defined]
    inner()
    return outcomes


# --------------------------------------------------------------------------
# 1. Hand-off messages: decode_frame_ref


@st.composite
def ref_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a valid FrameRef (every width to its limit)."""
    fmt = draw(st.sampled_from(sorted(CHANNELS)))
    w = draw(st.integers(1, U32 // CHANNELS[fmt]))
    return {
        "ring_gen": draw(st.integers(0, U64)),
        "slot": draw(st.integers(0, U32)),
        "seq": draw(st.integers(1, U64)),
        "epoch": draw(st.integers(0, U64)),
        "monitor": draw(st.integers(0, U32)),
        "w": w,
        "h": draw(st.integers(1, U32)),
        "stride": draw(st.integers(w * CHANNELS[fmt], U32)),
        "fmt": fmt,
        "t_mono_ns": draw(st.integers(0, U64)),
        "t_wall_ns": draw(st.integers(0, U64)),
    }


_KEYS_V = FIELDS + ["v"]
_versions = st.one_of(
    st.tuples(st.just(MAJOR), st.integers(0, U64)).map(list),
    st.just([MAJOR, MINOR]),
    st.tuples(st.integers(0, MAJOR + 2), st.integers(0, 3)).map(list),
    st.sampled_from([[MAJOR], [MAJOR, MINOR, 0], [], [MAJOR, True], [True, MINOR], [MAJOR, 1.0], [MAJOR, "2"], str(MAJOR)]),
    st.lists(_ints(True), min_size=0, max_size=3),
    st.lists(st.booleans(), min_size=2, max_size=2),
    values(True, _KEYS_V, max_leaves=3),
)


_nearly = st.one_of(
    st.booleans(),
    st.sampled_from(
        [0, -1, 1.0, 0.0, U32 + 1, U64, -(2**63), "1", b"1", "BGRA", "bgra", "YUV", b"BGRA", None, [1], [MAJOR, MINOR]]
    ),
    _scalars(True),
)


@st.composite
def valid_handoff(draw: st.DrawFn) -> dict[str, Any]:
    """A valid hand-off body (keys in any order), maybe with extra fields."""
    body: dict[str, Any] = draw(ref_fields()) | {"v": [MAJOR, draw(st.integers(0, U64))]}
    order = draw(st.permutations(sorted(body)))
    body = {k: body[k] for k in order}
    extra = draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in _KEYS_V), values(True, max_leaves=3), max_size=3))
    return body | extra


@st.composite
def handoff_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(
        ["raw", "map", "valid", "fast", "truncated", "version", "version", "retyped", "retyped", "retyped", "mutated",
         "non_map", "deep", "oversize"]))
    if kind == "raw":
        return draw(st.binary(max_size=600))
    if kind == "map":  # the real field names, random values of random types
        keys = draw(st.lists(st.sampled_from(_KEYS_V), unique=True))
        body = {k: draw(_versions if k == "v" else values(True, _KEYS_V, max_leaves=3)) for k in keys}
        return _pack(body)
    if kind == "valid":
        return _pack(draw(valid_handoff()))
    if kind == "fast":  # the Rust fast path's exact encoding
        return FrameRef.from_dict(draw(ref_fields())).pack((MAJOR, draw(st.integers(0, U64))))
    if kind == "truncated":
        data = _pack(draw(valid_handoff()))
        return data[: draw(st.integers(0, len(data) - 1))]
    # (st.one_of does not pick its branches evenly: a coin decides the important ones)
    if kind == "version":  # valid but for the version: another major, another length, anything
        version = draw(st.sampled_from([
            st.tuples(st.integers(0, U64), st.integers(0, U64)).map(list),
            st.lists(st.integers(0, MAJOR + 1), max_size=4),
            _versions,
        ]))
        return _pack(draw(valid_handoff()) | {"v": draw(version)})
    if kind == "retyped":  # valid but for one field, half the time a bool
        value = draw(st.booleans() if draw(st.booleans()) else _nearly)
        return _pack(draw(valid_handoff()) | {draw(st.sampled_from(_KEYS_V)): value})
    if kind == "mutated":
        body = draw(valid_handoff())
        return _pack(draw(mutated(body | {"v": draw(_versions)}, True, _KEYS_V)))
    if kind == "non_map":
        return _pack(draw(values(True, _KEYS_V)))
    if kind == "deep":  # a deeply nested extra field, or a deeply nested non-map
        body = draw(ref_fields()) | {"v": [MAJOR, MINOR]}
        return draw(st.one_of(deep(330).map(lambda d: _with_entry(body, "deep", d)), deep(600)))
    # over the size limit, otherwise valid
    return _pack(draw(valid_handoff()) | {"pad": "x" * draw(st.integers(protocol.MAX_HANDOFF_BYTES, 2000))})


def _check_handoff(data: bytes) -> str:
    try:
        ref, extra = protocol.decode_frame_ref(data)
    except protocol.ProtocolError:
        return "refused"
    # Accepted: it must be what the message says, field by field.
    assert len(data) <= protocol.MAX_HANDOFF_BYTES
    body = msgpack.unpackb(data, raw=False)
    assert isinstance(body, dict)
    version = body["v"]
    assert isinstance(version, list) and [type(x) for x in version] == [int, int] and version[0] == MAJOR, version
    decoded = ref.to_dict()
    for k in FIELDS:
        assert type(body[k]) is type(decoded[k]) and body[k] == decoded[k], (k, body[k], decoded[k])
    assert len(extra) == len(body) - len(_KEYS_V)
    for k, v in extra.items():
        assert k not in _KEYS_V and _same(v, body[k])
    return "accepted"


def test_decode_frame_ref_raises_only_protocol_error() -> None:
    outcomes = run_fuzz("handoff_bytes", handoff_bytes(), _check_handoff, max_examples=300)
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes


@fuzz(100)
@given(
    fields=ref_fields(),
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in _KEYS_V),
        st.recursive(
            st.one_of(st.integers(-(2**63), U64), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=8)),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
            max_leaves=6,
        ),
        max_size=3,
    ),
)
def test_valid_messages_round_trip(fields: dict[str, Any], extra: dict[str, Any]) -> None:
    ref = FrameRef.from_dict(fields)
    assert ref.to_dict() == fields
    try:
        data = protocol.encode_frame_ref(ref, extra)
    except protocol.ProtocolError:  # extras too large for a hand-off message
        assume(False)
    back, back_extra = protocol.decode_frame_ref(data)
    assert back == ref and back.to_dict() == ref.to_dict() == fields
    assert back_extra == extra


def test_truncated_and_retyped_handoff_messages_are_refused() -> None:
    fields = {"ring_gen": 9, "slot": 2, "seq": 5, "epoch": 1, "monitor": 0, "w": 64, "h": 48,
              "stride": 256, "fmt": "BGRA", "t_mono_ns": 1, "t_wall_ns": 2}
    for data in (FrameRef.from_dict(fields).pack(protocol.PROTOCOL_VERSION), _pack(fields | {"v": [MAJOR, MINOR], "x": 1})):
        assert protocol.decode_frame_ref(data)[0].to_dict() == fields
        for n in range(len(data)):
            with pytest.raises(protocol.ProtocolError):
                protocol.decode_frame_ref(data[:n])
    for key in FIELDS:
        bads: list[Any] = [None, 1.0, True, -1, [1], {"a": 1}, b"\x01", "1"]
        if key in ("slot", "monitor", "w", "h", "stride"):
            bads += [U32 + 1, U64]
        elif key == "fmt":
            bads += ["", "bgra", "YUV"]
        for bad in bads:
            with pytest.raises(protocol.ProtocolError):
                protocol.decode_frame_ref(_pack(fields | {"v": [MAJOR, MINOR], key: bad}))
    for version in ([MAJOR + 1, 0], [MAJOR - 1, 9], [MAJOR], [MAJOR, MINOR, 0], [], [True, MINOR], [MAJOR, 1.0], None, "1.2"):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode_frame_ref(_pack(fields | {"v": version}))


# --------------------------------------------------------------------------
# 2. Events: decode_event then check_event

REF = {"ring_gen": 7, "slot": 1, "seq": 42, "epoch": 3, "monitor": 0, "w": 64, "h": 48, "stride": 256,
       "fmt": "BGRA", "t_mono_ns": 123_456, "t_wall_ns": 1_700_000_000_000_000_000}
TIMING = {"p50": 1.0, "p95": 2.5, "p99": None}
VALID_BODIES: dict[str, dict[str, Any]] = {
    "frame.captured": {"ref": REF, "stage": "capture"},
    "frame.duplicate": {"ref": REF, "stage": "dedup", "of_seq": 41},
    "frame.unchanged": {"ref": REF, "stage": "analysis", "changed_ratio": 0.001, "why": "trivial tiles"},
    "frame.changed": {"ref": REF, "stage": "analysis", "changed_ratio": 0.2, "regions": [[0, 0, 16, 16]], "keepalive": False},
    "frame.dropped": {"ref": REF, "stage": "forward", "reason": "paused"},
    "forward.sent": {"refs": [REF], "request_id": "r1", "attempts": 1, "latency_ms": 850.0},
    "forward.dry_run": {"refs": [REF], "request_id": "r1", "path": "outbox/r1",
                        "images": [{"media_type": "image/png", "width": 64, "height": 48, "bytes": 900}],
                        "tokens_estimate": 12},
    "forward.error": {"error": "timed out", "kind": "timeout", "stopped": False, "request_id": "r1",
                      "attempt": 1, "retry_in_s": 2.0},
    "insight": {"text": "a terminal\nerror: exit 2", "attention_needed": True, "summary": "a terminal",
                "items": [{"kind": "error", "text": "exit 2", "image": 1, "region": [0, 0, 80, 20]}],
                "model": "claude", "refs": [REF], "capture_times": ["2024-01-01T00:00:00Z"],
                "usage": {"input_tokens": 10, "output_tokens": 5}, "cost_usd": 0.01, "tokens_estimate": 12,
                "latency_ms": 900.0, "request_id": "r1"},
    "stage.started": {"stage": "dedup", "pid": 100, "incarnation": 1},
    "stage.stopped": {"stage": "dedup", "pid": 100, "exit": 0},
    "stage.crashed": {"stage": "dedup", "pid": 100, "exit": -9, "reclaimed": 2},
    "stage.hung": {"stage": "dedup", "pid": 100, "silent_s": 12.5},
    "stage.restarted": {"stage": "dedup", "pid": 101, "incarnation": 2, "restarts": 1, "down_ms": 250.0},
    "stage.failed": {"stage": "dedup", "restarts": 5, "period_s": 60.0},
    "stats.supervisor": {"stage": "supervisor", "counters": {"captured": 3, "duplicate": 3}},
    "stats.capture": {"stage": "capture", "pid": 100, "frames_in": 0, "frames_out": 10, "drops": {"ring_full": 1},
                      "terminal": {}, "proc_ms": TIMING, "since_capture_ms": TIMING, "rejected": {}},
    "memory.pressure": {"level": "high", "used_mb": 900.0, "budget_mb": 1024.0, "actions": ["smaller batches"]},
    "capture.geometry_changed": {"monitors": [{"index": 0, "left": 0, "top": 0, "width": 1920, "height": 1080, "scale": 1}]},
    "capture.oversize": {"monitor": 0, "width": 8000, "height": 4000, "max_width": 3840, "max_height": 2160,
                         "action": "downscale"},
    "analysis.backend": {"backend": "gpu: llvmpipe (vulkan, software, Mesa)", "fallback": False},
    "control.paused": {},
    "control.resumed": {},
}
BODY_KEYS = sorted({k for body in VALID_BODIES.values() for k in body} | set(REF))
TOPIC_CHOICES = sorted(events.TOPIC_NAMES | set(VALID_BODIES))


def test_valid_bodies_cover_every_topic_and_are_accepted() -> None:
    assert set(VALID_BODIES) - {"stats.capture"} == events.TOPIC_NAMES - {"stats.<stage>"}
    assert events.TOPIC_NAMES - {"stats.<stage>"} <= set(VALID_BODIES)
    for topic, body in VALID_BODIES.items():
        got_topic, got_body = events.decode_event(events.encode_event(topic, body))
        assert (got_topic, got_body) == (topic, body)
        events.check_event(got_topic, got_body)
        found = events.topic(topic)
        assert found is not None
        for f in msgspec.structs.fields(found.body):
            # every named field refuses a value of the wrong type, and a required one its absence
            with pytest.raises(schemas.SchemaError):
                events.check_event(topic, body | {f.name: b"\xff"})
            if f.required:
                with pytest.raises(schemas.SchemaError):
                    events.check_event(topic, {k: v for k, v in body.items() if k != f.name})
    with pytest.raises(schemas.SchemaError):
        events.check_event("frame.nonsense", {})
    with pytest.raises(schemas.SchemaError):
        events.check_event("frame.changed", VALID_BODIES["frame.changed"] | {"ref": REF | {"fmt": "YUV"}})


_topics = st.one_of(
    st.sampled_from(TOPIC_CHOICES).map(str.encode),
    st.text(max_size=8).map(lambda s: ("stats." + s).encode()),
    st.text(max_size=16).map(str.encode),
    st.binary(max_size=16),  # not ASCII, not UTF-8
)


@st.composite
def event_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "random", "raw", "deep", "oversize"]))
    if kind == "valid":
        return _pack(VALID_BODIES[draw(st.sampled_from(sorted(VALID_BODIES)))])
    if kind == "deep":  # an unknown field nested around msgpack's limit, or such a body
        base = VALID_BODIES[draw(st.sampled_from(sorted(VALID_BODIES)))]
        return draw(st.one_of(deep(1100).map(lambda d: _with_entry(base, "deep", d)), deep(1100)))
    if kind == "mutated":
        base = VALID_BODIES[draw(st.sampled_from(sorted(VALID_BODIES)))]
        return _pack(draw(mutated(base, True, BODY_KEYS)))
    if kind == "random":
        return _pack(draw(values(True, BODY_KEYS)))
    if kind == "raw":
        return draw(st.binary(max_size=64))
    return _pack({"stage": "capture", "pad": b"\0" * events.MAX_EVENT_BYTES})


@st.composite
def event_frames(draw: st.DrawFn) -> list[bytes]:
    """Mostly [topic, body] (sometimes a body meant for the topic), else 0..4 parts."""
    n = draw(st.sampled_from([2, 2, 2, 2, 0, 1, 3, 4]))
    if n != 2:
        return draw(st.lists(st.one_of(_topics, event_bodies()), min_size=n, max_size=n))
    if draw(st.booleans()):
        topic = draw(st.sampled_from(sorted(VALID_BODIES)))
        body = VALID_BODIES[topic]
        return [topic.encode(), draw(st.one_of(
            st.just(_pack(body)),
            mutated(body, True, BODY_KEYS).map(_pack),
            deep(1100).map(lambda d: _with_entry(body, "deep", d)),
        ))]
    return [draw(_topics), draw(event_bodies())]


def _check_event_frames(frames: list[bytes]) -> str:
    try:
        topic, body = events.decode_event(frames)
    except protocol.ProtocolError:
        return "not an event"
    assert isinstance(topic, str) and isinstance(body, dict)
    try:
        events.check_event(topic, body)
    except schemas.SchemaError:
        return "bad body"
    return "accepted"


def test_decode_event_and_check_event_raise_only_documented_errors() -> None:
    outcomes = run_fuzz("event_frames", event_frames(), _check_event_frames, max_examples=300)
    assert all(outcomes[k] > 0 for k in ("not an event", "bad body", "accepted")), outcomes


@st.composite
def event_objects(draw: st.DrawFn) -> tuple[str, Any]:
    """(topic, body) as Python objects, beyond what msgpack carries (ints past 64 bits)."""
    topic = draw(st.one_of(st.sampled_from(sorted(VALID_BODIES)), st.sampled_from(TOPIC_CHOICES), st.text(max_size=10)))
    base = VALID_BODIES.get(topic, VALID_BODIES["frame.changed"])
    body = draw(st.one_of(st.just(base), mutated(base, False, BODY_KEYS), values(False, BODY_KEYS)))
    return topic, body


def _check_event_object(x: tuple[str, Any]) -> str:
    try:
        events.check_event(*x)
    except schemas.SchemaError:
        return "refused"
    return "accepted"


def test_check_event_raises_only_schema_error() -> None:
    outcomes = run_fuzz("event_objects", event_objects(), _check_event_object, max_examples=200)
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes


# --------------------------------------------------------------------------
# 3. Control requests and channel messages

STATE = {"paused": False, "pressure": "low", "version": 3}
STATS = {"stage": "capture", "pid": 1234, "frames_in": 5, "frames_out": 4, "drops": {"backpressure": 1},
         "terminal": {"duplicate": 2}, "rejected": {}, "proc_ms": TIMING, "since_capture_ms": TIMING,
         "cpu_percent": 1.5, "private_mb": 30.0, "applied": STATE, "forward_state": "dry_run", "extra": [1]}
TO_STAGE: list[dict[str, Any]] = [
    {"t": "hello", "config": "{}", "state": STATE, "incarnation": 1, "stage": "dedup",
     "place": {"previous": "capture", "next": "analysis", "hop_in": 0, "hop_out": 1}},
    {"t": "state", "state": STATE},
]
FROM_STAGE: list[dict[str, Any]] = [
    {"t": "hb"},
    {"t": "applied", "state": STATE},
    {"t": "stats", "stats": STATS},
    {"t": "stats", "stats": {"stage": "forward", "pid": 1}},
]
#: The two directions' message unions (typed Any: mypy takes a Union for a value, not a type).
TO_STAGE_SCHEMA: Any = schemas.ToStage
FROM_STAGE_SCHEMA: Any = schemas.FromStage
CHANNEL_KEYS = sorted({"t", "config", "state", "incarnation", "stats", "stage", "place"} | set(STATE) | set(STATS) | set(TIMING))


def test_channel_messages_are_typed() -> None:
    for msg in TO_STAGE:
        schemas.convert(msg, TO_STAGE_SCHEMA)
        with pytest.raises(schemas.SchemaError):
            schemas.convert(msg, FROM_STAGE_SCHEMA)
    for msg in FROM_STAGE:
        schemas.convert(msg, FROM_STAGE_SCHEMA)
        with pytest.raises(schemas.SchemaError):
            schemas.convert(msg, TO_STAGE_SCHEMA)
    bad: dict[str, Any]
    for bad in ({"pressure": "bogus"}, {"paused": "yes"}, {"paused": 1}, {"version": 1.5}, {"version": "1"}):
        for msg, schema in ((TO_STAGE[0], TO_STAGE_SCHEMA), (TO_STAGE[1], TO_STAGE_SCHEMA), (FROM_STAGE[1], FROM_STAGE_SCHEMA)):
            with pytest.raises(schemas.SchemaError):
                schemas.convert(msg | {"state": STATE | bad}, schema)
    for bad in ({"frames_in": "abc"}, {"stage": "Not a stage"}, {"stage": "s" * 25}, {"drops": {"x": "1"}},
                {"proc_ms": {"p50": "1"}}, {"applied": STATE | {"pressure": "bogus"}}):
        with pytest.raises(schemas.SchemaError):
            schemas.convert({"t": "stats", "stats": STATS | bad}, FROM_STAGE_SCHEMA)
    for place in ({"previous": "capture"}, {"previous": "capture", "next": None, "hop_in": -1, "hop_out": None},
                  {"previous": 3, "next": None, "hop_in": 0, "hop_out": None}):
        with pytest.raises(schemas.SchemaError):
            schemas.convert(TO_STAGE[0] | {"place": place}, TO_STAGE_SCHEMA)
    # Out-of-range versions are not a crash (the schema does not bound them).
    for version in (-1, 2**70, -(2**70), U64):
        for msg, schema in ((TO_STAGE[1], TO_STAGE_SCHEMA), (FROM_STAGE[1], FROM_STAGE_SCHEMA)):
            try:
                schemas.convert(msg | {"state": STATE | {"version": version}}, schema)
            except schemas.SchemaError:
                pass


@st.composite
def channel_objects(draw: st.DrawFn) -> Any:
    """A decoded channel message: valid, mutated (deep in ControlState and the
    stats too), or anything at all (None is how Channel reports non-msgpack)."""
    base = draw(st.sampled_from(TO_STAGE + FROM_STAGE))
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "random", "targeted", "deep"]))
    if kind == "valid":
        return base
    if kind == "deep":  # as deep as msgpack decodes, in an unknown field or in place of one
        nested = msgpack.unpackb(draw(deep(1024)), raw=False)
        return base | {draw(st.sampled_from(CHANNEL_KEYS + ["deep"])): nested}
    if kind == "mutated":
        return draw(mutated(base, False, CHANNEL_KEYS))
    if kind == "random":
        return draw(values(False, CHANNEL_KEYS))
    bad: dict[str, Any] = draw(st.sampled_from([
        {"pressure": "bogus"}, {"paused": "yes"}, {"version": -1}, {"version": 2**70}, {"version": math.nan}]))
    if "stats" in base:
        return {"t": "stats", "stats": STATS | draw(st.sampled_from([{"frames_in": "abc"}, {"applied": STATE | bad}]))}
    if "state" in base:
        return base | {"state": STATE | bad}
    return base | bad


def _check_channel_object(obj: Any) -> str:
    outcome = []
    for schema in (TO_STAGE_SCHEMA, FROM_STAGE_SCHEMA):
        try:
            msg: Any = schemas.convert(obj, schema)
        except schemas.SchemaError:
            continue
        assert isinstance(msg, (schemas.Hello, schemas.SetState, schemas.Heartbeat, schemas.Applied, schemas.Stats))
        outcome.append(type(msg).__name__)
    assert len(outcome) <= 1, outcome  # the tags keep the two directions apart
    return outcome[0] if outcome else "refused"


def test_convert_channel_messages_raises_only_schema_error() -> None:
    outcomes = run_fuzz("channel_objects", channel_objects(), _check_channel_object, max_examples=300)
    assert outcomes["refused"] > 0 and sum(v for k, v in outcomes.items() if k != "refused") > 0, outcomes


REQUEST_KEYS = ["cmd", "stage"]


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "map", "mutated", "truncated", "random", "raw", "deep"]))
    valid: dict[str, Any] = {"cmd": draw(st.sampled_from(sorted(commands.BY_NAME) + ["nonesuch"]))}
    if draw(st.booleans()):
        valid["stage"] = draw(st.one_of(st.none(), st.sampled_from(["capture", "dedup", "analysis", "forward"])))
    if kind == "valid":
        return _pack(valid)
    if kind == "map":
        keys = draw(st.lists(st.sampled_from(REQUEST_KEYS), unique=True))
        return _pack({k: draw(values(True, REQUEST_KEYS, max_leaves=3)) for k in keys})
    if kind == "mutated":
        return _pack(draw(mutated(valid, True, REQUEST_KEYS)))
    if kind == "truncated":
        data = _pack(valid)
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "random":
        return _pack(draw(values(True, REQUEST_KEYS)))
    if kind == "deep":  # an unknown field nested deeper than Python's stack (hypothesis raises the limit)
        return draw(deep(4000).map(lambda d: _with_entry(valid, "x", d)))
    return draw(st.binary(max_size=64))


def _check_request(data: bytes) -> str:
    try:
        req = schemas.decode(data, schemas.Request)
    except schemas.SchemaError:
        return "refused"
    assert isinstance(req.cmd, str) and (req.stage is None or isinstance(req.stage, str))
    return "accepted"


def test_decode_request_raises_only_schema_error() -> None:
    outcomes = run_fuzz("request_bytes", request_bytes(), _check_request, max_examples=200)
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes


# --------------------------------------------------------------------------
# 4. The channel's framing


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _unpack_or_none(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return None


def _reference(stream: bytes) -> tuple[list[Any], str]:
    """What a reader of `stream` must get: the messages, and how it ends
    ("oversize": a length over the limit; "partial": EOF within a message;
    "clean": EOF between messages)."""
    out: list[Any] = []
    pos = 0
    while len(stream) - pos >= 4:
        size = int.from_bytes(stream[pos : pos + 4], "big")
        if size > MAX_MESSAGE_BYTES:
            return out, "oversize"
        if len(stream) - pos - 4 < size:
            break
        out.append(_unpack_or_none(stream[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return out, "partial" if pos < len(stream) else "clean"


def _write(writer: socket.socket, chan: Channel, data: bytes, got: list[Any]) -> None:
    """Writes all of data, reading the channel whenever the socket is full."""
    view = memoryview(data)
    while view:
        try:
            n = writer.send(view)
        except BlockingIOError:
            got += chan.receive()
            continue
        view = view[n:]


_piece = st.one_of(
    values(True, CHANNEL_KEYS).map(lambda v: _frame(_pack(v))),  # a message
    st.sampled_from(TO_STAGE + FROM_STAGE).map(lambda v: _frame(_pack(v))),
    st.binary(max_size=40).map(_frame),  # framed, maybe not msgpack
    st.just(_frame(b"")),
    st.just(_frame(b"\x93\x01\x02")),  # truncated msgpack
    st.just(_frame(b"\x81\x01\x02")),  # a map with an int key (strict_map_key)
    st.just(_frame(b"\xc0\xc0")),  # msgpack followed by extra data
    deep(1100).map(_frame),  # nested around msgpack's limit
    st.integers(MAX_MESSAGE_BYTES + 1, U32).map(lambda n: n.to_bytes(4, "big")),  # over the limit
    st.integers(0, MAX_MESSAGE_BYTES).map(lambda n: n.to_bytes(4, "big")),  # a length, then whatever follows
    st.binary(max_size=12),  # unframed bytes
)


@st.composite
def split_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes], bool]:
    stream = b"".join(draw(st.lists(_piece, max_size=8)))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return stream, chunks, draw(st.booleans())


def _check_channel_stream(x: tuple[bytes, list[bytes], bool]) -> str:
    stream, chunks, read_between = x
    expected, ending = _reference(stream)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = Channel(a)
    b.setblocking(False)
    got: list[Any] = []
    closed: ChannelClosed | None = None
    closed_early = False
    try:
        try:
            for chunk in chunks:
                _write(b, chan, chunk, got)
                if read_between:
                    got += chan.receive()
        except ChannelClosed as exc:
            closed, closed_early = exc, True
        b.close()
        if not closed_early:
            try:
                for _ in range(4):  # the data still queued, then the end
                    got += chan.receive()
            except ChannelClosed as exc:
                closed = exc
        assert closed is not None, "no ChannelClosed at the end of the stream"
    finally:
        b.close()
        chan.close()
    assert len(got) <= len(expected) and all(_same(g, e) for g, e in zip(got, expected, strict=False)), (got, expected)
    if ending == "oversize":
        # refused as soon as the length is read, not waited for
        assert "over the" in str(closed) and (closed_early or not read_between), closed
        return "oversize"
    assert not closed_early, "ChannelClosed before the end of a stream of valid framing"
    if read_between:
        # Every message was read before the end: all of them, in order.
        assert len(got) == len(expected), (got, expected)
    return f"{ending}, {'none' if not got else 'with None' if None in got else 'messages'}"


def test_channel_receive_raises_only_channel_closed() -> None:
    outcomes = run_fuzz("split_streams", split_streams(), _check_channel_stream, max_examples=150)
    assert outcomes["oversize"] > 0, outcomes
    assert any("with None" in k for k in outcomes) and any(k.endswith("messages") for k in outcomes), outcomes


@fuzz(80)
@given(
    messages=st.lists(st.one_of(st.sampled_from(TO_STAGE + FROM_STAGE), values(True, CHANNEL_KEYS)), min_size=1, max_size=8),
    data=st.data(),
)
def test_channel_reassembles_messages_split_anywhere(messages: list[Any], data: st.DataObject) -> None:
    stream = b"".join(_frame(_pack(m)) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = Channel(a)
    b.setblocking(False)
    got: list[Any] = []
    try:
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            _write(b, chan, stream[lo:hi], got)
            got += chan.receive()
    finally:
        b.close()
        chan.close()
    expected = [msgpack.unpackb(_pack(m), raw=False) for m in messages]
    assert len(got) == len(messages)
    assert all(_same(g, e) for g, e in zip(got, expected, strict=False)), (got, expected)


def test_channel_size_limit_is_exact() -> None:
    """A message of exactly MAX_MESSAGE_BYTES passes (written while the reader
    drains); one byte more ends the channel."""
    body = _pack(b"\0" * (MAX_MESSAGE_BYTES - 5))
    assert len(body) == MAX_MESSAGE_BYTES
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    chan = Channel(a)
    b.setblocking(False)
    got: list[Any] = []
    try:
        _write(b, chan, _frame(body) + _frame(_pack({"t": "hb"})), got)
        got += chan.receive()
        assert got == [b"\0" * (MAX_MESSAGE_BYTES - 5), {"t": "hb"}]
        _write(b, chan, (MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"), got)
        with pytest.raises(ChannelClosed, match="over the"):
            chan.receive()
    finally:
        b.close()
        chan.close()


def test_channel_delivers_whole_messages_read_together_with_the_end() -> None:
    """The peer's last write (here exactly one 64 KiB read) and its close arrive
    together: the whole messages come first, the close on the next receive."""
    mine, theirs = socket.socketpair()
    reader = Channel(mine)
    body = msgpack.packb(b"x" * (65536 - 4 - 5))  # bin32 header: 5 bytes
    theirs.sendall(len(body).to_bytes(4, "big") + body)
    theirs.close()
    assert reader.receive() == [b"x" * (65536 - 9)]
    with pytest.raises(ChannelClosed):
        reader.receive()
    reader.close()
