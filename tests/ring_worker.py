"""Worker processes for the multi-process ring tests.

Run as `python ring_worker.py ROLE JSON-ARGS`; each role prints "ready" (or a
status line) when it has reached the state the test waits for, and a final JSON
line with its counts. Frames carry their own check: every byte of frame `seq`
is a function of `seq` (`expected`), so a torn or overwritten frame never passes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TypedDict

import numpy as np
import zmq

import jarvis_rust_core as jrc
from pipeline import protocol

CHANNELS = {"BGRA": 4, "RGB": 3, "GRAY": 1}

#: A role's arguments: the JSON object the test passes (Worker(role, **args)).
Args = dict[str, Any]


class WriterCounts(TypedDict):
    written: int
    refused: int
    backpressure: int
    handed: list[int]  # per holder
    offered: int


def expected(seq: int, h: int, w: int, c: int) -> np.ndarray:
    """The pixels of frame `seq` as (h, w*c): a random row per frame, shifted per row."""
    row = np.random.default_rng(seq).integers(0, 256, w * c, dtype=np.uint8)
    step = np.uint8(seq % 251 + 1)
    shifts = (np.arange(h, dtype=np.uint64) * int(step) % 256).astype(np.uint8)
    return row[None, :] + shifts[:, None]


def intact(ref: jrc.FrameRef, pixels: np.ndarray) -> bool:
    c = ref.channels
    return bool(np.array_equal(pixels.reshape(ref.h, ref.w * c), expected(ref.seq, ref.h, ref.w, c)))


def say(obj: object) -> None:
    print(obj if isinstance(obj, str) else json.dumps(obj), flush=True)


def random_geometry(rng: np.random.Generator, max_w: int, max_h: int) -> tuple[int, int, str]:
    # Log-uniform sizes: mostly small frames, regularly full 4K ones.
    w = int(np.exp(rng.uniform(0, np.log(max_w + 1))))
    h = int(np.exp(rng.uniform(0, np.log(max_h + 1))))
    if rng.random() < 0.1:
        w, h = max_w, max_h
    return max(1, min(w, max_w)), max(1, min(h, max_h)), str(rng.choice(list(CHANNELS)))


def writer(a: Args) -> None:
    """Writes random frames for a.seconds, handing each to one of the holders
    (each hop has a credit of 2 frames in flight) and offering every frame to
    the copy reader, which takes no hold."""
    mem = jrc.SharedVisionMemory.attach(a["ring"], writer=True, holder="writer")
    ctx = zmq.Context()
    holders = []
    for hop, (name, endpoint) in enumerate(a["holders"]):
        s = ctx.socket(zmq.PUSH)
        s.connect(endpoint)
        holders.append((hop, name, s))
    copier = ctx.socket(zmq.PUSH)
    copier.setsockopt(zmq.SNDHWM, 4)
    copier.connect(a["copier"])
    rng = np.random.default_rng(a["seed"])
    counts: WriterCounts = {"written": 0, "refused": 0, "backpressure": 0, "handed": [0] * len(holders), "offered": 0}
    deadline = time.monotonic() + a["seconds"]
    turn = 0
    say("ready")
    while time.monotonic() < deadline:
        w, h, fmt = random_geometry(rng, a["max_w"], a["max_h"])
        try:
            res = mem.reserve(w, h, fmt)
        except jrc.RingFull:
            counts["refused"] += 1
            time.sleep(0.001)
            continue
        c = CHANNELS[fmt]
        res.array.reshape(h, w * c)[:] = expected(res.seq, h, w, c)
        ref = res.commit(hold=True)
        counts["written"] += 1
        mem.counter_add(protocol.COUNTER_INDEX["captured"])
        try:
            copier.send(protocol.encode_frame_ref(ref), zmq.NOBLOCK)
            counts["offered"] += 1
        except zmq.Again:
            pass
        hop, name, sock = holders[turn % len(holders)]
        turn += 1
        if mem.credit_take(hop, 2):
            mem.hand_over(ref, name)
            sock.send(protocol.encode_frame_ref(ref))
            counts["handed"][hop] += 1
        else:
            mem.release(ref)
            counts["backpressure"] += 1
            mem.counter_add(protocol.COUNTER_INDEX["dropped.backpressure"])
    for _, _, sock in holders:
        sock.send(b"END")
    copier.send(b"END")
    say(counts)
    mem.close()
    ctx.destroy(linger=1000)


def holder(a: Args) -> None:
    mem = jrc.SharedVisionMemory.attach(a["ring"], holder=a["name"])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(a["endpoint"])
    counts = {"verified": 0, "bad": 0}
    say("ready")
    while (msg := sock.recv()) != b"END":
        ref, _ = protocol.decode_frame_ref(msg)
        mem.accept(ref)
        counts["verified" if intact(ref, mem.read(ref)) else "bad"] += 1
        mem.release(ref)
        mem.counter_add(protocol.COUNTER_INDEX["forwarded"])
        mem.credit_return(a["hop"])
    say(counts)
    mem.close()


def copier(a: Args) -> None:
    mem = jrc.SharedVisionMemory.attach(a["ring"])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(a["endpoint"])
    counts = {"ok": 0, "expired": 0, "bad": 0}
    say("ready")
    while (msg := sock.recv()) != b"END":
        ref, _ = protocol.decode_frame_ref(msg)
        try:
            pixels = mem.read_copy(ref)
        except jrc.FrameExpired:
            counts["expired"] += 1
            continue
        counts["ok" if intact(ref, pixels) else "bad"] += 1
    say(counts)


def hold_everything(a: Args) -> None:
    """Holds every published frame, then waits to be killed."""
    mem = jrc.SharedVisionMemory.attach(a["ring"], holder=a["name"])
    refs = mem.get_frame_pointers()
    for r in refs:
        mem.hold(r)
    say(f"holding {len(refs)}")
    sys.stdin.read()


def die_mid_write(a: Args) -> None:
    """Writes a.frames frames, then leaves one half written and waits to be killed."""
    mem = jrc.SharedVisionMemory.attach(a["ring"], writer=True, holder="capture")
    for i in range(a["frames"]):
        mem.write_frame(np.full((8, 8, 4), i, np.uint8))
    res = mem.reserve(8, 8)
    res.array[:4] = 255
    say(f"mid-write {res.slot}")
    sys.stdin.read()


def handoff_receiver(a: Args) -> None:
    """Receives a.n messages from hop a.hop's queue as a stage does: take what
    is queued; when nothing is, arm, say "sleeping" and sleep on the wake-up
    descriptor a.fd (at most a.sleep_s: a lost wake-up fails the test), then
    clear it. Says each message."""
    import select

    from pipeline import handoff

    mem = jrc.SharedVisionMemory.attach(a["ring"], holder=a["name"])
    poll = select.poll()
    poll.register(a["fd"], select.POLLIN)
    got = 0
    while got < a["n"]:
        msg = mem.handoff_pop(a["hop"])
        if msg is not None:
            say(msg.decode())
            got += 1
        elif not mem.handoff_arm(a["hop"]):
            say("sleeping")
            if not poll.poll(a["sleep_s"] * 1000):
                say("no wake-up")
                sys.exit(1)
            handoff.clear(a["fd"])
    mem.close()


def create_and_wait(a: Args) -> None:
    mem = jrc.SharedVisionMemory(name=a["ring"], slots=2, max_width=8, max_height=8, holder="capture")
    mem.write_frame(np.ones((8, 8, 4), np.uint8))
    say(f"created {mem.generation}")
    sys.stdin.read()


ROLES = {f.__name__: f for f in (writer, holder, copier, hold_everything, die_mid_write, handoff_receiver, create_and_wait)}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
