"""The supervisor: creates the ring, runs the event proxy, the control
endpoint (its commands: pipeline.commands, one handler method each) and the
optional metrics endpoint, starts the stage processes of the stage table,
reclaims what a dead stage held, and stops everything in order. Each stage's
life is a pipeline.watcher.StageWatcher: its states, their transitions and
the stage.* events they publish, restarts with back-off, failure after too
many crashes; nothing here blocks the loop but the final shutdown.

Crash and commanded stop are different events (stage.crashed / stage.stopped).
Every stage runs in its own process group and session; stop is SIGTERM to
the group, SIGKILL after a grace period. A stage's stdout and stderr come
back through a pipe into <stage>.out.

Each stage has a private channel to the supervisor (pipeline.channel): its
start handshake carries the resolved configuration and the control state
(pause, memory pressure), later changes follow over it, and the stage answers
with what it applies, heartbeats and stats. A stage silent for
`supervisor.hang_after_s` is killed and restarted like a crash (stage.hung).
The pause is also kept in the data directory, so it holds across a restart of
the supervisor itself.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import psutil
import setproctitle
import zmq

import jarvis_rust_core as jrc
from pipeline import commands, events, handoff, protocol, runtime, schemas, stages, usage
from pipeline import config as config_mod
from pipeline.channel import Channel, ChannelClosed
from pipeline.metrics import MetricsServer
from pipeline.runtime import InstanceLock, Runtime
from pipeline.schemas import PRESSURE_LEVELS, ControlState, StageState
from pipeline.watcher import StageWatcher

log = logging.getLogger("jarvis.supervisor")
ROOT = Path(__file__).resolve().parents[1]

#: How long a stage may take to acknowledge a control state before status calls it a mismatch.
STATE_ACK_GRACE_S = 2.0
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


#: The probe of the capture source (procs.sources.probe) must answer within this.
PROBE_TIMEOUT_S = 60.0


def probe_source(cfg: config_mod.Config, env: dict[str, str]) -> schemas.SourceProbe:
    """The concrete capture source ("auto": the screen when a display is
    usable, else the synthetic desktop) and its monitors, so the ring can be
    sized before any stage starts; asked of a short-lived process
    (`python -m procs.sources.probe`): the control plane never imports a
    stage or a display library. Its answer is checked like any message."""
    try:
        out = subprocess.run([sys.executable, "-m", "procs.sources.probe"], input=config_mod.to_json(cfg).encode(),
                             capture_output=True, env=env, timeout=PROBE_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise StartError(f"the capture source did not answer within {PROBE_TIMEOUT_S:g} s") from None
    if out.returncode != 0:
        why = out.stderr.decode(errors="replace").strip().splitlines()
        raise StartError(f"capture.source = {cfg.capture.source!r}: "
                         f"{why[-1] if why else f'the probe exited with {out.returncode}'}")
    try:
        return schemas.decode_json(out.stdout, schemas.SourceProbe)
    except schemas.SchemaError as exc:
        raise StartError(f"the capture source's probe answered something else: {exc}") from None


def probe_backend(choice: str, env: dict[str, str]) -> schemas.GpuProbe:
    """Where analysis.backend = `choice` would run analysis, asked of a
    short-lived process (`python -m procs.backend`): a driver that misbehaves
    takes that down, not the supervisor. StartError when `choice` cannot run
    (\"gpu\" without an adapter)."""
    try:
        out = subprocess.run([sys.executable, "-m", "procs.backend", choice], capture_output=True, env=env,
                             timeout=PROBE_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise StartError(f"the GPU probe did not answer within {PROBE_TIMEOUT_S:g} s") from None
    if out.returncode != 0:
        why = out.stderr.decode(errors="replace").strip().splitlines()
        raise StartError(f"analysis.backend = {choice!r}: {why[-1] if why else f'the probe exited with {out.returncode}'}")
    try:
        return schemas.decode_json(out.stdout, schemas.GpuProbe)
    except schemas.SchemaError as exc:
        raise StartError(f"the GPU probe answered something else: {exc}") from None


def resolve_source(cfg: config_mod.Config, env: dict[str, str]) -> tuple[config_mod.Config, list[schemas.MonitorInfo]]:
    """The configuration with its source resolved, and its monitors."""
    found = probe_source(cfg, env)
    if cfg.capture.source == "auto" and found.kind != "screen":
        # (on a Mac the reason is one to act on: the Screen Recording permission)
        log.log(logging.WARNING if sys.platform == "darwin" else logging.INFO,
                "no usable display (%s): capturing the synthetic desktop", found.why)
    return replace(cfg, capture=replace(cfg.capture, source=found.kind)), found.monitors


def stop_leftover_stages(rt: Runtime, grace_s: float) -> int:
    """Stages of a supervisor that was killed (kill -9) may still be
    finishing; they hold the old ring. Stop them (checked by their process
    title, so a reused pid is never hit) before the ring is replaced."""
    try:
        old = jrc.SharedVisionMemory.attach(rt.ring_name, dir=rt.shm_base)
    except jrc.RingError:
        return 0
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
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    if procs:
        log.warning("stopped %d stage process(es) left by a previous run", len(procs))
    return len(procs)


def clean_leftovers(rt: Runtime, grace_s: float = 3.0) -> list[str]:
    """What a supervisor that died (kill -9, also in the middle of `down`)
    left behind: its stages, ring, sockets and lock file. Only under the
    instance lock (so nothing of this instance runs) and only what is provably
    this user's and this instance's: files in its checked runtime directory,
    the ring in the user's private ring directory. Returns what was removed."""
    lock = InstanceLock(rt)
    had_lock_file = os.path.lexists(rt.lock_path)
    if not lock.acquire():
        raise AlreadyRunning(f"jarvis-pipeline instance {rt.instance!r} is running (pid {rt.owner_pid()})")
    removed = []
    try:
        stopped = stop_leftover_stages(rt, grace_s)
        if stopped:
            removed.append(f"{stopped} stage process(es)")
        sockets = list(rt.dir.glob("*.sock"))
        for sock in sockets:
            sock.unlink(missing_ok=True)
        if sockets:
            removed.append(f"{len(sockets)} socket(s)")
        if jrc.SharedVisionMemory.remove_stale(rt.ring_name, dir=rt.shm_base):
            removed.append("the ring")
    finally:
        rt.lock_path.unlink(missing_ok=True)
        lock.release()
    if had_lock_file:
        removed.append("the lock file")
    return removed


def load_paused(rt: Runtime) -> bool:
    """The pause kept in the data directory. A file that cannot be read or
    understood counts as paused: when in doubt, nothing leaves the machine."""
    try:
        fd = os.open(rt.pause_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.error("cannot read %s (%s): starting paused", rt.pause_path, exc.strerror)
        return True
    with os.fdopen(fd, "rb") as f:
        data = f.read(4096)
    try:
        return bool(schemas.decode_json(data, schemas.PauseFile).paused)
    except schemas.SchemaError as exc:
        log.error("%s is not a pause file of ours (%s): starting paused", rt.pause_path, exc)
        return True


def save_paused(rt: Runtime, paused: bool) -> None:
    rt.prepare_data()
    runtime.write_replacing(rt.pause_path, msgspec.json.encode(schemas.PauseFile(paused)))


class Supervisor:
    def __init__(self, cfg: config_mod.Config, rt: Runtime, *, live: bool = False, paused: bool = False,
                 topology: stages.Topology = stages.PIPELINE) -> None:
        self.cfg, self.rt, self.topology = cfg, rt, topology
        if live:
            self.cfg = replace(cfg, forward=replace(cfg.forward, mode="live"))
        self.stages = {name: StageWatcher(name, self) for name in topology.names}
        self.lock = InstanceLock(rt)
        self.stop_requested = False
        self.start_paused = paused
        self.state = ControlState()
        self.state_changed_at = 0.0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.memory_mb = 0.0
        self.started_at = time.monotonic()
        self.ring: jrc.SharedVisionMemory | None = None
        self.ctx = zmq.Context()
        self.proxy_thread: threading.Thread | None = None
        self.on_tick: Callable[[Supervisor], None] | None = None
        self.metrics: MetricsServer | None = None
        #: Each stage's <stage>.out, kept across its incarnations.
        self.outputs: dict[str, runtime.OutputLog] = {}
        self.next_sample = 0.0
        self.monitors: list[schemas.MonitorInfo] = []
        self._wake_r = self._wake_w = -1
        #: Per hop, the wake-up object of its hand-off queue; kept for the whole
        #: run, so that restarted stages find the same one (pipeline.handoff).
        self.hop_wakes: dict[str, handoff.Wake] = {}

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
        setproctitle.setproctitle(f"jarvis-pipeline: {self.rt.instance}: supervisor")
        # The pause is in force before any stage exists: kept from the last run, or asked for.
        self.rt.prepare_data()
        if self.start_paused:
            save_paused(self.rt, True)
        self.state = ControlState(paused=self.start_paused or load_paused(self.rt))
        if self.state.paused:
            log.warning("starting paused: nothing leaves the machine until `jarvis-pipeline resume`")
        stop_leftover_stages(self.rt, self.cfg.supervisor.stop_grace_s)
        logs = self.cfg.logs
        for name in self.topology.names:  # a log that cannot be used is refused now, not found out by a crashing stage
            try:
                os.close(runtime.open_private_log(self.rt.log_path(name)))
                self.outputs[name] = runtime.OutputLog(self.rt.log_dir / f"{name}.out", logs.max_mb, logs.backups)
            except runtime.RuntimeDirError as exc:
                raise StartError(str(exc)) from None
        for sock in self.rt.dir.glob("*.sock"):
            sock.unlink()
        env = {k: v for k, v in os.environ.items() if k not in self.topology.private_env}
        self.cfg, self.monitors = resolve_source(self.cfg, env)
        if self.cfg.analysis.backend != "cpu" and "analysis" in self.topology.names:
            self.cfg = self._check_backend(env)
        self._create_ring()
        self._config_json = config_mod.to_json(self.cfg)
        self._start_proxy()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.connect(self.rt.endpoint("events-in"))
        self.control = self.ctx.socket(zmq.REP)
        self.control.setsockopt(zmq.MAXMSGSIZE, schemas.MAX_REQUEST_BYTES)
        self.control.bind(self.rt.endpoint("control"))
        if self.cfg.metrics.enabled:
            try:
                self.metrics = MetricsServer(self.rt, self.cfg.metrics.listen)
            except OSError as exc:
                raise StartError(f"metrics: cannot listen on {self.cfg.metrics.listen or 'metrics.sock'}: "
                                 f"{exc.strerror or exc}") from None
        # SIGCHLD wakes the loop through this pipe: reaping is event driven.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for hop in self.topology.hops:
            self.hop_wakes[hop] = handoff.Wake.create()
        for name in self.topology.start_order:  # each stage's next one listens before it sends
            self.stages[name].start(time.monotonic())
        # The first sample after an interval: CPU % needs one, and taps that
        # connected while `up` was starting are subscribed by then.
        self.next_sample = time.monotonic() + self.cfg.supervisor.sample_interval_s

    def _create_ring(self) -> None:
        cfg = self.cfg
        need = self.topology.min_ring_slots(cfg.hops.credit, len(self.monitors), cfg.supervisor.tap_holds)
        if cfg.ring.slots and cfg.ring.slots < need:
            raise StartError(
                f"ring.slots = {cfg.ring.slots} is below the minimum {need} for {len(self.monitors)} monitor(s): "
                f"{self.topology.sizing_formula}"
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
        # A larger message is no event of ours: dropped before it is buffered.
        xsub.setsockopt(zmq.MAXMSGSIZE, events.MAX_EVENT_BYTES + 256)
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

    def launch(self, w: StageWatcher) -> tuple[subprocess.Popen[bytes], Channel, int]:
        """Starts incarnation w.incarnation of a stage: its process, in its own
        session, with its channel and wake-up descriptors, and the handshake
        queued before it reads: it has its configuration and control state
        before it handles any frame."""
        env = self.topology.env_for(w.name, dict(os.environ))
        env[stages.ENV_RUNTIME] = runtime.to_env(self.rt)
        env[stages.ENV_VERSIONS] = json.dumps(stages.versions())
        channel, theirs = Channel.pair()
        env[stages.ENV_CHANNEL_FD] = str(theirs.fileno())
        fds = [theirs.fileno()]
        place = self.topology.place(w.name)
        if place.hop_in is not None:
            fds.append(self.hop_wakes[self.topology.hops[place.hop_in]].read_fd)
            env[stages.ENV_WAKE_IN_FD] = str(fds[-1])
        if place.hop_out is not None:
            fds.append(self.hop_wakes[self.topology.hops[place.hop_out]].write_fd)
            env[stages.ENV_WAKE_OUT_FD] = str(fds[-1])
        # Its stdout and stderr: a pipe this process reads into <stage>.out
        # (rotated; what it wrote before dying is read after its death too).
        output, out = os.pipe()
        os.set_blocking(output, False)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", self.topology.spec(w.name).module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,
                cwd=str(ROOT),
            )
        except BaseException:
            channel.close()
            os.close(output)
            raise
        finally:
            os.close(out)
            theirs.close()
        self._send_on(channel, w.name, schemas.Hello(self._config_json, self.state, w.incarnation, w.name, place))
        return popen, channel, output

    def drain_output(self, w: StageWatcher) -> None:
        """What the stage wrote to stdout and stderr, into <stage>.out; at its
        end (EOF, or the process gone), the pipe is closed."""
        if w.output is None:
            return
        while True:
            try:
                data = os.read(w.output, 1 << 16)
            except BlockingIOError:
                if w.popen is not None:
                    return  # all there is for now
                data = b""  # it is gone: what is left was read
            if data:
                try:
                    self.outputs[w.name].write(data)
                except OSError as exc:  # a full disk: the stage goes on, its output is lost
                    self.reject("output_write", f"{w.name}.out: {exc.strerror or exc}")
                continue
            os.close(w.output)
            w.output = None
            return

    def reclaim(self, w: StageWatcher) -> int:
        """What a stage that exited held: its holds on frames (each undecided
        frame dropped: shutdown after a commanded stop, stage_crashed after a
        crash), its inbound hop's credit, and forward's pending frames. Returns
        the undecided frames."""
        if self.ring is None:
            return 0
        undecided_key = "dropped.shutdown" if w.commanded else "dropped.stage_crashed"
        frames = list[jrc.FrameRef]()
        with contextlib.suppress(jrc.HoldError):  # it never registered
            _, frames = self.ring.reclaim_frames(w.name, count=protocol.COUNTER_INDEX[undecided_key])
        hop_in = self.topology.place(w.name).hop_in
        if hop_in is not None:
            self.ring.credit_reset(hop_in)
        for ref in frames:
            self.publish("frame.dropped", {"ref": ref.to_dict(), "stage": "supervisor",
                                           "reason": undecided_key.removeprefix("dropped.")})
        if w.name == "forward":
            # Frames forward had copied out but not yet sent died with it.
            pending = protocol.COUNTER_INDEX["pending.forward"]
            self.ring.counter_move(pending, protocol.COUNTER_INDEX[undecided_key], self.ring.counters()[pending])
        return len(frames)

    def attached_pid(self, name: str) -> int | None:
        if self.ring is None:
            return None
        return next((h["pid"] for h in self.ring.holders() if h["alive"] and h["name"] == name), None)

    def _send_on(self, channel: Channel | None, name: str, msg: msgspec.Struct) -> None:
        if channel is None:
            return
        try:
            channel.send(msgspec.to_builtins(msg))
        except ChannelClosed as exc:
            # Dying (its exit is reaped) or stopped (SIGSTOP: the heartbeat check replaces it).
            log.warning("%s: %s", name, exc)

    def set_state(self, **changes: Any) -> None:
        """Changes the control state and sends it to every stage; each
        acknowledges what it applies (status shows any that does not)."""
        new = msgspec.structs.replace(self.state, **changes)
        if new.same_as(self.state):
            return
        if new.paused != self.state.paused:
            save_paused(self.rt, new.paused)
        self.state = msgspec.structs.replace(new, version=self.state.version + 1)
        self.state_changed_at = time.monotonic()
        for w in self.stages.values():
            self._send_on(w.channel, w.name, schemas.SetState(self.state))

    def reject(self, kind: str, message: str) -> None:
        self.rejected[kind] += 1
        if self.rejected[kind] <= 10 or self.rejected[kind] % 1000 == 0:
            log.warning("%s (%d so far)", message, self.rejected[kind])

    def _reap(self, now: float) -> None:
        for w in self.stages.values():
            if w.popen is not None and w.popen.poll() is not None:
                w.exited(now)

    # ------------------------------------------------------------------ events

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart(events.encode_event(topic, body), zmq.NOBLOCK)

    def _sample(self, now: float) -> None:
        """CPU of every process, and the memory governor: what each stage last
        reported it holds (pipeline.usage), the supervisor's own, the ring."""
        total = 0.0
        for st in self.stages.values():
            if st.psproc is None:
                continue
            with contextlib.suppress(psutil.Error):
                st.cpu_percent = st.psproc.cpu_percent()
                times = st.psproc.cpu_times()
                st.cpu_seconds = times.user + times.system
            if st.stats is not None and st.stats.private_mb is not None:
                total += st.stats.private_mb
        total += usage.private_mb(psutil.Process())
        ring_mb = self.ring.total_bytes / 2**20 if self.ring is not None else 0.0
        self.memory_mb = total + ring_mb
        share = 100 * self.memory_mb / self.cfg.memory.budget_mb
        levels = self.cfg.memory.levels
        target = PRESSURE_LEVELS[sum(share >= x for x in levels)]
        # Hysteresis: go down a level only 5 points under its threshold.
        current = PRESSURE_LEVELS.index(self.state.pressure)
        if PRESSURE_LEVELS.index(target) < current and share >= levels[current - 1] - 5:
            target = self.state.pressure
        if target != self.state.pressure:
            self.set_state(pressure=target)
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

    def _mismatch(self, st: StageWatcher, now: float) -> str | None:
        """Why a running stage does not apply the supervisor's control state, if it does not."""
        if st.state is not StageState.RUNNING or now - max(self.state_changed_at, st.started_at) < STATE_ACK_GRACE_S:
            return None
        if st.applied is None:
            return f"{st.name} has not said which control state it applies"
        if not st.applied.same_as(self.state):
            return (f"{st.name} applies paused={st.applied.paused}, pressure={st.applied.pressure}; "
                    f"the supervisor's is paused={self.state.paused}, pressure={self.state.pressure}")
        return None

    def _pss(self, st: StageWatcher, now: float) -> float:
        """The stage's PSS, read again when older than a sample interval (it
        walks the stage's page tables: see pipeline.usage)."""
        if st.psproc is None:
            return 0.0
        if now - st.pss[0] >= self.cfg.supervisor.sample_interval_s:
            with contextlib.suppress(psutil.Error):
                st.pss = (now, usage.pss_mb(st.psproc))
        return st.pss[1]

    def cmd_status(self, req: schemas.Request | None) -> commands.StatusResult:
        now = time.monotonic()
        # Stats older than this are not current: their rate is not shown.
        stale_after = 3 * self.cfg.supervisor.stats_interval_s + 1.0
        rows, errors = [], []
        for name in self.topology.names:
            st = self.stages[name]
            s = st.stats or schemas.StageStats(stage=name, pid=0)
            mismatch = self._mismatch(st, now)
            if mismatch:
                errors.append(mismatch)
            current = st.stats is not None and now - st.stats_at <= stale_after
            rows.append(commands.StageStatus(
                name=name,
                state=st.state,
                pid=st.pid,
                uptime_s=round(now - st.started_at, 1) if st.pid else 0.0,
                restarts=st.restarts,
                incarnation=st.incarnation,
                cpu_percent=round(st.cpu_percent, 1),
                pss_mb=round(self._pss(st, now), 1),
                frames_in=s.frames_in,
                frames_out=s.frames_out,
                drops=s.drops,
                terminal=s.terminal,
                rejected=s.rejected,
                p95_ms=s.proc_ms.p95,
                fps=round(st.fps, 2) if current else None,
                latency_p95_ms=s.since_capture_ms.p95,
                heartbeat_age_s=round(now - st.last_heard, 2) if st.pid and st.heartbeating else None,
                # Silent past the limit: about to be killed and replaced.
                hung=bool(st.pid and st.heartbeating and now - st.last_heard > self.cfg.supervisor.hang_after_s),
                applied=st.applied,
                control_mismatch=mismatch,
                hangs=st.hangs,
                cpu_seconds=round(st.cpu_seconds, 3),
                private_mb=s.private_mb,
                proc_hist=s.proc_hist if st.stats is not None else None,
                since_capture_hist=s.since_capture_hist if st.stats is not None else None,
            ))
        counters = protocol.counter_snapshot(self.ring.counters()) if self.ring is not None else {}
        forward = self.stages["forward"].stats if "forward" in self.stages else None
        analysis = self.stages["analysis"].stats if "analysis" in self.stages else None
        return commands.StatusResult(
            instance=self.rt.instance,
            pid=os.getpid(),
            uptime_s=round(now - self.started_at, 1),
            paused=self.state.paused,
            control=self.state,
            errors=errors,
            rejected=dict(self.rejected),
            source=self.cfg.capture.source,
            forward_mode=self.cfg.forward.mode,
            forward_state=forward.forward_state if forward is not None else None,
            forward_cost_usd=forward.cost_usd if forward is not None else None,
            forward_requests=forward.requests if forward is not None else None,
            forward_tokens=forward.usage if forward is not None else None,
            analysis_backend=analysis.backend if analysis is not None else None,
            analysis_gpu_ms=analysis.gpu_ms if analysis is not None else None,
            ring=self._ring_status(),
            memory=commands.MemoryStatus(self.state.pressure, round(self.memory_mb, 1), self.cfg.memory.budget_mb),
            counters=counters,
            stages=rows,
        )

    def _check_backend(self, env: dict[str, str]) -> config_mod.Config:
        """analysis.backend tried where a driver that crashes takes down a
        probe, not analysis: "gpu" without an adapter stops `up`; "auto" whose
        probe fails goes to the CPU."""
        choice = self.cfg.analysis.backend
        try:
            log.info("analysis.backend = %r: analysis runs on %s", choice, probe_backend(choice, env).decided)
        except StartError as exc:
            if choice == "gpu":
                raise
            log.warning("%s; analysis runs on the CPU", exc)
            return replace(self.cfg, analysis=replace(self.cfg.analysis, backend="cpu"))
        return self.cfg

    def _ring_status(self) -> commands.RingStatus | None:
        if self.ring is None:
            return None
        in_use = sum(1 for s in self.ring.slots() if s["holders"] or s["writing"])
        return commands.RingStatus(self.ring.slot_count, in_use, self.ring.slot_bytes)

    def cmd_ping(self, req: schemas.Request) -> commands.PingResult:
        return commands.PingResult(os.getpid(), self.rt.instance, stages.versions())

    def cmd_pause(self, req: schemas.Request) -> commands.PauseResult:
        self.set_state(paused=True)
        self.publish("control.paused", {})
        return commands.PauseResult(self.state.paused)

    def cmd_resume(self, req: schemas.Request) -> commands.PauseResult:
        self.set_state(paused=False)
        self.publish("control.resumed", {})
        return commands.PauseResult(self.state.paused)

    def cmd_restart(self, req: schemas.Request) -> commands.RestartResult:
        w = self.stages.get(str(req.stage))
        if w is None:
            raise ValueError(f"no stage {req.stage!r}; stages: {', '.join(self.topology.names)}")
        incarnation = w.incarnation
        w.restart(time.monotonic())
        return commands.RestartResult(w.name, w.state, incarnation)

    def cmd_down(self, req: schemas.Request) -> commands.DownResult:
        self.stop_requested = True
        return commands.DownResult(stopping=True)

    def _handle_control(self) -> None:
        try:
            try:
                req = schemas.decode(self.control.recv(), schemas.Request)
            except schemas.SchemaError as exc:
                self.reject("control", f"a bad control request: {exc}")
                raise ValueError(f"not a control request: {exc}") from None
            result = getattr(self, commands.command(req.cmd).handler)(req)
            reply = schemas.Reply(ok=True, result=result)
        except Exception as exc:  # a bad request must never take the supervisor down
            reply = schemas.Reply(ok=False, error=str(exc))
        self.control.send(msgspec.msgpack.encode(reply))

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        """The loop; whatever ends it, the stages are stopped and the files removed."""
        try:
            self._loop()
        finally:
            self.shutdown()

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self.stop_requested:
            poller = zmq.Poller()
            poller.register(self.control, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            talking = {w.channel.fileno(): w for w in self.stages.values() if w.channel is not None}
            printing = {w.output: w for w in self.stages.values() if w.output is not None}
            for fd in (*talking, *printing):
                poller.register(fd, zmq.POLLIN)
            now = time.monotonic()
            starting = any(w.state is StageState.STARTING for w in self.stages.values())
            deadlines = [next_tick, self.next_sample] + [d for w in self.stages.values() if (d := w.deadline())]
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
            now = time.monotonic()
            for fd, w in talking.items():
                if fd in ready:
                    w.receive(now)
            for fd, w in printing.items():
                if fd in ready:
                    self.drain_output(w)
            self._reap(now)
            if self.control in ready:
                self._handle_control()
            now = time.monotonic()
            for w in self.stages.values():
                w.check(now)
                w.check_attached()
            if now >= self.next_sample:
                self._sample(now)
            if now >= next_tick:
                next_tick = now + 1.0
                if self.on_tick is not None:
                    self.on_tick(self)

    def request_stop(self, *_: object) -> None:
        self.stop_requested = True

    def shutdown(self) -> None:
        """The design's shutdown order: stop capture, let each later stage drain
        what it was sent within the deadline, then reclaim whatever is left
        (dropped(shutdown)), publish the final counts and remove every file."""
        if self.ring is None and self.lock.fd < 0:
            return  # already shut down
        self.stop_requested = True
        try:
            deadline = time.monotonic() + self.cfg.supervisor.drain_s
            for w in self.stages.values():
                w.halt()
            for name in self.topology.stop_order:
                self._stop_and_wait(self.stages[name], max(deadline, time.monotonic() + self.cfg.supervisor.stop_grace_s))
            if self.ring is not None:
                self.ring.reclaim_dead(count=protocol.COUNTER_INDEX["dropped.shutdown"])
                final = protocol.counter_snapshot(self.ring.counters())
                self.publish("stats.supervisor", {"stage": "supervisor", "counters": final})
                log.info("final counters %s", json.dumps(final))
                # Also kept: the event goes out just before the bus closes, so a late reader misses it.
                try:
                    runtime.write_replacing(self.rt.final_counters_path, json.dumps(final, indent=1).encode() + b"\n")
                except OSError as exc:
                    log.error("cannot write %s: %s", self.rt.final_counters_path, exc.strerror or exc)
        finally:
            self._cleanup()

    def _stop_and_wait(self, w: StageWatcher, deadline: float) -> None:
        """At shutdown, one stage after the other: its stop, then its exit (SIGKILL at `deadline`)."""
        w.stop(deadline)
        if w.popen is None:
            return
        try:
            w.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.check(time.monotonic())  # past the deadline: SIGKILL
            w.popen.wait()
        w.exited(time.monotonic())

    def _cleanup(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.proxy_thread is not None:
            self._proxy_ctl.send(b"TERMINATE")
            self.proxy_thread.join(timeout=5)
            self._proxy_ctl.close(linger=0)
        self.ctx.destroy(linger=0)
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        for wake in self.hop_wakes.values():
            wake.close()
        self.hop_wakes.clear()
        for w in self.stages.values():
            if w.channel is not None:
                w.channel.close()
                w.channel = None
            if w.output is not None:
                os.close(w.output)
                w.output = None
        for out in self.outputs.values():
            out.close()
        self.outputs.clear()
        for path in self.rt.dir.glob("*.sock"):
            path.unlink(missing_ok=True)
        # Unlinked while still held: a new `up` creates a fresh lock file.
        self.rt.lock_path.unlink(missing_ok=True)
        self.lock.release()
