"""The stage table (pipeline.stages): what is derived from it, what it
refuses, and a pipeline of five stages, one of them defined in the tests
(tests/relay_stage.py), run end to end by the real supervisor."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import FAST_CONFIG, pipeline, wait_for
from relay_stage import TOPOLOGY as FIVE

import jarvis_rust_core as jrc
from pipeline import protocol, stages
from pipeline.schemas import Place
from pipeline.stages import PIPELINE, StageSpec, Topology

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_everything_about_the_order_follows_from_the_table() -> None:
    assert PIPELINE.names == ("capture", "dedup", "analysis", "forward")
    assert PIPELINE.hops == ("capture>dedup", "dedup>analysis", "analysis>forward")
    assert PIPELINE.start_order == ("forward", "analysis", "dedup", "capture")
    assert PIPELINE.stop_order == PIPELINE.names
    assert PIPELINE.place("capture") == Place(None, "dedup", None, 0)
    assert PIPELINE.place("analysis") == Place("dedup", "forward", 1, 2)
    assert PIPELINE.place("forward") == Place("analysis", None, 2, None)
    assert PIPELINE.min_ring_slots(2, 1, 0) == 3 * 2 + 1 + 0 + 2
    assert "3 hops" in PIPELINE.sizing_formula
    assert FIVE.names == ("capture", "dedup", "relay", "analysis", "forward")
    assert FIVE.hop_index == {"capture>dedup": 0, "dedup>relay": 1, "relay>analysis": 2, "analysis>forward": 3}
    assert FIVE.place("relay") == Place("dedup", "analysis", 1, 2)
    assert FIVE.place("analysis") == Place("relay", "forward", 2, 3)
    assert FIVE.min_ring_slots(2, 1, 0) == PIPELINE.min_ring_slots(2, 1, 0) + 2, "each hop holds up to its credit"
    assert "4 hops" in FIVE.sizing_formula
    assert FIVE.sockets == ("control", "events-in", "events", "metrics", *FIVE.names)


def test_only_forward_gets_the_key() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-test", "HOME": "/home/x"}
    assert PIPELINE.env_for("forward", env) == env
    for name in ("capture", "dedup", "analysis"):
        assert PIPELINE.env_for(name, env) == {"HOME": "/home/x"}


@pytest.mark.parametrize(("rows", "why"), [
    ((), "at least one stage"),
    ((StageSpec("a", "m.a", "A"), StageSpec("a", "m.b", "B")), "repeat"),
    ((StageSpec("Capture", "m", "C"),), "stage name"),
    ((StageSpec("events", "m", "C"),), "stage name"),
    ((StageSpec("supervisor", "m", "C"),), "stage name"),
    ((StageSpec("ok", "not a module", "C"),), "not a module name"),
    (tuple(StageSpec(f"s{i}", "m", "C") for i in range(jrc.HOPS + 2)), "hand-off queues"),
])
def test_a_table_that_cannot_run_is_refused_with_the_reason(rows: tuple[StageSpec, ...], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Topology(rows)


def _stats(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in status["stages"]}


def test_a_stage_added_by_one_row_runs_end_to_end_with_exact_accounting() -> None:
    """The relay (one module, one row, no config section) sits between dedup
    and analysis: the supervisor starts, watches and stops five stages, the
    frames cross four hops, the ring is sized for them, and every frame
    captured ends in exactly one terminal state."""
    path = os.pathsep.join(x for x in (str(TESTS), os.environ.get("PYTHONPATH", "")) if x)
    with pipeline(FAST_CONFIG, env={"PYTHONPATH": path}) as p:
        log = (p.root / "up.out").open("w")
        p.watch_bus()  # the relay's events too are held to their schemas
        sup = subprocess.Popen([sys.executable, "-m", "relay_stage", "up", "--supervise", "-c", str(p.config_path)],
                               env=p.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            def running() -> dict[str, dict[str, Any]] | None:
                st = p.status() if p.supervisor_pid() else {}
                return st if list(st) == list(FIVE.names) and all(s["state"] == "running" for s in st.values()) else None

            wait_for("five stages running", running, timeout=90)
            with p.tap("frame.", "forward.") as tap:
                seen = set()
                for topic, _ in tap:
                    seen.add(topic)
                    if {"frame.changed", "forward.dry_run"} <= seen:
                        break
            # A module's logger other than the stage's reaches the stage's log, at INFO.
            assert "INFO relay_stage.parts" in p.rt.log_path("relay").read_text()
            relay = wait_for("the relay passing frames on",
                             lambda: (s := p.status()["relay"])["frames_out"] > 0 and s, timeout=30)
            # A busy machine may make it drop for want of credit: counted, never lost (the accounting below).
            assert relay["pid"] and set(relay["drops"]) <= {"backpressure", "next_stage_down"}, relay
            ring = jrc.SharedVisionMemory.attach(p.rt.ring_name, dir=p.rt.shm_base)
            assert ring.slot_count == FIVE.min_ring_slots(2, 1, 0), "sized for four hops (defaults: credit 2, no tap holds)"
            ring.close()
            p.cli("down")
            assert sup.wait(timeout=60) == 0
        finally:
            if sup.poll() is None:
                sup.kill()
            log.close()
        final = p.final_counters()
        assert final["captured"] > 0 and final["pending.forward"] == 0, final
        assert protocol.terminal_total(final) == final["captured"], f"frames lost or counted twice: {final}"
        assert final["forwarded"] > 0, final


def test_the_control_plane_never_imports_the_stages() -> None:
    """pipeline is the lower floor: a process that loads the supervisor and
    the command line has no stage module (procs) loaded."""
    code = ("import sys; import pipeline.supervisor, pipeline.cli, pipeline.stages; "
            "print(sorted(m for m in sys.modules if m == 'procs' or m.startswith('procs.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert stages.PIPELINE.spec("forward").module == "procs.forward"
    # Nor later, from inside a function: no import of procs anywhere in pipeline.
    upward = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                upward += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "procs"]
    assert not upward, upward
