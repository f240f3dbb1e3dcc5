#!/usr/bin/env python3
# mypy: disable-error-code="import-untyped"
"""Benchmark: handing 1920x1080 BGRA frames (8,294,400 bytes) to another process.

Mechanisms (the parent process is always the producer, a spawned child the consumer):

  ring      jarvis_rust_core.SharedVisionMemory + ZeroMQ ipc PUSH/PULL carrying only the
            FrameRef (msgpack of ref.to_dict()); write_frame(hold=True) -> hand_over to the
            holder "consumer" -> consumer accept/read (zero-copy view)/release. Window: ring
            credits (credit_take(0, window) / credit_return(0)); a blocked producer waits on a
            ZeroMQ ack socket that the consumer signals when credits drop below the limit.
  mpqueue   multiprocessing.Queue(maxsize=window) of numpy frames (pickled by the feeder thread).
  shm       multiprocessing.shared_memory.SharedMemory with `window` slots; slot indices over a
            ZeroMQ PUSH/PULL pair, free slots returned over a second pair.
  iceoryx2  iceoryx2 publish-subscribe (Slice[c_uint8] sized for one frame, loan + copy into the
            loaned sample, zero-copy as_memory_view() on the subscriber). The consumer is woken
            by an iceoryx2 event service (notifier -> listener.timed_wait); the window is enforced
            with a second event service carrying acks back (EventActivation.count).

Every mechanism copies the frame exactly once on the producer side, except mpqueue (pickle,
pipe, unpickle). The consumer CRC32s every byte of every frame (zlib.crc32 over the buffer),
after checking the frame counter the producer stamped into the first and last 8 bytes (frames
must arrive complete, in order, none lost or duplicated; a mismatch aborts the run).

Cases: b2b (back to back) and paced (--fps), each with a hot working set (--hot-frames, default
window+1 so that mpqueue's asynchronous pickling never sees a frame re-stamped) and a cold one
(--cold-frames distinct frames, default 48 = ~400 MB, larger than the L3 cache).

Latency = consumer has the frame in hand (before hashing) - producer starts the hand-off
(before waiting for window credit / put / write), both time.monotonic_ns(). In b2b this
includes the queueing behind the window (Little's law: ~window / throughput); the paced
latencies are the unloaded hand-off cost. Throughput (b2b) = frames / (last consumer done -
first producer start). Each round runs every mechanism once (rotating order) in a fresh
consumer process; the table reports the median over rounds.

Usage:
  .venv/bin/python scripts/bench_handoff.py --quick
  .venv/bin/python scripts/bench_handoff.py --json /tmp/bench_handoff.json --md /tmp/bench_handoff.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from typing import Any

import numpy as np

H, W, C = 1080, 1920, 4
FRAME_BYTES = H * W * C  # 8,294,400
MECHANISMS = ("ring", "mpqueue", "shm", "iceoryx2")
CASES = (("b2b", "hot"), ("b2b", "cold"), ("paced", "hot"), ("paced", "cold"))
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


def _sigterm_to_exit(signum: int, _frame: Any) -> None:
    # Turn SIGTERM into SystemExit so that finally blocks (ring close, unlink) run.
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------------------------
# consumer side (runs in a spawned child)
# --------------------------------------------------------------------------------------------


def _verify(buf: Any, n: int) -> None:
    head = _U64.unpack_from(buf, 0)[0]
    tail = _U64.unpack_from(buf, FRAME_BYTES - 8)[0]
    if head != n or tail != n:
        raise BenchError(f"wrong frame: expected counter {n}, got head={head} tail={tail}")


class RingConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        import jarvis_rust_core as jrc
        import msgpack
        import zmq

        self._jrc, self._unpack = jrc, msgpack.unpackb
        self.window = p["window"]
        self.mem = jrc.SharedVisionMemory.attach(p["ring_name"], holder="consumer")
        self.zctx = zmq.Context()
        self.data = self.zctx.socket(zmq.PULL)
        self.ack = self.zctx.socket(zmq.PUSH)
        for s in (self.data, self.ack):
            s.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.RCVTIMEO, int(p["timeout"] * 1000))
        self.ack.setsockopt(zmq.SNDTIMEO, int(p["timeout"] * 1000))
        self.data.connect(p["data_ep"])
        self.ack.connect(p["ack_ep"])

    def recv(self) -> tuple[Any, Any]:
        ref = self._jrc.FrameRef.from_dict(self._unpack(self.data.recv()))
        self.mem.accept(ref)
        return self.mem.read(ref), ref

    def done(self, ref: Any) -> None:
        self.mem.release(ref)
        # Wake the producer only when it may be blocked (credits were at the limit).
        if self.mem.credit_return(0) == self.window - 1:
            self.ack.send(b"")

    def close(self) -> None:
        self.data.close()
        self.ack.close()
        self.zctx.term()
        self.mem.close()


class MPQueueConsumer:
    def __init__(self, p: dict[str, Any]) -> None:
        self.q = p["queue"]
        self.timeout = p["timeout"]

    def recv(self) -> tuple[Any, Any]:
        import queue

        try:
            return self.q.get(timeout=self.timeout), None
        except queue.Empty:
            raise BenchError("timed out waiting for a frame") from None

    def done(self, _tok: Any) -> None:
        pass

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

    def done(self, msg: Any) -> None:
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
        frames, ready, ack = _iox_setup(self.node, p["iox_base"], p["window"], create=False)
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

    def done(self, sample: Any) -> None:
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
        cons = CONSUMERS[mech](params)
        conn.send(("ready", os.getpid()))
        t_avail = np.zeros(total, np.int64)
        t_done = np.zeros(total, np.int64)
        crc = 0
        mono = time.monotonic_ns
        for n in range(total):
            buf, tok = cons.recv()
            t_avail[n] = mono()
            _verify(buf, n)
            crc ^= zlib.crc32(buf)
            del buf
            cons.done(tok)
            del tok
            t_done[n] = mono()
        conn.send(("done", t_avail, t_done, crc))
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
# --------------------------------------------------------------------------------------------


class RingProducer:
    def __init__(self, tag: str, tmp: str, window: int, timeout: float) -> None:
        import jarvis_rust_core as jrc
        import msgpack
        import zmq

        self._jrc, self._pack = jrc, msgpack.packb
        self.window, self.timeout, self.watch = window, timeout, lambda: None
        self.name = f"bh{tag}"
        slots = window + 2
        self.mem: Any = None
        self.zctx = zmq.Context()
        self.data = self.zctx.socket(zmq.PUSH)
        self.ack = self.zctx.socket(zmq.PULL)
        for s in (self.data, self.ack):
            s.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.ack.setsockopt(zmq.RCVTIMEO, int(WAIT_SLICE_S * 1000))
        self.data_ep, self.ack_ep = f"ipc://{tmp}/{tag}.data", f"ipc://{tmp}/{tag}.ack"
        self.data.bind(self.data_ep)
        self.ack.bind(self.ack_ep)
        self.mem = jrc.SharedVisionMemory(
            size_mb=slots * FRAME_BYTES / 2**20 + 1,
            name=self.name,
            slots=slots,
            max_width=W,
            max_height=H,
            holder="producer",
        )

    def params(self) -> dict[str, Any]:
        return {"ring_name": self.name, "data_ep": self.data_ep, "ack_ep": self.ack_ep}

    def _wait_ack(self) -> None:
        import zmq

        def attempt() -> Any:
            try:
                return self.ack.recv()
            except zmq.Again:
                return None

        _wait(attempt, self.watch, self.timeout, "ring: waiting for the consumer's ack")

    def send(self, frame: np.ndarray) -> None:
        mem = self.mem
        while not mem.credit_take(0, self.window):
            self._wait_ack()
        while True:
            try:
                ref = mem.write_frame(frame, hold=True)
                break
            except self._jrc.RingFull:  # not expected with slots > window; wait, never spin
                self._wait_ack()
        mem.hand_over(ref, "consumer")
        self.data.send(self._pack(ref.to_dict()))

    def close(self) -> None:
        self.data.close()
        self.ack.close()
        self.zctx.term()
        if self.mem is not None:
            self.mem.close()


class MPQueueProducer:
    def __init__(self, ctx: Any, window: int, timeout: float) -> None:
        self.q = ctx.Queue(maxsize=window)
        self.timeout, self.watch = timeout, lambda: None
        self.ok = False

    def params(self) -> dict[str, Any]:
        return {"queue": self.q}

    def send(self, frame: np.ndarray) -> None:
        import queue

        def attempt() -> Any:
            try:
                self.q.put(frame, timeout=WAIT_SLICE_S)
                return True
            except queue.Full:
                return None

        _wait(attempt, self.watch, self.timeout, "mpqueue: waiting for room in the queue")

    def close(self) -> None:
        self.q.close()
        if self.ok:
            self.q.join_thread()
        else:
            self.q.cancel_join_thread()


class ShmProducer:
    def __init__(self, tag: str, tmp: str, window: int, timeout: float) -> None:
        from multiprocessing import shared_memory

        import zmq

        self.nslots = window
        self.timeout, self.watch = timeout, lambda: None
        self.shm = shared_memory.SharedMemory(
            name=f"bh{tag}", create=True, size=self.nslots * FRAME_BYTES
        )
        self.slots = np.ndarray((self.nslots, FRAME_BYTES), np.uint8, buffer=self.shm.buf)
        self.free_local = list(range(self.nslots))
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

    def send(self, frame: np.ndarray) -> None:
        import zmq

        if self.free_local:
            slot = self.free_local.pop()
        else:

            def attempt() -> Any:
                try:
                    return self.free.recv()
                except zmq.Again:
                    return None

            msg = _wait(attempt, self.watch, self.timeout, "shm: waiting for a free slot")
            slot = _U32.unpack(msg)[0]
        np.copyto(self.slots[slot], frame.reshape(-1))
        self.data.send(_U32.pack(slot))

    def close(self) -> None:
        self.data.close()
        self.free.close()
        self.zctx.term()
        del self.slots
        self.shm.close()
        self.shm.unlink()


class IoxProducer:
    def __init__(self, tag: str, window: int, timeout: float) -> None:
        import iceoryx2 as iox

        self.window, self.timeout, self.watch = window, timeout, lambda: None
        self.in_flight = 0
        self.base = f"bench_handoff/{tag}"
        self.node = _iox_node()
        frames, ready, ack = _iox_setup(self.node, self.base, window, create=True)
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

    def send(self, frame: np.ndarray) -> None:
        while self.in_flight >= self.window:
            acts = _wait(
                lambda: self.ack.timed_wait(self.slice) or None,
                self.watch,
                self.timeout,
                "iceoryx2: waiting for the consumer's ack",
            )
            self.in_flight -= sum(a.count for a in acts)
        sample = self.pub.loan_slice_uninit(FRAME_BYTES)
        dst = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
        np.copyto(dst, frame.reshape(-1))
        del dst
        if sample.assume_init().send() != 1:
            raise BenchError("iceoryx2: sample not delivered to the subscriber")
        self.notifier.notify()
        self.in_flight += 1

    def close(self) -> None:
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
        return RingProducer(tag, tmp, args.window, args.timeout)
    if mech == "mpqueue":
        return MPQueueProducer(ctx, args.window, args.timeout)
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


def run_session(
    mech: str,
    rnd: int,
    sets: dict[str, list[np.ndarray]],
    ctx: Any,
    tmp: str,
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """One consumer process, all cases; returns {case: {fps, p50_us, p99_us, n}}."""
    plan: list[tuple[str, str, int]] = [("warmup", "hot", args.warmup)]
    for mode, temp in CASES:
        plan.append((mode, temp, args.frames if mode == "b2b" else args.paced_frames))
    total = sum(n for *_, n in plan)
    tag = f"{os.getpid()}_{rnd}_{mech}"
    t_start = np.zeros(total, np.int64)
    prod = proc = None
    ok = False
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    try:
        prod = _make_producer(mech, tag, tmp, ctx, args)
        params = dict(prod.params(), window=args.window, timeout=args.timeout)
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
        n = 0
        for mode, temp, count in plan:
            frames = sets[temp]
            period = 0 if mode != "paced" else int(1e9 / args.fps)
            t0 = mono() + period
            for i in range(count):
                f = frames[n % len(frames)]
                u = f.reshape(-1).view(np.uint64)
                u[0] = n
                u[-1] = n
                if period:
                    delay = t0 + i * period - mono()
                    if delay > 0:
                        sleep(delay / 1e9)
                t_start[n] = mono()
                prod.send(f)
                n += 1
        msg = link.recv(args.timeout, "waiting for the consumer's results")
        _, t_avail, t_done, _crc = msg
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

    out: dict[str, dict[str, float]] = {}
    lo = args.warmup
    for (mode, temp, count) in plan[1:]:
        sl = slice(lo, lo + count)
        lat_us = (t_avail[sl] - t_start[sl]) / 1e3
        if np.any(lat_us < 0):
            raise BenchError(f"{mech}: negative latency (clock mismatch?)")
        span = (t_done[lo + count - 1] - t_start[lo]) / 1e9
        p50, p99 = np.percentile(lat_us, [50, 99])
        out[f"{mode}-{temp}"] = {
            "fps": count / span,
            "p50_us": float(p50),
            "p99_us": float(p99),
            "n": count,
        }
        lo += count
    return out


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    l3 = None
    with contextlib.suppress(OSError):
        for idx in os.listdir("/sys/devices/system/cpu/cpu0/cache"):
            base = f"/sys/devices/system/cpu/cpu0/cache/{idx}"
            if not idx.startswith("index"):
                continue
            with open(f"{base}/level") as fh, open(f"{base}/size") as fh2:
                if fh.read().strip() == "3":
                    l3 = fh2.read().strip()

    def ver(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        import zmq

        libzmq = zmq.zmq_version()
    except ImportError:
        libzmq = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "l3": l3,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": ver("pyzmq"),
        "libzmq": libzmq,
        "msgpack": ver("msgpack"),
        "iceoryx2": ver("iceoryx2"),
        "jarvis_rust_core": ver("jarvis_rust_core") or ver("jarvis-rust-core"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "hash": "zlib.crc32 over the whole frame",
    }


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def summarize(results: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mech, cases in results.items():
        summary[mech] = {}
        for case, rounds in cases.items():
            summary[mech][case] = {
                k: _median([r[k] for r in rounds]) for k in ("fps", "p50_us", "p99_us")
            }
    for mech in summary:
        for case, s in summary[mech].items():
            base = summary.get(BASELINE, {}).get(case)
            if not base:
                s["ratio_vs_mpqueue"] = None
            elif case.startswith("b2b"):
                s["ratio_vs_mpqueue"] = s["fps"] / base["fps"]
            else:
                s["ratio_vs_mpqueue"] = base["p50_us"] / s["p50_us"]
    return summary


def markdown(info: dict[str, Any], args: argparse.Namespace, summary: dict[str, Any]) -> str:
    lines = [
        "# Frame hand-off benchmark (1920x1080 BGRA, 8,294,400 B/frame)",
        "",
        f"- date: {info['date']}",
        f"- cpu: {info['cpu']} ({info['cores']} cores, {info['cores_usable']} usable, L3 {info['l3']})",
        f"- kernel {info['kernel']}, python {info['python']}, numpy {info['numpy']}, "
        f"pyzmq {info['pyzmq']} (libzmq {info['libzmq']}), msgpack {info['msgpack']}, "
        f"iceoryx2 {info['iceoryx2']}, jarvis_rust_core {info['jarvis_rust_core']}",
        f"- command: `{info['command']}`",
        f"- rounds {args.rounds} (rotating order), window {args.window} frames in flight, "
        f"b2b {args.frames} frames/case, paced {args.paced_frames} frames/case at {args.fps:g} fps, "
        f"hot set {args.hot_frames} frames, cold set {args.cold_frames} frames "
        f"({args.cold_frames * FRAME_BYTES / 2**20:.0f} MiB), warm-up {args.warmup}; "
        f"consumer hash: {info['hash']}",
        "- medians over rounds; latency = producer starts hand-off (before window wait) -> "
        "consumer has the frame; ratio vs mpqueue: b2b = fps / mpqueue fps, paced = "
        "mpqueue p50 / p50 (both >1 = better)",
        "",
        "| mechanism | case | frames/s (median) | p50 us | p99 us | ratio vs mp.Queue |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode, temp in CASES:
        case = f"{mode}-{temp}"
        for mech in summary:
            s = summary[mech].get(case)
            if s is None:
                continue
            ratio = "" if s["ratio_vs_mpqueue"] is None else f"{s['ratio_vs_mpqueue']:.2f}x"
            lines.append(
                f"| {mech} | {case} | {s['fps']:.1f} | {s['p50_us']:.0f} | {s['p99_us']:.0f} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=300, help="frames per b2b case per round")
    ap.add_argument("--paced-frames", type=int, default=30, help="frames per paced case per round")
    ap.add_argument("--fps", type=float, default=10.0, help="rate of the paced cases")
    ap.add_argument("--window", type=int, default=2, help="frames in flight (all mechanisms)")
    ap.add_argument("--hot-frames", type=int, default=None, help="hot working set (default window+1)")
    ap.add_argument("--cold-frames", type=int, default=48, help="cold working set (48 = ~400 MB)")
    ap.add_argument("--warmup", type=int, default=16, help="unmeasured frames per session")
    ap.add_argument("--mechanisms", default=",".join(MECHANISMS))
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds any wait may block")
    ap.add_argument("--json", help="write results as JSON here")
    ap.add_argument("--md", help="write the Markdown report here")
    ap.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.frames, args.paced_frames, args.fps = 1, 20, 4, 40.0
        args.cold_frames, args.warmup = 6, 4
    if args.hot_frames is None:
        args.hot_frames = args.window + 1
    mechs = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    bad = [m for m in mechs if m not in MECHANISMS]
    if bad or not mechs:
        ap.error(f"unknown mechanisms {bad}; choose from {', '.join(MECHANISMS)}")
    args.mechanisms = mechs
    if args.window < 1 or args.rounds < 1 or args.frames < 2 or args.paced_frames < 2:
        ap.error("window and rounds must be >= 1, frame counts >= 2")
    # mpqueue pickles asynchronously (feeder thread): a frame must not be re-stamped while a
    # put of it may still be pending, which holds when the working set exceeds the window.
    if min(args.hot_frames, args.cold_frames) < args.window + 1:
        ap.error("--hot-frames and --cold-frames must be >= window + 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    if "iceoryx2" in args.mechanisms:
        try:
            import iceoryx2  # noqa: F401
        except ImportError:
            print("iceoryx2 not installed (pip install iceoryx2): skipping it", file=sys.stderr)
            args.mechanisms.remove("iceoryx2")
    info = machine_info(args)
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
    results: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in args.mechanisms}
    tmp = tempfile.mkdtemp(prefix="bench_handoff-")
    t_begin = time.monotonic()
    try:
        mechs = list(args.mechanisms)
        for rnd in range(args.rounds):
            order = mechs[rnd % len(mechs):] + mechs[: rnd % len(mechs)]
            for mech in order:
                t = time.monotonic()
                res = run_session(mech, rnd, sets, ctx, tmp, args)
                for case, r in res.items():
                    results[mech].setdefault(case, []).append(r)
                brief = " ".join(
                    f"{c}={r['fps']:.0f}fps/{r['p50_us']:.0f}us" for c, r in res.items()
                )
                print(
                    f"[round {rnd + 1}/{args.rounds}] {mech:9s} {time.monotonic() - t:5.1f}s {brief}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(results)
    info["elapsed_s"] = round(time.monotonic() - t_begin, 1)
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
