#!/usr/bin/env python3
# mypy: disable-error-code="import-untyped"
"""Benchmark: handing 1920x1080 BGRA frames (8,294,400 bytes) to another process.

Mechanisms (the parent process is always the producer, a spawned child the consumer):

  ring      jarvis_rust_core.SharedVisionMemory and its hand-off queue, the stages' path: the
            FrameRef message (pipeline.protocol.encode_frame_ref) goes through pipeline.handoff.send
            (the hop's queue in the ring, an eventfd signalled when the consumer sleeps):
            reserve(1920, 1080, "BGRA") -> fill res.array -> commit(hold=True) ->
            hand_over(ref, "consumer") -> send; the consumer, waiting like a stage (handoff_arm, then
            a zmq.Poller on the eventfd), handoff_pop -> decode_frame_ref -> accept -> read (zero-copy
            view) -> hash -> release. Window: ring credits (credit_take(0, window) /
            credit_return(0)); a blocked producer waits on a second wake-up object of the same
            kind (pipeline.handoff) that the consumer signals when it may be blocked.
  mpqueue   multiprocessing.Queue of numpy frames (pickled by the feeder thread); the window is
            a multiprocessing.Semaphore the consumer releases after each frame.
  shm       multiprocessing.shared_memory.SharedMemory with `window` slots; slot indices over a
            ZeroMQ PUSH/PULL pair, freed slots returned over a second pair.
  iceoryx2  iceoryx2 publish-subscribe (Slice[c_uint8] of one frame, loan -> fill the loaned
            sample -> send; zero-copy as_memory_view() on the subscriber). The consumer is woken
            by an iceoryx2 event service (notifier -> listener.timed_wait); the window is enforced
            with a second event service carrying acks back (EventActivation.count).

Producer regimes:
  copy      the producer copies a distinct, stamped source frame into the mechanism's memory
            each time (np.copyto into res.array / the shm slot / the loaned sample; mpqueue
            pickles it). hot = source set of window+1 frames (cache-resident); cold = a source
            set larger than the L3 cache (--cold-frames, default 48 = 380 MiB).
  inplace   frames are produced directly in the mechanism's shared memory: per frame only the
            16 bytes of counter stamp are written (ring: reserve/stamp res.array/commit; shm:
            stamp the slot; iceoryx2: loan/stamp/send). mp.Queue cannot hand a frame over in
            place: it still pickles and sends the whole (hot) frame. Reported hot only: the
            slot pools (ring window+2, shm window, iceoryx2 its own pool) stay cache-resident.

The consumer checks the counter the producer stamped into the first and last 8 bytes (frames
must arrive complete, in order, none lost or duplicated; a mismatch aborts the run), then
hashes every byte of every frame with xxhash.xxh3_64 over the zero-copy buffer (identical for
all mechanisms).

Cases per regime: b2b-w1 (back to back, 1 frame in flight: the next frame is handed over only
after the consumer released the previous; no queueing, so its latency is the pure hand-off),
b2b-w2 (back to back, pipelined window of 2: the throughput figure; its latency includes
queueing behind the window), paced (--fps, window 2, unloaded).

Timestamps (time.monotonic_ns): t_copy = the producer starts filling the frame (after it got
window room); t_ready = the frame is complete in the mechanism's memory, just before the
hand-off (ring commit/hand_over/send, shm send, iceoryx2 send/notify, mpqueue put -- put is its
hand-off, pickling included); t_avail = the consumer has the frame in hand (before hashing);
t_done = after the consumer released it. hand-off latency = t_avail - t_ready; copy + hand-off
latency = t_avail - t_copy (copy regime). Throughput (b2b) = frames / (last t_done - first
t_copy). Each round runs every mechanism once (rotating order) in a fresh consumer process;
the report gives the median over rounds.

Usage:
  .venv/bin/python scripts/bench_handoff.py --quick
  .venv/bin/python scripts/bench_handoff.py --json /tmp/bench_handoff.json --md /tmp/bench_handoff.md
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

import bench_common  # noqa: E402  (scripts/: beside this script)
import numpy as np

H, W, C = 1080, 1920, 4
FRAME_BYTES = H * W * C  # 8,294,400
MECHANISMS = ("ring", "mpqueue", "shm", "iceoryx2")
REGIMES = (("copy", "hot"), ("copy", "cold"), ("inplace", "hot"))
BASELINE = "mpqueue"
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class BenchError(RuntimeError):
    pass


WAIT_SLICE_S = 0.5  # producers block in slices this long, checking the consumer in between


def _wait(attempt: Any, watch: Any, timeout: float, what: str) -> Any:
    """Blocks (no spinning) until attempt() -- itself a blocking wait of at most WAIT_SLICE_S
    -- returns non-None; between slices, watch() raises if the consumer has failed."""
    deadline = time.monotonic() + timeout
    while True:
        r = attempt()
        if r is not None:
            return r
        watch()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s {what}")


class OthersMeter:
    """The rest of the machine's busy CPU while a session ran (another user's work
    disturbs the latencies): /proc/stat's busy time less this process's and its
    reaped children's, in % of one core. None where /proc/stat is missing."""

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as fh:
                ticks = [int(x) for x in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = sum(
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        )
        return time.monotonic(), busy, own

    def __init__(self) -> None:
        self.start = self._now()

    def percent(self) -> float | None:
        end = self._now()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        (t0, b0, o0), (t1, b1, o1) = self.start, end
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (t1 - t0) * 100)


def _sigterm_to_exit(signum: int, _frame: Any) -> None:
    # Turn SIGTERM into SystemExit so that finally blocks (ring close, unlink) run.
    raise SystemExit(128 + signum)


def _stamp(buf: Any, off: int, n: int) -> None:
    """Writes the frame counter into the first and last 8 bytes of the frame at buf[off:]."""
    _U64.pack_into(buf, off, n)
    _U64.pack_into(buf, off + FRAME_BYTES - 8, n)


# --------------------------------------------------------------------------------------------
# consumer side (runs in a spawned child)
# --------------------------------------------------------------------------------------------


class InheritedFd:
    """A descriptor given to the spawned consumer: pickled while the child is
    being spawned, it is duplicated into the child like a Connection's."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing.reduction import DupFd

        return (_detach_fd, (DupFd(self.fd),))


def _detach_fd(dup: Any) -> int:
    fd: int = dup.detach()
    return fd


def _verify(buf: Any, n: int) -> None:
    head = _U64.unpack_from(buf, 0)[0]
    tail = _U64.unpack_from(buf, FRAME_BYTES - 8)[0]
    if head != n or tail != n:
        raise BenchError(f"wrong frame: expected counter {n}, got head={head} tail={tail}")


class RingConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        import zmq

        import jarvis_rust_core as jrc
        from pipeline import handoff
        from pipeline.protocol import decode_frame_ref

        self._decode, self._clear = decode_frame_ref, handoff.clear
        self.windows: bytes = p["windows"]
        self.timeout_ms = int(p["timeout"] * 1000)
        self.mem = jrc.SharedVisionMemory.attach(p["ring_name"], holder="consumer")
        self.wake_fd: int = p["wake"]  # an InheritedFd, unpickled
        self.ack_fd: int = p["ack"]
        self._ack = handoff.wake
        self.poller = zmq.Poller()  # as a stage waits: its poller, with the wake-up descriptor in it
        self.poller.register(self.wake_fd, zmq.POLLIN)
        self.signalled = False

    def recv(self) -> tuple[Any, Any]:
        pop, arm = self.mem.handoff_pop, self.mem.handoff_arm
        while True:
            raw = pop(0)
            if raw is not None:
                break
            if self.signalled:  # as a stage: cleared after the frame, before sleeping again
                self._clear(self.wake_fd)
                self.signalled = False
            if arm(0):
                continue
            if not self.poller.poll(self.timeout_ms):
                raise BenchError("timed out waiting for a hand-off")
            self.signalled = True
        ref, _ = self._decode(raw)
        self.mem.accept(ref)
        return self.mem.read(ref), ref

    def done(self, ref: Any, n: int) -> None:
        self.mem.release(ref)
        # Credits still out = frames n+1 .. n+out; the producer may be blocked taking a credit
        # for frame m = n+out+1 only if out is exactly one below m's window: wake it then.
        out = self.mem.credit_return(0)
        m = n + out + 1
        if m < len(self.windows) and out == self.windows[m] - 1:
            self._ack(self.ack_fd)

    def close(self) -> None:
        self.mem.close()
        os.close(self.wake_fd)
        os.close(self.ack_fd)


class MPQueueConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        self.q, self.sem = p["queue"], p["sem"]
        self.timeout = p["timeout"]

    def recv(self) -> tuple[Any, Any]:
        import queue

        try:
            return self.q.get(timeout=self.timeout), None
        except queue.Empty:
            raise BenchError("timed out waiting for a frame") from None

    def done(self, _tok: Any, _n: int) -> None:
        self.sem.release()

    def close(self) -> None:
        self.q.close()


class ShmConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        from multiprocessing import shared_memory

        import zmq

        self.shm = shared_memory.SharedMemory(name=p["shm_name"], create=False)
        self.slots = np.ndarray((p["slots"], FRAME_BYTES), np.uint8, buffer=self.shm.buf)
        self.zctx = zmq.Context()
        self.data = self.zctx.socket(zmq.PULL)
        self.free = self.zctx.socket(zmq.PUSH)
        for s in (self.data, self.free):
            s.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.RCVTIMEO, int(p["timeout"] * 1000))
        self.free.setsockopt(zmq.SNDTIMEO, int(p["timeout"] * 1000))
        self.data.connect(p["data_ep"])
        self.free.connect(p["free_ep"])

    def recv(self) -> tuple[Any, Any]:
        msg = self.data.recv()
        slot = _U32.unpack(msg)[0]
        return self.slots[slot], msg

    def done(self, msg: Any, _n: int) -> None:
        self.free.send(msg)

    def close(self) -> None:
        self.data.close()
        self.free.close()
        self.zctx.term()
        del self.slots
        self.shm.close()


def _iox_setup(node: Any, base: str, window: int, create: bool) -> tuple[Any, Any, Any]:
    import ctypes

    import iceoryx2 as iox

    b = (
        node.service_builder(iox.ServiceName.new(f"{base}/frames"))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(window)
        .subscriber_max_borrowed_samples(1)
        .enable_safe_overflow(False)  # never drop silently: the window prevents overflow
    )
    frames = b.create() if create else b.open()
    ev = []
    for suffix in ("ready", "ack"):
        eb = node.service_builder(iox.ServiceName.new(f"{base}/{suffix}")).event()
        ev.append(eb.create() if create else eb.open())
    return frames, ev[0], ev[1]


def _iox_node() -> Any:
    import iceoryx2 as iox

    iox.set_log_level_from_env_or(iox.LogLevel.Error)
    # Disabled: otherwise the node's own SIGINT/SIGTERM handling swallows termination
    # requests (node.wait() returns NodeWaitFailure and the process keeps running).
    return (
        iox.NodeBuilder.new()
        .signal_handling_mode(iox.SignalHandlingMode.Disabled)
        .create(iox.ServiceType.Ipc)
    )


class IoxConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        import iceoryx2 as iox

        self.node = _iox_node()
        frames, ready, ack = _iox_setup(self.node, p["iox_base"], p["max_window"], create=False)
        self.sub = frames.subscriber_builder().create()
        self.listener = ready.listener_builder().create()
        self.ack = ack.notifier_builder().create()
        self.timeout = iox.Duration.from_secs_f64(p["timeout"])
        self._keep: tuple[Any, ...] | None = (frames, ready, ack)

    def recv(self) -> tuple[Any, Any]:
        while True:
            sample = self.sub.receive()
            if sample is not None:
                return sample.payload().as_memory_view(), sample
            # Blocking wait on the event service; a stale wake-up just loops once more.
            if not self.listener.timed_wait(self.timeout):
                raise BenchError("timed out waiting for an iceoryx2 event")

    def done(self, sample: Any, _n: int) -> None:
        sample.delete()
        self.ack.notify()

    def close(self) -> None:
        for port in (self.sub, self.listener, self.ack):
            port.delete()
        self._keep = None
        self.node = None


CONSUMERS = {
    "ring": RingConsumer,
    "mpqueue": MPQueueConsumer,
    "shm": ShmConsumer,
    "iceoryx2": IoxConsumer,
}


def consumer_main(mech: str, params: dict[str, Any], total: int, conn: Any) -> None:
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    cons: Any = None
    try:
        import xxhash

        xxh3 = xxhash.xxh3_64_intdigest
        cons = CONSUMERS[mech](params)
        conn.send(("ready", os.getpid()))
        t_avail = np.zeros(total, np.int64)
        t_done = np.zeros(total, np.int64)
        digest = 0
        mono = time.monotonic_ns
        for n in range(total):
            buf, tok = cons.recv()
            t_avail[n] = mono()
            _verify(buf, n)
            digest ^= xxh3(buf)  # whole frame, zero-copy (buffer protocol)
            del buf
            cons.done(tok, n)
            del tok
            t_done[n] = mono()
        conn.send(("done", t_avail, t_done, digest))
    except BaseException as exc:  # report everything, including KeyboardInterrupt
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        if not isinstance(exc, Exception):
            raise
    finally:
        if cons is not None:
            with contextlib.suppress(Exception):
                cons.close()
        conn.close()


# --------------------------------------------------------------------------------------------
# producer side (parent process)
#
# Per frame: wait_room(window) -> t_copy -> fill_copy(src) | fill_stamp(n) -> t_ready ->
# publish(). fill_* leaves the frame complete in the mechanism's memory; publish() is the
# hand-off proper.
# --------------------------------------------------------------------------------------------


class RingProducer:
    inplace = True

    def __init__(self, tag: str, max_window: int, timeout: float) -> None:
        import select

        import jarvis_rust_core as jrc
        from pipeline import handoff
        from pipeline.protocol import encode_frame_ref

        self._jrc, self._encode, self._send, self._clear = jrc, encode_frame_ref, handoff.send, handoff.clear
        self.timeout, self.watch = timeout, lambda: None
        self.name = f"bh{tag}"
        slots = max_window + 2
        self.mem: Any = None
        self.res: Any = None
        self.wake = handoff.Wake.create()
        self.ack = handoff.Wake.create()
        self.ack_poll = select.poll()
        self.ack_poll.register(self.ack.read_fd, select.POLLIN)
        self.mem = jrc.SharedVisionMemory(
            size_mb=slots * FRAME_BYTES / 2**20 + 1,
            name=self.name,
            slots=slots,
            max_width=W,
            max_height=H,
            holder="producer",
        )

    def params(self) -> dict[str, Any]:
        return {
            "ring_name": self.name,
            "wake": InheritedFd(self.wake.read_fd),
            "ack": InheritedFd(self.ack.write_fd),
        }

    def _wait_ack(self) -> None:
        def attempt() -> Any:
            if not self.ack_poll.poll(WAIT_SLICE_S * 1000):
                return None
            self._clear(self.ack.read_fd)
            return True

        _wait(attempt, self.watch, self.timeout, "ring: waiting for the consumer's ack")

    def wait_room(self, window: int) -> None:
        while not self.mem.credit_take(0, window):
            self._wait_ack()

    def _reserve(self) -> Any:
        while True:
            try:
                return self.mem.reserve(W, H, "BGRA")
            except self._jrc.RingFull:  # not expected with slots > window; wait, never spin
                self._wait_ack()

    def fill_copy(self, src: np.ndarray) -> None:
        res = self._reserve()
        np.copyto(res.array, src)
        self.res = res

    def fill_stamp(self, n: int) -> None:
        res = self._reserve()
        _stamp(res.array, 0, n)
        self.res = res

    def publish(self) -> None:
        ref = self.res.commit(hold=True)
        self.res = None
        self.mem.hand_over(ref, "consumer")
        # Within the window the queue never fills: a refusal is a broken run.
        if not self._send(self.mem, 0, self._encode(ref), self.wake.write_fd):
            raise BenchError("ring: the hand-off queue was full")

    def close(self) -> None:
        self.ack.close()
        self.wake.close()
        if self.res is not None:
            with contextlib.suppress(Exception):
                self.res.abort()
        if self.mem is not None:
            self.mem.close()


class MPQueueProducer:
    inplace = False  # a Queue always pickles and sends the whole frame

    def __init__(self, ctx: Any, timeout: float) -> None:
        self.q = ctx.Queue()
        self.sem = ctx.Semaphore(0)  # released by the consumer once per finished frame
        self.timeout, self.watch = timeout, lambda: None
        self.in_flight = 0
        self.src: np.ndarray | None = None
        self.ok = False

    def params(self) -> dict[str, Any]:
        return {"queue": self.q, "sem": self.sem}

    def wait_room(self, window: int) -> None:
        while self.in_flight >= window:
            _wait(
                lambda: True if self.sem.acquire(timeout=WAIT_SLICE_S) else None,
                self.watch,
                self.timeout,
                "mpqueue: waiting for the consumer to finish a frame",
            )
            self.in_flight -= 1

    def fill_copy(self, src: np.ndarray) -> None:
        self.src = src  # the copy (pickling) happens inside put(): it is the hand-off

    def publish(self) -> None:
        self.q.put(self.src)
        self.src = None
        self.in_flight += 1

    def close(self) -> None:
        self.q.close()
        if self.ok:
            self.q.join_thread()
        else:
            self.q.cancel_join_thread()


class ShmProducer:
    inplace = True

    def __init__(self, tag: str, tmp: str, max_window: int, timeout: float) -> None:
        from multiprocessing import shared_memory

        import zmq

        self.nslots = max_window
        self.timeout, self.watch = timeout, lambda: None
        self.shm = shared_memory.SharedMemory(
            name=f"bh{tag}", create=True, size=self.nslots * FRAME_BYTES
        )
        self.slots = np.ndarray((self.nslots, FRAME_BYTES), np.uint8, buffer=self.shm.buf)
        self.free_local = collections.deque(range(self.nslots))
        self.slot = -1
        self.zctx = zmq.Context()
        self.data = self.zctx.socket(zmq.PUSH)
        self.free = self.zctx.socket(zmq.PULL)
        for s in (self.data, self.free):
            s.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.free.setsockopt(zmq.RCVTIMEO, int(WAIT_SLICE_S * 1000))
        self.data_ep, self.free_ep = f"ipc://{tmp}/{tag}.data", f"ipc://{tmp}/{tag}.free"
        self.data.bind(self.data_ep)
        self.free.bind(self.free_ep)

    def params(self) -> dict[str, Any]:
        return {
            "shm_name": self.shm.name,
            "slots": self.nslots,
            "data_ep": self.data_ep,
            "free_ep": self.free_ep,
        }

    def wait_room(self, window: int) -> None:
        import zmq

        def attempt() -> Any:
            try:
                return self.free.recv()
            except zmq.Again:
                return None

        while self.nslots - len(self.free_local) >= window:
            msg = _wait(attempt, self.watch, self.timeout, "shm: waiting for a free slot")
            self.free_local.append(_U32.unpack(msg)[0])

    def fill_copy(self, src: np.ndarray) -> None:
        self.slot = self.free_local.popleft()
        np.copyto(self.slots[self.slot], src.reshape(-1))

    def fill_stamp(self, n: int) -> None:
        self.slot = self.free_local.popleft()
        _stamp(self.shm.buf, self.slot * FRAME_BYTES, n)

    def publish(self) -> None:
        self.data.send(_U32.pack(self.slot))

    def close(self) -> None:
        self.data.close()
        self.free.close()
        self.zctx.term()
        del self.slots
        self.shm.close()
        self.shm.unlink()


class IoxProducer:
    inplace = True

    def __init__(self, tag: str, max_window: int, timeout: float) -> None:
        import iceoryx2 as iox

        self.timeout, self.watch = timeout, lambda: None
        self.in_flight = 0
        self.sample: Any = None
        self.base = f"bench_handoff/{tag}"
        self.node = _iox_node()
        frames, ready, ack = _iox_setup(self.node, self.base, max_window, create=True)
        self.pub = (
            frames.publisher_builder()
            .initial_max_slice_len(FRAME_BYTES)
            .max_loaned_samples(1)
            .backpressure_strategy(iox.BackpressureStrategy.DiscardData)
            .create()
        )
        self.notifier = ready.notifier_builder().create()
        self.ack = ack.listener_builder().create()
        self.slice = iox.Duration.from_secs_f64(WAIT_SLICE_S)
        self._keep: tuple[Any, ...] | None = (frames, ready, ack)

    def params(self) -> dict[str, Any]:
        return {"iox_base": self.base}

    def wait_room(self, window: int) -> None:
        while self.in_flight >= window:
            acts = _wait(
                lambda: self.ack.timed_wait(self.slice) or None,
                self.watch,
                self.timeout,
                "iceoryx2: waiting for the consumer's ack",
            )
            self.in_flight -= sum(a.count for a in acts)

    def fill_copy(self, src: np.ndarray) -> None:
        sample = self.pub.loan_slice_uninit(FRAME_BYTES)
        dst = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
        np.copyto(dst, src.reshape(-1))
        del dst
        self.sample = sample

    def fill_stamp(self, n: int) -> None:
        sample = self.pub.loan_slice_uninit(FRAME_BYTES)
        mv = sample.payload().as_memory_view()
        _stamp(mv, 0, n)
        del mv
        self.sample = sample

    def publish(self) -> None:
        sample, self.sample = self.sample, None
        if sample.assume_init().send() != 1:
            raise BenchError("iceoryx2: sample not delivered to the subscriber")
        self.notifier.notify()
        self.in_flight += 1

    def close(self) -> None:
        if self.sample is not None:
            with contextlib.suppress(Exception):
                self.sample.delete()
            self.sample = None
        for port in (self.pub, self.notifier, self.ack):
            with contextlib.suppress(Exception):
                port.delete()
        self._keep = None
        self.node = None


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------


def _make_producer(mech: str, tag: str, tmp: str, ctx: Any, args: argparse.Namespace) -> Any:
    if mech == "ring":
        return RingProducer(tag, args.window, args.timeout)
    if mech == "mpqueue":
        return MPQueueProducer(ctx, args.timeout)
    if mech == "shm":
        return ShmProducer(tag, tmp, args.window, args.timeout)
    if mech == "iceoryx2":
        return IoxProducer(tag, args.window, args.timeout)
    raise ValueError(mech)


class ConsumerLink:
    """The parent's end of the consumer's result pipe, plus its process."""

    def __init__(self, conn: Any, proc: Any, mech: str) -> None:
        self.conn, self.proc, self.mech = conn, proc, mech
        self.pending: list[tuple[Any, ...]] = []

    def _take(self) -> None:
        msg = self.conn.recv()
        if msg[0] == "error":
            raise BenchError(f"{self.mech} consumer failed:\n{msg[1]}")
        self.pending.append(msg)

    def watch(self) -> None:
        """Raises if the consumer reported an error or died (non-blocking)."""
        if self.conn.poll(0):
            self._take()
        elif not self.proc.is_alive():
            raise BenchError(f"{self.mech} consumer died (exit code {self.proc.exitcode})")

    def recv(self, timeout: float, what: str) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.conn.poll(WAIT_SLICE_S):
                self._take()
                continue
            self.watch()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.mech}: timed out while {what}")
        return self.pending.pop(0)


def case_windows(args: argparse.Namespace) -> list[int]:
    return sorted({1, args.window})


def case_keys(args: argparse.Namespace) -> list[str]:
    """Report order: regime, then case."""
    keys = []
    for regime, temp in REGIMES:
        keys += [f"{regime}-{temp}/b2b-w{w}" for w in case_windows(args)]
        keys.append(f"{regime}-{temp}/paced-w{args.window}")
    return keys


def build_plan(mech: str, args: argparse.Namespace) -> list[tuple[str, str, str, str, int, int]]:
    """[(key, regime, temp, mode, window, frames)]: warm-up, all b2b cases, then paced."""
    n_b2b = args.baseline_frames if mech == BASELINE else args.frames
    plan = [("warmup", "copy", "hot", "b2b", args.window, args.warmup)]
    for regime, temp in REGIMES:
        for w in case_windows(args):
            plan.append((f"{regime}-{temp}/b2b-w{w}", regime, temp, "b2b", w, n_b2b))
    for regime, temp in REGIMES:
        key = f"{regime}-{temp}/paced-w{args.window}"
        plan.append((key, regime, temp, "paced", args.window, args.paced_frames))
    return plan


def run_session(
    mech: str,
    rnd: int,
    sets: dict[str, list[np.ndarray]],
    ctx: Any,
    tmp: str,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """One consumer process, all cases; returns {case: metrics}."""
    plan = build_plan(mech, args)
    windows = bytes(w for *_, w, count in plan for _ in range(count))
    total = len(windows)
    tag = f"{os.getpid()}_{rnd}_{mech}"
    t_copy = np.zeros(total, np.int64)
    t_ready = np.zeros(total, np.int64)
    prod = proc = None
    ok = False
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    try:
        prod = _make_producer(mech, tag, tmp, ctx, args)
        params = dict(
            prod.params(), windows=windows, max_window=args.window, timeout=args.timeout
        )
        proc = ctx.Process(
            target=consumer_main,
            args=(mech, params, total, send_conn),
            name=f"bench-consumer-{mech}",
            daemon=True,
        )
        proc.start()
        send_conn.close()
        link = ConsumerLink(recv_conn, proc, mech)
        link.recv(args.timeout + 30, "starting the consumer")
        prod.watch = link.watch

        mono, sleep = time.monotonic_ns, time.sleep
        wait_room, publish = prod.wait_room, prod.publish
        fill_copy = prod.fill_copy
        fill_stamp: Any = getattr(prod, "fill_stamp", None)  # None where not prod.inplace
        n = 0
        for _key, regime, temp, mode, window, count in plan:
            frames = sets[temp]
            in_place = regime == "inplace" and prod.inplace
            period = int(1e9 / args.fps) if mode == "paced" else 0
            t0 = mono() + period
            for i in range(count):
                if period:
                    delay = t0 + i * period - mono()
                    if delay > 0:
                        sleep(delay / 1e9)
                wait_room(window)
                if in_place:
                    tc = mono()
                    fill_stamp(n)
                else:
                    # mpqueue's hot set is window+1 frames: the frame stamped here was handed
                    # over >= window+1 frames ago and released, so its pickling is long done.
                    f = frames[n % len(frames)]
                    _stamp(f, 0, n)
                    tc = mono()
                    fill_copy(f)
                tr = mono()
                publish()
                t_copy[n], t_ready[n] = tc, tr
                n += 1
        msg = link.recv(args.timeout, "waiting for the consumer's results")
        _, t_avail, t_done, _digest = msg
        ok = True
        if isinstance(prod, MPQueueProducer):
            prod.ok = True
    finally:
        # Stop the consumer before tearing down the producer's resources: a ring holder
        # that closes after the creator would leave a stray <name>.reg.lock behind.
        if proc is not None and proc.pid is not None:
            if ok:
                proc.join(args.timeout)
            elif proc.is_alive():
                proc.terminate()  # SIGTERM -> SystemExit in the consumer -> its finally
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if prod is not None:
            with contextlib.suppress(Exception):
                prod.close()
        recv_conn.close()
    if proc.exitcode != 0:
        raise BenchError(f"{mech}: consumer exited with code {proc.exitcode}")

    out: dict[str, dict[str, Any]] = {}
    lo = 0
    for key, regime, _temp, mode, _window, count in plan:
        sl = slice(lo, lo + count)
        lo += count
        if key == "warmup":
            continue
        hand = (t_avail[sl] - t_ready[sl]) / 1e3
        if np.any(hand < 0):
            raise BenchError(f"{mech}: negative latency (clock mismatch?)")
        r: dict[str, Any] = {
            "n": count,
            "fps": count / ((t_done[sl][-1] - t_copy[sl][0]) / 1e9) if mode == "b2b" else None,
            "handoff_p50_us": float(np.percentile(hand, 50)),
            "handoff_p99_us": float(np.percentile(hand, 99)),
            "copy_handoff_p50_us": None,
            "copy_handoff_p99_us": None,
            "consume_p50_us": float(np.median((t_done[sl] - t_avail[sl]) / 1e3)),
        }
        if regime == "copy" or not prod.inplace:
            full = (t_avail[sl] - t_copy[sl]) / 1e3
            r["copy_handoff_p50_us"] = float(np.percentile(full, 50))
            r["copy_handoff_p99_us"] = float(np.percentile(full, 99))
        out[key] = r
    return out


def machine_info() -> dict[str, Any]:
    import zmq

    info = bench_common.machine(packages=("pyzmq", "msgpack", "iceoryx2", "xxhash"))
    info["versions"]["libzmq"] = zmq.zmq_version()
    return info | {"hash": "xxhash.xxh3_64 over the whole frame (zero-copy buffer)"}


METRICS = (
    "fps",
    "handoff_p50_us",
    "handoff_p99_us",
    "copy_handoff_p50_us",
    "copy_handoff_p99_us",
    "consume_p50_us",
)


def _median(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mech, cases in results.items():
        summary[mech] = {
            case: {k: _median([r[k] for r in rounds]) for k in METRICS}
            for case, rounds in cases.items()
        }
    pipelined = f"b2b-w{args.window}"
    for mech in summary:
        for case, s in summary[mech].items():
            base = summary.get(BASELINE, {}).get(case)
            s["ratio_vs_mpqueue"] = None
            if not base:
                continue
            if case.endswith(pipelined) and s["fps"] and base["fps"]:
                s["ratio_vs_mpqueue"] = s["fps"] / base["fps"]
            elif not case.endswith(pipelined):
                s["ratio_vs_mpqueue"] = base["handoff_p50_us"] / s["handoff_p50_us"]
    return summary


def targets(summary: dict[str, Any], args: argparse.Namespace) -> list[str]:
    ring = summary.get("ring")
    if not ring:
        return []
    out = ["", "## The ring against the targets", ""]
    pipelined = f"b2b-w{args.window}"
    for regime, temp in REGIMES:
        rt = f"{regime}-{temp}"
        r2 = ring.get(f"{rt}/{pipelined}")
        r1 = ring.get(f"{rt}/b2b-w1")
        parts = []
        mq = summary.get(BASELINE, {}).get(f"{rt}/{pipelined}")
        if r2 and mq and r2["fps"] and mq["fps"]:
            x = r2["fps"] / mq["fps"]
            parts.append(
                f"throughput ({pipelined}) {r2['fps']:.0f} fps = {x:.1f}x mp.Queue "
                f"(target >= 20x: {'met' if x >= 20 else 'MISSED'})"
            )
        ix = summary.get("iceoryx2", {}).get(f"{rt}/{pipelined}")
        if r2 and ix and r2["fps"] and ix["fps"]:
            x = r2["fps"] / ix["fps"]
            verdict = "level" if abs(x - 1) <= 0.05 else ("ahead" if x > 1 else "BEHIND")
            parts.append(
                f"{x:.2f}x iceoryx2's {ix['fps']:.0f} fps (target level: {verdict}; "
                f">= 0.95x: {'met' if x >= 0.95 else 'MISSED'})"
            )
        paced = ring.get(f"{rt}/paced-w{args.window}")
        if paced and args.fps == 10:
            p99 = paced["handoff_p99_us"]
            parts.append(f"paced hand-off p99 {p99:.0f} us (target <= 300 us: {'met' if p99 <= 300 else 'MISSED'})")
        if r1:
            p99 = r1["handoff_p99_us"]
            parts.append(
                f"b2b-w1 hand-off p50/p99 {r1['handoff_p50_us']:.0f}/{p99:.0f} us "
                f"(target p99 < 200 us: {'met' if p99 < 200 else 'MISSED'})"
            )
        if parts:
            out.append(f"- {rt}: " + "; ".join(parts))
    return out


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(info: dict[str, Any], args: argparse.Namespace, summary: dict[str, Any]) -> str:
    lines = [
        "# Frame hand-off benchmark (1920x1080 BGRA, 8,294,400 B/frame)",
        "",
        *bench_common.machine_lines(info),
        f"- the run took {info.get('elapsed_s', '?')} s",
        "- others = the rest of the machine's busy CPU while each session ran, % of one core, by round: "
        + "; ".join(
            f"{mech} {', '.join(_fmt(x) for x in xs)}" for mech, xs in info.get("others_percent", {}).items()
        ),
        f"- {args.rounds} rounds (mechanisms in rotating order, a fresh consumer process each), "
        f"medians over rounds; b2b {args.frames} frames/case ({BASELINE}: {args.baseline_frames}), "
        f"paced {args.paced_frames} frames/case at {args.fps:g} fps, warm-up {args.warmup}; "
        f"consumer: counter check + {info['hash']} of every frame",
        f"- regimes: copy = the producer copies a distinct source frame into the mechanism per "
        f"frame (hot: {args.hot_frames} source frames; cold: {args.cold_frames} source frames = "
        f"{args.cold_frames * FRAME_BYTES / 2**20:.0f} MiB > L3); in-place = the frame is produced "
        "in the mechanism's shared memory, only the 16-byte counter stamp is written per frame "
        "(hot only: slot pools stay cache-resident)",
        "- cases: b2b-w1 = back to back, 1 frame in flight (next frame handed over only after "
        "the consumer released the previous: no queueing); "
        f"b2b-w{args.window} = back to back, pipelined window of {args.window} (the throughput "
        "figure; its latency includes queueing); "
        f"paced-w{args.window} = {args.fps:g} fps, window {args.window}",
        "- hand-off latency = frame complete in the mechanism's memory, just before the hand-off "
        "(ring commit+hand_over+send, shm send, iceoryx2 send+notify, mp.Queue put) -> consumer "
        "has it in hand, before hashing; copy + hand-off = from the start of the producer's copy "
        "(copy regime; for mp.Queue the copy is the pickling inside put, so both are the same)",
        "- consumer us = median time the consumer holds a frame (counter check + xxh3 of 8 MB + "
        "release/ack)",
        f"- vs mp.Queue: b2b-w{args.window} = frames/s / mp.Queue frames/s; b2b-w1 and paced = "
        "mp.Queue hand-off p50 / hand-off p50 (> 1 = better)",
        "",
        "| regime | case | mechanism | frames/s | hand-off p50 us | hand-off p99 us "
        "| copy+hand-off p50 us | copy+hand-off p99 us | consumer us | vs mp.Queue |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    note = False
    for key in case_keys(args):
        regime_temp, case = key.split("/")
        for mech in summary:
            s = summary[mech].get(key)
            if s is None:
                continue
            label = mech
            if regime_temp.startswith("inplace") and mech == "mpqueue":
                label, note = "mpqueue *", True
            ratio = "" if s["ratio_vs_mpqueue"] is None else f"{s['ratio_vs_mpqueue']:.1f}x"
            lines.append(
                f"| {regime_temp} | {case} | {label} | {_fmt(s['fps'])} "
                f"| {_fmt(s['handoff_p50_us'])} | {_fmt(s['handoff_p99_us'])} "
                f"| {_fmt(s['copy_handoff_p50_us'])} | {_fmt(s['copy_handoff_p99_us'])} "
                f"| {_fmt(s['consume_p50_us'])} | {ratio} |"
            )
    if note:
        lines += [
            "",
            "\\* mp.Queue cannot hand a frame over in place: in the in-place rows it still "
            "pickles and sends the whole (hot) frame, as in copy-hot.",
        ]
    lines += targets(summary, args)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=300, help="frames per b2b case per round")
    ap.add_argument(
        "--baseline-frames", type=int, default=60, help="frames per b2b case for mpqueue"
    )
    ap.add_argument("--paced-frames", type=int, default=30, help="frames per paced case per round")
    ap.add_argument("--fps", type=float, default=10.0, help="rate of the paced cases")
    ap.add_argument("--window", type=int, default=2, help="pipelined window (frames in flight)")
    ap.add_argument("--hot-frames", type=int, default=None, help="hot source set (default window+1)")
    ap.add_argument("--cold-frames", type=int, default=48, help="cold source set (48 = 380 MiB)")
    ap.add_argument("--warmup", type=int, default=16, help="unmeasured frames per session")
    ap.add_argument("--mechanisms", default=",".join(MECHANISMS))
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds any wait may block")
    ap.add_argument("--json", help="write results as JSON here")
    ap.add_argument("--md", help="write the Markdown report here")
    ap.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.frames, args.baseline_frames = 1, 20, 10
        args.paced_frames, args.fps, args.cold_frames, args.warmup = 4, 40.0, 6, 4
    if args.hot_frames is None:
        args.hot_frames = args.window + 1
    mechs = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    bad = [m for m in mechs if m not in MECHANISMS]
    if bad or not mechs:
        ap.error(f"unknown mechanisms {bad}; choose from {', '.join(MECHANISMS)}")
    args.mechanisms = mechs
    if not 1 <= args.window <= 255 or args.rounds < 1:
        ap.error("window must be 1..255, rounds >= 1")
    if min(args.frames, args.baseline_frames, args.paced_frames) < 2 or args.warmup < 0:
        ap.error("frame counts must be >= 2, warm-up >= 0")
    # mpqueue pickles asynchronously (feeder thread): a frame must not be re-stamped while a
    # put of it may still be pending, which holds when the source set exceeds the window.
    if min(args.hot_frames, args.cold_frames) < args.window + 1:
        ap.error("--hot-frames and --cold-frames must be >= window + 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        import xxhash  # noqa: F401
    except ImportError:
        print("xxhash not installed (scripts/setup test,bench)", file=sys.stderr)
        return 2
    if "iceoryx2" in args.mechanisms:
        try:
            import iceoryx2  # noqa: F401
        except ImportError:
            print("iceoryx2 not installed (pip install iceoryx2): skipping it", file=sys.stderr)
            args.mechanisms.remove("iceoryx2")
    info = machine_info()
    ctx = mp.get_context("spawn")

    def alloc(k: int, salt: int) -> list[np.ndarray]:
        out = []
        for i in range(k):
            f = np.empty((H, W, C), np.uint8)
            f[...] = (salt * 131 + i * 7) & 0xFF  # touches every page
            f[i % H, :, 0] = 255 - f[0, 0, 1]
            out.append(f)
        return out

    sets = {"hot": alloc(args.hot_frames, 1), "cold": alloc(args.cold_frames, 2)}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {m: {} for m in args.mechanisms}
    others: dict[str, list[float | None]] = {m: [] for m in args.mechanisms}
    tmp = tempfile.mkdtemp(prefix="bench_handoff-")
    t_begin = time.monotonic()
    try:
        mechs = list(args.mechanisms)
        for rnd in range(args.rounds):
            order = mechs[rnd % len(mechs):] + mechs[: rnd % len(mechs)]
            for mech in order:
                t = time.monotonic()
                meter = OthersMeter()
                res = run_session(mech, rnd, sets, ctx, tmp, args)
                others[mech].append(meter.percent())
                for case, r in res.items():
                    results[mech].setdefault(case, []).append(r)
                brief = " ".join(
                    f"{c}={_fmt(r['fps'])}fps/{r['handoff_p50_us']:.0f}us"
                    for c, r in res.items()
                    if "paced" not in c
                )
                print(
                    f"[round {rnd + 1}/{args.rounds}] {mech:9s} {time.monotonic() - t:5.1f}s "
                    f"others {_fmt(others[mech][-1])}% {brief}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results, args)
    info["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    info["others_percent"] = others
    md = markdown(info, args, summary)
    print(md)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(md)
    if args.json:
        cfg = {k: v for k, v in vars(args).items() if k not in ("json", "md")}
        with open(args.json, "w") as fh:
            json.dump(
                {"machine": info, "config": cfg, "summary": summary, "rounds": results},
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
