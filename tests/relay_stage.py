"""A stage from outside the project, for tests/test_stage_table.py: it passes
every frame on as it came. Run without arguments it is that stage's process
(the supervisor starts it as `python -m relay_stage`, with this folder on
PYTHONPATH); with arguments it is the command line of a pipeline whose stage
table has it between dedup and analysis."""

from __future__ import annotations

import sys
from typing import Any

import jarvis_rust_core as jrc
from pipeline import cli, stages
from procs import stage

#: The project's table with one more row: all a new stage needs.
TOPOLOGY = stages.Topology((
    *stages.PIPELINE.stages[:2],
    stages.StageSpec("relay", "relay_stage", "Relay"),
    *stages.PIPELINE.stages[2:],
))


class Relay(stage.Stage):
    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        self.pass_on(ref, extra)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(cli.main(sys.argv[1:], TOPOLOGY))
    stage.main(Relay)
