"""The forward stage: decides which changed frames leave the machine, copies
out what it will send and releases the ring slot at once (a slow request never
starves capture), batches frames into requests, and hands each request to a
client: the dry-run outbox by default, the Claude client when live forwarding
is switched on (it plugs in through `Client`).

A copied frame is `pending.forward` in the ring's counters until its request
is sent (forwarded) or it is dropped (paused, shutdown); if forward dies, the
supervisor moves what is pending to dropped(stage_crashed).

Dry-run outbox: <data dir>/outbox/<time>-<first seq>/request.json plus one PNG
per frame; directories 0700, files 0600; the oldest requests are removed beyond
forward.outbox_max_requests or forward.outbox_max_mb.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jarvis_rust_core as jrc
import numpy as np

from pipeline import protocol
from pipeline.runtime import private_dir
from procs import stage

PENDING = protocol.COUNTER_INDEX["pending.forward"]
from procs.sources.png import encode_png


@dataclass
class FrameCopy:
    """A frame as forward keeps it after releasing its slot."""

    ref: dict[str, Any]
    regions: list[list[int]]
    keepalive: bool
    pixels: np.ndarray


@dataclass
class Request:
    id: str
    created_wall_ns: int
    frames: list[FrameCopy]


class Client(Protocol):
    """Where requests go. `send` returns what to publish about the request."""

    mode: str

    def send(self, request: Request) -> dict[str, Any]: ...


class Outbox:
    """The dry-run client: writes each request where a person can inspect it."""

    mode = "dry-run"

    def __init__(self, root: Path, max_requests: int, max_bytes: int) -> None:
        self.root = private_dir(root)
        self.max_requests, self.max_bytes = max_requests, max_bytes

    def send(self, request: Request) -> dict[str, Any]:
        folder = self.root / request.id
        folder.mkdir(mode=0o700)
        frames = []
        for f in request.frames:
            name = f"frame-{f.ref['seq']}.png"
            self._write(folder / name, encode_png(f.pixels, level=1))
            frames.append({**f.ref, "regions": f.regions, "keepalive": f.keepalive, "image": name})
        body = {"id": request.id, "mode": self.mode, "created_wall_ns": request.created_wall_ns, "frames": frames}
        self._write(folder / "request.json", json.dumps(body, indent=1).encode())
        self._enforce_caps()
        return {"path": str(folder)}

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def _enforce_caps(self) -> None:
        requests = sorted(p for p in self.root.iterdir() if p.is_dir())
        sizes = {p: sum(f.stat().st_size for f in p.iterdir()) for p in requests}
        total = sum(sizes.values())
        while requests and (len(requests) > self.max_requests or total > self.max_bytes):
            oldest = requests.pop(0)
            total -= sizes[oldest]
            shutil.rmtree(oldest, ignore_errors=True)


class Forward(stage.Stage):
    name = "forward"
    previous = "analysis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        f = self.cfg.forward
        self.client: Client = Outbox(self.rt.data_dir / "outbox", f.outbox_max_requests, int(f.outbox_max_mb * 2**20))
        self.queue: collections.deque[FrameCopy] = collections.deque()
        self.next_send = time.monotonic()
        self.requests = 0

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        if self.paused or self.pressure == "critical":
            self.finish(ref, "dropped", "paused")
            return
        if len(self.queue) >= 2 * self.cfg.forward.batch:
            self.finish(ref, "dropped", "batch_overflow")
            return
        pixels = np.array(self.mem.read(ref))  # the copy forward keeps
        if self.mem.release(ref, count=PENDING):
            self.queue.append(FrameCopy(ref.to_dict(), list(extra.get("regions", [])), bool(extra.get("keepalive")), pixels))

    def _settle(self, frames: list[FrameCopy], state: str, reason: str | None = None) -> None:
        """Pending frames reach their terminal state."""
        key = f"dropped.{reason}" if state == "dropped" else state
        self.mem.counter_move(PENDING, protocol.COUNTER_INDEX[key], len(frames))
        self.terminal[key] += len(frames)
        if reason is not None:
            self.drops[reason] += len(frames)
            for f in frames:
                self.publish("frame.dropped", {"ref": f.ref, "stage": self.name, "reason": reason})

    def tick(self, now: float) -> float | None:
        if not self.queue:
            return None
        if self.paused or self.pressure == "critical":
            self._settle(list(self.queue), "dropped", "paused")  # nothing leaves while paused
            self.queue.clear()
            return None
        if now < self.next_send:
            return self.next_send
        batch = [self.queue.popleft() for _ in range(min(self.cfg.forward.batch, len(self.queue)))]
        self.requests += 1
        request = Request(f"{time.strftime('%Y%m%d-%H%M%S')}-{batch[0].ref['seq']:08d}", time.time_ns(), batch)
        try:
            info = self.client.send(request)
        except OSError as exc:
            self._settle(batch, "dropped", "expired")
            self.publish("forward.error", {"error": f"cannot write the outbox: {exc}"})
            self.log.error("cannot write the outbox: %s", exc)
        else:
            self._settle(batch, "forwarded")
            topic = "forward.dry_run" if self.client.mode == "dry-run" else "forward.sent"
            self.publish(topic, {"refs": [f.ref for f in batch], "request_id": request.id, **info})
            self.frames_out += len(batch)
        self.next_send = now + self.cfg.forward.min_interval_s
        return self.next_send if self.queue else None

    def shutdown(self) -> None:
        if self.queue:
            self._settle(list(self.queue), "dropped", "shutdown")
            self.queue.clear()
        super().shutdown()

    def extra_stats(self) -> dict[str, Any]:
        return {"queued": len(self.queue), "requests": self.requests, "mode": self.client.mode, "paused": self.paused}


if __name__ == "__main__":
    stage.main(Forward)
