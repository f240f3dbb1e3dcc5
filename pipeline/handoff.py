"""Wake-up objects of the hand-off queues.

A stage hands a frame to the next one by queueing the hand-off message in the
hop's queue in the ring (protocol: rust/src/handoff.rs); when the ring says
the receiving stage may be asleep, the sender signals the hop's wake-up
object, a file descriptor the receiver polls beside its sockets. On Linux an
eventfd (one descriptor, a counter); elsewhere a non-blocking pipe (the
portable fallback). A futex word in the ring header would need a thread per
stage to turn it into something the loop's poller can wait on; a descriptor
goes straight into the poller the loop already has.

Neither kind has a name, so the supervisor creates one per hop for the whole
run and passes its ends to every incarnation of the hop's two stages: a
restarted stage finds the same one. A signal left pending by a dead stage, or
several signals coalesced in an eventfd's counter, cost one spurious wake-up:
the receiver drains the queue whatever woke it, and stops when it is empty.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import ClassVar

import jarvis_rust_core as jrc

_ONE = (1).to_bytes(8, sys.byteorder)  # an eventfd takes exactly 8 bytes; a pipe any


def send(mem: jrc.SharedVisionMemory, hop: int, message: bytes, wake_fd: int) -> bool:
    """Queues hand-off `message` in `hop`'s queue and wakes its receiver if
    it sleeps; False (nothing queued) when the queue is full."""
    try:
        if mem.handoff_push(hop, message):
            wake(wake_fd)
    except jrc.HandoffFull:
        return False
    return True


def wake(fd: int) -> None:
    """Wakes the stage polling the other end of `fd`."""
    with contextlib.suppress(BlockingIOError):  # pipe buffer full or counter at its maximum: a wake-up is pending
        os.write(fd, _ONE)


def clear(fd: int) -> None:
    """Takes the pending signals off the polled end `fd` (what is left of a
    flooded pipe only makes one more spurious wake-up)."""
    with contextlib.suppress(BlockingIOError):  # nothing pending: a spurious wake-up
        os.read(fd, 4096)


class Wake:
    """One hop's wake-up object: the receiver polls `read_fd`, the sender
    signals `write_fd`."""

    kind: ClassVar[str]

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd

    @staticmethod
    def create() -> Wake:
        """The best kind this system has."""
        return EventFdWake() if sys.platform == "linux" else PipeWake()

    def close(self) -> None:
        for fd in {self.read_fd, self.write_fd}:
            os.close(fd)


class EventFdWake(Wake):
    kind = "eventfd"

    def __init__(self) -> None:
        if sys.platform != "linux":  # (a platform check mypy follows: eventfd is Linux's only)
            raise OSError("eventfd is Linux's; elsewhere a hop wakes through a pipe")
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        super().__init__(fd, fd)


class PipeWake(Wake):
    kind = "pipe"

    def __init__(self) -> None:
        r, w = os.pipe()  # not os.pipe2: macOS has none; os.pipe's ends are close-on-exec already
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        super().__init__(r, w)
