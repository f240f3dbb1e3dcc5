"""What every stage process shares: start-up checks, the ring and sockets, the
credit-checked hand-off to the next stage, exact terminal accounting, stats,
and the way a stage stops.

A stage's life: the supervisor starts `python -m procs.<stage>` with the
instance's runtime directory in the environment, one end of a private channel
(pipeline.channel) and its ends of its hops' wake-up objects
(pipeline.handoff); the stage checks versions, reads its start handshake from
the channel (the resolved configuration and the control state to apply before
its first frame), attaches to the ring under its own holder name, binds its
inbox and connects to the next stage's, then loops: wait (never busy-poll)
for a hand-off (its hop's queue in the ring, or its inbox when that queue was
full), the channel or its own timer; process; heartbeat to the supervisor;
stats once per interval. Control state (pause, memory pressure) comes only
over the channel: events on the public bus of the same names are for people
and taps, never obeyed. SIGTERM means "finish what is in the inbox, then
stop"; the supervisor's death (its channel closing, or PR_SET_PDEATHSIG on
Linux) means "stop now".
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import ctypes
import errno
import faulthandler
import importlib
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import numpy as np
import psutil
import setproctitle
import zmq

import jarvis_rust_core as jrc
from pipeline import config as config_mod
from pipeline import events, handoff, protocol, runtime, schemas, stages, usage
from pipeline.channel import Channel, ChannelClosed
from pipeline.runtime import Runtime
from pipeline.schemas import ControlState

#: How often a stage looks for hand-overs whose message never came (_audit_transit).
TRANSIT_TIMEOUT_S = 10.0

#: How long a starting stage waits for its handshake.
HELLO_TIMEOUT_S = 30.0

#: How often a stage waiting for the next stage's credit looks again (_take_credit).
CREDIT_POLL_S = 0.0002


def heartbeat_interval(cfg: config_mod.Config) -> float:
    """Five heartbeats per hang_after_s (at most one a second): one late
    heartbeat on a busy machine is never taken for a hang."""
    return min(1.0, cfg.supervisor.hang_after_s / 5)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor dies (the pipe covers
    other systems and the window before this call)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class Timings:
    """Per-frame times: the most recent frames' (a rolling window, so an
    interval without frames still reports the recent figures) and every
    frame's, by histogram bucket (schemas.HISTOGRAM_BOUNDS_MS)."""

    def __init__(self, window: int = 512) -> None:
        self.samples: collections.deque[float] = collections.deque(maxlen=window)
        self.buckets = [0] * (len(schemas.HISTOGRAM_BOUNDS_MS) + 1)
        self.sum_ms = 0.0

    def add(self, seconds: float) -> None:
        ms = seconds * 1e3
        self.samples.append(ms)
        self.buckets[bisect.bisect_left(schemas.HISTOGRAM_BOUNDS_MS, ms)] += 1
        self.sum_ms += max(ms, 0.0)

    def histogram(self) -> schemas.Histogram:
        return schemas.Histogram(list(self.buckets), round(self.sum_ms, 3))

    def take(self) -> schemas.Timing:
        if not self.samples:
            return schemas.Timing()
        p50, p95, p99 = np.percentile(np.fromiter(self.samples, float), [50, 95, 99])
        return schemas.Timing(round(float(p50), 3), round(float(p95), 3), round(float(p99), 3))


class Stage:
    """Base of the stage processes. Its name and place in the pipeline
    (the stages before and after it, and the hops between) come from the
    stage table (pipeline.stages), through the supervisor's handshake."""

    is_writer: ClassVar[bool] = False
    #: Event topics this stage reads from the bus (none steer it; see on_event).
    subscriptions: ClassVar[tuple[str, ...]] = ()
    #: The schema of its stats.<stage> body: StageStats, or a subclass with what
    #: extra_stats adds (documented in docs/events.md from it).
    Stats: ClassVar[type[schemas.StageStats]] = schemas.StageStats

    def __init__(
        self, rt: Runtime, cfg: config_mod.Config, incarnation: int, channel: Channel | None,
        state: ControlState | None, *, name: str, place: schemas.Place,
        wake_in: int | None = None, wake_out: int | None = None,
    ) -> None:
        self.rt, self.cfg, self.incarnation = rt, cfg, incarnation
        self.name = name
        #: The stage whose frames this one receives, and the one it passes frames to.
        self.previous, self.next = place.previous, place.next
        self.hop_in, self.hop_out = place.hop_in, place.hop_out
        #: Wake-up descriptors of the hand-off queues (pipeline.handoff): polled
        #: for the inbound hop, signalled for the outbound one.
        self.wake_in, self.wake_out = wake_in, wake_out
        setproctitle.setproctitle(f"jarvis-pipeline: {rt.instance}: {self.name}")
        self.log = self._logger()
        self.stopping = False  # SIGTERM: drain the inbox, then stop
        self.abandon = False  # the supervisor is gone: stop now
        # Applied before anything else: the first frame already sees it.
        self.state = state or ControlState()
        self.paused, self.pressure = self.state.paused, self.state.pressure
        self.channel = channel
        self.mem = jrc.SharedVisionMemory.attach(rt.ring_name, writer=self.is_writer, holder=self.name, dir=rt.shm_base)
        self.epoch = self.mem.epoch
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 500)
        self.pub.connect(rt.endpoint("events-in"))
        self.sub: zmq.Socket[bytes] | None = None
        if self.subscriptions:
            self.sub = self.ctx.socket(zmq.SUB)
            # Larger messages are not events of ours: ZeroMQ drops the peer before buffering them.
            self.sub.setsockopt(zmq.MAXMSGSIZE, events.MAX_EVENT_BYTES)
            for topic in self.subscriptions:
                self.sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
            self.sub.connect(rt.endpoint("events"))
        self.inbox: zmq.Socket[bytes] | None = None
        self.outbox: zmq.Socket[bytes] | None = None
        if self.previous is not None:
            self.inbox = self.ctx.socket(zmq.PULL)
            self.inbox.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_HANDOFF_BYTES)
            self.inbox.bind(rt.endpoint(self.name))
        if self.next is not None:
            self.outbox = self.ctx.socket(zmq.PUSH)
            # IMMEDIATE: with no connected peer a send fails at once instead of
            # queueing a message for a stage that is not (yet) there.
            self.outbox.setsockopt(zmq.IMMEDIATE, 1)
            self.outbox.setsockopt(zmq.LINGER, 0)
            self.outbox.connect(rt.endpoint(self.next))
        #: Read ends of pipes a stage's own threads write to when they have news
        #: for the loop (the loop sleeps until then instead of polling for it).
        self.wake_fds: list[int] = []
        self.frames_in = self.frames_out = 0
        self.credit_waits = 0  # times pass_on waited for the next stage's credit
        self.drops: collections.Counter[str] = collections.Counter()
        self.terminal: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.timings = Timings()
        self.since_capture = Timings()  # capture to arrival here
        self.proc = psutil.Process()
        self.proc.cpu_percent()
        self.usage: dict[str, Any] = {}
        self.next_stats = time.monotonic() + cfg.supervisor.stats_interval_s
        self.next_sample = time.monotonic()
        self.next_audit = time.monotonic() + TRANSIT_TIMEOUT_S
        self.next_heartbeat = time.monotonic()
        self.in_transit: list[jrc.FrameRef] = []  # unaccepted hand-overs the last audit saw
        self.transit_sender: tuple[int, int] | None = None  # and the sender it saw then
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us in order
        released, undecided = self.mem.inherited
        if undecided:
            self.mem.counter_add(protocol.COUNTER_INDEX["dropped.stage_crashed"], undecided)
        if released:
            self.log.warning("took over %d holds (%d undecided) from a dead %s", released, undecided, self.name)

    # ------------------------------------------------------------------ setup

    def _logger(self) -> logging.Logger:
        """Its log, rotated at logs.max_mb: the root logger's, so the modules
        it uses log there too."""
        logs = self.cfg.logs
        runtime.log_to(runtime.PrivateLogHandler(self.rt.log_path(self.name), logs.max_mb, logs.backups))
        return logging.getLogger(f"jarvis.{self.name}")

    def _on_sigterm(self, _sig: int, _frame: object) -> None:
        self.stopping = True

    # ------------------------------------------------------------------ events

    def publish(self, topic: str, body: Mapping[str, Any]) -> None:
        try:
            self.pub.send_multipart(events.encode_event(topic, body), zmq.NOBLOCK)
        except zmq.Again:
            pass  # events are best effort; nothing waits on a slow tap

    def frame_event(self, topic: str, ref: jrc.FrameRef, **fields: Any) -> None:
        self.publish(topic, {"ref": ref.to_dict(), "stage": self.name, **fields})

    # ------------------------------------------------------------------ frames

    def finish(self, ref: jrc.FrameRef, state: str, reason: str | None = None, **fields: Any) -> None:
        """Decides frame `ref`'s terminal state: releases this stage's hold and
        tallies the state in the ring in the same step (only the owner's last
        release counts)."""
        key = f"dropped.{reason}" if state == "dropped" else state
        if self.mem.release(ref, count=protocol.COUNTER_INDEX[key]):
            self.terminal[key] += 1
            if state == "dropped":
                self.drops[reason or "?"] += 1
                self.frame_event("frame.dropped", ref, reason=reason, **fields)
            else:
                topic = next(s.topic for s in protocol.TERMINAL_STATES if s.name == state)
                self.frame_event(topic, ref, **fields)

    def pass_on(self, ref: jrc.FrameRef, extra: Mapping[str, Any] | None = None, *, keep: bool = False) -> bool:
        """Hands frame `ref` (held and owned by this stage) to the next stage,
        within the hop's credit (waited for a moment: _take_credit). Without
        credit, or without a connected next stage, the frame is dropped (the
        writer never waits). With `keep`, a
        successful hand-off leaves this stage a (non-owning) hold on the frame,
        e.g. analysis keeping its reference frame."""
        assert self.next is not None and self.hop_out is not None
        if not self._take_credit(self.hop_out):
            self.finish(ref, "dropped", "backpressure")
            return False
        try:
            self.mem.hand_over(ref, self.next, keep=True)
        except jrc.HoldError:  # the next stage is not attached (restarting, or failed)
            self.mem.credit_return(self.hop_out)
            self.finish(ref, "dropped", "next_stage_down")
            return False
        if not self._send(protocol.encode_frame_ref(ref.with_epoch(self.epoch), extra)):
            self.mem.credit_return(self.hop_out)
            try:
                self.mem.withdraw(ref, self.next)
            except jrc.HoldError:
                # The next stage died holding the hand-over and the supervisor's
                # reclaim already decided the frame (dropped.stage_crashed): only
                # this stage's kept hold is left, and it owns nothing.
                self.mem.release(ref)
                return False
            self.finish(ref, "dropped", "next_stage_down")
            return False
        if not keep:
            self.mem.release(ref)  # the kept hold; ownership went with the hand-over
        self.frames_out += 1
        return True

    def _take_credit(self, hop: int) -> bool:
        """A credit on `hop`. Without one, a stage fed by another waits up to
        hops.wait_ms for the next stage to give one back: a stall of the next
        stage (descheduled on a busy machine) is absorbed by this stage's own
        inbound hop, which queues meanwhile, instead of dropping the frame at
        once. No signal marks a credit given back, and the wait is short and
        rare: polled. Capture never waits (its clock is the screen's)."""
        limit = self.cfg.hops.credit
        if self.mem.credit_take(hop, limit):
            return True
        if self.hop_in is None or self.cfg.hops.wait_ms <= 0:
            return False
        self.credit_waits += 1
        deadline = time.monotonic() + self.cfg.hops.wait_ms / 1e3
        while time.monotonic() < deadline:
            time.sleep(CREDIT_POLL_S)
            if self.mem.credit_take(hop, limit):
                return True
        return False

    def _send(self, message: bytes) -> bool:
        """Tells the next stage about a hand-over: through the hop's queue in
        the ring, waking the next stage if it sleeps; through its ZeroMQ inbox
        when the queue is full (records of a dead predecessor of the next
        stage that it has not rejected yet; a frame sent that way may reach
        the next stage before the records queued ahead of it, so hand-overs
        keep their order except right after a restart). False when neither
        takes it: the next stage is not connected."""
        assert self.hop_out is not None and self.outbox is not None and self.wake_out is not None
        if handoff.send(self.mem, self.hop_out, message, self.wake_out):
            return True
        try:
            self.outbox.send(message, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def receive(self, raw: bytes) -> tuple[jrc.FrameRef, dict[str, Any]] | None:
        """A hand-off message, accepted; None (counted, logged) if it is not one
        this stage can use."""
        try:
            ref, extra = protocol.decode_frame_ref(raw)
        except protocol.ProtocolError as exc:
            self._reject("malformed", f"dropped a malformed message: {exc}")
            return None
        if ref.ring_gen != self.mem.generation:
            self._reject("foreign", f"dropped a ref into another ring (generation {ref.ring_gen:#x})")
            return None
        try:
            self.mem.accept(ref)
        except jrc.FrameExpired:
            # Its hold was reclaimed (our predecessor died) and already counted.
            self._reject("stale", f"dropped stale ref seq {ref.seq}")
            return None
        except jrc.RingError as exc:  # a slot or geometry this ring does not have: not a ref of ours
            self._reject("invalid", f"dropped an invalid ref: {exc}")
            return None
        if not self.mem.epoch_is_live(ref.epoch):
            self.rejected["from_dead_sender"] += 1  # still ours to process: the hand-over happened
        self.since_capture.add((time.monotonic_ns() - ref.t_mono_ns) / 1e9)
        self.frames_in += 1
        return ref, extra

    def _reject(self, kind: str, message: str) -> None:
        self.rejected[kind] += 1
        if self.rejected[kind] <= 10 or self.rejected[kind] % 1000 == 0:
            self.log.warning("%s (%d so far)", message, self.rejected[kind])

    def done_with_inbound(self) -> None:
        """The frame received from the previous stage is decided or passed on."""
        if self.hop_in is not None:
            self.mem.credit_return(self.hop_in)

    # ------------------------------------------------------------------ loop

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        """Processes one accepted frame: `finish` it or `pass_on` it."""
        raise NotImplementedError

    def tick(self, now: float) -> float | None:
        """Timer work (capture: grab frames); returns when it wants to run next."""
        return None

    def apply_state(self, state: ControlState) -> None:
        """The supervisor's control state, from the handshake or a later change."""
        self.state = state
        self.paused, self.pressure = state.paused, state.pressure

    def on_event(self, topic: str, body: dict[str, Any]) -> None:
        """An event of `subscriptions`, its body checked against its schema."""

    def run(self) -> int:
        poller = zmq.Poller()
        if self.inbox is not None:
            poller.register(self.inbox, zmq.POLLIN)
        if self.sub is not None:
            poller.register(self.sub, zmq.POLLIN)
        if self.channel is not None:
            poller.register(self.channel.fileno(), zmq.POLLIN)
        for fd in self.wake_fds:
            poller.register(fd, zmq.POLLIN)
        if self.wake_in is not None:
            poller.register(self.wake_in, zmq.POLLIN)
        self.log.info("started (pid %d, incarnation %d, epoch %d)", os.getpid(), self.incarnation, self.epoch)
        self._to_supervisor(msgspec.to_builtins(schemas.Applied(self.state)))  # what it applies, known from the start
        wake: float | None = None
        while not self.abandon:
            now = time.monotonic()
            if self.stopping and not self._inbox_pending():
                break
            deadline = min(x for x in (self.next_stats, self.next_audit, self.next_heartbeat, wake) if x is not None)
            timeout_ms = 0 if self.stopping else max(0, int((deadline - now) * 1000) + 1)
            if self.hop_in is not None and self.mem.handoff_arm(self.hop_in):
                timeout_ms = 0  # hand-offs already wait: no sleep, no wake-up needed
            try:
                ready = dict(poller.poll(timeout_ms))
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:  # a signal (SIGTERM) interrupted the wait
                    continue
                raise
            if self.channel is not None and self.channel.fileno() in ready:
                self._drain_channel()
                if self.abandon:
                    break
            for fd in self.wake_fds:
                if fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 4096)
            if self.sub is not None and self.sub in ready:
                self._drain_events()
            if self.hop_in is not None:
                # Whatever woke the loop: a queued hand-off never waits for a wake-up of its own.
                self._drain_inbox()
            if self.wake_in is not None and self.wake_in in ready:
                # After the frames, not before: on a just-woken process the read
                # costs tens of microseconds that would delay the frame. A signal
                # for a record queued meanwhile may go with it: the loop checks
                # the queue when it arms, before it sleeps again.
                handoff.clear(self.wake_in)
            now = time.monotonic()
            if not self.stopping:
                wake = self.tick(now)
            if now >= self.next_audit:
                self._audit_transit()
                self.next_audit = now + TRANSIT_TIMEOUT_S
            if now >= self.next_stats:
                self._publish_stats(now)
            if now >= self.next_heartbeat:
                # From the main loop, not a thread: a stuck loop misses it.
                self._to_supervisor(msgspec.to_builtins(schemas.Heartbeat()))
                self.next_heartbeat = now + heartbeat_interval(self.cfg)
        self.shutdown()
        return 0

    def _to_supervisor(self, msg: dict[str, Any]) -> None:
        if self.channel is None:
            return
        try:
            self.channel.send(msg)
        except ChannelClosed:
            self.log.warning("the supervisor is gone; stopping")
            self.abandon = True

    def _drain_channel(self) -> None:
        if self.channel is None:
            return
        try:
            messages = self.channel.receive()
        except ChannelClosed:
            self.log.warning("the supervisor is gone; stopping")
            self.abandon = True
            return
        for raw in messages:
            try:
                msg = schemas.to_stage(raw)
            except schemas.SchemaError as exc:
                self._reject("bad_control", f"dropped a bad message from the supervisor: {exc}")
                continue
            if isinstance(msg, schemas.SetState):
                self.apply_state(msg.state)
                self._to_supervisor(msgspec.to_builtins(schemas.Applied(self.state)))

    def _inbox_pending(self) -> bool:
        if self.hop_in is None or self.inbox is None:
            return False
        return bool(self.mem.handoff_pending(self.hop_in)) or bool(self.inbox.poll(0, zmq.POLLIN))

    def _drain_events(self) -> None:
        assert self.sub is not None
        for _ in range(1000):  # bounded: a flood of events cannot starve the frames
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                topic, body = events.decode_event(frames)
                events.check_event(topic, body)
            except (protocol.ProtocolError, schemas.SchemaError) as exc:
                self._reject("malformed_event", f"dropped a malformed event: {exc}")
                continue
            self.on_event(topic, body)

    def _drain_inbox(self) -> None:
        assert self.inbox is not None
        # Bounded in time, so stats, timers and control get their turn under overload.
        until = time.monotonic() + min(0.05, self.cfg.supervisor.stats_interval_s / 4)
        while time.monotonic() < until:
            raw = self._take()
            if raw is None:
                return
            got = self.receive(raw)
            if got is None:
                continue
            start = time.perf_counter()
            try:
                self.handle(*got)
            finally:
                self.timings.add(time.perf_counter() - start)
                self.done_with_inbound()

    def _take(self) -> bytes | None:
        """The next hand-off message: from the hop's queue, else the inbox."""
        assert self.hop_in is not None and self.inbox is not None
        while True:
            try:
                raw = self.mem.handoff_pop(self.hop_in)
            except jrc.RingFormatError as exc:  # skipped; the next record is read as usual
                self._reject("corrupt_record", f"dropped a corrupt hand-off record: {exc}")
                continue
            if raw is not None:
                return raw
            try:
                return self.inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return None

    def _audit_transit(self) -> None:
        """Hand-overs to this stage whose message never came (the sender died
        between hand-over and send) are given up and counted: those an earlier
        audit saw unaccepted, when the sender seen then has died since. A
        sender that is merely slow or stopped still delivers (and the
        supervisor replaces one that hangs), and whatever the inbox holds is
        accepted first: a frame still on its way is never given up."""
        if self.previous is None:
            return
        while self._inbox_pending():
            self._drain_inbox()
        sender = self._sender()
        lost = []
        if self.in_transit and sender != self.transit_sender:
            lost = self.mem.reclaim_transit(0.0, count=protocol.COUNTER_INDEX["dropped.stage_crashed"],
                                            only=self.in_transit)
        self.in_transit, self.transit_sender = self.mem.transit(), sender
        for ref, owned in lost:
            if owned:
                self.terminal["dropped.stage_crashed"] += 1
                self.frame_event("frame.dropped", ref, reason="stage_crashed")
            if self.hop_in is not None:
                self.mem.credit_return(self.hop_in)
        if lost:
            self.log.warning("gave up %d hand-overs whose message never arrived", len(lost))

    def _sender(self) -> tuple[int, int] | None:
        """(pid, epoch) of the live incarnation of the previous stage, if any."""
        for h in self.mem.holders():
            if h["name"] == self.previous and h["alive"]:
                return h["pid"], h["epoch"]
        return None

    def _publish_stats(self, now: float) -> None:
        if now >= self.next_sample:
            try:
                self.usage = {
                    "cpu_percent": round(self.proc.cpu_percent(), 1),
                    "private_mb": round(usage.private_mb(self.proc), 1),
                }
            except psutil.Error:
                pass
            self.next_sample = now + self.cfg.supervisor.sample_interval_s
        # Built as its schema: a field extra_stats adds without declaring it fails here, in the tests.
        body = msgspec.to_builtins(self.Stats(
            stage=self.name,
            pid=os.getpid(),
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            credit_waits=self.credit_waits,
            drops=dict(self.drops),
            terminal=dict(self.terminal),
            proc_ms=self.timings.take(),
            since_capture_ms=self.since_capture.take(),
            proc_hist=self.timings.histogram(),
            since_capture_hist=self.since_capture.histogram(),
            rejected=dict(self.rejected),
            applied=self.state,
            **self.usage,
            **self.extra_stats(),
        ))
        self.publish(f"stats.{self.name}", body)
        self._to_supervisor({"t": "stats", "stats": body})  # schemas.Stats, checked by the supervisor
        self.next_stats = now + self.cfg.supervisor.stats_interval_s

    def extra_stats(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None:
        """Frames this stage still owns end as dropped(shutdown); then let go."""
        for ref in self.mem.owned():
            # Hand-overs never accepted are left to the supervisor's reclaim.
            if self.mem.held_count(ref.slot):
                self.finish(ref, "dropped", "shutdown")
        self._publish_stats(time.monotonic())
        self.log.info("stopped")
        self.mem.close()
        self.ctx.destroy(linger=200)


def stats_schemas(topology: stages.Topology) -> dict[str, type[schemas.StageStats]]:
    """Each stage's stats.<stage> schema (its class's Stats), by stage name;
    imports the stage modules of `topology`."""
    return {s.name: getattr(importlib.import_module(s.module), s.cls).Stats for s in topology.stages}


def main(stage_class: type[Stage]) -> None:
    """Entry point of a stage process (`python -m <module>` of its row in
    the stage table, started by the supervisor)."""
    _die_with_parent()
    # A fatal error (a crash in native code, an abort) dumps every thread's
    # Python stack to stderr: the supervisor's pipe into <stage>.out.
    faulthandler.enable()
    who = f"jarvis-pipeline {stage_class.__name__}"
    rt = runtime.from_env(os.environ[stages.ENV_RUNTIME])
    expected = json.loads(os.environ.get(stages.ENV_VERSIONS, "null"))
    if expected is not None and expected != stages.versions():
        print(f"{who}: versions {stages.versions()} differ from the supervisor's {expected}; "
              "reinstall (scripts/setup) and restart the pipeline", file=sys.stderr)
        sys.exit(stages.EXIT_REFUSED)
    # The configuration, control state and place come from the supervisor itself,
    # never from a file that could have been replaced since `up` checked it.
    channel = Channel.from_fd(int(os.environ[stages.ENV_CHANNEL_FD]))
    try:
        hello = schemas.convert(channel.receive_one(HELLO_TIMEOUT_S), schemas.Hello)
        cfg = config_mod.from_json(hello.config)
    except (ChannelClosed, schemas.SchemaError, config_mod.ConfigError) as exc:
        print(f"{who}: no usable start handshake from the supervisor: {exc}", file=sys.stderr)
        sys.exit(stages.EXIT_REFUSED)
    place = hello.place
    wakes: dict[str, int] = {}
    for key, env, hop in (("wake_in", stages.ENV_WAKE_IN_FD, place.hop_in),
                          ("wake_out", stages.ENV_WAKE_OUT_FD, place.hop_out)):
        if hop is None:
            continue
        try:
            fd = int(os.environ[env])
            os.fstat(fd)
        except (KeyError, ValueError, OSError) as exc:
            print(f"{who}: no usable hand-off wake-up descriptor in {env} "
                  f"({exc!r}); stages are started by the supervisor (jarvis-pipeline up)", file=sys.stderr)
            sys.exit(stages.EXIT_REFUSED)
        wakes[key] = fd
    try:
        stage = stage_class(rt, cfg, hello.incarnation, channel, hello.state, name=hello.stage, place=place, **wakes)
    except runtime.RuntimeDirError as exc:  # e.g. its log is not a file of ours
        print(f"{who}: {exc}", file=sys.stderr)
        sys.exit(stages.EXIT_REFUSED)
    sys.exit(stage.run())
