"""Talking to a running supervisor: the control request/reply endpoint."""

from __future__ import annotations

from typing import Any

import msgspec
import zmq

from pipeline import commands, schemas
from pipeline.runtime import Runtime


class NotRunning(RuntimeError):
    """No supervisor runs for this instance."""


class ControlError(RuntimeError):
    """The supervisor answered with an error, or not at all."""


def request(rt: Runtime, cmd: str, timeout_s: float = 10.0, **args: Any) -> Any:
    """Sends one command (pipeline.commands) and returns its result, an
    instance of the command's result schema."""
    command = commands.command(cmd)
    raw = request_raw(rt, cmd, timeout_s, **args)
    try:
        return commands.result(command, raw)
    except schemas.SchemaError as exc:
        raise ControlError(f"the supervisor of {rt.instance!r} answered {cmd!r} with a result of another schema: "
                           f"{exc}") from None


def request_raw(rt: Runtime, cmd: str, timeout_s: float = 10.0, **args: Any) -> Any:
    """Sends one command and returns its result as decoded, unchecked: for
    tools that talk to supervisors of other releases (the benchmarks)."""
    if rt.owner_pid() is None:
        raise NotRunning(f"jarvis-pipeline instance {rt.instance!r} is not running (start it with: jarvis-pipeline up -d)")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
    try:
        sock.connect(rt.endpoint("control"))
        sock.send(msgspec.msgpack.encode(schemas.Request(cmd, **args)))
        try:
            reply = schemas.decode(sock.recv(), schemas.Reply)
        except zmq.Again:
            raise ControlError(f"the supervisor of {rt.instance!r} did not answer {cmd!r} within {timeout_s:g} s") from None
        except schemas.SchemaError as exc:
            raise ControlError(f"the supervisor of {rt.instance!r} answered {cmd!r} with something else: {exc}") from None
    finally:
        sock.close()
    if not reply.ok:
        raise ControlError(reply.error or "unknown error")
    return reply.result
