"""A two-process demonstration of the frame ring: a producer writes synthetic
1080p frames and hands each to a consumer process, which checksums it in place
and releases it; only the FrameRef crosses the ZeroMQ socket."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
import zlib

import numpy as np
import zmq

import jarvis_rust_core as jrc
from pipeline import protocol

WIDTH, HEIGHT = 1920, 1080
CREDIT = 2  # frames in flight to the consumer


def consume(ring: str, frames_endpoint: str, acks_endpoint: str) -> None:
    mem = jrc.SharedVisionMemory.attach(ring, holder="consumer")
    ctx = zmq.Context()
    frames, acks = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    frames.connect(frames_endpoint)
    acks.connect(acks_endpoint)
    while (msg := frames.recv()) != b"END":
        ref, _ = protocol.decode_frame_ref(msg)
        mem.accept(ref)
        arrived = time.monotonic_ns()
        checksum = zlib.crc32(mem.read(ref).data)
        mem.release(ref)
        mem.credit_return(0)
        acks.send_pyobj((ref.seq, arrived - ref.t_mono_ns, checksum))
    mem.close()
    ctx.destroy(linger=0)


def run(seconds: float, fps: float) -> int:
    rundir = tempfile.mkdtemp(prefix="jarvis-demo-")
    os.chmod(rundir, 0o700)
    ring = f"demo-{os.getpid()}"
    mem = jrc.SharedVisionMemory(name=ring, slots=4, max_width=WIDTH, max_height=HEIGHT, holder="producer")
    ctx = zmq.Context()
    frames, acks = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    frames.bind(f"ipc://{rundir}/frames")
    acks.bind(f"ipc://{rundir}/acks")
    consumer = mp.get_context("spawn").Process(
        target=consume, args=(ring, f"ipc://{rundir}/frames", f"ipc://{rundir}/acks"), daemon=True
    )
    consumer.start()
    while not any(h["name"] == "consumer" for h in mem.holders()):
        if not consumer.is_alive():
            raise SystemExit("the consumer process failed to start")
        acks.poll(50)
    print(f"ring {ring}: {mem.slot_count} slots of {mem.slot_bytes / 2**20:.1f} MiB in {mem.path}")
    print(f"producer -> consumer, {WIDTH}x{HEIGHT} BGRA at {fps:g} frames/s for {seconds:g} s; Ctrl-C stops")
    base = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    poller = zmq.Poller()
    poller.register(acks, zmq.POLLIN)
    sent = dropped = 0
    latencies: list[int] = []
    start = next_report = time.monotonic()
    try:
        while (now := time.monotonic()) < start + seconds:
            if mem.credit_take(0, CREDIT):
                base[0, 0, :] = sent % 256  # each frame differs
                ref = mem.write_frame(base, hold=True)
                mem.hand_over(ref, "consumer")
                frames.send(protocol.encode_frame_ref(ref))
                sent += 1
            else:
                dropped += 1
            deadline = now + 1.0 / fps
            while (wait := deadline - time.monotonic()) > 0:
                if dict(poller.poll(int(wait * 1000) + 1)):
                    latencies.append(acks.recv_pyobj()[1])
            if time.monotonic() >= next_report:
                next_report += 1.0
                recent = latencies[-int(fps) :] or [0]
                print(
                    f"{time.monotonic() - start:5.1f}s  sent {sent:6d}  received {len(latencies):6d}  "
                    f"dropped {dropped:4d}  write+hand-off p50 {statistics.median(recent) / 1e3:7.1f} us"
                )
    except KeyboardInterrupt:
        print("stopping")
    frames.send(b"END")
    consumer.join(10)
    while acks.poll(100):
        latencies.append(acks.recv_pyobj()[1])
    mem.close()
    ctx.destroy(linger=0)
    shutil.rmtree(rundir, ignore_errors=True)
    lat = sorted(latencies) or [0]
    print(
        f"done: {sent} frames handed over, {len(latencies)} checksummed, {dropped} dropped for back-pressure; "
        f"write+hand-off latency p50 {lat[len(lat) // 2] / 1e3:.1f} us, p99 {lat[int(len(lat) * 0.99)] / 1e3:.1f} us"
    )
    return 0 if len(latencies) == sent else 1
