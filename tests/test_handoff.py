"""The hand-off queues' wake-up objects (pipeline.handoff), both kinds on
every system that has them, and the queue as Python sees it. The queue across
processes, and after a kill -9, is in test_ring_processes.py and
test_pipeline.py."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

import jarvis_rust_core as jrc
from pipeline import handoff

#: The kinds, each made without arguments (Wake itself takes its descriptors).
WakeKind = type[handoff.PipeWake] | type[handoff.EventFdWake]
KINDS: list[WakeKind] = [handoff.PipeWake] + ([handoff.EventFdWake] if hasattr(os, "eventfd") else [])


def readable(fd: int) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_wake_ups_coalesce_clear_and_tolerate_spurious_clears(kind: WakeKind) -> None:
    wake = kind()
    try:
        assert not readable(wake.read_fd)
        for _ in range(3):
            handoff.wake(wake.write_fd)
        assert readable(wake.read_fd)
        handoff.clear(wake.read_fd)
        assert not readable(wake.read_fd), "one clear takes several signals"
        handoff.clear(wake.read_fd)  # nothing pending: a spurious wake-up, no error
        assert os.get_blocking(wake.read_fd) is False and os.get_blocking(wake.write_fd) is False
    finally:
        wake.close()


def test_a_flooded_pipe_never_blocks_or_fails_the_sender() -> None:
    wake = handoff.PipeWake()
    try:
        for _ in range(20_000):  # far more than a pipe buffer holds
            handoff.wake(wake.write_fd)
        handoff.clear(wake.read_fd)
        assert readable(wake.read_fd), "what one clear left is one more (spurious) wake-up"
    finally:
        wake.close()


def test_the_best_kind_is_chosen() -> None:
    wake = handoff.Wake.create()
    try:
        assert wake.kind == ("eventfd" if hasattr(os, "eventfd") else "pipe")
    finally:
        wake.close()


@pytest.fixture
def mem(shm_base: Path) -> Iterator[jrc.SharedVisionMemory]:
    with jrc.SharedVisionMemory(name="queue", slots=2, max_width=8, max_height=8, holder="capture") as m:
        yield m


def test_the_queue_wraps_around_and_refuses_when_full(mem: jrc.SharedVisionMemory) -> None:
    wake = handoff.Wake.create()
    sent = got = 0
    try:
        for round_ in range(6):
            while mem.handoff_pending(1) < jrc.HANDOFF_RECORDS:
                assert handoff.send(mem, 1, f"m{sent}".encode(), wake.write_fd)
                sent += 1
            assert not handoff.send(mem, 1, b"one too many", wake.write_fd), "full: nothing queued"
            with pytest.raises(jrc.HandoffFull):
                mem.handoff_push(1, b"one too many")
            for _ in range(round_ + 3):
                assert mem.handoff_pop(1) == f"m{got}".encode()
                got += 1
        while (msg := mem.handoff_pop(1)) is not None:
            assert msg == f"m{got}".encode()
            got += 1
        assert got == sent > 3 * jrc.HANDOFF_RECORDS, "in order, none lost, positions wrapped"
        assert not readable(wake.read_fd), "nobody was armed: no wake-up was sent"
        assert mem.handoff_arm(1) == 0
        assert handoff.send(mem, 1, b"x", wake.write_fd) and readable(wake.read_fd), "armed: woken"
    finally:
        wake.close()


def test_bad_queue_arguments_are_clear_errors(mem: jrc.SharedVisionMemory) -> None:
    with pytest.raises(jrc.RingConfigError, match="out of range"):
        mem.handoff_push(jrc.HOPS, b"x")
    with pytest.raises(jrc.RingConfigError, match="does not fit"):
        mem.handoff_push(0, b"x" * (jrc.HANDOFF_RECORD_BYTES + 1))
