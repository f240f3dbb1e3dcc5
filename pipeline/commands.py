"""The supervisor's control commands, in one table: name, help, whether it
takes a stage, the schema of its result and the supervisor method that
carries it out. The supervisor dispatches by it, the command line builds
its verbs' help from it and decodes each result with its schema, and
docs/events.md documents it, generated from here.

A request is a schemas.Request on the instance's control.sock (REQ/REP, a
private Unix socket); the reply is a schemas.Reply: ok and the result, or
not ok and an error for people. No command blocks the supervisor: `restart`
and `down` answer at once and the work goes on in its loop (watch `status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from pipeline import schemas
from pipeline.schemas import ControlState, Histogram, NonNegInt, PressureLevel, StageState, Timing, doc


class PingResult(msgspec.Struct):
    pid: Annotated[int, doc("the supervisor's process id")]
    instance: Annotated[str, doc("the instance name")]
    versions: Annotated[dict[str, Any], doc("protocol, ring layout and core versions")]


class StageStatus(msgspec.Struct, kw_only=True):
    """One stage, as the supervisor sees it."""

    name: Annotated[str, doc("the stage")]
    state: Annotated[StageState, doc("where it is in its life (pipeline.watcher)")]
    pid: Annotated[int, doc("its process id")] | None
    uptime_s: Annotated[float, doc("since this incarnation started; 0 when not running")]
    restarts: Annotated[int, doc("restarts after a crash")]
    incarnation: Annotated[int, doc("how many times it was started")]
    cpu_percent: Annotated[float, doc("% of one core")]
    pss_mb: Annotated[float, doc("proportional set size, MB (the ring shared among its mappers)")]
    fps: Annotated[float, doc("frames received per second; null when its stats are not current")] | None
    frames_in: Annotated[NonNegInt, doc("frames received")]
    frames_out: Annotated[NonNegInt, doc("frames passed on")]
    drops: Annotated[dict[str, int], doc("{reason: count}")]
    terminal: Annotated[dict[str, int], doc("{state: count} decided here")]
    rejected: Annotated[dict[str, int], doc("{kind: count} of bad messages it refused")]
    p95_ms: Annotated[float, doc("per-frame processing time, p95")] | None
    latency_p95_ms: Annotated[float, doc("capture to arrival here, p95")] | None
    heartbeat_age_s: Annotated[float, doc("seconds since its last message")] | None
    hung: Annotated[bool, doc("silent past supervisor.hang_after_s: about to be killed and replaced")]
    applied: Annotated[ControlState, doc("the control state it says it applies")] | None
    control_mismatch: Annotated[str, doc("why it does not apply the supervisor's control state")] | None
    hangs: Annotated[int, doc("times it was killed for a missed heartbeat")]
    cpu_seconds: Annotated[float, doc("CPU time of its current process, seconds")]
    private_mb: Annotated[float, doc("memory only it holds, MB, as it last reported")] | None
    proc_hist: Annotated[Histogram, doc("per-frame processing time of its current process")] | None
    since_capture_hist: Annotated[Histogram, doc("capture to arrival here, its current process")] | None


class RingStatus(msgspec.Struct):
    slots: Annotated[int, doc("frame slots")]
    in_use: Annotated[int, doc("slots being written or holding a frame someone holds")]
    slot_bytes: Annotated[int, doc("bytes per slot")]


class MemoryStatus(msgspec.Struct):
    level: Annotated[PressureLevel, doc("the memory governor's level")]
    used_mb: Annotated[float, doc("stages' private memory plus the ring")]
    budget_mb: Annotated[float, doc("memory.budget_mb")]


class StatusResult(msgspec.Struct, kw_only=True):
    instance: Annotated[str, doc("the instance name")]
    pid: Annotated[int, doc("the supervisor's process id")]
    uptime_s: Annotated[float, doc("since the supervisor started")]
    paused: Annotated[bool, doc("nothing leaves the machine")]
    control: Annotated[ControlState, doc("the control state every stage is to apply")]
    errors: Annotated[list[str], doc("control mismatches: stages that do not apply it")]
    rejected: Annotated[dict[str, int], doc("{kind: count} of bad messages the supervisor refused")]
    source: Annotated[str, doc("the capture source in use")]
    forward_mode: Annotated[str, doc("dry_run or live, as configured")]
    forward_state: Annotated[str, doc("what forward says it is doing")] | None
    forward_cost_usd: Annotated[float, doc("USD forward spent since it started")] | None
    forward_requests: Annotated[int, doc("requests forward made since it started")] | None
    forward_tokens: Annotated[dict[str, int], doc("tokens by kind forward used since it started")] | None
    analysis_backend: Annotated[str, doc("where analysis's per-pixel pass runs (\"gpu: <adapter>\" or \"cpu "
                                         "(<why>)\"), as it last reported")] | None
    analysis_gpu_ms: Annotated[Timing, doc("the GPU's time per judged frame, as analysis last reported")] | None
    ring: Annotated[RingStatus, doc("the frame ring")] | None
    memory: Annotated[MemoryStatus, doc("the memory governor")]
    counters: Annotated[dict[str, NonNegInt], doc("the ring's frame counters (docs/events.md: terminal states)")]
    stages: Annotated[list[StageStatus], doc("in the table's order")]


class RestartResult(msgspec.Struct):
    stage: Annotated[str, doc("the stage")]
    state: Annotated[StageState, doc("stopping (it drains, then starts again) or starting")]
    incarnation: Annotated[int, doc("the incarnation being replaced; the new one is the next")]


class PauseResult(msgspec.Struct):
    paused: Annotated[bool, doc("whether nothing leaves the machine now")]


class DownResult(msgspec.Struct):
    stopping: Annotated[bool, doc("true: the stages are being stopped")]


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # one line: the command line's and the documentation's
    result: type[msgspec.Struct]
    handler: str  # the pipeline.supervisor.Supervisor method that carries it out
    takes_stage: bool = False
    detail: str = ""


COMMANDS: tuple[Command, ...] = (
    Command("ping", "check that the supervisor answers", PingResult, "cmd_ping"),
    Command("status", "state of each stage", StatusResult, "cmd_status"),
    Command("restart", "drain and restart one stage", RestartResult, "cmd_restart", takes_stage=True,
            detail="answers at once: the stage drains (supervisor.drain_s, SIGKILL after stop_grace_s more) and "
                   "starts again while the supervisor goes on answering; a stage that is down is started"),
    Command("pause", "stop everything leaving the machine", PauseResult, "cmd_pause",
            detail="at once, and kept in the data directory across restarts"),
    Command("resume", "let forwarding go on", PauseResult, "cmd_resume"),
    Command("down", "stop the pipeline and remove its files", DownResult, "cmd_down",
            detail="answers at once; the stages stop in the stop order, each draining what it was sent"),
)
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}


def command(name: str) -> Command:
    found = BY_NAME.get(name)
    if found is None:
        raise ValueError(f"unknown command {name!r}; commands: {', '.join(BY_NAME)}")
    return found


def result(cmd: Command, raw: Any) -> Any:
    """A reply's result as `cmd`'s schema, or SchemaError."""
    return schemas.convert(raw, cmd.result)


def markdown() -> list[str]:
    out = ["## Control commands", "",
           "Requests `{cmd, stage?}` on `control.sock` (REQ/REP, msgpack); replies `{ok, result}` or "
           "`{ok: false, error}`.", ""]
    shown: list[type[msgspec.Struct]] = []
    for c in COMMANDS:
        arg = " (`stage`: a stage of the table)" if c.takes_stage else ""
        out += [f"### `{c.name}`{arg}", "", c.help[0].upper() + c.help[1:] + (f": {c.detail}" if c.detail else "") + ".",
                "", f"Result `{c.result.__name__}`:", "", *schemas.fields_markdown(c.result), ""]
        shown += [s for s in schemas.nested_structs(c.result) if s not in shown]
    return out + [line for s in shown for line in schemas.struct_markdown(s)]
