"""The stage table: the pipeline's stages in order, the one place its
topology is written down. Everything that depends on the order is derived
from it (`Topology`):

- the hops between consecutive stages, named "<from>><to>", whose position is
  their index among the ring's hand-off queues and credits;
- the start order (the last stage first, so that every stage finds the one
  after it listening) and the stop order (the first first: capture stops
  feeding the others before they drain);
- each stage's previous and next stage and hop indices, which the supervisor
  tells the stage process at its start (schemas.Hello.place);
- the sockets (one per stage, `<name>.sock`, beside those of the control plane);
- the ring's sizing (each hop holds up to hops.credit frames in transit).

A row names the module run as the stage's process (`python -m <module>`)
and its procs.stage.Stage subclass. The table is code, not configuration:
nothing imports a module named in a config file. Adding a stage is one
module, one row and its config section (docs/extending.md).

The stage process contract lives here too (what the supervisor puts in a
stage's environment), so that the control plane never imports the stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jarvis_rust_core as jrc
from pipeline import protocol
from pipeline.schemas import Place

ENV_RUNTIME = "JARVIS_RUNTIME"  # pipeline.runtime.to_env
ENV_VERSIONS = "JARVIS_EXPECT_VERSIONS"  # JSON: versions the supervisor runs with
ENV_CHANNEL_FD = "JARVIS_CHANNEL_FD"  # the stage's end of its channel to the supervisor
ENV_WAKE_IN_FD = "JARVIS_WAKE_IN_FD"  # the end it polls of its inbound hop's wake-up object (pipeline.handoff)
ENV_WAKE_OUT_FD = "JARVIS_WAKE_OUT_FD"  # the end it signals of its outbound hop's
#: Exit status of a stage that refuses to run: another release, no usable handshake, unusable files.
EXIT_REFUSED = 78
#: Sockets of the control plane (pipeline.runtime.Runtime.socket), beside one per stage.
PLANE_SOCKETS = ("control", "events-in", "events", "metrics")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def versions() -> dict[str, Any]:
    """What supervisor and stages must agree on (a stage of another release refuses to run)."""
    return {"protocol": list(protocol.PROTOCOL_VERSION), "layout": jrc.LAYOUT_VERSION, "core": jrc.__version__}


@dataclass(frozen=True)
class StageSpec:
    """One row of the table."""

    name: str
    module: str  # run as `python -m <module>`
    cls: str  # its procs.stage.Stage subclass
    #: Environment variables only this stage receives (secrets: the others never see them).
    private_env: tuple[str, ...] = ()


class Topology:
    """The stages in order and what follows from the order."""

    def __init__(self, stages: tuple[StageSpec, ...]) -> None:
        if not stages:
            raise ValueError("a pipeline has at least one stage")
        names = [s.name for s in stages]
        for s in stages:
            if not _NAME.match(s.name) or s.name in PLANE_SOCKETS or s.name == "supervisor":
                raise ValueError(f"stage name {s.name!r}: 1-24 of a-z, 0-9 and _, starting with a letter, "
                                 f"and not {', '.join((*PLANE_SOCKETS, 'supervisor'))}")
            if not _MODULE.match(s.module):
                raise ValueError(f"stage {s.name!r}: {s.module!r} is not a module name")
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        if len(stages) - 1 > jrc.HOPS:
            raise ValueError(f"{len(stages) - 1} hops; the ring has hand-off queues for {jrc.HOPS}")
        self.stages = stages
        self.names: tuple[str, ...] = tuple(names)
        self.hops: tuple[str, ...] = tuple(f"{a}>{b}" for a, b in zip(names, names[1:], strict=False))
        self.hop_index: dict[str, int] = {hop: i for i, hop in enumerate(self.hops)}
        self.start_order: tuple[str, ...] = tuple(reversed(names))
        self.stop_order: tuple[str, ...] = self.names
        self._places = {
            name: Place(names[i - 1] if i else None, names[i + 1] if i + 1 < len(names) else None,
                        i - 1 if i else None, i if i + 1 < len(names) else None)
            for i, name in enumerate(names)
        }

    def spec(self, name: str) -> StageSpec:
        return self.stages[self.names.index(name)]

    def place(self, name: str) -> Place:
        return self._places[name]

    @property
    def sockets(self) -> tuple[str, ...]:
        """Every socket name of an instance (pipeline.runtime.Runtime.socket)."""
        return (*PLANE_SOCKETS, *self.names)

    @property
    def private_env(self) -> frozenset[str]:
        return frozenset(k for s in self.stages for k in s.private_env)

    def env_for(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """`env` less every other stage's private variables."""
        hidden = self.private_env - set(self.spec(name).private_env)
        return {k: v for k, v in env.items() if k not in hidden}

    @property
    def sizing_formula(self) -> str:
        return (f"slots >= {len(self.hops)} hops x hops.credit + monitors (reference frames) "
                "+ supervisor.tap_holds + 2")

    def min_ring_slots(self, credit: int, monitors: int, tap_holds: int) -> int:
        """Slots the pipeline can run in without a stage ever waiting on the
        ring: every frame in flight on a hop, each monitor's reference frame
        held by analysis, the frames taps may hold, the frame capture is
        writing and one spare. Forward copies what it keeps and holds nothing."""
        return len(self.hops) * credit + monitors + tap_holds + 2


#: The pipeline `jarvis-pipeline up` runs.
PIPELINE = Topology((
    StageSpec("capture", "procs.capture", "Capture"),
    StageSpec("dedup", "procs.dedup", "Dedup"),
    StageSpec("analysis", "procs.analysis", "Analysis"),
    StageSpec("forward", "procs.forward", "Forward", private_env=("ANTHROPIC_API_KEY",)),
))
