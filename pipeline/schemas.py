"""Typed schemas of everything a process reads from a socket: the channel
between the supervisor and each stage, control requests and replies, and the
event bodies. Each is a msgspec Struct encoded as the same msgpack map as
before, so taps and the C consumer see no change.

The hand-off message (FrameRef) is validated by pipeline.protocol's decoder,
which has a Rust fast path for it; every other reader validates here. A
message that fails is rejected with SchemaError, which readers count and log:
no message may take a process down.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from pipeline import protocol

PressureLevel = Literal["low", "medium", "high", "critical"]
PRESSURE_LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")
#: A stage of the table (pipeline.stages; whether it is one of the running pipeline is checked where it matters).
StageName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,23}$")]

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Megabytes = Annotated[float, msgspec.Meta(ge=0, le=2**30)]  # finite: NaN and inf fail the bounds
T = TypeVar("T")


class SchemaError(ValueError):
    """A message that does not match its schema."""


def convert(obj: Any, schema: type[T]) -> T:
    """`obj` (decoded msgpack) as `schema`, or SchemaError."""
    try:
        return msgspec.convert(obj, schema, strict=True)
    except (msgspec.ValidationError, RecursionError) as exc:
        raise SchemaError(str(exc)) from None


def decode(data: bytes, schema: type[T]) -> T:
    """msgpack `data` as `schema`, or SchemaError."""
    try:
        return msgspec.msgpack.decode(data, type=schema)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:  # nesting deeper than Python's stack
        raise SchemaError(str(exc) or type(exc).__name__) from None


def decode_json(data: bytes, schema: type[T]) -> T:
    """JSON `data` as `schema`, or SchemaError."""
    try:
        return msgspec.json.decode(data, type=schema)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        raise SchemaError(str(exc)) from None


# --------------------------------------------------------------------------
# Control state: owned by the supervisor, applied by every stage.


class ControlState(msgspec.Struct, frozen=True):
    """What the supervisor steers. `version` grows with every change, so a
    stage's acknowledgement says which state it applies."""

    paused: bool = False
    pressure: PressureLevel = "low"
    version: NonNegInt = 0

    def same_as(self, other: ControlState) -> bool:
        return (self.paused, self.pressure) == (other.paused, other.pressure)


class PauseFile(msgspec.Struct):
    """<data dir>/control.json: the pause, kept across restarts of the supervisor."""

    paused: bool


# --------------------------------------------------------------------------
# The channel (pipeline.channel): supervisor -> stage


class Place(msgspec.Struct, frozen=True):
    """A stage's place in the stage table (pipeline.stages), as its process
    is told at its start; hop_in and hop_out index the ring's hop queues."""

    previous: StageName | None
    next: StageName | None
    hop_in: NonNegInt | None
    hop_out: NonNegInt | None


class Hello(msgspec.Struct, tag="hello", tag_field="t"):
    """The start handshake: everything a stage needs before its first frame."""

    config: str  # the resolved configuration, pipeline.config.to_json
    state: ControlState
    incarnation: int
    stage: StageName  # the stage the process is to be
    place: Place


class SetState(msgspec.Struct, tag="state", tag_field="t"):
    state: ControlState


ToStage = Hello | SetState


# stage -> supervisor


class Heartbeat(msgspec.Struct, tag="hb", tag_field="t"):
    """Sent from the stage's main loop: it is alive and not stuck."""


class Applied(msgspec.Struct, tag="applied", tag_field="t"):
    """The control state the stage now applies (an acknowledgement of SetState)."""

    state: ControlState


class Timing(msgspec.Struct):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class StageStats(msgspec.Struct):
    """What the supervisor keeps of a stage's stats (the stats.<stage> event
    body carries more; unknown fields are ignored here)."""

    stage: StageName
    pid: int
    frames_in: NonNegInt = 0
    frames_out: NonNegInt = 0
    drops: dict[str, int] = {}
    terminal: dict[str, int] = {}
    rejected: dict[str, int] = {}
    proc_ms: Timing = msgspec.field(default_factory=Timing)
    since_capture_ms: Timing = msgspec.field(default_factory=Timing)
    cpu_percent: float | None = None
    private_mb: Megabytes | None = None  # pipeline.usage.private_mb
    applied: ControlState | None = None
    forward_state: str | None = None
    cost_usd: Annotated[float, msgspec.Meta(ge=0, le=1e12)] | None = None  # forward only: spent since it started


class Stats(msgspec.Struct, tag="stats", tag_field="t"):
    stats: StageStats


FromStage = Heartbeat | Applied | Stats


def to_stage(obj: Any) -> Hello | SetState:
    """A message the supervisor sent a stage, or SchemaError."""
    msg: Hello | SetState = convert(obj, ToStage)  # type: ignore[arg-type]  # a Union is no type[T] to mypy
    return msg


def from_stage(obj: Any) -> Heartbeat | Applied | Stats:
    """A message a stage sent the supervisor, or SchemaError."""
    msg: Heartbeat | Applied | Stats = convert(obj, FromStage)  # type: ignore[arg-type]
    return msg


# --------------------------------------------------------------------------
# Control requests and replies (control.sock, REQ/REP)


class Request(msgspec.Struct):
    cmd: str
    stage: str | None = None


class Reply(msgspec.Struct, omit_defaults=True):
    ok: bool
    result: Any = None
    error: str | None = None


#: The largest control request the supervisor reads (a command and a stage name).
MAX_REQUEST_BYTES = 4096


# --------------------------------------------------------------------------
# Event bodies. Fields other than those named are allowed (a newer minor
# version may add some); those named must have these types.


class RefBody(msgspec.Struct):
    ring_gen: int
    slot: int
    seq: int
    epoch: int
    monitor: int
    w: int
    h: int
    stride: int
    fmt: Literal["BGRA", "RGB", "GRAY"]
    t_mono_ns: int
    t_wall_ns: int


class FrameEvent(msgspec.Struct):
    ref: RefBody
    stage: str


class FrameChanged(FrameEvent):
    changed_ratio: float
    regions: list[list[int]]
    keepalive: bool


class FrameDropped(FrameEvent):
    reason: str


class FrameDuplicate(FrameEvent):
    of_seq: int


class FrameUnchanged(FrameEvent):
    changed_ratio: float
    why: str


class ForwardRefs(msgspec.Struct):
    refs: list[dict[str, Any]]
    request_id: str


class ForwardSent(ForwardRefs):
    attempts: int
    latency_ms: float


class ForwardDryRun(ForwardRefs):
    path: str


class ForwardError(msgspec.Struct):
    error: str
    kind: str
    stopped: bool
    request_id: str | None = None
    attempt: int | None = None
    retry_in_s: float | None = None


ItemKind = Literal["error", "warning", "question", "reminder", "progress", "other"]
Text = Annotated[str, msgspec.Meta(max_length=4000)]


class ReportItem(msgspec.Struct, forbid_unknown_fields=True):
    """One thing seen on the screen (the report tool's item, as Claude fills it in)."""

    kind: Annotated[ItemKind, msgspec.Meta(description=(
        "error: something failed; warning: something may go wrong; question: the screen asks the person "
        "something; reminder: something the person may have forgotten; progress: a long task advanced or "
        "finished; other: anything else worth saying"))]
    text: Annotated[Text, msgspec.Meta(description="what it is, in one or two sentences")]
    image: Annotated[int, msgspec.Meta(ge=1, description="the screenshot it is in, numbered from 1")] | None = None
    region: Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(
        min_length=4, max_length=4, description="where in that screenshot: [x, y, width, height] in its pixels")] \
        | None = None
    since: Annotated[str, msgspec.Meta(max_length=64, description=(
        "for something you reported before that changed or was resolved: the capture time shown with the "
        "report that first had it; null for something new"))] | None = None
    resolved: Annotated[bool, msgspec.Meta(description="true when something you reported before is gone or done")] \
        = False


class Report(msgspec.Struct, forbid_unknown_fields=True):
    """What Claude answers about a batch of screenshots, through the `report`
    tool (procs.claude_request): the only description of that tool's input."""

    attention_needed: Annotated[bool, msgspec.Meta(
        description="true when something on the screen needs the person now (an error, a question waiting "
                    "for them, something about to go wrong); false otherwise")]
    summary: Annotated[Text, msgspec.Meta(description="what the person is doing, in one sentence")]
    items: Annotated[list[ReportItem], msgspec.Meta(
        max_length=20, description="each thing worth the person's attention; empty when there is none")] = []


class Insight(msgspec.Struct):
    text: str
    model: str
    refs: list[dict[str, Any]]
    usage: dict[str, int]
    attention_needed: bool
    summary: str
    items: list[ReportItem]


class StageEvent(msgspec.Struct):
    stage: str


class StageStarted(StageEvent):
    pid: int
    incarnation: int


class StageStopped(StageEvent):
    pid: int
    exit: int | None


class StageCrashed(StageStopped):
    reclaimed: int


class StageHung(StageEvent):
    pid: int
    silent_s: float


class StageRestarted(StageEvent):
    pid: int
    restarts: int
    down_ms: float


class StageFailed(StageEvent):
    restarts: int
    period_s: float


class StatsEvent(msgspec.Struct):
    stage: str


class MemoryPressure(msgspec.Struct):
    level: PressureLevel
    used_mb: float
    budget_mb: float
    actions: list[str]


class GeometryChanged(msgspec.Struct):
    monitors: list[dict[str, Any]]


class CaptureOversize(msgspec.Struct):
    monitor: int
    width: int
    height: int
    max_width: int
    max_height: int
    action: str


class Empty(msgspec.Struct):
    pass


EVENT_BODIES: dict[str, type[msgspec.Struct]] = {
    "frame.captured": FrameEvent,
    "frame.duplicate": FrameDuplicate,
    "frame.unchanged": FrameUnchanged,
    "frame.changed": FrameChanged,
    "frame.dropped": FrameDropped,
    "forward.sent": ForwardSent,
    "forward.dry_run": ForwardDryRun,
    "forward.error": ForwardError,
    "insight": Insight,
    "stage.started": StageStarted,
    "stage.stopped": StageStopped,
    "stage.crashed": StageCrashed,
    "stage.hung": StageHung,
    "stage.restarted": StageRestarted,
    "stage.failed": StageFailed,
    "memory.pressure": MemoryPressure,
    "capture.geometry_changed": GeometryChanged,
    "capture.oversize": CaptureOversize,
    "control.paused": Empty,
    "control.resumed": Empty,
}


def event_body_schema(topic: str) -> type[msgspec.Struct]:
    if topic.startswith("stats."):
        return StatsEvent
    return EVENT_BODIES[topic]


def check_event(topic: str, body: Any) -> None:
    """SchemaError unless `body` is a valid body of `topic`."""
    if not protocol.topic_known(topic):
        raise SchemaError(f"unknown topic {topic!r}")
    convert(body, event_body_schema(topic))
