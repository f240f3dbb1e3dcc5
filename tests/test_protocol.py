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
from pipeline.stages import PIPELINE


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


def test_capture_extras_fit_a_record_at_their_largest() -> None:
    """Capture's hand-off extras at their largest (every field of the ref at
    its widest, the most band digests, a downscaled frame) fit a record."""
    from procs import kernels

    wide = jrc.FrameRef.from_dict(dict(ring_gen=2**64 - 1, slot=2**32 - 1, seq=2**64 - 1, epoch=2**64 - 1,
                                       monitor=2**32 - 1, w=16384, h=16384, stride=65536, fmt="BGRA",
                                       t_mono_ns=2**64 - 1, t_wall_ns=2**64 - 1))
    extra = {p.PIXEL_HASH_KEY: 2**64 - 1, p.BAND_DIGESTS_KEY: bytes(8 * kernels.MAX_BANDS),
             p.SCALED_FROM_KEY: [2**31 - 1, 2**31 - 1]}
    assert p.decode_frame_ref(p.encode_frame_ref(wide, extra))[1] == extra


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


def test_every_field_of_every_event_and_command_result_is_documented() -> None:
    """The schemas are the documentation: a field without a description would
    show up in docs/events.md as a bare name."""
    import msgspec.inspect as mi

    from pipeline import commands, events, schemas
    from procs.stage import stats_schemas

    bodies = [t.body for t in events.TOPICS] + [c.result for c in commands.COMMANDS]
    bodies += list(stats_schemas(PIPELINE).values())
    every = list(dict.fromkeys(x for b in bodies for x in [b, *schemas.nested_structs(b)]))
    bare = []
    for s in every:
        info = mi.type_info(s)
        assert isinstance(info, mi.StructType)
        bare += [f"{s.__name__}.{f.name}" for f in info.fields if not schemas.description(f.type)]
    assert not bare, f"fields without a description: {bare}"


def test_the_bus_check_of_the_tests_finds_undeclared_fields() -> None:
    """tests/pipeline_harness.drift, which every end-to-end test runs on
    every event, can fail: an undeclared field at the top or nested, a wrong type."""
    from pipeline_harness import drift
    from test_fuzz_decoders import REF, VALID_BODIES

    from pipeline import events

    def frames(topic: str, body: dict[str, object]) -> list[bytes]:
        return events.encode_event(topic, body)

    assert drift(frames("frame.changed", VALID_BODIES["frame.changed"])) == []
    assert drift(frames("frame.changed", VALID_BODIES["frame.changed"] | {"new": 1})) == [
        "frame.changed: new is not in its schema (FrameChanged)"]
    assert drift(frames("frame.changed", VALID_BODIES["frame.changed"] | {"ref": REF | {"n": 1}})) == [
        "frame.changed: ref.n is not in its schema (FrameChanged)"]
    assert drift(frames("stats.forward", {"stage": "forward", "pid": 1, "queued": 2})) == []  # forward's own schema
    assert drift(frames("stats.dedup", {"stage": "dedup", "pid": 1, "queued": 2})) == [
        "stats.dedup: queued is not in its schema (DedupStats)"]
    assert len(drift(frames("frame.changed", VALID_BODIES["frame.changed"] | {"keepalive": "no"}))) == 1


def test_every_command_has_its_handler_and_the_cli_its_help() -> None:
    from pipeline import cli, commands
    from pipeline.supervisor import Supervisor

    assert all(callable(getattr(Supervisor, c.handler, None)) for c in commands.COMMANDS)
    helps = cli._parser(PIPELINE).format_help()
    for name in ("status", "restart", "pause", "resume", "down"):
        assert commands.BY_NAME[name].help in helps, name
