"""The hand-off message: round trip, validation, versioning, size limit."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jarvis_rust_core as jrc
from pipeline import protocol as p


@pytest.fixture
def ref(shm_base: Path) -> jrc.FrameRef:
    with jrc.SharedVisionMemory(size_mb=8, name="proto", max_width=64, max_height=64) as mem:
        return mem.write_frame(np.zeros((48, 64, 4), np.uint8), monitor=1)


def test_round_trip_keeps_every_field_and_extras(ref: jrc.FrameRef) -> None:
    data = p.encode_frame_ref(ref, {"regions": [[1, 2, 3, 4]], "changed": 0.25})
    assert len(data) <= p.MAX_HANDOFF_BYTES
    back, extra = p.decode_frame_ref(data)
    assert back == ref
    assert back.to_dict() == ref.to_dict()
    assert extra == {"regions": [[1, 2, 3, 4]], "changed": 0.25}
    assert set(p.FRAME_REF_FIELDS) == set(ref.to_dict())


def test_unknown_keys_and_newer_minor_are_accepted(ref: jrc.FrameRef) -> None:
    body = ref.to_dict() | {"v": [p.PROTOCOL_VERSION[0], p.PROTOCOL_VERSION[1] + 5], "future": {"x": 1}}
    back, extra = p.decode_frame_ref(msgpack.packb(body))
    assert back == ref and extra == {"future": {"x": 1}}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b | {"v": [p.PROTOCOL_VERSION[0] + 1, 0]}, "major version"),
        (lambda b: {k: v for k, v in b.items() if k != "v"}, "protocol version"),
        (lambda b: {k: v for k, v in b.items() if k != "seq"}, "seq"),
        (lambda b: b | {"w": "wide"}, r'"w"' ),
        (lambda b: b | {"w": -1}, r'"w"' ),
        (lambda b: b | {"fmt": "YUV"}, "YUV"),
        (lambda b: b | {"stride": 1}, "impossible"),
        (lambda b: b | {"seq": True}, "bool"),
        (lambda b: b | {"slot": 2**40}, r'"slot"' ),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(ref: jrc.FrameRef, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    body = ref.to_dict() | {"v": list(p.PROTOCOL_VERSION)}
    with pytest.raises(p.ProtocolError, match=message):
        p.decode_frame_ref(msgpack.packb(mutate(body)))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb("str"), b"x" * 600, "text"])
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode_frame_ref(data)


def test_size_limit_and_shadowing_are_enforced(ref: jrc.FrameRef) -> None:
    with pytest.raises(p.ProtocolError, match="512-byte limit"):
        p.encode_frame_ref(ref, {"regions": [[i, i, i, i] for i in range(200)]})
    with pytest.raises(p.ProtocolError, match="shadow"):
        p.encode_frame_ref(ref, {"seq": 1})


def test_terminal_state_tables_are_consistent() -> None:
    assert [s.name for s in p.TERMINAL_STATES] == ["duplicate", "unchanged", "forwarded", "dropped"]
    assert len(set(p.DROP_REASON_NAMES)) == len(p.DROP_REASON_NAMES) == 13
    assert len(p.COUNTER_NAMES) <= jrc.COUNTERS
    snap = p.counter_snapshot([0] * jrc.COUNTERS)
    assert set(snap) == set(p.COUNTER_NAMES) and p.terminal_total(snap) == 0


def test_counters_live_in_the_ring_and_are_exact(shm_base: Path) -> None:
    with jrc.SharedVisionMemory(name="count", slots=4, max_width=32, max_height=32) as mem:
        mem.counter_add(p.COUNTER_INDEX["captured"], 3)
        mem.counter_add(p.COUNTER_INDEX["duplicate"])
        mem.counter_add(p.COUNTER_INDEX["dropped.ring_full"], 2)
        snap = p.counter_snapshot(mem.counters())
        assert snap["captured"] == 3 == p.terminal_total(snap)
        with pytest.raises(jrc.RingConfigError):
            mem.counter_add(jrc.COUNTERS)


@given(
    seq=st.integers(1, 2**64 - 1),
    epoch=st.integers(0, 2**64 - 1),
    slot=st.integers(0, 2**32 - 1),
    t=st.integers(0, 2**64 - 1),
    minor=st.integers(0, 1000),
)
# The fixture is only read, so sharing it across examples is fine.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fast_and_general_paths_agree(ref: jrc.FrameRef, seq: int, epoch: int, slot: int, t: int, minor: int) -> None:
    r = jrc.FrameRef.from_dict(ref.to_dict() | {"seq": seq, "epoch": epoch, "slot": slot, "t_wall_ns": t})
    fast = r.pack((p.PROTOCOL_VERSION[0], minor))
    general = msgpack.packb(r.to_dict() | {"v": [p.PROTOCOL_VERSION[0], minor]})
    assert msgpack.unpackb(fast) == msgpack.unpackb(general)
    assert jrc.FrameRef.unpack(fast) == (r, (p.PROTOCOL_VERSION[0], minor))
    assert jrc.FrameRef.unpack(general) == (r, (p.PROTOCOL_VERSION[0], minor))
    assert p.decode_frame_ref(fast) == p.decode_frame_ref(general) == (r, {})


def test_every_topic_has_a_schema_naming_only_documented_fields() -> None:
    import msgspec

    from pipeline import schemas

    assert set(schemas.EVENT_BODIES) | {"stats.<stage>"} == p.TOPIC_NAMES
    for topic in p.TOPICS:
        schema = schemas.event_body_schema(topic.name.replace("<stage>", "capture"))
        documented = {name for name, _ in topic.fields}
        checked = {f.encode_name for f in msgspec.structs.fields(schema)}
        assert checked <= documented, f"{topic.name}: {sorted(checked - documented)} checked but not documented"
