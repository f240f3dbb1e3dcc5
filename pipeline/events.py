"""The event bus: every topic, who publishes it, and its body's schema.

One endpoint (the supervisor's proxy, `events.sock`, XPUB) carries ZeroMQ
multipart messages [topic, msgpack body]. Topics end in a dot-free word;
subscribe to whole words ("frame." gets every frame event). Bodies are maps
under MAX_EVENT_BYTES. Messages published before a subscriber joins are not
replayed: ask the supervisor (`status`) for current state.

The schemas below are the only description of the bodies: docs/events.md is
generated from them, readers validate with them (fields they do not know are
ignored: a newer minor version may add some), and the end-to-end tests hold
every message seen on the bus to them, undeclared fields included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgpack
import msgspec

from pipeline import protocol, schemas
from pipeline.protocol import ProtocolError
from pipeline.schemas import MonitorInfo, NonNegInt, PressureLevel, ReportItem, StageStats, doc

MAX_EVENT_BYTES = 64 * 1024


class RefBody(msgspec.Struct):
    """A frame's FrameRef fields, as in a hand-off message (without its version)."""

    ring_gen: Annotated[int, doc("generation of the ring the frame lives in")]
    slot: Annotated[int, doc("the ring slot")]
    seq: Annotated[int, doc("which frame: capture's sequence number")]
    epoch: Annotated[int, doc("incarnation of the stage that sent it")]
    monitor: Annotated[int, doc("monitor index")]
    w: Annotated[int, doc("width, pixels")]
    h: Annotated[int, doc("height, pixels")]
    stride: Annotated[int, doc("bytes per row")]
    fmt: Annotated[Literal["BGRA", "RGB", "GRAY"], doc("pixel format")]
    t_mono_ns: Annotated[int, doc("capture time, time.monotonic_ns's clock")]
    t_wall_ns: Annotated[int, doc("capture time, wall clock, ns since the epoch")]


_REF = doc("the frame")
_STAGE = doc("the stage that decided (or the supervisor)")


class FrameEvent(msgspec.Struct, kw_only=True):
    ref: Annotated[RefBody, _REF]
    stage: Annotated[str, _STAGE]


class FrameCaptured(FrameEvent):
    label: Annotated[str, doc("replays of labelled sessions: the frame's recorded label")] | None = None
    scaled_from: Annotated[list[int], doc("[width, height] of a screen larger than the ring's slots, downscaled to "
                                          "fit")] | None = None


class FrameDuplicate(FrameEvent):
    of_seq: Annotated[int, doc("seq of the frame it repeats")]


class FrameUnchanged(FrameEvent):
    changed_ratio: Annotated[float, doc("fraction of pixels changed")]
    why: Annotated[str, doc("what was seen: trivial tiles by cause, or nothing")]


class FrameChanged(FrameEvent):
    changed_ratio: Annotated[float, doc("fraction of pixels changed")]
    regions: Annotated[list[list[int]], doc("changed regions [[x, y, w, h], ...]")]
    keepalive: Annotated[bool, doc("true when sent on only because of the quiet time")]


class FrameDropped(FrameEvent):
    reason: Annotated[str, doc("one of the drop reasons (below)")]


class ForwardRefs(msgspec.Struct, kw_only=True):
    refs: Annotated[list[RefBody], doc("the frames in the request")]
    request_id: Annotated[str, doc("journal id of the request")]


class ForwardSent(ForwardRefs):
    attempts: Annotated[int, doc("tries it took")]
    latency_ms: Annotated[float, doc("from the last try's start to the answer")]


class ImageInfo(msgspec.Struct):
    media_type: Annotated[str, doc("image/png or image/jpeg")]
    width: Annotated[int, doc("pixels")]
    height: Annotated[int, doc("pixels")]
    bytes: Annotated[int, doc("encoded size")]


class ForwardDryRun(ForwardRefs):
    path: Annotated[str, doc("the request's folder in the outbox")]
    images: Annotated[list[ImageInfo], doc("the images of the request")]
    tokens_estimate: Annotated[int, doc("estimated image input tokens")]


class ForwardError(msgspec.Struct, kw_only=True):
    error: Annotated[str, doc("what went wrong (never the key)")]
    kind: Annotated[str, doc("rate_limited, overloaded, server, timeout, connection, conflict, auth, unknown_model, "
                             "spend_limit, bad_request, malformed, internal, key, outbox")]
    stopped: Annotated[bool, doc("true when forwarding stopped until the pipeline is restarted")]
    request_id: Annotated[str, doc("the request")] | None = None
    attempt: Annotated[int, doc("which try failed")] | None = None
    retry_in_s: Annotated[float, doc("seconds until the next try; null: not tried again")] | None = None


class Usage(msgspec.Struct):
    input_tokens: Annotated[int, doc("input tokens read neither from nor into the cache")] = 0
    output_tokens: Annotated[int, doc("tokens of the answer")] = 0
    cache_creation_input_tokens: Annotated[int, doc("input tokens written to the cache")] = 0
    cache_read_input_tokens: Annotated[int, doc("input tokens read from the cache")] = 0


class Insight(msgspec.Struct, kw_only=True):
    text: Annotated[str, doc("the report for people: the summary, then one line per item (kind: text)")]
    attention_needed: Annotated[bool, doc("true when something needs the person now: subscribe to these")]
    summary: Annotated[str, doc("what the person is doing, one sentence")]
    items: Annotated[list[ReportItem], doc("each thing worth the person's attention (the report tool's items)")]
    model: Annotated[str, doc("the model that answered")]
    refs: Annotated[list[RefBody], doc("the frames")]
    capture_times: Annotated[list[str], doc("the frames' capture times (UTC, ISO 8601)")]
    usage: Annotated[Usage, doc("tokens by kind, as the API counted them")]
    cost_usd: Annotated[float, doc("at forward.price")]
    tokens_estimate: Annotated[int, doc("estimated image input tokens")]
    latency_ms: Annotated[float, doc("from the request's start to the answer")]
    request_id: Annotated[str, doc("journal id")]


class StageEvent(msgspec.Struct, kw_only=True):
    stage: Annotated[str, doc("the stage")]


class StageStarted(StageEvent):
    pid: Annotated[int, doc("process id")]
    incarnation: Annotated[int, doc("how many times this stage was started")]


class StageRestarted(StageStarted):
    restarts: Annotated[int, doc("restarts after a crash so far")]
    down_ms: Annotated[float, doc("time without the stage")]


class StageStopped(StageEvent):
    pid: Annotated[int, doc("process id")]
    exit: Annotated[int, doc("exit status, or -N for signal N")] | None


class StageCrashed(StageStopped):
    reclaimed: Annotated[int, doc("frames whose holds were taken back (each a frame.dropped)")]


class StageHung(StageEvent):
    pid: Annotated[int, doc("process id")]
    silent_s: Annotated[float, doc("seconds since its last heartbeat")]


class StageFailed(StageEvent):
    restarts: Annotated[int, doc("restarts within the period")]
    period_s: Annotated[float, doc("the restart-intensity period")]


class FinalCounters(msgspec.Struct):
    stage: Annotated[Literal["supervisor"], doc("always the supervisor")]
    counters: Annotated[dict[str, NonNegInt], doc("the ring's counters once everything stopped (see the terminal "
                                                  "states)")]


class MemoryPressure(msgspec.Struct):
    level: Annotated[PressureLevel, doc("the new level")]
    used_mb: Annotated[float, doc("stages' private memory plus the ring")]
    budget_mb: Annotated[float, doc("memory.budget_mb")]
    actions: Annotated[list[str], doc("what the stages do about it")]


class GeometryChanged(msgspec.Struct):
    monitors: Annotated[list[MonitorInfo], doc("every monitor now captured")]


class CaptureOversize(msgspec.Struct):
    monitor: Annotated[int, doc("monitor index")]
    width: Annotated[int, doc("its width")]
    height: Annotated[int, doc("its height")]
    max_width: Annotated[int, doc("the ring's largest frame width")]
    max_height: Annotated[int, doc("the ring's largest frame height")]
    action: Annotated[str, doc("what capture does about it")]


class AnalysisBackend(msgspec.Struct):
    backend: Annotated[str, doc("where analysis's per-pixel pass runs now: \"gpu: <adapter>\" or \"cpu (<why>)\"")]
    fallback: Annotated[bool, doc("the GPU failed (the device lost): analysis went over to the CPU; the frame it "
                                  "failed on was judged again there")]


class Empty(msgspec.Struct):
    pass


@dataclass(frozen=True)
class Topic:
    name: str
    publisher: str
    doc: str
    body: type[msgspec.Struct]


#: Every topic. stats.<stage> stands for one per stage of the table; a stage
#: that reports more than StageStats names its own schema (procs.stage.Stage.Stats).
TOPICS: tuple[Topic, ...] = (
    Topic("frame.captured", "capture", "a frame was written into the ring", FrameCaptured),
    Topic("frame.duplicate", "dedup", "terminal: identical to a recently seen frame", FrameDuplicate),
    Topic("frame.unchanged", "analysis", "terminal: no meaningful change against the reference frame", FrameUnchanged),
    Topic("frame.changed", "analysis", "a meaningful change; the frame goes on to forward", FrameChanged),
    Topic("frame.dropped", "any stage", "terminal: dropped for one of the drop reasons", FrameDropped),
    Topic("forward.sent", "forward", "terminal: frames whose request Claude answered", ForwardSent),
    Topic("forward.dry_run", "forward", "terminal: frames written to the outbox instead of sent", ForwardDryRun),
    Topic("forward.error", "forward", "a try failed (retry_in_s set: it is tried again), a request failed, or "
          "forwarding stopped", ForwardError),
    Topic("insight", "forward", "what Claude reported about frames (through the report tool; an answer without a "
          "usable report is a forward.error of kind malformed instead)", Insight),
    Topic("stage.started", "supervisor", "a stage process is running and attached", StageStarted),
    Topic("stage.stopped", "supervisor", "a stage was stopped on command (not a crash)", StageStopped),
    Topic("stage.crashed", "supervisor", "a stage died without being told to", StageCrashed),
    Topic("stage.restarted", "supervisor", "a crashed stage was started again (followed by its stage.started)",
          StageRestarted),
    Topic("stage.hung", "supervisor", "a stage missed its heartbeat for supervisor.hang_after_s and was killed "
          "(then restarted like a crash)", StageHung),
    Topic("stage.failed", "supervisor", "a stage crashed too often and is not restarted again", StageFailed),
    Topic("stats.<stage>", "each stage", "counters and timings, once per supervisor.stats_interval_s", StageStats),
    Topic("stats.supervisor", "supervisor", "the final counters, once, when the pipeline stopped", FinalCounters),
    Topic("memory.pressure", "supervisor", "the memory governor changed level", MemoryPressure),
    Topic("capture.geometry_changed", "capture", "monitors appeared, vanished or changed size", GeometryChanged),
    Topic("capture.oversize", "capture", "a monitor is larger than the ring's slots", CaptureOversize),
    Topic("analysis.backend", "analysis", "where the per-pixel pass runs: once at start, again when a GPU fails",
          AnalysisBackend),
    Topic("control.paused", "supervisor", "nothing leaves the machine until resumed", Empty),
    Topic("control.resumed", "supervisor", "forwarding may go on", Empty),
)
_BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}
TOPIC_NAMES: frozenset[str] = frozenset(_BY_NAME)


def topic(name: str) -> Topic | None:
    """The topic `name` is an instance of (stats.capture is stats.<stage>), or None."""
    found = _BY_NAME.get(name)
    if found is None and name.startswith("stats.") and len(name) > 6 and "." not in name[6:]:
        found = _BY_NAME["stats.<stage>"]
    return found


def encode_event(name: str, body: Mapping[str, Any]) -> list[bytes]:
    if topic(name) is None:
        raise ProtocolError(f"unknown event topic {name!r}; topics are listed in pipeline.events.TOPICS")
    data: bytes = msgpack.packb(dict(body), use_bin_type=True)
    if len(data) > MAX_EVENT_BYTES:
        raise ProtocolError(f"event {name} body is {len(data)} bytes, over {MAX_EVENT_BYTES}")
    return [name.encode(), data]


def decode_event(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    if len(frames) != 2:
        raise ProtocolError(f"an event has 2 frames (topic, body), got {len(frames)}")
    name = bytes(frames[0]).decode("ascii", errors="replace")
    if len(frames[1]) > MAX_EVENT_BYTES:
        raise ProtocolError(f"event body of {len(frames[1])} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        body = msgpack.unpackb(frames[1], raw=False)
    except Exception as exc:
        raise ProtocolError(f"event {name}: body is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"event {name}: body is not a map")
    return name, body


def check_event(name: str, body: Any) -> None:
    """SchemaError unless `body` is a valid body of topic `name`."""
    found = topic(name)
    if found is None:
        raise schemas.SchemaError(f"unknown topic {name!r}")
    schemas.convert(body, found.body)


def markdown(stage_stats: Mapping[str, type[StageStats]] = {}) -> list[str]:
    """The topics, terminal states and drop reasons, for docs/events.md;
    `stage_stats`: the stats schema of each stage that extends StageStats."""
    out = ["## Topics", ""]
    shown: list[type[msgspec.Struct]] = []
    for t in TOPICS:
        out += [f"### `{t.name}` ({t.publisher})", "", t.doc[0].upper() + t.doc[1:] + ".", ""]
        out += schemas.fields_markdown(t.body) or ["(no fields)"]
        out.append("")
        if t.name == "stats.<stage>":
            for stage, schema in stage_stats.items():
                extra = [line for line in schemas.fields_markdown(schema) if line not in schemas.fields_markdown(StageStats)]
                out += [f"`stats.{stage}` adds:", "", *extra, ""]
                shown.append(schema)
        shown += [s for s in schemas.nested_structs(t.body) if s not in shown]
    out += ["## Types used above", ""]
    for s in dict.fromkeys(x for schema in shown for x in [schema, *schemas.nested_structs(schema)]):
        if any(s is t.body for t in TOPICS) or s in stage_stats.values():
            continue
        out += schemas.struct_markdown(s)
    out += ["## Terminal states", "", "Every captured frame ends in exactly one, decided by one stage.", "",
            "| state | decided by | topic | meaning |", "|---|---|---|---|"]
    out += [f"| `{s.name}` | {s.decided_by} | `{s.topic}` | {s.meaning} |" for s in protocol.TERMINAL_STATES]
    out += ["", "| drop reason | decided by | meaning |", "|---|---|---|"]
    out += [f"| `{r.name}` | {r.decided_by} | {r.meaning} |" for r in protocol.DROP_REASONS]
    return out + [""]
