"""The ring across real processes: a stress run with one writer and three
readers, and crash tests (kill -9 of a holder, of the writer mid-write, of a
creator). Tests wait for the workers' status lines, never for time to pass."""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import zmq

import jarvis_rust_core as jrc
from pipeline import config as config_mod
from pipeline import handoff, protocol
from procs import stage

WORKER = str(Path(__file__).with_name("ring_worker.py"))


class Worker:
    def __init__(self, role: str, pass_fds: tuple[int, ...] = (), **args: object) -> None:
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, role, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        # Read by a thread: a worker may say several lines at once, which one
        # readline would buffer out of reach of a select on the pipe.
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # end of output

    def line(self, timeout: float = 60.0) -> str:
        """The worker's next status line; fails if none comes within `timeout`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker {self.role} said nothing for {timeout}s") from None
        assert line, f"worker {self.role} exited with {self.proc.wait()}"
        return line

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.line(timeout))
        assert self.proc.wait(timeout=timeout) == 0
        return out

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def test_one_writer_three_readers_never_see_a_torn_frame(
    shm_base: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    ring = jrc.SharedVisionMemory(name="stress", slots=4, writer=False)  # 3840x2160 BGRA slots: often full
    endpoints = {n: f"ipc://{tmp_path}/{n}.sock" for n in ("h1", "h2", "copy")}
    for hop, name in enumerate(("h1", "h2")):
        workers.append(Worker("holder", ring="stress", name=name, endpoint=endpoints[name], hop=hop))
    workers.append(Worker("copier", ring="stress", endpoint=endpoints["copy"]))
    for worker in workers:
        assert worker.line() == "ready"
    writer = Worker(
        "writer",
        ring="stress",
        seed=1234,
        seconds=6.0,
        max_w=3840,
        max_h=2160,
        holders=[["h1", endpoints["h1"]], ["h2", endpoints["h2"]]],
        copier=endpoints["copy"],
    )
    workers.append(writer)
    assert writer.line() == "ready"
    w = writer.result()
    h1, h2, cp = (x.result() for x in workers[:3])
    print("writer", w, "holders", h1, h2, "copier", cp)

    assert h1["bad"] == h2["bad"] == cp["bad"] == 0, "a torn or overwritten frame was returned"
    assert w["written"] > 50, w
    # Every write is accounted for: read by the holder it was handed to, or let
    # go by the writer for want of credit; attempts without a slot were refused.
    assert [h1["verified"], h2["verified"]] == w["handed"]
    assert sum(w["handed"]) + w["backpressure"] == w["written"]
    assert cp["ok"] + cp["expired"] == w["offered"] and cp["ok"] > 0
    snap = protocol.counter_snapshot(ring.counters())
    assert snap["captured"] == w["written"]
    assert snap["forwarded"] + snap["dropped.backpressure"] == w["written"]
    assert all(not s["holders"] and not s["writing"] for s in ring.slots()), "a slot leaked"
    assert [ring.credit_in_flight(h) for h in (0, 1)] == [0, 0]
    ring.close()


def test_kill9_of_a_holder_gives_its_slots_back(shm_base: Path, workers: list[Worker]) -> None:
    mem = jrc.SharedVisionMemory(name="k", slots=3, max_width=8, max_height=8, holder="capture")
    for i in range(3):
        mem.write_frame(np.full((8, 8, 4), i, np.uint8))
    victim = Worker("hold_everything", ring="k", name="victim")
    workers.append(victim)
    assert victim.line() == "holding 3"
    with pytest.raises(jrc.RingFull, match="victim"):
        mem.write_frame(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(jrc.RingBusy, match="alive"):
        mem.reclaim("victim")
    victim.kill9()
    (entry,) = [h for h in mem.holders() if h["name"] == "victim"]
    assert entry["alive"] is False and entry["holds"] == 3
    assert mem.reclaim_dead() == {"victim": (3, 0)}, "3 holds, none of them owned"
    for _ in range(3):
        mem.write_frame(np.zeros((8, 8, 4), np.uint8), hold=True)
    assert [h["name"] for h in mem.holders()] == ["capture"]
    mem.close()


def test_frames_owned_by_a_dead_stage_come_back_undecided(shm_base: Path, workers: list[Worker]) -> None:
    mem = jrc.SharedVisionMemory(name="own", slots=4, max_width=8, max_height=8, holder="capture")
    victim = Worker("hold_everything", ring="own", name="dedup")
    workers.append(victim)
    assert victim.line() == "holding 0"
    refs = [mem.write_frame(np.full((8, 8, 4), i, np.uint8), hold=True) for i in range(3)]
    for r in refs[:2]:
        mem.hand_over(r, "dedup")  # in transit: dedup owns them, not yet received
    mem.hold(refs[0])  # and capture keeps a reference hold on one of them
    victim.kill9()
    assert mem.reclaim("dedup") == (2, 2), "both in-transit frames were dedup's to decide"
    assert mem.owned() == [refs[2]]
    assert mem.release(refs[0]) is False, "a reference hold never owned the frame"
    mem.close()


class DyingNextStage:
    """The outbox of a stage whose next stage is killed (and reaped by the
    supervisor) between the hand-over and the send, when the hop's queue is
    full too (records of a dead predecessor): the send then fails."""

    def __init__(self, victim: Worker, supervisor: jrc.SharedVisionMemory) -> None:
        self.victim, self.supervisor = victim, supervisor

    def send(self, _msg: bytes, _flags: int) -> None:
        self.victim.kill9()
        self.supervisor.reclaim("forward", count=protocol.COUNTER_INDEX["dropped.stage_crashed"])
        raise zmq.Again()


class BareAnalysis(stage.Stage):
    """A stage that passes frames on to forward, without a process or
    sockets of its own; its events go nowhere."""

    next = "forward"

    def publish(self, topic: str, body: Mapping[str, Any]) -> None:
        pass


def test_a_hand_over_reclaimed_before_its_send_failed_is_counted_once(shm_base: Path, workers: list[Worker]) -> None:
    mem = jrc.SharedVisionMemory(name="race", slots=2, max_width=8, max_height=8, holder="analysis")
    victim = Worker("hold_everything", ring="race", name="forward")
    workers.append(victim)
    assert victim.line() == "holding 0"
    bare = BareAnalysis.__new__(BareAnalysis)  # pass_on and finish need no process or sockets of their own
    bare.mem, bare.hop_out, bare.epoch, bare.frames_out = mem, 2, mem.epoch, 0
    bare.outbox = cast(zmq.Socket[bytes], DyingNextStage(victim, mem))
    wake = handoff.Wake.create()
    bare.wake_out = wake.write_fd
    for _ in range(jrc.HANDOFF_RECORDS):
        mem.handoff_push(2, b"a record nobody took")
    bare.cfg = cast(config_mod.Config, SimpleNamespace(hops=SimpleNamespace(credit=4)))  # only what pass_on reads
    bare.terminal, bare.drops = collections.Counter[str](), collections.Counter[str]()
    ref = mem.write_frame(np.zeros((8, 8, 4), np.uint8), hold=True)
    assert bare.pass_on(ref, {}, keep=True) is False, "the frame did not go on"
    counters = {k: v for k, v in protocol.counter_snapshot(mem.counters()).items() if v}
    assert counters == {"dropped.stage_crashed": 1}, "decided once, by the reclaim"
    assert not bare.terminal and mem.owned() == [] and mem.credit_in_flight(2) == 0
    assert all(not s["holders"] for s in mem.slots()), "the kept hold was let go"
    wake.close()
    mem.close()


#: The kinds, each made without arguments (Wake itself takes its descriptors).
WakeKind = type[handoff.PipeWake] | type[handoff.EventFdWake]
WAKE_KINDS: list[WakeKind] = [handoff.PipeWake] + ([handoff.EventFdWake] if hasattr(os, "eventfd") else [])


@pytest.mark.parametrize("kind", WAKE_KINDS, ids=lambda k: k.kind)
def test_hand_off_messages_wake_a_sleeping_receiver(
        shm_base: Path, workers: list[Worker], kind: WakeKind) -> None:
    mem = jrc.SharedVisionMemory(name="wake", slots=2, max_width=8, max_height=8, holder="capture")
    wake = kind()
    batches = [1, 3, 2, 1, 4, 1, 2, 3, 1, 2]  # several records per wake-up too: the signals coalesce
    receiver = Worker("handoff_receiver", pass_fds=(wake.read_fd,), ring="wake", name="dedup", hop=0,
                      fd=wake.read_fd, n=sum(batches), sleep_s=60)
    workers.append(receiver)
    sent = 0
    for batch in batches:
        assert receiver.line() == "sleeping"
        woken = [mem.handoff_push(0, f"m{sent + i}".encode()) for i in range(batch)]
        assert woken == [True] + [False] * (batch - 1), "one wake-up per sleep, by the first record"
        handoff.wake(wake.write_fd)
        for i in range(batch):
            assert receiver.line() == f"m{sent + i}"
        sent += batch
    assert sent > 2 * jrc.HANDOFF_RECORDS, "the queue's positions wrapped"
    assert receiver.proc.wait(timeout=60) == 0
    wake.close()
    mem.close()


def test_records_queued_for_a_killed_receiver_are_counted_once(shm_base: Path, workers: list[Worker]) -> None:
    captured, crashed = protocol.COUNTER_INDEX["captured"], protocol.COUNTER_INDEX["dropped.stage_crashed"]
    mem = jrc.SharedVisionMemory(name="dead", slots=4, max_width=8, max_height=8, holder="capture")
    wake = handoff.Wake.create()
    victim = Worker("hold_everything", ring="dead", name="dedup")  # attached, never takes a record
    workers.append(victim)
    assert victim.line() == "holding 0"
    for i in range(3):
        ref = mem.write_frame(np.full((8, 8, 4), i, np.uint8), hold=True, count=captured)
        mem.hand_over(ref, "dedup")
        assert handoff.send(mem, 0, protocol.encode_frame_ref(ref), wake.write_fd)
    assert mem.handoff_pending(0) == 3
    victim.kill9()
    assert mem.reclaim("dedup", count=crashed) == (3, 3), "the supervisor decides the three frames"
    successor = jrc.SharedVisionMemory.attach("dead", holder="dedup")
    stale = 0
    while (raw := successor.handoff_pop(0)) is not None:
        ref, _ = protocol.decode_frame_ref(raw)
        with pytest.raises(jrc.FrameExpired):
            successor.accept(ref)  # what the stage rejects as stale: decided already
        stale += 1
    assert stale == 3
    ref = mem.write_frame(np.full((8, 8, 4), 9, np.uint8), hold=True, count=captured)
    mem.hand_over(ref, "dedup")
    assert handoff.send(mem, 0, protocol.encode_frame_ref(ref), wake.write_fd)
    got, _ = protocol.decode_frame_ref(successor.handoff_pop(0) or b"")
    successor.accept(got)
    assert successor.release(got, count=protocol.COUNTER_INDEX["forwarded"]), "the successor owns the new frame"
    counters = {k: v for k, v in protocol.counter_snapshot(mem.counters()).items() if v}
    assert counters == {"captured": 4, "dropped.stage_crashed": 3, "forwarded": 1}, "every frame decided once"
    successor.close()
    wake.close()
    mem.close()


def test_a_restarted_holder_takes_over_its_dead_predecessors_entry(shm_base: Path, workers: list[Worker]) -> None:
    mem = jrc.SharedVisionMemory(name="re", slots=2, max_width=8, max_height=8, holder="capture")
    mem.write_frame(np.zeros((8, 8, 4), np.uint8))
    first = Worker("hold_everything", ring="re", name="dedup")
    workers.append(first)
    assert first.line() == "holding 1"
    first.kill9()
    second = jrc.SharedVisionMemory.attach("re", holder="dedup")  # reclaims on registering
    assert second.inherited == (1, 0)
    assert [(h["name"], h["holds"], h["alive"]) for h in mem.holders() if h["name"] == "dedup"] == [("dedup", 0, True)]
    assert second.epoch > 0 and not mem.epoch_is_live(second.epoch - 1)
    second.close()
    mem.close()


def test_kill9_of_the_writer_mid_write_and_a_new_writer_takes_over(shm_base: Path, workers: list[Worker]) -> None:
    owner = jrc.SharedVisionMemory(name="w", slots=4, max_width=8, max_height=8, writer=False)
    dying = Worker("die_mid_write", ring="w", frames=2)
    workers.append(dying)
    status = dying.line()
    assert status.startswith("mid-write ")
    half_slot = int(status.split()[1])
    before = owner.get_frame_pointers()
    assert [int(owner.read_copy(r)[0, 0, 0]) for r in before] == [0, 1]
    assert half_slot not in {r.slot for r in before}, "a half-written frame must never be published"
    assert owner.slots()[half_slot]["writing"]
    dying.kill9()

    start = time.monotonic()
    heir = jrc.SharedVisionMemory.attach("w", writer=True, holder="capture")
    took_over_s = time.monotonic() - start
    assert heir.recovery == {"discarded": 1, "released": 0}
    assert not any(s["writing"] for s in owner.slots())
    assert owner.get_frame_pointers() == before, "published frames survive the writer's death"
    new = heir.write_frame(np.full((8, 8, 4), 7, np.uint8))
    assert new.seq > max(r.seq for r in before)
    assert int(owner.read_copy(new)[0, 0, 0]) == 7
    assert took_over_s < 3.0, took_over_s
    heir.close()
    owner.close()


def test_leftover_ring_of_a_dead_run_is_cleaned_on_start(shm_base: Path, ring_dir: Path, workers: list[Worker]) -> None:
    dead = Worker("create_and_wait", ring="left")
    workers.append(dead)
    old_gen = int(dead.line().split()[1])
    with pytest.raises(jrc.RingBusy, match="live writer"):
        jrc.SharedVisionMemory(name="left", slots=2, max_width=8, max_height=8)
    dead.kill9()
    assert (ring_dir / "left.ring").exists(), "kill -9 leaves the file behind"
    fresh = jrc.SharedVisionMemory(name="left", slots=2, max_width=8, max_height=8)
    assert fresh.replaced_stale and fresh.generation != old_gen
    assert fresh.get_frame_pointers() == []
    fresh.close()
    assert sorted(os.listdir(ring_dir)) == [], "close() of the creator removes every file"


def test_a_ring_with_live_holders_is_not_replaced(shm_base: Path, workers: list[Worker]) -> None:
    mem = jrc.SharedVisionMemory(name="busy", slots=2, max_width=8, max_height=8, writer=False)
    holder = Worker("hold_everything", ring="busy", name="tap")
    workers.append(holder)
    assert holder.line() == "holding 0"
    with pytest.raises(jrc.RingBusy, match=r"tap \(pid \d+\)"):
        jrc.SharedVisionMemory(name="busy", slots=2, max_width=8, max_height=8, writer=False)
    mem.close()


def test_a_live_creator_alone_keeps_its_ring(shm_base: Path) -> None:
    mem = jrc.SharedVisionMemory(name="sup", slots=2, max_width=8, max_height=8, writer=False)
    assert mem.holder == "creator"
    with pytest.raises(jrc.RingBusy, match=r"in use by creator"):
        jrc.SharedVisionMemory(name="sup", slots=2, max_width=8, max_height=8, writer=False)
    mem.close()
