"""One stage's process through its life, as the supervisor watches it.

The states (schemas.StageState) and the only ways between them; each
transition publishes its stage.* event here and nowhere else:

    stopped  --start-->              starting         (no process could be made: backoff)
    starting --attached to the ring--> running        stage.started (after a crash: stage.restarted first)
    starting, running --stop-->      stopping         (SIGTERM to its process group; SIGKILL at the deadline)
    stopping --exited-->             stopped          stage.stopped; started again if the stop was a restart
    starting, running --exited-->    backoff          stage.crashed; started again when the back-off ends
                                     failed           stage.crashed, stage.failed: too many crashes in the period
                                     stopped          stage.crashed, while the pipeline stops
    backoff, failed --start-->       starting         (failed: only by the restart command)
    backoff  --the pipeline stops--> stopped
    starting, running --silent past hang_after_s--> killed: stage.hung, then its exit is a crash

A watcher never blocks: a stop sends SIGTERM and sets the deadline for
SIGKILL; the exit arrives as SIGCHLD in the supervisor's loop, which calls
`exited`. What a dead stage held in the ring is taken back by the host.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import Protocol

import psutil

from pipeline import config as config_mod
from pipeline import schemas
from pipeline.channel import Channel, ChannelClosed
from pipeline.schemas import ControlState, StageState

log = logging.getLogger("jarvis.supervisor")

#: A starting stage must send its first message within this (imports on a busy machine are slow).
START_TIMEOUT_S = 60.0

S = StageState
TRANSITIONS: dict[StageState, frozenset[StageState]] = {
    S.STOPPED: frozenset({S.STARTING, S.BACKOFF}),  # backoff: no process could be made for a restart
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED}),
}


class Host(Protocol):
    """What a watcher needs of the supervisor."""

    cfg: config_mod.Config
    stop_requested: bool

    def publish(self, topic: str, body: dict[str, object]) -> None: ...

    def reject(self, kind: str, message: str) -> None: ...

    def launch(self, w: StageWatcher) -> tuple[subprocess.Popen[bytes], Channel, int]: ...

    def drain_output(self, w: StageWatcher) -> None: ...

    def reclaim(self, w: StageWatcher) -> int: ...

    def attached_pid(self, name: str) -> int | None: ...


class StageWatcher:
    def __init__(self, name: str, host: Host) -> None:
        self.name, self.host = name, host
        self.state = StageState.STOPPED
        self.popen: subprocess.Popen[bytes] | None = None
        self.channel: Channel | None = None
        self.output: int | None = None  # the read end of its stdout and stderr (the host writes it to <stage>.out)
        self.incarnation = 0
        self.restarts = 0  # starts after a crash
        self.started_at = self.down_since = self.next_start = self.kill_at = 0.0
        self.commanded = False  # its exit is a stop we asked for, not a crash
        self.restart_after_stop = False
        self.crash_times: collections.deque[float] = collections.deque()
        self.last_heard = 0.0  # monotonic time of its last message
        self.heartbeating = False  # its main loop has run
        self.applied: ControlState | None = None  # the control state it says it applies
        self.stats: schemas.StageStats | None = None
        self.stats_at = 0.0
        self.fps = 0.0
        self.fps_mark = (0.0, 0)
        self.cpu_percent = 0.0
        self.cpu_seconds = 0.0  # of the current process, at the last sample
        self.hangs = 0  # kills for a missed heartbeat
        self.pss = (-1e9, 0.0)  # (when read, MB): read for status, at most once a sample interval
        self.psproc: psutil.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    def _enter(self, new: StageState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"{self.name}: no transition from {self.state.value} to {new.value}")
        self.state = new

    # ------------------------------------------------------------ transitions

    def start(self, now: float) -> None:
        """A new incarnation: its process, its channel and the handshake (OSError if none can be made)."""
        self.incarnation += 1
        try:
            popen, channel, output = self.host.launch(self)
        except BaseException:
            self.incarnation -= 1
            raise
        self._enter(StageState.STARTING)
        if self.channel is not None:
            self.channel.close()
        self.host.drain_output(self)  # the last incarnation's, if any is left
        self.popen, self.channel, self.output = popen, channel, output
        self.started_at = self.last_heard = now
        self.heartbeating, self.commanded, self.applied = False, False, None
        self.psproc, self.pss = None, (-1e9, 0.0)
        self.cpu_percent = self.cpu_seconds = 0.0
        self.stats, self.stats_at = None, 0.0
        self.fps, self.fps_mark = 0.0, (0.0, 0)

    def check_attached(self) -> None:
        """A starting stage counts as running once it registered with the ring."""
        if self.state is not StageState.STARTING or self.pid is None or self.host.attached_pid(self.name) != self.pid:
            return
        self._enter(StageState.RUNNING)
        with contextlib.suppress(psutil.Error):
            self.psproc = psutil.Process(self.pid)
            self.psproc.cpu_percent()
        body: dict[str, object] = {"stage": self.name, "pid": self.pid, "incarnation": self.incarnation}
        if self.incarnation > 1 and not self.restart_after_stop:
            down_ms = round((time.monotonic() - self.down_since) * 1000, 1)
            self.host.publish("stage.restarted", body | {"restarts": self.restarts, "down_ms": down_ms})
        self.host.publish("stage.started", body)
        self.restart_after_stop = False
        log.info("%s running (pid %s)", self.name, self.pid)

    def stop(self, deadline: float, *, restart: bool = False) -> None:
        """SIGTERM to its process group now, SIGKILL at `deadline` (in `check`);
        `restart`: started again once it exited."""
        if self.state is StageState.STOPPING:  # already told: the earlier deadline holds
            self.restart_after_stop = self.restart_after_stop or restart
            self.kill_at = min(self.kill_at, deadline)
            return
        if self.pid is None:
            return
        assert self.popen is not None
        self.commanded, self.restart_after_stop, self.kill_at = True, restart, deadline
        self._enter(StageState.STOPPING)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)

    def exited(self, now: float) -> None:
        """Its process ended: take back what it held, then stopped, backoff or failed."""
        assert self.popen is not None and self.popen.returncode is not None
        code, pid = self.popen.returncode, self.popen.pid
        self.popen = self.psproc = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.down_since = now
        self.host.drain_output(self)  # its last words: a traceback, a fatal error's dump
        undecided = self.host.reclaim(self)
        if self.commanded:
            self._enter(StageState.STOPPED)
            self.host.publish("stage.stopped", {"stage": self.name, "pid": pid, "exit": code})
            if self.restart_after_stop and not self.host.stop_requested:
                self._start_or_retry(now)
            return
        self.host.publish("stage.crashed", {"stage": self.name, "pid": pid, "exit": code, "reclaimed": undecided})
        log.warning("%s (pid %d) exited with %s; %d frames undecided", self.name, pid, code, undecided)
        if self.host.stop_requested:
            self._enter(StageState.STOPPED)
            return
        r = self.host.cfg.supervisor.restart
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > r.period_s:
            self.crash_times.popleft()
        if len(self.crash_times) > r.intensity:
            self._enter(StageState.FAILED)
            self.host.publish("stage.failed", {"stage": self.name, "restarts": len(self.crash_times) - 1,
                                               "period_s": r.period_s})
            log.error("%s crashed %d times within %g s: marked failed", self.name, len(self.crash_times), r.period_s)
            return
        self.restarts += 1
        self._enter(StageState.BACKOFF)
        self.next_start = now + min(r.backoff_s * 2 ** (len(self.crash_times) - 1), r.backoff_max_s)

    def restart(self, now: float) -> None:
        """The restart command: a running stage drains and starts again; one that is down starts now."""
        if self.pid is not None:
            s = self.host.cfg.supervisor
            self.stop(now + s.stop_grace_s + s.drain_s, restart=True)
            return
        self.crash_times.clear()
        if self.state in (StageState.BACKOFF, StageState.FAILED, StageState.STOPPED):
            self.start(now)

    def halt(self) -> None:
        """The pipeline stops: a stage waiting to be started again stays down."""
        if self.state in (StageState.BACKOFF, StageState.FAILED):
            self._enter(StageState.STOPPED)

    def _start_or_retry(self, now: float) -> None:
        try:
            self.start(now)
        except OSError as exc:  # no process could be made (out of processes, memory, descriptors)
            log.error("cannot start %s: %s; trying again", self.name, exc)
            if self.state is not StageState.BACKOFF:
                self._enter(StageState.BACKOFF)
            self.next_start = now + self.host.cfg.supervisor.restart.backoff_max_s

    # ------------------------------------------------------------ the loop's checks

    def check(self, now: float) -> None:
        """Deadlines: SIGKILL for a stop that took too long, the end of a
        back-off, and the heartbeat (a stopped main loop is killed)."""
        if self.state is StageState.STOPPING and now >= self.kill_at and self.popen is not None:
            log.warning("%s did not stop in time: SIGKILL", self.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.kill_at = float("inf")  # once; the exit follows
        elif self.state is StageState.BACKOFF and now >= self.next_start and not self.host.stop_requested:
            self._start_or_retry(now)
        elif self.state in (StageState.STARTING, StageState.RUNNING) and self.popen is not None:
            self._check_hung(now)

    def _check_hung(self, now: float) -> None:
        limit = self.host.cfg.supervisor.hang_after_s
        if now - self.last_heard > limit and self.channel is not None:
            self.receive(now)  # what it sent while the loop was busy counts
        silent = now - self.last_heard
        if silent <= (limit if self.heartbeating else START_TIMEOUT_S) or self.popen is None:
            return
        pid = self.popen.pid
        self.hangs += 1
        self.host.publish("stage.hung", {"stage": self.name, "pid": pid, "silent_s": round(silent, 2)})
        log.error("%s (pid %d) sent no heartbeat for %.1f s: killed, to be restarted", self.name, pid, silent)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.last_heard = now  # one kill; its exit follows

    def deadline(self) -> float | None:
        """The next time `check` has something to do, for the loop's wait."""
        if self.state is StageState.STOPPING:
            return self.kill_at
        if self.state is StageState.BACKOFF:
            return self.next_start
        if self.popen is not None and self.heartbeating:
            return self.last_heard + self.host.cfg.supervisor.hang_after_s
        return None

    # ------------------------------------------------------------ its channel

    def receive(self, now: float) -> None:
        """What it sent over its channel: heartbeats, acknowledgements, stats."""
        if self.channel is None:
            return
        try:
            messages = self.channel.receive()
        except ChannelClosed:
            self.channel.close()  # it is exiting: its exit follows
            self.channel = None
            return
        for raw in messages:
            try:
                msg = schemas.from_stage(raw)
            except schemas.SchemaError as exc:
                self.host.reject(f"{self.name}_channel", f"a bad message from {self.name}: {exc}")
                continue
            self.last_heard = now
            self.heartbeating = True
            if isinstance(msg, schemas.Applied):
                self.applied = msg.state
            elif isinstance(msg, schemas.Stats):
                self._took_stats(msg.stats, now)

    def _took_stats(self, stats: schemas.StageStats, now: float) -> None:
        if stats.stage != self.name or stats.pid != self.pid:
            self.host.reject(f"{self.name}_channel", f"stats of {stats.stage} pid {stats.pid} on the channel of {self.name}")
            return
        self.stats, self.stats_at = stats, now
        if stats.applied is not None:
            self.applied = stats.applied
        mark_t, mark_n = self.fps_mark
        if now - mark_t >= 1.0 or stats.frames_in < mark_n:
            if stats.frames_in >= mark_n and mark_t:
                self.fps = (stats.frames_in - mark_n) / (now - mark_t)
            self.fps_mark = (now, stats.frames_in)
