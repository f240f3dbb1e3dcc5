"""The whole pipeline as a user runs it: real processes, real sockets, the real
ring, the CLI as a subprocess. Every wait is for a condition, with a deadline."""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq
from pipeline_harness import FAST_CONFIG, Pipeline, alive, pipeline, wait_for

import jarvis_rust_core as jrc
from pipeline import control, protocol
from pipeline.schemas import StageState
from pipeline.stages import PIPELINE
from pipeline.tap import Tap

STAGES = PIPELINE.names


def all_running(p: Pipeline) -> dict[str, dict[str, Any]] | None:
    st = p.status()
    return st if all(s["state"] == "running" for s in st.values()) else None


def assert_balanced(final: dict[str, int]) -> None:
    assert final["captured"] > 0, final
    assert final["pending.forward"] == 0, final
    assert protocol.terminal_total(final) == final["captured"], f"frames lost or counted twice: {final}"


def test_up_flows_taps_reports_and_down_cleans() -> None:
    with pipeline() as p:
        p.up()
        with p.tap("frame.", "forward.", "stats.") as tap:
            seen: dict[str, dict[str, Any]] = {}
            for topic, body in tap:
                seen.setdefault(topic, body)
                if topic == "stats.analysis" and body["tile_rows_skipped"] > 0:
                    seen["analysis skipping rows"] = body
                if {"frame.captured", "frame.changed", "forward.dry_run", "stats.forward",
                        "analysis skipping rows"} <= seen.keys():
                    break
            pixels = None
            for topic, body in tap:  # a frame event's pixels, by read_copy
                if topic == "frame.captured":
                    try:
                        pixels = tap.pixels(body)
                        break
                    except jrc.FrameExpired:
                        continue
        assert pixels is not None and pixels.shape == (360, 640, 4)
        assert seen["frame.captured"]["ref"]["w"] == 640
        # Capture's band digests reach analysis, which reads only the rows of tiles that changed.
        skipping = seen["analysis skipping rows"]
        assert skipping["band_digests_refused"] == 0 and skipping["tile_rows_skipped"] < skipping["tile_rows"]
        st = wait_for(
            "every stage reporting frames",
            lambda: (s := all_running(p)) and all(x["frames_in"] > 0 and x["p95_ms"] is not None for x in s.values()) and s,
        )
        assert [s for s in st] == list(STAGES)
        for s in st.values():
            assert s["pid"] and s["restarts"] == 0 and s["p95_ms"] is not None, s
        human = p.cli("status").stdout
        assert all(name in human for name in STAGES) and "PSS MB" in human

        outbox = p.rt.data_dir / "outbox"
        request = sorted(outbox.iterdir())[0]
        assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
        assert stat.S_IMODE((request / "request.json").stat().st_mode) == 0o600
        assert any(f.suffix in (".png", ".jpg") for f in request.iterdir())

        pids = [s["pid"] for s in st.values()] + [p.supervisor_pid()]
        again = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        assert again.returncode == 3 and "already running" in again.stderr
        p.cli("down")
        assert not any(alive(pid) for pid in pids)
        assert sorted(x.name for x in p.rt.dir.iterdir()) == ["logs"], "no sockets, lock or config left"
        assert not list(p.shm.rglob("*.ring")) and not list(p.shm.rglob("*.lock"))
        assert_balanced(p.final_counters())


def test_kill9_of_each_stage_under_load() -> None:
    with pipeline() as p:
        p.up()
        wait_for("all stages running", lambda: all_running(p))
        restart_s = []
        for _ in range(2):
            for name in STAGES:
                before = p.stage_pids()
                os.kill(before[name], signal.SIGKILL)
                start = time.monotonic()
                st = wait_for(
                    f"{name} back",
                    lambda: (s := all_running(p)) and s[name]["pid"] != before[name] and s,  # noqa: B023 - waited for here
                    timeout=10,
                )
                restart_s.append(time.monotonic() - start)
                others = {n: st[n]["pid"] for n in STAGES if n != name}
                assert others == {n: before[n] for n in others}, "the other stages kept running"
                # Frames flow again through the restarted stage.
                counts = p.status()[name]["frames_in"]
                wait_for(f"{name} processing again", lambda: p.status()[name]["frames_in"] > counts,  # noqa: B023
                         timeout=10)
        print(f"restart after kill -9: median {sorted(restart_s)[len(restart_s) // 2]:.2f}s, max {max(restart_s):.2f}s")
        assert max(restart_s) < 3.0, restart_s
        p.cli("down")
        final = p.final_counters()
        assert_balanced(final)
        assert final["dropped.ring_full"] == 0, "held slots leaked until the ring ran full"


def test_kill9_of_the_supervisor_leaves_no_orphans() -> None:
    with pipeline() as p:
        p.up()
        wait_for("all stages running", lambda: all_running(p))
        pids = list(p.stage_pids().values())
        os.kill(p.supervisor_pid() or 0, signal.SIGKILL)
        wait_for("every stage gone", lambda: not any(alive(pid) for pid in pids), timeout=15)
        assert p.supervisor_pid() is None
        p.up()  # cleans what the dead run left
        wait_for("all stages running again", lambda: all_running(p))
        p.cli("down")


def test_a_stage_that_crashes_on_start_fails_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "default").mkdir(parents=True, mode=0o700)
    (data / "default" / "outbox").write_text("")  # forward cannot create its outbox
    config = FAST_CONFIG.replace("intensity = 20", "intensity = 3")
    with pipeline(config, env={"JARVIS_DATA_DIR": str(data)}) as p:
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        # `up -d` says which stage failed and why, and exits non-zero; the rest runs on.
        assert out.returncode == 1, out
        assert "forward failed" in out.stderr and "outbox" in out.stderr and "keep running" in out.stderr, out.stderr
        st = wait_for(
            "the other stages running",
            lambda: (s := p.status()) and all(s[n]["state"] == "running" for n in ("capture", "dedup", "analysis")) and s,
        )
        assert st["forward"]["state"] == "failed"
        status = p.cli("status", check=False)
        assert status.returncode == 1 and "ERROR: forward has failed" in status.stdout, status.stdout
        p.cli("down")
        assert_balanced(p.final_counters())


def test_pause_stops_requests_and_resume_restarts_them() -> None:
    with pipeline() as p:
        p.up()
        with p.tap("forward.dry_run", "control.", "stats.forward") as tap:
            next(t for t, _ in tap if t == "forward.dry_run")
            p.cli("pause")
            paused_at = None
            for topic, body in tap:
                # Events of different publishers may interleave either way, so the
                # barrier is forward's own word that it is paused: its later events
                # arrive after it.
                if topic == "stats.forward" and body["paused"]:
                    paused_at = time.monotonic()
                    break
            late, stats = [], 0
            for topic, _ in tap:  # forward's next 6 stats (1.5 s): no request among them
                late += [topic] if topic == "forward.dry_run" else []
                stats += topic == "stats.forward"
                if stats == 6:
                    break
            assert paused_at is not None and late == [], "a request left after pause"
            p.cli("resume")
            assert any(t == "forward.dry_run" for t, _ in tap)
        p.cli("down")
        final = p.final_counters()
        assert_balanced(final)
        assert final["dropped.paused"] > 0


def until_started(tap: Tap) -> list[tuple[str, str]]:
    """(topic, stage) of the stage.* events up to the first stage.started."""
    topics = []
    for topic, body in tap:
        topics.append((topic, body["stage"]))
        if topic == "stage.started":
            break
    return topics


def test_restart_command_is_not_a_crash() -> None:
    with pipeline() as p:
        p.up()
        before = wait_for("all stages running", lambda: all_running(p))
        with p.tap("stage.") as tap:
            p.cli("restart", "analysis")
            assert until_started(tap) == [("stage.stopped", "analysis"), ("stage.started", "analysis")]
        after = wait_for("analysis running", lambda: all_running(p))
        assert after["analysis"]["pid"] != before["analysis"]["pid"] and after["analysis"]["restarts"] == 0
        p.cli("down")
        assert_balanced(p.final_counters())


def test_restart_answers_at_once_and_status_answers_while_the_stage_drains() -> None:
    """`restart` does not hold the supervisor's loop for the drain: with the
    stage stopped (SIGSTOP, so it cannot act on its SIGTERM), the command is
    answered, status shows it stopping, and once it can go on it exits and its
    next incarnation runs; a commanded stop, not a crash."""
    with pipeline(FAST_CONFIG.replace("drain_s = 3.0", "drain_s = 30.0")) as p:
        p.up()
        before = wait_for("all stages running", lambda: all_running(p))
        pid = before["analysis"]["pid"]
        with p.tap("stage.") as tap:
            os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                reply = control.request(p.rt, "restart", stage="analysis")
                answered_s = time.monotonic() - t0
                row = next(s for s in control.request(p.rt, "status").stages if s.name == "analysis")
            finally:
                os.kill(pid, signal.SIGCONT)
            # The SIGKILL deadline is 33 s away: anything but an answer within seconds is the loop blocked.
            assert reply.state is StageState.STOPPING and answered_s < 11.0, (reply, answered_s)
            assert row.state is StageState.STOPPING and row.pid == pid, row
            assert until_started(tap) == [("stage.stopped", "analysis"), ("stage.started", "analysis")]
        after = wait_for("analysis running again", lambda: all_running(p))
        assert after["analysis"]["incarnation"] == reply.incarnation + 1 and after["analysis"]["restarts"] == 0
        p.cli("down")
        assert_balanced(p.final_counters())


def test_bad_messages_on_the_bus_are_counted_not_fatal() -> None:
    with pipeline() as p:
        p.up()
        before = wait_for("all stages running", lambda: all_running(p))
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(p.rt.endpoint("dedup"))
        foreign = jrc.FrameRef.from_dict({f: 1 for f in jrc.FrameRef.FIELDS} | {"fmt": "GRAY", "stride": 64})
        for msg in (b"\x00garbage", msgpack.packb({"v": [99, 0]}), protocol.encode_frame_ref(foreign), b""):
            push.send(msg)
        pub = ctx.socket(zmq.PUB)
        pub.connect(p.rt.endpoint("events-in"))
        with p.tap("stats.dedup") as tap:
            for _ in range(50):
                p.forge(pub, b"control.paused", b"\xc1 not msgpack")
                _, body = next(iter(tap))
                if body["rejected"].get("malformed", 0) >= 3 and body["rejected"].get("foreign", 0) >= 1:
                    break
            assert body["rejected"]["malformed"] >= 3 and body["rejected"]["foreign"] == 1, body
        ctx.destroy(linger=0)
        assert p.stage_pids() == {n: s["pid"] for n, s in before.items()}, "nothing crashed"
        assert p.status()["forward"]["state"] == "running"
        p.cli("down")


def test_a_stage_waits_for_the_next_stages_credit_before_dropping() -> None:
    """hops.wait_ms: dedup, finding analysis's one credit taken (analysis
    stopped), waits for it instead of dropping the frame at once (capture,
    which never waits, drops meanwhile); a stall shorter than the wait loses
    nothing at dedup, a longer one drops there: the wait is bounded."""
    config = FAST_CONFIG + "[hops]\ncredit = 1\nwait_ms = 1000.0\n"
    with pipeline(config) as p:
        p.up()
        wait_for("frames through analysis", lambda: (s := all_running(p)) and s["analysis"]["frames_in"] > 3 and s)
        analysis = p.stage_pids()["analysis"]

        def next_event(tap: Tap, what: str, match: Callable[[str, dict[str, Any]], bool]) -> dict[str, Any]:
            deadline = time.monotonic() + 20
            for topic, body in tap:
                if match(topic, body):
                    return body
                if time.monotonic() > deadline:
                    break
            raise AssertionError(f"no {what} within 20 s")

        def next_drop(tap: Tap, stage: str) -> dict[str, Any]:
            return next_event(tap, f"backpressure drop at {stage}", lambda topic, body: topic == "frame.dropped"
                              and body["stage"] == stage and body["reason"] == "backpressure")

        with p.tap("frame.dropped", "stats.dedup") as tap:
            os.kill(analysis, signal.SIGSTOP)
            try:
                next_drop(tap, "capture")  # dedup holds a frame, waiting: its own inbound hop is full
            finally:
                os.kill(analysis, signal.SIGCONT)
            waited = next_event(tap, "dedup's stats after its wait",
                                lambda topic, body: topic == "stats.dedup" and body["credit_waits"] >= 1)
            assert "backpressure" not in waited["drops"], "the frame waited for came through"
            os.kill(analysis, signal.SIGSTOP)
            try:
                start = time.monotonic()
                next_drop(tap, "dedup")  # a longer stall: dropped at dedup after the wait
                assert time.monotonic() - start >= 0.9, "not before the wait ran out"
            finally:
                os.kill(analysis, signal.SIGCONT)
        counts = p.status()["analysis"]["frames_in"]
        wait_for("frames through analysis again", lambda: p.status()["analysis"]["frames_in"] > counts)
        p.cli("down")
        assert_balanced(p.final_counters())


def test_records_queued_for_a_killed_stage_are_counted_once() -> None:
    with pipeline() as p:
        p.up()
        wait_for("all stages running", lambda: all_running(p))
        ring = jrc.SharedVisionMemory.attach(p.rt.ring_name, dir=p.rt.shm_base)
        hop = PIPELINE.hop_index["capture>dedup"]
        dedup = p.stage_pids()["dedup"]
        os.kill(dedup, signal.SIGSTOP)
        try:
            wait_for("a hand-off queued for the stopped dedup", lambda: ring.handoff_pending(hop) > 0, timeout=10)
        finally:
            os.kill(dedup, signal.SIGKILL)
        wait_for(
            "a new dedup rejecting the queued records as stale (the supervisor decided their frames)",
            lambda: (s := all_running(p)) and s["dedup"]["pid"] != dedup and (s["dedup"]["rejected"] or {}).get("stale"),
            timeout=15,
        )
        ring.close()
        p.cli("down")
        assert_balanced(p.final_counters())


def test_hostile_records_in_a_hand_off_queue_are_counted_not_fatal() -> None:
    # Producer and consumer of the hop are stopped while the test writes into
    # its queue (one producer at a time); no hang check while they are.
    config = FAST_CONFIG.replace("[supervisor]\n", "[supervisor]\nhang_after_s = 60.0\n")
    with pipeline(config) as p:
        p.up()
        before = wait_for("all stages running", lambda: all_running(p))
        ring = jrc.SharedVisionMemory.attach(p.rt.ring_name, dir=p.rt.shm_base)
        hop = PIPELINE.hop_index["capture>dedup"]
        good = {f: 1 for f in jrc.FrameRef.FIELDS} | {"fmt": "BGRA", "stride": 2560, "w": 640, "h": 360}
        foreign = jrc.FrameRef.from_dict(good)
        no_such_slot = jrc.FrameRef.from_dict(good | {"ring_gen": ring.generation, "slot": 9999})
        marker = b"\xc1 a record whose length word is then broken " + os.urandom(8).hex().encode()
        for name in ("capture", "dedup"):
            os.kill(before[name]["pid"], signal.SIGSTOP)
        try:
            for msg in (b"\x00garbage", marker, msgpack.packb({"v": [99, 0]}), protocol.encode_frame_ref(foreign),
                        protocol.encode_frame_ref(no_such_slot), b""):
                ring.handoff_push(hop, msg)
            (path,) = p.shm.rglob("*.ring")
            with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as shared:
                at = shared.find(marker)
                assert at > 0
                shared[at - 4:at] = (1 << 31).to_bytes(4, sys.byteorder)  # the record's length word
        finally:
            for name in ("capture", "dedup"):
                os.kill(before[name]["pid"], signal.SIGCONT)

        def rejected() -> dict[str, int] | None:
            r = p.status()["dedup"]["rejected"] or {}
            kinds = ("malformed", "corrupt_record", "foreign", "invalid")
            return r if r.get("malformed", 0) >= 3 and all(r.get(k) for k in kinds) else None

        r = wait_for("dedup counting every hostile record", rejected, timeout=15)
        assert r["corrupt_record"] == 1 and r["foreign"] == 1 and r["invalid"] == 1, r
        assert p.stage_pids() == {n: s["pid"] for n, s in before.items()}, "nothing crashed"
        ring.close()
        p.cli("down")
        assert_balanced(p.final_counters())


def test_bad_configs_stop_up_with_a_clear_error(tmp_path: Path) -> None:
    cases = {
        "[capture]\nfpz = 2\n": "unknown key [capture] 'fpz'",
        "[capture]\nfps = 'fast'\n": "capture.fps must be a number",
        "[ring]\nslots = 3\n": "ring.slots = 3 is below the minimum",
        "[capture]\nsource = 'replay'\n": "capture.replay.path is empty",
        "not toml ===": "not valid TOML",
    }
    for text, message in cases.items():
        with pipeline(text) as p:
            out = p.cli("up", "-c", str(p.config_path), check=False)
            assert out.returncode == 78, (text, out.stderr)
            assert message in out.stderr and str(p.config_path) in out.stderr or "minimum" in message, out.stderr
            assert p.supervisor_pid() is None
    with pipeline() as p:
        out = p.cli("up", "-c", str(tmp_path / "missing.toml"), check=False)
        assert out.returncode == 78 and "no such configuration file" in out.stderr


def test_unusable_runtime_dir_and_too_little_shared_memory() -> None:
    # Not tmp_path: under pytest-xdist its paths leave too little of the ipc socket path limit.
    tmp_path = Path(tempfile.mkdtemp(prefix="jp-"))
    try:
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pipeline(env={"JARVIS_RUNTIME_DIR": str(blocker / "run")}) as p:
            out = p.cli("up", "-c", str(p.config_path), check=False)
            assert out.returncode != 0 and "JARVIS_RUNTIME_DIR" in out.stderr, out.stderr
        loose = tmp_path / "loose"
        (loose / "default").mkdir(parents=True, mode=0o755)
        (loose / "default").chmod(0o755)
        with pipeline(env={"JARVIS_RUNTIME_DIR": str(loose)}) as p:
            out = p.cli("up", "-c", str(p.config_path), check=False)
            assert out.returncode != 0 and "mode 0700" in out.stderr, out.stderr
        with pipeline(FAST_CONFIG + "[ring]\nslots = 1000\nmax_width = 16384\nmax_height = 16384\n") as p:
            out = p.cli("up", "-c", str(p.config_path), check=False)
            assert out.returncode == 78 and "MB are free" in out.stderr, out.stderr
            assert p.supervisor_pid() is None and not p.jarvis_processes()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_memory_governor_reacts_to_a_tiny_budget() -> None:
    with pipeline(FAST_CONFIG.replace("[analysis]", "[memory]\nbudget_mb = 1.0\n[analysis]")) as p:
        p.rt.prepare()
        with p.tap("memory.pressure", "stats.capture") as tap:  # subscribed before up: no event is missed
            p.up()
            level = fps = None
            deadline = time.monotonic() + 60
            for topic, body in tap:
                if topic == "memory.pressure":
                    level = body
                elif level is not None:
                    fps = body.get("fps")
                    if fps is not None and fps <= 8.0 / 4 + 0.5:
                        break
                assert time.monotonic() < deadline, f"capture did not slow down: {fps} fps, last {topic} {body}"
        assert level is not None and level["level"] == "critical" and "forwarding paused" in level["actions"]
        assert control.request(p.rt, "status").memory.level == "critical"
        # A capture started again (kill -9) applies the pressure from its first frame.
        before = p.stage_pids()["capture"]
        os.kill(before, signal.SIGKILL)
        wait_for("capture back", lambda: (s := p.status()["capture"])["pid"] not in (None, before) and s["applied"])
        assert p.status()["capture"]["applied"]["pressure"] == "critical"
        p.cli("down")
        assert_balanced(p.final_counters())


def test_doctor_explains_the_machine(tmp_path: Path) -> None:
    """It never crashes, says what to do, and exits 1 only when the pipeline
    could not run as configured (a missing key is no failure: it runs dry)."""
    with pipeline() as p:
        out = p.cli("doctor", check=False)
        assert "display" in out.stdout and "synthetic desktop" in out.stdout and "shared memory" in out.stdout
        assert "ANTHROPIC_API_KEY" in out.stdout and out.returncode == 0, out
        bad = tmp_path / "bad.toml"
        bad.write_text("[capture]\nfps = 'fast'\n")
        out = p.cli("doctor", "-c", str(bad), check=False)
        assert out.returncode == 1 and "NO  config" in out.stdout and "capture.fps must be a number" in out.stdout
        screen = tmp_path / "screen.toml"
        screen.write_text('[capture]\nsource = "screen"\n')
        out = p.cli("doctor", "-c", str(screen), check=False)  # no display here: nothing to capture
        assert out.returncode == 1 and "NO  display" in out.stdout, out.stdout
        for shm in ("", "/nonexistent/jarvis"):
            p.env["JARVIS_SHM_DIR"] = shm
            out = p.cli("doctor", check=False)
            assert "Traceback" not in out.stderr and "shared memory" in out.stdout, out


def test_the_cli_follows_the_conventions_people_know() -> None:
    from pipeline import cli

    with pipeline() as p:
        version = p.cli("--version").stdout
        assert version.startswith("jarvis-pipeline 0.1.0 (core jarvis-rust-core ") and \
            f"protocol {protocol.PROTOCOL_VERSION[0]}.{protocol.PROTOCOL_VERSION[1]}" in version
        assert subprocess.run([sys.executable, "-m", "pipeline", "--help"], env=p.env, capture_output=True,
                              text=True).stdout.startswith("usage: jarvis-pipeline")
        for argv in (["status", "-i", "elsewhere"], ["-i", "elsewhere", "status"]):  # before or after the verb
            out = p.cli(*argv, check=False)
            assert out.returncode == 4 and "'elsewhere' is not running" in out.stderr, (argv, out)
        parser = cli._parser(PIPELINE)
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in verbs.choices.items():
            assert sub.description, name
            unexplained = [a.dest for a in sub._actions if not a.help and a.dest != "help"]
            assert unexplained == [], (name, unexplained)
        p.up()
        status = json.loads(p.cli("status", "--json").stdout)  # the control reply's result, whole
        assert {"instance", "counters", "memory", "paused", "stages"} <= set(status)
        # A reader that goes away (`tap | head -1`) ends tap quietly.
        tap = subprocess.Popen([sys.executable, "-m", "pipeline", "tap", "frame."], env=p.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tap.stdout is not None and tap.stdout.readline().startswith('{"topic": "frame.')
        tap.stdout.close()
        assert tap.wait(timeout=60) == 0
        assert tap.stderr is not None and tap.stderr.read() == ""
        p.cli("down")


def test_foreground_up_stops_cleanly_on_ctrl_c() -> None:
    with pipeline() as p:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "up", "-c", str(p.config_path)],
            env=p.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_for("the foreground pipeline running", lambda: p.supervisor_pid() and all_running(p))
            tap_out = p.cli("tap", "--count", "2", "frame.captured").stdout.splitlines()
            assert [json.loads(line)["topic"] for line in tap_out] == ["frame.captured"] * 2
            logs = p.cli("logs", "capture").stdout
            assert "started (pid" in logs
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "stopped" in (proc.stdout.read() if proc.stdout else "")
        assert sorted(x.name for x in p.rt.dir.iterdir()) == ["logs"]
        assert_balanced(p.final_counters())


def test_a_stage_refuses_to_run_next_to_another_release() -> None:
    env = dict(os.environ)
    env["JARVIS_EXPECT_VERSIONS"] = json.dumps({"protocol": [99, 0], "layout": 1, "core": "0.0.0"})
    env["JARVIS_RUNTIME"] = json.dumps({"instance": "x", "dir": "/nonexistent", "data_dir": "/nonexistent"})
    out = subprocess.run([sys.executable, "-m", "procs.dedup"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 78 and "differ from the supervisor's" in out.stderr, out.stderr
