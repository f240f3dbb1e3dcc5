"""Running the real pipeline in tests: the CLI as a subprocess, private runtime,
data and shared-memory directories, and waiting on conditions with deadlines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil
import zmq

from pipeline import commands, events, protocol, schemas, stages
from pipeline.runtime import Runtime, RuntimeDirError
from pipeline.tap import Tap
from procs.stage import stats_schemas

T = TypeVar("T")

# The synthetic source named, not left to "auto": on a Mac auto would capture the real screen.
FAST_CONFIG = """
[capture]
source = "synthetic"
fps = 8.0
[capture.synthetic]
width = 640
height = 360
[forward]
min_interval_s = 0.3
[analysis]
keepalive_s = 2.0
[supervisor]
stats_interval_s = 0.25
sample_interval_s = 0.5
stop_grace_s = 3.0
drain_s = 3.0
[supervisor.restart]
backoff_s = 0.05
backoff_max_s = 0.5
intensity = 20
period_s = 30.0
"""


def wait_for(
    what: str, fn: Callable[[], T | Literal[False] | None], timeout: float = 30.0, every: float = 0.05
) -> T:
    """Polls `fn` until it returns something truthy; fails naming `what`.
    (`fn` is often a chain `condition and value`: False until the condition holds.)"""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for its (re)parent."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


#: Each stage's stats schema; a stage not in the pipeline's table (the tests' relay) reports the base one.
STATS_SCHEMAS = stats_schemas(stages.PIPELINE)


def drift(frames: list[bytes]) -> list[str]:
    """What is wrong with one message of the bus, held to its schema strictly:
    undecodable, a body its schema refuses, or fields the schema does not
    declare (which readers would ignore, and the documentation would lack)."""
    try:
        topic, body = events.decode_event(frames)
        events.check_event(topic, body)
    except (protocol.ProtocolError, schemas.SchemaError) as exc:
        return [f"{bytes(frames[0])!r}: {exc}"]
    found = events.topic(topic)
    assert found is not None
    schema = STATS_SCHEMAS.get(topic.removeprefix("stats."), found.body) if found.name == "stats.<stage>" else found.body
    schemas.convert(body, schema)
    return [f"{topic}: {path} is not in its schema ({schema.__name__})" for path in schemas.undeclared(body, schema)]


class BusCheck:
    """Every message on an instance's event bus, from `up` to `down`, held to
    its schema (`drift`) in a thread of the test process."""

    def __init__(self, rt: Runtime) -> None:
        self.problems: list[str] = []
        self.seen: Counter[str] = Counter()
        #: Messages a test puts on the bus on purpose (hostile ones): not the pipeline's to answer for.
        self.forged: set[tuple[bytes, bytes]] = set()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(rt.endpoint("events"))  # before the bind: ZeroMQ connects once it exists
        self._thread = threading.Thread(target=self._run, name="bus-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            frames = self._sock.recv_multipart()
            if len(frames) == 2 and (frames[0], frames[1]) in self.forged:
                continue
            self.seen[bytes(frames[0]).decode("ascii", "replace")] += 1
            try:
                self.problems += drift(frames)
            except schemas.SchemaError as exc:
                self.problems.append(f"{bytes(frames[0])!r}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._ctx.destroy(linger=0)


class Pipeline:
    def __init__(self, root: Path, config: str = FAST_CONFIG, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.config_path = root / "config.toml"
        self.config_path.write_text(config)
        self.env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        self.shm = Path(tempfile.mkdtemp(prefix="jp-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.env.update(
            # setproctitle would otherwise reuse the environment's memory for long titles, and
            # /proc/<pid>/environ (how tests find a stage's processes and check its keys) reads empty.
            SPT_NOENV="1",
            JARVIS_RUNTIME_DIR=str(root / "run"),
            JARVIS_DATA_DIR=str(root / "data"),
            JARVIS_SHM_DIR=str(self.shm),
        )
        self.env.update(env or {})
        self.rt = Runtime.locate("default", self.env)
        self.bus: BusCheck | None = None

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"jarvis-pipeline {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self, *extra: str) -> None:
        self.watch_bus()
        self.cli("up", "-d", "-c", str(self.config_path), *extra)

    def forge(self, pub: zmq.Socket[bytes], topic: bytes, data: bytes) -> None:
        """Publishes a message of the test's own (a hostile one) on the bus,
        which the bus check then knows is not the pipeline's."""
        if self.bus is not None:
            self.bus.forged.add((topic, data))
        pub.send_multipart([topic, data])

    def watch_bus(self) -> None:
        """From now on every event is held to its schema (checked when the pipeline context ends)."""
        if self.bus is None:
            self.rt.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.bus = BusCheck(self.rt)

    def status_result(self) -> dict[str, Any]:
        """`status --json`, held to the status result's schema, undeclared fields included."""
        out = self.cli("status", "--json", check=False)  # (exits 1 while a stage is failed or hung)
        result: dict[str, Any] = json.loads(out.stdout)
        undeclared = schemas.undeclared(result, commands.StatusResult)
        assert not undeclared, f"status fields missing from its schema: {undeclared}"
        commands.result(commands.BY_NAME["status"], result)  # the types too
        return result

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.status_result()["stages"]}

    def supervisor_pid(self) -> int | None:
        try:
            return self.rt.owner_pid()
        except RuntimeDirError:  # a test made the runtime directory unusable: nothing can run there
            return None

    def stage_pids(self) -> dict[str, int]:
        return {n: s["pid"] for n, s in self.status().items() if s["pid"]}

    @contextmanager
    def tap(self, *topics: str) -> Iterator[Tap]:
        """A tap on the instance's events; every event the pipeline published
        must match its topic's schema (pipeline.events), so drift fails here."""
        with Tap(self.rt, topics, timeout_s=30) as t:
            yield t
            assert t.rejected == 0, f"{t.rejected} events did not match their schema"

    def final_counters(self) -> dict[str, int]:
        """The counters of the last `down`, from its log line; its file says
        the same where this process sees it (a test may give the pipeline a
        data disk of its own)."""
        log = (self.rt.log_dir / "supervisor.log").read_text()
        line = [x for x in log.splitlines() if "final counters" in x][-1]
        counters: dict[str, int] = json.loads(line.split("final counters", 1)[1])
        if self.rt.final_counters_path.exists():
            assert json.loads(self.rt.final_counters_path.read_text()) == counters
        return counters

    def jarvis_processes(self) -> list[psutil.Process]:
        """Every process of this test's instance still alive."""
        found = []
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                env = p.info["environ"] or {}
            except psutil.Error:
                continue
            if env.get("JARVIS_RUNTIME_DIR") == self.env["JARVIS_RUNTIME_DIR"] and alive(p.pid):
                found.append(p)
        return found

    def print_logs(self, lines: int = 60) -> None:
        for log in sorted(self.rt.log_dir.glob("*")) if self.rt.log_dir.is_dir() else []:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"== {log.name} (last {len(tail)} lines)", *tail, sep="\n")

    def kill_everything(self) -> None:
        for p in self.jarvis_processes():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass


@contextmanager
def pipeline(config: str = FAST_CONFIG, env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    # A short root: ipc socket paths must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="jp-", dir="/tmp"))
    p = Pipeline(root, config, env)
    try:
        yield p
    except BaseException:
        p.print_logs()  # pytest shows a failed test's output: the logs say why
        raise
    else:
        if p.bus is not None:
            p.bus.close()
            assert not p.bus.problems, "events that do not match their schema:\n" + "\n".join(p.bus.problems[:20])
    finally:
        if p.bus is not None:
            p.bus.close()
        if p.supervisor_pid():
            p.cli("down", check=False)
        p.kill_everything()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(p.shm, ignore_errors=True)
