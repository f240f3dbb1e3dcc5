"""A stage from outside the project, for tests/test_stage_table.py: it passes
every frame on as it came. Run without arguments it is that stage's process
(the supervisor starts it as `python -m relay_stage`, with this folder on
PYTHONPATH); with arguments it is the command line of a pipeline whose stage
table has it between dedup and analysis."""

from __future__ import annotations

import logging
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


#: A module's own logger, as a library's: its records go to the stage's log.
log = logging.getLogger("relay_stage.parts")


class Relay(stage.Stage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        log.info("relay parts ready")

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        self.pass_on(ref, extra)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(cli.main(sys.argv[1:], TOPOLOGY))
    stage.main(Relay)
