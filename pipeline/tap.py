"""Subscribing to a running pipeline's events from Python.

    with Tap(Runtime.locate("default"), ["frame.changed"]) as tap:
        for topic, body in tap:
            pixels = tap.pixels(body)   # a private copy, or FrameExpired

Frame events carry the frame's FrameRef fields under "ref"; `pixels` copies
the frame out of the ring with read_copy, which never returns a torn frame.
Any local program can publish on the bus: events whose body does not match
its topic's schema (pipeline.events) are skipped and counted in `rejected`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import zmq

import jarvis_rust_core as jrc
from pipeline import events, protocol, schemas
from pipeline.runtime import Runtime


class Tap:
    def __init__(self, rt: Runtime, topics: Sequence[str] = (), timeout_s: float | None = None) -> None:
        rt.check()
        self.rt = rt
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, events.MAX_EVENT_BYTES + 256)
        self.rejected = 0
        if timeout_s is not None:
            self.sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        for t in topics or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.sock.connect(rt.endpoint("events"))
        self._ring: jrc.SharedVisionMemory | None = None

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            try:
                frames = self.sock.recv_multipart()
            except zmq.Again:
                return
            try:
                topic, body = events.decode_event(frames)
                events.check_event(topic, body)
            except (protocol.ProtocolError, schemas.SchemaError):
                self.rejected += 1
                continue
            yield topic, body

    def pixels(self, body: dict[str, Any]) -> np.ndarray:
        """The pixels of a frame event's frame (a copy); FrameExpired if gone."""
        if self._ring is None:
            self._ring = jrc.SharedVisionMemory.attach(self.rt.ring_name, dir=self.rt.shm_base)
        return self._ring.read_copy(jrc.FrameRef.from_dict(body["ref"]))

    def close(self) -> None:
        if self._ring is not None:
            self._ring.close()
        self.ctx.destroy(linger=0)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
