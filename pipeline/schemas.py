"""Typed schemas of what a process reads from a socket or a file: the
channel between the supervisor and each stage, the control envelope, the
stage stats and the report tool; the event bodies are in pipeline.events,
the control commands' replies in pipeline.commands. Each is a msgspec
Struct encoded as a plain msgpack map, so taps and the C consumer need no
library of ours. A field's description (`doc`) is its documentation:
docs/events.md is generated from these classes.

The hand-off message (FrameRef) is validated by pipeline.protocol's decoder,
which has a Rust fast path for it; every other reader validates here. A
message that fails is rejected with SchemaError, which readers count and log:
no message may take a process down.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

PressureLevel = Literal["low", "medium", "high", "critical"]


class StageState(enum.Enum):
    """Where a stage is in its life (pipeline.watcher holds the transitions)."""

    STARTING = "starting"  # its process runs; not yet attached to the ring
    RUNNING = "running"
    STOPPING = "stopping"  # told to stop (SIGTERM), draining; SIGKILL at its deadline
    BACKOFF = "backoff"  # crashed; started again when its back-off ends
    FAILED = "failed"  # crashed too often: left down until restarted by command
    STOPPED = "stopped"

PRESSURE_LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")
#: A stage of the table (pipeline.stages; whether it is one of the running pipeline is checked where it matters).
StageName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,23}$")]

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Megabytes = Annotated[float, msgspec.Meta(ge=0, le=2**30)]  # finite: NaN and inf fail the bounds
T = TypeVar("T")


def doc(text: str) -> msgspec.Meta:
    """A field's description: its documentation, generated from here."""
    return msgspec.Meta(description=text)


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

    paused: Annotated[bool, doc("nothing leaves the machine")] = False
    pressure: Annotated[PressureLevel, doc("the memory governor's level")] = "low"
    version: Annotated[NonNegInt, doc("grows with every change")] = 0

    def same_as(self, other: ControlState) -> bool:
        return (self.paused, self.pressure) == (other.paused, other.pressure)


class PauseFile(msgspec.Struct):
    """<data dir>/control.json: the pause, kept across restarts of the supervisor."""

    paused: bool


# --------------------------------------------------------------------------
# The capture source the supervisor sizes the ring for (procs.sources.probe)


class MonitorInfo(msgspec.Struct):
    """A monitor a capture source captures (procs.sources.base.Monitor)."""

    index: Annotated[int, doc("1-based")]
    left: Annotated[int, doc("x of its top-left corner in the source's coordinates, pixels")]
    top: Annotated[int, doc("y of its top-left corner, pixels")]
    width: Annotated[int, msgspec.Meta(ge=1, le=1 << 16, description="pixels")]
    height: Annotated[int, msgspec.Meta(ge=1, le=1 << 16, description="pixels")]
    scale: Annotated[int, msgspec.Meta(ge=1, le=8, description="pixels per point (macOS Retina: 2)")]


class SourceProbe(msgspec.Struct):
    """What `python -m procs.sources.probe` finds: the source the
    configuration gets ("auto" resolved) and its monitors."""

    kind: Annotated[str, doc("the registered source")]
    why: Annotated[str, doc("why that one (auto: what was found of the display)")]
    monitors: Annotated[list[MonitorInfo], msgspec.Meta(min_length=1, max_length=64, description="its monitors")]


class AdapterInfo(msgspec.Struct):
    """A GPU adapter (jarvis_rust_core.GpuKernels.adapter)."""

    name: Annotated[str, doc("the adapter's name")]
    backend: Annotated[str, doc("vulkan, metal or dx12")]
    device_type: Annotated[str, doc("wgpu's device type: DiscreteGpu, IntegratedGpu, Cpu, ...")]
    driver: Annotated[str, doc("the driver and its version")]
    software: Annotated[bool, doc("a software rasterizer (lavapipe, WARP): the CPU under another name")]


class GpuProbe(msgspec.Struct, kw_only=True):
    """What `python -m procs.backend CHOICE` finds: where analysis.backend =
    CHOICE would run analysis."""

    backend: Annotated[Literal["cpu", "gpu"], doc("where the per-pixel pass would run")]
    decided: Annotated[str, doc("that, in words, with the adapter or why there is none")]
    adapter: Annotated[AdapterInfo, doc("the adapter, when on a GPU")] | None = None


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
    """Milliseconds; null before the first frame."""

    p50: Annotated[float, doc("median")] | None = None
    p95: Annotated[float, doc("95th percentile")] | None = None
    p99: Annotated[float, doc("99th percentile")] | None = None


#: Upper bounds (ms) of the latency histograms' buckets; the last bucket is everything above.
HISTOGRAM_BOUNDS_MS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class Histogram(msgspec.Struct):
    """Every frame since the stage started, by bucket (HISTOGRAM_BOUNDS_MS,
    then one for the rest): what the metrics endpoint exports."""

    counts: Annotated[list[NonNegInt], msgspec.Meta(max_length=64, description=(
        "frames per bucket, not cumulative: at most each bound of HISTOGRAM_BOUNDS_MS in turn, then above "
        "the last"))] = []
    sum_ms: Annotated[float, msgspec.Meta(ge=0, description="the sum of every frame's time")] = 0.0


class StageStats(msgspec.Struct, kw_only=True):
    """A stage's counters and timings, once per supervisor.stats_interval_s:
    the body of its stats.<stage> event and of its Stats message to the
    supervisor. A stage with more to say extends it (procs.stage.Stage.Stats);
    readers that know only these fields ignore the others."""

    stage: Annotated[StageName, doc("the publishing stage")]
    pid: Annotated[int, doc("its process id")]
    frames_in: Annotated[NonNegInt, doc("frames received")] = 0
    frames_out: Annotated[NonNegInt, doc("frames passed on")] = 0
    credit_waits: Annotated[NonNegInt, doc("times it waited (up to hops.wait_ms) for the next stage to give a credit "
                                           "back, whether one came or the frame was dropped")] = 0
    drops: Annotated[dict[str, int], doc("{reason: count} of the frames it dropped")] = {}
    terminal: Annotated[dict[str, int], doc("{state: count} of the terminal states decided here")] = {}
    rejected: Annotated[dict[str, int], doc("{kind: count} of the bad messages it refused")] = {}
    proc_ms: Annotated[Timing, doc("per-frame processing time over its last 512 frames")] = \
        msgspec.field(default_factory=Timing)
    since_capture_ms: Annotated[Timing, doc("from capture to arrival here, its last 512 frames")] = \
        msgspec.field(default_factory=Timing)
    proc_hist: Annotated[Histogram, doc("per-frame processing time, every frame since it started")] = \
        msgspec.field(default_factory=Histogram)
    since_capture_hist: Annotated[Histogram, doc("capture to arrival here, every frame since it started")] = \
        msgspec.field(default_factory=Histogram)
    cpu_percent: Annotated[float, doc("% of one core, sampled every supervisor.sample_interval_s")] | None = None
    private_mb: Annotated[Megabytes, doc("memory only this stage holds, MB (pipeline/usage.py), sampled with the "
                                         "CPU")] | None = None
    applied: Annotated[ControlState, doc("the control state it applies")] | None = None
    forward_state: Annotated[str, doc("forward only: what its sender is doing (dry_run, live, failing: why, "
                                      "stopped: why)")] | None = None
    cost_usd: Annotated[float, msgspec.Meta(ge=0, le=1e12, description="forward only: USD spent since it "
                                            "started, at forward.price")] | None = None
    requests: Annotated[NonNegInt, doc("forward only: requests made since it started")] | None = None
    usage: Annotated[dict[str, NonNegInt], doc("forward only: tokens by kind since it started (input_tokens, "
                                               "output_tokens, cache_creation_input_tokens, "
                                               "cache_read_input_tokens)")] | None = None
    backend: Annotated[str, doc("analysis only: where its per-pixel pass runs (procs.backend): \"gpu: <adapter>\" or "
                                "\"cpu (<why>)\"")] | None = None
    gpu_ms: Annotated[Timing, doc("analysis only: the GPU's time per judged frame (upload, compute, readback), its "
                                  "last 512 frames; null figures on the CPU")] | None = None


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
    """A control request: a command of pipeline.commands and its arguments."""

    cmd: str
    stage: str | None = None


class Reply(msgspec.Struct, omit_defaults=True):
    """A control reply: ok and the command's result (its reply schema in
    pipeline.commands), or not ok and an error for people."""

    ok: bool
    result: Any = None
    error: str | None = None


#: The largest control request the supervisor reads (a command and a stage name).
MAX_REQUEST_BYTES = 4096


# --------------------------------------------------------------------------
# The report tool (forward asks Claude to answer through it)


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
    tool (procs.forward.request): the only description of that tool's input."""

    attention_needed: Annotated[bool, msgspec.Meta(
        description="true when something on the screen needs the person now (an error, a question waiting "
                    "for them, something about to go wrong); false otherwise")]
    summary: Annotated[Text, msgspec.Meta(description="what the person is doing, in one sentence")]
    items: Annotated[list[ReportItem], msgspec.Meta(
        max_length=20, description="each thing worth the person's attention; empty when there is none")] = []


# --------------------------------------------------------------------------
# Schemas as documentation, and as the test of what is really sent


def type_text(t: mi.Type) -> str:
    """A field's type, as the documentation shows it."""
    if isinstance(t, mi.Metadata):
        return type_text(t.type)
    if isinstance(t, mi.UnionType):
        parts = [type_text(u) for u in t.types if not isinstance(u, mi.NoneType)]
        return " | ".join(parts) + (" | null" if len(parts) < len(t.types) else "")
    if isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = t.item_types[0] if isinstance(t, mi.TupleType) else t.item_type
        return f"[{type_text(item)}]"
    if isinstance(t, mi.DictType):
        return f"{{{type_text(t.key_type)}: {type_text(t.value_type)}}}"
    if isinstance(t, mi.StructType):
        return t.cls.__name__
    if isinstance(t, mi.EnumType):
        return " | ".join(str(m.value) for m in t.cls)
    if isinstance(t, mi.LiteralType):
        return " | ".join(map(str, t.values))
    return {mi.IntType: "int", mi.FloatType: "float", mi.StrType: "str", mi.BoolType: "bool",
            mi.NoneType: "null", mi.AnyType: "any"}.get(type(t), type(t).__name__)


def description(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return str((t.extra_json_schema or {}).get("description", "")) or description(t.type)
    if isinstance(t, mi.UnionType):
        return next(filter(None, map(description, t.types)), "")
    return ""


def fields_markdown(schema: type[msgspec.Struct]) -> list[str]:
    """One markdown line per field of `schema`: name, type, optional, description."""
    info = mi.type_info(schema)
    assert isinstance(info, mi.StructType)
    # In the order written, a base class's fields first (msgspec puts keyword-only ones last).
    written = list(dict.fromkeys(n for c in reversed(schema.__mro__) for n in vars(c).get("__annotations__", {})))
    fields = sorted(info.fields, key=lambda f: written.index(f.name) if f.name in written else len(written))
    return [f"- `{f.encode_name}` ({type_text(f.type)}{'' if f.required else ', optional'})"
            + (f": {d}" if (d := description(f.type)) else "") for f in fields]


def struct_markdown(schema: type[msgspec.Struct]) -> list[str]:
    """A Struct type used by a documented one: heading, docstring, fields."""
    out = [f"### {schema.__name__}", ""]
    if schema.__doc__ and not schema.__doc__.startswith(f"{schema.__name__}("):  # msgspec's default is the signature
        out += [" ".join(schema.__doc__.split()), ""]
    return out + [*fields_markdown(schema), ""]


def nested_structs(schema: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
    """The Struct types `schema`'s fields use, at any depth, first seen first."""
    found: list[type[msgspec.Struct]] = []

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.Metadata):
            walk(t.type)
        elif isinstance(t, mi.UnionType):
            for u in t.types:
                walk(u)
        elif isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.value_type)
        elif isinstance(t, mi.StructType) and t.cls not in found:
            found.append(t.cls)
            for f in t.fields:
                walk(f.type)

    info = mi.type_info(schema)
    assert isinstance(info, mi.StructType)
    for f in info.fields:
        walk(f.type)
    return found


def undeclared(obj: Any, schema: Any) -> list[str]:
    """Keys of `obj` (decoded msgpack) that `schema` does not declare, at any
    depth, as dotted paths. Readers ignore such keys (a newer minor version may
    add some); the tests hold every message sent to its schema with this, so a
    field added without its documentation fails them."""
    return _undeclared(obj, mi.type_info(schema), "")


def _undeclared(obj: Any, t: mi.Type, path: str) -> list[str]:
    if isinstance(t, mi.Metadata):
        return _undeclared(obj, t.type, path)
    if isinstance(t, mi.UnionType):
        fits = [u for u in t.types if isinstance(obj, dict) and isinstance(u, (mi.StructType, mi.DictType, mi.Metadata))
                or isinstance(obj, list) and isinstance(u, (mi.ListType, mi.VarTupleType, mi.Metadata))]
        return _undeclared(obj, fits[0], path) if fits else []
    if isinstance(t, mi.StructType) and isinstance(obj, dict):
        fields = {f.encode_name: f for f in t.fields}
        out = [f"{path}{k}" for k in obj if k not in fields and k != t.tag_field]
        for name, f in fields.items():
            if name in obj:
                out += _undeclared(obj[name], f.type, f"{path}{name}.")
        return out
    if isinstance(t, (mi.ListType, mi.VarTupleType)) and isinstance(obj, list):
        return [p for i, item in enumerate(obj) for p in _undeclared(item, t.item_type, f"{path}{i}.")]
    if isinstance(t, mi.DictType) and isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _undeclared(v, t.value_type, f"{path}{k}.")]
    return []
