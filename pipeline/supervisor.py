"""The supervisor: creates the ring, runs the event proxy and the control
endpoint, starts the four stage processes, restarts each on its own, reclaims
what a dead stage held, and stops everything in order.

Crash and commanded stop are different events (stage.crashed / stage.stopped).
Restarts back off exponentially up to a cap; a stage restarted more than
`restart.intensity` times within `restart.period_s` is marked failed and left
down while the rest keeps running. Every stage runs in its own process group
and session; stop is SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import collections
import errno
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jarvis_rust_core as jrc
import msgpack
import psutil
import zmq

from pipeline import config as config_mod
from pipeline import protocol
from pipeline import runtime
from pipeline.runtime import STAGES, InstanceLock, Runtime
from procs import stage as stage_mod

log = logging.getLogger("jarvis.supervisor")

#: Start order: each stage's next stage is attached before it starts sending.
START_ORDER = ("forward", "analysis", "dedup", "capture")
#: Stop order (the design's shutdown order): sources first, then drain downstream.
STOP_ORDER = STAGES
HOP_INTO = {"dedup": "capture>dedup", "analysis": "dedup>analysis", "forward": "analysis>forward"}
PRESSURE_LEVELS = ("low", "medium", "high", "critical")
PRESSURE_ACTIONS = {
    "low": [],
    "medium": [],
    "high": ["capture at half rate", "dedup keeps fewer hashes"],
    "critical": ["capture at a quarter rate", "dedup keeps fewer hashes", "forwarding paused"],
}


class AlreadyRunning(RuntimeError):
    pass


class StartError(RuntimeError):
    """The pipeline cannot start as configured; the message says why."""


@dataclass
class StageProc:
    name: str
    state: str = "stopped"  # starting, running, stopping, backoff, failed, stopped
    popen: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    restarts: int = 0
    started_at: float = 0.0
    down_since: float = 0.0
    next_start: float = 0.0
    commanded: bool = False
    restart_after_stop: bool = False
    crash_times: collections.deque[float] = field(default_factory=collections.deque)
    stats: dict[str, Any] = field(default_factory=dict)
    fps: float = 0.0
    fps_mark: tuple[float, int] = (0.0, 0)
    cpu_percent: float = 0.0
    pss_mb: float = 0.0
    uss_mb: float = 0.0
    psproc: psutil.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None


def resolve_source(cfg: config_mod.Config) -> tuple[config_mod.Config, list[Any]]:
    """Picks the concrete capture source ("auto": the screen when a display is
    usable, else the synthetic desktop) and enumerates its monitors, so the ring
    can be sized before any stage starts."""
    from procs.sources import base as sources

    c = cfg.capture
    kind = c.source
    if kind == "auto":
        usable, why = sources.display_usable()
        kind = "screen" if usable else "synthetic"
        if not usable:
            log.info("no usable display (%s): capturing the synthetic desktop", why)
    src = sources.open_source(
        kind,
        fps=c.fps,
        monitor=c.monitor,
        region=c.region,
        synthetic=vars(c.synthetic),
        replay=vars(c.replay),
    )
    try:
        monitors = src.monitors()
    finally:
        src.close()
    return replace(cfg, capture=replace(c, source=kind)), monitors


class Supervisor:
    def __init__(self, cfg: config_mod.Config, rt: Runtime, *, live: bool = False) -> None:
        self.cfg, self.rt = cfg, rt
        if live:
            self.cfg = replace(cfg, forward=replace(cfg.forward, mode="live"))
        self.stages = {name: StageProc(name) for name in STAGES}
        self.lock = InstanceLock(rt)
        self.stop_requested = False
        self.paused = False
        self.pressure = "low"
        self.memory_mb = 0.0
        self.started_at = time.monotonic()
        self.ring: jrc.SharedVisionMemory | None = None
        self.ctx = zmq.Context()
        self.proxy_thread: threading.Thread | None = None
        self.on_tick: Callable[[Supervisor], None] | None = None
        self.next_sample = 0.0
        self.monitors: list[Any] = []
        self._parent_r = self._parent_w = -1
        self._wake_r = self._wake_w = -1

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        if not self.lock.acquire():
            raise AlreadyRunning(
                f"jarvis-pipeline instance {self.rt.instance!r} is already running (pid {self.rt.owner_pid()}); "
                "see `jarvis-pipeline status`"
            )
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise

    def _start(self) -> None:
        self._stop_leftovers()
        for sock in self.rt.dir.glob("*.sock"):
            sock.unlink()
        self.cfg, self.monitors = resolve_source(self.cfg)
        self._create_ring()
        fd = os.open(self.rt.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config_mod.to_json(self.cfg))
        self._start_proxy()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.connect(self.rt.endpoint("events-in"))
        self.stats_sub = self.ctx.socket(zmq.SUB)
        self.stats_sub.setsockopt(zmq.SUBSCRIBE, b"stats.")
        self.stats_sub.connect(self.rt.endpoint("events"))
        self.control = self.ctx.socket(zmq.REP)
        self.control.bind(self.rt.endpoint("control"))
        # Stages poll the read end; it reports EOF when this process is gone.
        self._parent_r, self._parent_w = os.pipe()
        os.set_inheritable(self._parent_r, True)
        # SIGCHLD wakes the loop through this pipe: reaping is event driven.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for name in START_ORDER:
            self._spawn(self.stages[name])
        # The first sample after an interval: CPU % needs one, and taps that
        # connected while `up` was starting are subscribed by then.
        self.next_sample = time.monotonic() + self.cfg.supervisor.sample_interval_s

    def _stop_leftovers(self) -> None:
        """Stages of a supervisor that was killed (kill -9) may still be
        finishing; they hold the old ring. Stop them (checked by their process
        title, so a reused pid is never hit) before the ring is replaced."""
        try:
            old = jrc.SharedVisionMemory.attach(self.rt.ring_name, dir=self.rt.shm_base)
        except jrc.RingError:
            return
        try:
            pids = [h["pid"] for h in old.holders() if h["alive"]]
        finally:
            old.close()
        procs = []
        for pid in pids:
            try:
                p = psutil.Process(pid)
                if p.name().startswith("jarvis-pipeline") or "jarvis-pipeline:" in " ".join(p.cmdline()):
                    p.terminate()
                    procs.append(p)
            except psutil.Error:
                continue
        _, alive = psutil.wait_procs(procs, timeout=self.cfg.supervisor.stop_grace_s)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        if procs:
            log.warning("stopped %d stage process(es) left by a previous run", len(procs))

    def _create_ring(self) -> None:
        cfg = self.cfg
        need = config_mod.min_ring_slots(cfg, len(self.monitors))
        if cfg.ring.slots and cfg.ring.slots < need:
            raise StartError(
                f"ring.slots = {cfg.ring.slots} is below the minimum {need} for {len(self.monitors)} monitor(s): "
                f"{config_mod.SIZING_FORMULA}"
            )
        width = max(m.width for m in self.monitors)
        height = max(m.height for m in self.monitors)
        if cfg.ring.max_width:
            if cfg.ring.max_width < width or cfg.ring.max_height < height:
                raise StartError(
                    f"ring.max_width x ring.max_height = {cfg.ring.max_width}x{cfg.ring.max_height} is smaller than "
                    f"the largest monitor ({width}x{height}); raise them or set both to 0"
                )
            width, height = cfg.ring.max_width, cfg.ring.max_height
        try:
            self.ring = jrc.SharedVisionMemory(
                name=self.rt.ring_name,
                slots=cfg.ring.slots or need,
                max_width=width,
                max_height=height,
                writer=False,
                holder="supervisor",
                dir=self.rt.shm_base,
            )
        except jrc.InsufficientSharedMemory as exc:
            raise StartError(str(exc)) from None
        if self.ring.replaced_stale:
            log.warning("removed a ring left by a previous run")

    def _start_proxy(self) -> None:
        xsub = self.ctx.socket(zmq.XSUB)
        xsub.bind(self.rt.endpoint("events-in"))
        xpub = self.ctx.socket(zmq.XPUB)
        xpub.bind(self.rt.endpoint("events"))
        if self.cfg.events.tcp:
            raise StartError("events.tcp: publishing on TCP needs CURVE keys, which this release does not manage yet")
        ctl = self.ctx.socket(zmq.PAIR)
        ctl.bind("inproc://proxy-control")
        self._proxy_ctl = self.ctx.socket(zmq.PAIR)
        self._proxy_ctl.connect("inproc://proxy-control")

        def run() -> None:
            try:
                zmq.proxy_steerable(xsub, xpub, None, ctl)
            finally:
                for s in (xsub, xpub, ctl):
                    s.close(linger=0)

        self.proxy_thread = threading.Thread(target=run, name="event-proxy", daemon=True)
        self.proxy_thread.start()

    # ------------------------------------------------------------------ stages

    def _spawn(self, st: StageProc) -> None:
        st.incarnation += 1
        env = dict(os.environ)
        env[stage_mod.ENV_RUNTIME] = runtime.to_env(self.rt)
        env[stage_mod.ENV_VERSIONS] = json.dumps(stage_mod.versions())
        env[stage_mod.ENV_PARENT_FD] = str(self._parent_r)
        env[stage_mod.ENV_INCARNATION] = str(st.incarnation)
        out = open(self.rt.log_dir / f"{st.name}.out", "ab")
        try:
            st.popen = subprocess.Popen(
                [sys.executable, "-m", f"procs.{st.name}"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(self._parent_r,),
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
        finally:
            out.close()
        st.state = "starting"
        st.started_at = time.monotonic()
        st.commanded = False
        st.psproc = None
        st.stats = {}
        st.fps, st.fps_mark = 0.0, (0.0, 0)

    def _check_started(self) -> None:
        """A stage counts as started once it registered with the ring."""
        starting = [s for s in self.stages.values() if s.state == "starting"]
        if not starting or self.ring is None:
            return
        attached = {h["name"]: h["pid"] for h in self.ring.holders() if h["alive"]}
        for st in starting:
            if attached.get(st.name) == st.pid:
                st.state = "running"
                with contextlib.suppress(psutil.Error):
                    st.psproc = psutil.Process(st.pid)
                    st.psproc.cpu_percent()
                body = {"stage": st.name, "pid": st.pid, "incarnation": st.incarnation}
                if st.incarnation > 1 and not st.restart_after_stop:
                    down_ms = round((time.monotonic() - st.down_since) * 1000, 1)
                    self.publish("stage.restarted", body | {"restarts": st.restarts, "down_ms": down_ms})
                self.publish("stage.started", body)
                st.restart_after_stop = False
                log.info("%s running (pid %s)", st.name, st.pid)

    def _reap(self) -> None:
        for st in self.stages.values():
            if st.popen is None or st.popen.poll() is None:
                continue
            code = st.popen.returncode
            pid = st.popen.pid
            st.popen = None
            st.psproc = None
            st.down_since = time.monotonic()
            undecided_key = "dropped.shutdown" if st.commanded else "dropped.stage_crashed"
            released = undecided = 0
            if self.ring is not None:
                with contextlib.suppress(jrc.HoldError):  # it never registered
                    released, undecided = self.ring.reclaim(st.name, count=protocol.COUNTER_INDEX[undecided_key])
                if st.name in HOP_INTO:
                    self.ring.credit_reset(protocol.HOP_INDEX[HOP_INTO[st.name]])
            if st.name == "forward" and self.ring is not None:
                # Frames forward had copied out but not yet sent died with it.
                pending = protocol.COUNTER_INDEX["pending.forward"]
                self.ring.counter_move(pending, protocol.COUNTER_INDEX[undecided_key], self.ring.counters()[pending])
            if st.commanded:
                st.state = "stopped"
                self.publish("stage.stopped", {"stage": st.name, "pid": pid, "exit": code})
                if st.restart_after_stop and not self.stop_requested:
                    self._spawn(st)
                continue
            self.publish("stage.crashed", {"stage": st.name, "pid": pid, "exit": code, "reclaimed": undecided})
            log.warning("%s (pid %d) exited with %s; %d holds reclaimed, %d frames undecided", st.name, pid, code, released, undecided)
            if self.stop_requested:
                st.state = "stopped"
                continue
            now = time.monotonic()
            r = self.cfg.supervisor.restart
            st.crash_times.append(now)
            while st.crash_times and now - st.crash_times[0] > r.period_s:
                st.crash_times.popleft()
            if len(st.crash_times) > r.intensity:
                st.state = "failed"
                self.publish("stage.failed", {"stage": st.name, "restarts": len(st.crash_times) - 1, "period_s": r.period_s})
                log.error("%s crashed %d times within %g s: marked failed", st.name, len(st.crash_times), r.period_s)
                continue
            st.restarts += 1
            delay = min(r.backoff_s * 2 ** (len(st.crash_times) - 1), r.backoff_max_s)
            st.state = "backoff"
            st.next_start = now + delay

    def _restart_due(self, now: float) -> None:
        for st in self.stages.values():
            if st.state == "backoff" and now >= st.next_start and not self.stop_requested:
                self._spawn(st)

    def stop_stage(self, st: StageProc, deadline: float) -> None:
        """SIGTERM to the stage's process group, SIGKILL at `deadline`; waits."""
        if st.popen is None or st.popen.poll() is not None:
            return
        st.commanded = True
        st.state = "stopping"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(st.popen.pid, signal.SIGTERM)
        try:
            st.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time: SIGKILL", st.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(st.popen.pid, signal.SIGKILL)
            st.popen.wait()
        self._reap()

    # ------------------------------------------------------------------ events

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart(protocol.encode_event(topic, body), zmq.NOBLOCK)

    def _drain_stats(self) -> None:
        while True:
            try:
                frames = self.stats_sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            with contextlib.suppress(protocol.ProtocolError):
                topic, body = protocol.decode_event(frames)
                st = self.stages.get(topic.removeprefix("stats."))
                if st is not None and body.get("pid") == st.pid:
                    st.stats = body
                    now, frames = time.monotonic(), int(body.get("frames_in", 0))
                    mark_t, mark_n = st.fps_mark
                    if now - mark_t >= 1.0 or frames < mark_n:
                        if frames >= mark_n and mark_t:
                            st.fps = (frames - mark_n) / (now - mark_t)
                        st.fps_mark = (now, frames)

    def _sample(self, now: float) -> None:
        """CPU and memory of every process, and the memory governor."""
        total_uss = 0.0
        for st in self.stages.values():
            if st.psproc is None:
                continue
            try:
                st.cpu_percent = st.psproc.cpu_percent()
                info = st.psproc.memory_full_info()
                st.pss_mb = getattr(info, "pss", info.uss) / 2**20
                st.uss_mb = info.uss / 2**20
                total_uss += st.uss_mb
            except psutil.Error:
                continue
        me = psutil.Process()
        total_uss += me.memory_full_info().uss / 2**20
        ring_mb = self.ring.total_bytes / 2**20 if self.ring is not None else 0.0
        self.memory_mb = total_uss + ring_mb
        share = 100 * self.memory_mb / self.cfg.memory.budget_mb
        levels = self.cfg.memory.levels
        target = PRESSURE_LEVELS[sum(share >= x for x in levels)]
        # Hysteresis: go down a level only 5 points under its threshold.
        current = PRESSURE_LEVELS.index(self.pressure)
        if PRESSURE_LEVELS.index(target) < current and share >= levels[current - 1] - 5:
            target = self.pressure
        if target != self.pressure:
            self.pressure = target
            self.publish(
                "memory.pressure",
                {
                    "level": target,
                    "used_mb": round(self.memory_mb, 1),
                    "budget_mb": self.cfg.memory.budget_mb,
                    "actions": PRESSURE_ACTIONS[target],
                },
            )
            log.warning("memory pressure %s: %.0f MB of %.0f MB", target, self.memory_mb, self.cfg.memory.budget_mb)
        self.next_sample = now + self.cfg.supervisor.sample_interval_s

    # ------------------------------------------------------------------ control

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        stages = []
        for name in STAGES:
            st = self.stages[name]
            s = st.stats
            stages.append(
                {
                    "name": name,
                    "state": st.state,
                    "pid": st.pid,
                    "uptime_s": round(now - st.started_at, 1) if st.pid else 0.0,
                    "restarts": st.restarts,
                    "incarnation": st.incarnation,
                    "cpu_percent": round(st.cpu_percent, 1),
                    "pss_mb": round(st.pss_mb, 1),
                    "frames_in": s.get("frames_in", 0),
                    "frames_out": s.get("frames_out", 0),
                    "drops": s.get("drops", {}),
                    "terminal": s.get("terminal", {}),
                    "p95_ms": s.get("proc_ms", {}).get("p95"),
                    "fps": round(st.fps, 2),
                    "latency_p95_ms": s.get("since_capture_ms", {}).get("p95"),
                }
            )
        counters = protocol.counter_snapshot(self.ring.counters()) if self.ring is not None else {}
        return {
            "instance": self.rt.instance,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 1),
            "paused": self.paused,
            "source": self.cfg.capture.source,
            "forward_mode": self.cfg.forward.mode,
            "forward_state": self.stages["forward"].stats.get("forward_state"),
            "memory": {"level": self.pressure, "used_mb": round(self.memory_mb, 1), "budget_mb": self.cfg.memory.budget_mb},
            "counters": counters,
            "stages": stages,
        }

    def _handle_control(self) -> None:
        try:
            req = msgpack.unpackb(self.control.recv(), raw=False)
            cmd = req.get("cmd") if isinstance(req, dict) else None
            if cmd == "ping":
                result: Any = {"pid": os.getpid(), "instance": self.rt.instance, "versions": stage_mod.versions()}
            elif cmd == "status":
                result = self.status()
            elif cmd in ("pause", "resume"):
                self.paused = cmd == "pause"
                self.publish("control.paused" if self.paused else "control.resumed", {})
                result = {"paused": self.paused}
            elif cmd == "restart":
                st = self.stages.get(str(req.get("stage")))
                if st is None:
                    raise ValueError(f"no stage {req.get('stage')!r}; stages: {', '.join(STAGES)}")
                if st.pid is None:
                    st.crash_times.clear()
                    self._spawn(st)
                else:
                    st.restart_after_stop = True
                    self.stop_stage(st, time.monotonic() + self.cfg.supervisor.stop_grace_s + self.cfg.supervisor.drain_s)
                result = {"stage": st.name}
            elif cmd == "down":
                self.stop_requested = True
                result = {"stopping": True}
            else:
                raise ValueError(f"unknown command {cmd!r}; commands: {', '.join(protocol.CONTROL_COMMANDS)}")
            reply = {"ok": True, "result": result}
        except Exception as exc:  # a bad request must never take the supervisor down
            reply = {"ok": False, "error": str(exc)}
        self.control.send(msgpack.packb(reply))

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.stats_sub, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_tick = time.monotonic()
        while not self.stop_requested:
            now = time.monotonic()
            starting = any(s.state == "starting" for s in self.stages.values())
            deadlines = [next_tick, self.next_sample] + [s.next_start for s in self.stages.values() if s.state == "backoff"]
            timeout = 0.02 if starting else max(0.0, min(deadlines) - now)
            try:
                ready = dict(poller.poll(int(timeout * 1000) + 1))
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            self._reap()
            if self.control in ready:
                self._handle_control()
            if self.stats_sub in ready:
                self._drain_stats()
            now = time.monotonic()
            self._restart_due(now)
            self._check_started()
            if now >= self.next_sample:
                self._sample(now)
            if now >= next_tick:
                next_tick = now + 1.0
                if self.on_tick is not None:
                    self.on_tick(self)
        self.shutdown()

    def request_stop(self, *_: object) -> None:
        self.stop_requested = True

    def shutdown(self) -> None:
        """The design's shutdown order: stop capture, let each later stage drain
        what it was sent within the deadline, then reclaim whatever is left
        (dropped(shutdown)), publish the final counts and remove every file."""
        self.stop_requested = True
        deadline = time.monotonic() + self.cfg.supervisor.drain_s
        for name in STOP_ORDER:
            st = self.stages[name]
            self.stop_stage(st, max(deadline, time.monotonic() + self.cfg.supervisor.stop_grace_s))
        if self.ring is not None:
            self.ring.reclaim_dead(count=protocol.COUNTER_INDEX["dropped.shutdown"])
            final = protocol.counter_snapshot(self.ring.counters())
            self.publish("stats.supervisor", {"stage": "supervisor", "counters": final})
            log.info("final counters %s", json.dumps(final))
        self._cleanup()

    def _cleanup(self) -> None:
        if self.proxy_thread is not None:
            self._proxy_ctl.send(b"TERMINATE")
            self.proxy_thread.join(timeout=5)
            self._proxy_ctl.close(linger=0)
        self.ctx.destroy(linger=0)
        if self.ring is not None:
            self.ring.close()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for fd in (self._parent_r, self._parent_w, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        for path in [*self.rt.dir.glob("*.sock"), self.rt.config_path]:
            path.unlink(missing_ok=True)
        # Unlinked while still held: a new `up` creates a fresh lock file.
        self.rt.lock_path.unlink(missing_ok=True)
        self.lock.release()
