"""The forward stage: decides which changed frames leave the machine, copies
out (and masks) the part it will send and releases the ring slot at once (a
slow request never starves capture), batches frames into requests within the
pacing rules, and hands each request to a sender thread that encodes the
images and either writes them to the dry-run outbox or sends them to Claude.

Live sending needs forward.mode = "live" (or `up --live`) and a key
(ANTHROPIC_API_KEY, or forward.api_key_file); anything less is dry-run.

Accounting: a copied frame is `pending.forward` in the ring's counters until
its request ends: forwarded (answered, or written to the outbox), or dropped
with a reason: paused (paused before it went), send_failed (the request
failed for good, or the outbox could not be written), forward_stopped (the
API refused the key or the model), shutdown. If forward dies, the supervisor
moves what is pending to dropped(stage_crashed).

A failed write of the outbox or the journal (a full disk) never stops the
stage: forward_state says "failing: <what>: <why>" until the next write of
that file succeeds.

Its parts, in this package: pacing (which frames may go, and batches),
image (crops, masks, encoding), context (the rolling context), request (the
API request and its report tool), client (the SDK), retry (what to try
again), outbox and journal (the files it writes).
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import numpy as np

import jarvis_rust_core as jrc
from pipeline import protocol, schemas
from pipeline.api_key import ApiKeyError, api_key, endpoint
from pipeline.schemas import ControlState
from procs import stage
from procs.forward.context import Context, View
from procs.forward.image import Geometry, apply_masks, crop_box, encode, fit_size, tokens
from procs.forward.journal import Journal, cost_usd
from procs.forward.outbox import Outbox
from procs.forward.pacing import Batcher, Pacer
from procs.forward.request import (
    ReferenceShot,
    Shot,
    build,
    cache_minimum,
    capture_time,
    fit_request,
    image_tokens,
    prefix_tokens,
    report_text,
)
from procs.forward.retry import FATAL, Failure, RetryPolicy

if TYPE_CHECKING:  # the SDK is imported only when forwarding is live
    from procs.forward.client import Answer, ClaudeClient

PENDING = protocol.COUNTER_INDEX["pending.forward"]
#: How long shutdown waits for a request in flight before giving it up.
SHUTDOWN_WAIT_S = 1.0
#: Text of an answer carried in an insight event at most (the journal keeps all).
MAX_EVENT_TEXT = 32 * 1024
#: A write that keeps failing is logged at most this often (a full disk fails every request).
WRITE_LOG_EVERY_S = 60.0


@dataclass
class FrameCopy:
    """A frame as forward keeps it after releasing its slot: the masked part it will send."""

    ref: dict[str, Any]
    regions: list[list[int]]
    keepalive: bool
    box: list[int]
    pixels: np.ndarray
    tokens: int


@dataclass
class Job:
    """One request, from its first try to its last."""

    id: str
    frames: list[FrameCopy]
    attempt: int = 0
    shots: list[Shot] | None = None
    params: dict[str, Any] | None = None
    context: View | None = None  # what the request repeats before its frames
    references: tuple[ReferenceShot, ...] = ()
    prefix_tokens: int = 0  # up to its last cache breakpoint (estimated)


@dataclass
class Outcome:
    job: Job
    answer: Answer | None = None
    failure: Failure | None = None
    path: Path | None = None
    leftover: list[FrameCopy] = field(default_factory=list)
    latency_ms: float = 0.0


class WriteFailures:
    """Failed writes to forward's files (targets: outbox, journal): counted,
    their reason shown in forward_state until that target's next successful
    write, and logged at most once per WRITE_LOG_EVERY_S per target (a nearly
    full disk can fail and succeed by turns), each logged failure followed by
    a line when writes work again."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.count: collections.Counter[str] = collections.Counter()
        self.reasons: dict[str, str] = {}
        self.logged_at: dict[str, float] = {}
        self.unresolved: set[str] = set()  # targets whose last line in the log is a failure

    def failed(self, target: str, reason: str) -> None:
        self.count[target] += 1
        self.reasons[target] = reason
        now = time.monotonic()
        if now - self.logged_at.get(target, -math.inf) >= WRITE_LOG_EVERY_S:
            self.logged_at[target] = now
            self.unresolved.add(target)
            self.log.error("cannot write the %s: %s (%d failed writes so far)", target, reason, self.count[target])

    def succeeded(self, target: str) -> None:
        self.reasons.pop(target, None)
        if target in self.unresolved:
            self.unresolved.discard(target)
            self.log.warning("the %s is written again (%d failed writes so far)", target, self.count[target])

    def state(self) -> str | None:
        """Why writes fail now ("outbox: No space left on device"), or None."""
        return "; ".join(f"{t}: {r}" for t, r in sorted(self.reasons.items())) or None


class Sender(threading.Thread):
    """Encodes and sends one request at a time, off the stage's loop, so the
    loop keeps receiving, dropping and batching frames and answers pause while
    an HTTP call (seconds) or an encode (tens of ms) is under way. It touches
    neither the ring nor the sockets: results go back through `results`."""

    def __init__(self, f: Any, geometry: Geometry, client: ClaudeClient | None, outbox: Outbox, log: Any,
                 wake_fd: int) -> None:
        super().__init__(name="forward-sender", daemon=True)
        self.f, self.geometry, self.client, self.outbox, self.log = f, geometry, client, outbox, log
        self.wake_fd = wake_fd  # written after each result: wakes the stage's loop
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.results: queue.Queue[Outcome] = queue.Queue()
        self.paused = threading.Event()
        self.encode_ms: collections.deque[float] = collections.deque(maxlen=512)

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                self.results.put(self._do(job))
            except Exception as exc:  # a bug here must not leave the request pending forever
                self.log.exception("sender failed on request %s", job.id)
                self.results.put(Outcome(job, failure=Failure("internal", f"{type(exc).__name__}: {exc}")))
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
                os.write(self.wake_fd, b"!")

    def _do(self, job: Job) -> Outcome:
        leftover: list[FrameCopy] = []
        if job.shots is None:
            shots = []
            for fc in job.frames:
                img = encode(fc.pixels, self.geometry, whole=fc.box == [0, 0, fc.ref["w"], fc.ref["h"]])
                self.encode_ms.append(img.encode_ms)
                shots.append(Shot(fc.ref, fc.box, fc.keepalive, img))
            job.shots = fit_request(shots)
            leftover, job.frames = job.frames[len(job.shots):], job.frames[: len(job.shots)]
            said = job.context.said if job.context is not None else ()
            job.references = tuple(ReferenceShot(r.monitor, r.captured, r.width, r.height, r.image(self.geometry))
                                   for r in (job.context.references if job.context is not None else ()))
            job.params = build(self.f, job.shots, inline_images=self.client is not None, references=job.references,
                               said=said)
            job.prefix_tokens = prefix_tokens(self.f, job.references, said)
        assert job.params is not None
        if self.paused.is_set():  # paused while this request was being prepared
            return Outcome(job, failure=Failure("paused", "paused before sending"), leftover=leftover)
        if self.client is None:
            try:
                frames = [{"seq": s.ref["seq"], "monitor": s.ref["monitor"], "box": s.box,
                           "image": s.file_name} for s in job.shots]
                path = self.outbox.write(job.id, job.params, [*job.references, *job.shots],
                                         {"created_wall_ns": time.time_ns(), "frames": frames})
            except OSError as exc:  # the outbox left nothing behind; the reason is what status shows
                return Outcome(job, failure=Failure("outbox", exc.strerror or str(exc)), leftover=leftover)
            return Outcome(job, path=path, leftover=leftover)
        start = time.perf_counter()
        try:
            answer = self.client.call(job.params)
        except Failure as failure:
            return Outcome(job, failure=failure, leftover=leftover, latency_ms=(time.perf_counter() - start) * 1e3)
        return Outcome(job, answer=answer, leftover=leftover, latency_ms=(time.perf_counter() - start) * 1e3)


class ForwardStats(schemas.StageStats, kw_only=True):
    queued: Annotated[int, schemas.doc("frames copied out, waiting for a request")] = 0
    retries: Annotated[int, schemas.doc("tries again after a failure")] = 0
    mode: Annotated[str, schemas.doc("dry_run or live")] = ""
    paused: Annotated[bool, schemas.doc("whether it is paused")] = False
    write_failures: Annotated[dict[str, int], schemas.doc("{file: count} of failed writes of the outbox and the "
                                                          "journal")] = {}
    encode_ms_p50: Annotated[float, schemas.doc("median time to encode a request's images")] | None = None
    malformed_answers: Annotated[int, schemas.doc("answers without a usable report (each also a "
                                                  "forward.error)")] = 0
    cache_prefix_tokens: Annotated[int, schemas.doc("estimated tokens of the last request's cacheable prefix")] = 0
    cache_min_tokens: Annotated[int, schemas.doc("the shortest prefix the model caches "
                                                 "(forward.cache_min_tokens)")] = 0


class Forward(stage.Stage):
    Stats = ForwardStats

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        f = self.cfg.forward
        self.geometry = Geometry.from_config(f)
        self.policy = RetryPolicy(f.max_retries, f.backoff_s, f.backoff_max_s)
        self.pacer = Pacer(f.min_interval_s, f.requests_per_minute, f.input_tokens_per_minute, time.monotonic())
        self.journal = Journal(self.rt.data_dir, int(f.journal_max_mb * 2**20))
        outbox = Outbox(self.rt.data_dir / "outbox", f.outbox_max_requests, int(f.outbox_max_mb * 2**20))
        self.notices: list[dict[str, Any]] = []  # published on the first tick, once subscribers had a chance
        self.write_failures = WriteFailures(self.log)
        client = None
        if f.mode == "live":
            try:
                key = api_key(os.environ, f.api_key_file)
                url, url_from = endpoint(os.environ, f.base_url)
            except ApiKeyError as exc:
                key = None
                self._notice("key", f"{exc}: dry-run")
            else:
                if key is None:
                    self._notice("key", "forward.mode is live but there is no API key (ANTHROPIC_API_KEY or "
                                 "forward.api_key_file): dry-run")
                else:
                    from procs.forward.client import ClaudeClient

                    self.log.info("sending to %s (from %s)", url, url_from)
                    client = ClaudeClient(key, url, f.timeout_s)
        self.mode = "live" if client is not None else "dry-run"
        wake_r, wake_w = os.pipe()  # not os.pipe2: macOS has none; os.pipe's ends are close-on-exec already
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.wake_fds.append(wake_r)
        self.sender = Sender(f, self.geometry, client, outbox, self.log, wake_w)
        self.sender.start()
        self.apply_state(self.state)  # the handshake's state reaches the sender before any frame
        self.batcher: Batcher[FrameCopy] = Batcher(self.pacer, f.batch, f.queue_max, lambda fc: fc.tokens)
        self.queue = self.batcher.queue  # frames copied out, waiting for a request (oldest first)
        self.busy: Job | None = None
        self.retry: tuple[Job, float] | None = None
        self.stopped: str | None = None  # why forwarding stopped for good
        self.requests = self.retries = self.malformed = 0
        self.context = Context(f.context_refresh_s, f.context_tokens, self.geometry)
        self.cache_min = cache_minimum(f.cache_min_tokens, f.model)
        self.prefix_tokens = 0  # of the last request
        self.totals: collections.Counter[str] = collections.Counter()
        self.cost = 0.0

    def _notice(self, kind: str, error: str) -> None:
        self.log.warning("%s", error)
        self.notices.append({"error": error, "kind": kind, "request_id": None, "attempt": 0,
                             "retry_in_s": None, "stopped": False})

    # ------------------------------------------------------------------ frames in

    def handle(self, ref: jrc.FrameRef, extra: dict[str, Any]) -> None:
        f = self.cfg.forward
        keepalive = bool(extra.get("keepalive"))
        if self.stopped is not None:
            self.finish(ref, "dropped", "forward_stopped")
            return
        if self.paused or self.pressure == "critical":
            self.finish(ref, "dropped", "paused")
            return
        if not keepalive and float(extra.get("changed_ratio", 1.0)) < f.min_changed_ratio:
            self.finish(ref, "dropped", "insignificant")
            return
        refusal = self.batcher.refusal(time.monotonic())
        if refusal is not None:
            self.finish(ref, "dropped", refusal)
            return
        regions = [list(map(int, r)) for r in extra.get("regions", [])]
        x, y, w, h = box = crop_box(ref.w, ref.h, regions, self.geometry)
        frame = np.asarray(self.mem.read(ref))
        pixels = frame[y : y + h, x : x + w].copy()  # the copy forward keeps
        now = time.monotonic()
        # The context's reference of this monitor, when it is due (masked like any image sent).
        whole = frame.copy() if self.context.wants_reference(ref.monitor, now) else None
        if self.mem.release(ref, count=PENDING):  # (a copy made before a failed release may be torn)
            apply_masks(pixels, ref.monitor, (x, y), f.masks)
            self.queue.append(FrameCopy(ref.to_dict(), regions, keepalive, box, pixels, tokens(*fit_size(w, h, self.geometry))))
            if whole is not None:
                apply_masks(whole, ref.monitor, (0, 0), f.masks)
                self.context.set_reference(ref.monitor, capture_time(ref.to_dict()), whole, now)

    def apply_state(self, state: ControlState) -> None:
        super().apply_state(state)
        if self.paused or self.pressure == "critical":
            self.sender.paused.set()
        else:
            self.sender.paused.clear()

    def _settle(self, frames: list[FrameCopy], state: str, reason: str | None = None) -> None:
        """Pending frames reach their terminal state."""
        if not frames:
            return
        key = f"dropped.{reason}" if state == "dropped" else state
        self.mem.counter_move(PENDING, protocol.COUNTER_INDEX[key], len(frames))
        self.terminal[key] += len(frames)
        if reason is not None:
            self.drops[reason] += len(frames)
            for fc in frames:
                self.publish("frame.dropped", {"ref": fc.ref, "stage": self.name, "reason": reason})
        else:
            self.frames_out += len(frames)

    # ------------------------------------------------------------------ requests out

    def tick(self, now: float) -> float | None:
        for notice in self.notices:
            self.publish("forward.error", notice)
        self.notices.clear()
        self._collect(now)
        if self.busy is not None:
            return None  # the sender's wake-up pipe brings the loop back
        if self.paused or self.pressure == "critical":
            self._drop_waiting("paused")  # nothing leaves while paused
            return None
        if self.retry is not None:
            job, at = self.retry
            if now < at:
                return at
            self.retry = None
            self.retries += 1
            self.pacer.commit(sum(fc.tokens for fc in job.frames), now)
            self._submit(job)
            return None
        frames, never, wake = self.batcher.take(now)
        self._settle(never, "dropped", "rate_limited")
        if not frames:
            return wake
        self.requests += 1
        self._submit(Job(f"{time.strftime('%Y%m%d-%H%M%S')}-{frames[0].ref['seq']:08d}", frames,
                         context=self.context.view()))
        return None

    def _submit(self, job: Job) -> None:
        job.attempt += 1
        self.busy = job
        self.sender.jobs.put(job)

    def _drop_waiting(self, reason: str) -> None:
        if self.retry is not None:
            self._settle(self.retry[0].frames, "dropped", reason)
            self.retry = None
        self._settle(list(self.queue), "dropped", reason)
        self.queue.clear()

    def _collect(self, now: float) -> None:
        try:
            out = self.sender.results.get_nowait()
        except queue.Empty:
            return
        self.busy = None
        self.queue.extendleft(reversed(out.leftover))  # did not fit the request size limit: next request
        self._drain_channel()  # a pause that came in meanwhile must be seen before anything is published
        if out.failure is None and out.path is not None and (self.paused or self.pressure == "critical"):
            # Written to the outbox while the pause was on its way: withdrawn, as a live
            # request not yet sent would be (one already on the wire cannot be).
            self.sender.outbox.remove(out.path)
            out.failure = Failure("paused", "paused while the request was written")
        if out.failure is None:
            self._succeeded(out)
        else:
            self._failed(out, out.failure, now)

    def _journal(self, out: Outcome, outcome: str, **fields: Any) -> None:
        job = out.job
        shots = job.shots or []
        entry: dict[str, Any] = {
            "id": job.id,
            "mode": self.mode,
            "time_ns": time.time_ns(),
            "outcome": outcome,
            "attempts": job.attempt,
            "model": self.cfg.forward.model,
            "frames": [
                {"seq": s.ref["seq"], "monitor": s.ref["monitor"], "captured": capture_time(s.ref), "box": s.box,
                 "keepalive": s.keepalive, "media_type": s.image.media_type, "width": s.image.width,
                 "height": s.image.height, "bytes": len(s.image.data)}
                for s in shots
            ],
            "tokens_estimate": image_tokens(shots),
            # The context's share: whether the request's prefix is long enough for the model to cache it.
            "references": [r.file_name for r in job.references],
            "cache_prefix_tokens": job.prefix_tokens,
            "cacheable": job.prefix_tokens >= self.cache_min,
            **fields,
        }
        if self.cfg.forward.journal_images:
            entry["images"] = [s.image.b64 for s in shots]
        try:
            self.journal.write(entry)
        except OSError as exc:  # the journal is as it was; forwarding goes on
            self.write_failures.failed("journal", exc.strerror or str(exc))
        else:
            self.write_failures.succeeded("journal")

    def _succeeded(self, out: Outcome) -> None:
        job, shots = out.job, out.job.shots or []
        refs = [fc.ref for fc in job.frames]
        images = [{"media_type": s.image.media_type, "width": s.image.width, "height": s.image.height,
                   "bytes": len(s.image.data)} for s in shots]
        estimate = image_tokens(shots)
        self.prefix_tokens = job.prefix_tokens
        self._settle(job.frames, "forwarded")
        if out.answer is None:  # dry-run
            self.write_failures.succeeded("outbox")
            self.publish("forward.dry_run", {"refs": refs, "request_id": job.id, "path": str(out.path),
                                             "images": images, "tokens_estimate": estimate})
            self._journal(out, "dry_run", path=str(out.path))
            return
        a = out.answer
        cost = cost_usd(a.usage, self.cfg.forward.price)
        self.cost += cost
        self.totals.update(a.usage)
        latency = round(out.latency_ms, 1)
        self.publish("forward.sent", {"refs": refs, "request_id": job.id, "attempts": job.attempt, "latency_ms": latency})
        try:
            if a.report is None:
                raise schemas.SchemaError("no report tool call in the answer")
            report = schemas.convert(a.report, schemas.Report)
        except schemas.SchemaError as exc:
            # Answered and paid for, but unusable: said, counted and journaled; asking
            # again would cost as much and likely answer alike, so it is not retried.
            self.malformed += 1
            error = f"the answer has no usable report: {exc}"
            self.log.warning("request %s: %s", job.id, error)
            self.publish("forward.error", {"error": error, "kind": "malformed", "request_id": job.id,
                                           "attempt": job.attempt, "retry_in_s": None, "stopped": False})
            self._journal(out, "answered", error=error, response=a.text, report=_shown(a.report),
                          stop_reason=a.stop_reason, usage=a.usage, cost_usd=cost, latency_ms=latency)
            return
        items, text = msgspec.to_builtins(report.items), report_text(report)
        self.context.add([capture_time(r) for r in refs], text)
        self.publish("insight", {
            "text": text[:MAX_EVENT_TEXT], "attention_needed": report.attention_needed,
            "summary": report.summary, "items": items, "model": a.model, "refs": refs,
            "capture_times": [capture_time(r) for r in refs], "usage": a.usage, "cost_usd": cost,
            "tokens_estimate": estimate, "latency_ms": latency, "request_id": job.id,
        })
        self._journal(out, "answered", attention_needed=report.attention_needed, summary=report.summary,
                      items=items, response=text, stop_reason=a.stop_reason, usage=a.usage, cost_usd=cost,
                      latency_ms=latency)

    def _failed(self, out: Outcome, failure: Failure, now: float) -> None:
        job = out.job
        if failure.kind == "paused":
            self._settle(job.frames, "dropped", "paused")
            self._journal(out, "cancelled", error="paused before sending")
            return
        delay = None if self.stopping else self.policy.delay(failure, job.attempt)
        fatal = failure.kind in FATAL
        event = {"error": str(failure), "kind": failure.kind, "request_id": job.id, "attempt": job.attempt,
                 "retry_in_s": None if delay is None else round(delay, 3), "stopped": fatal}
        if failure.kind == "outbox":
            self.write_failures.failed("outbox", failure.message)
        else:
            self.log.warning("request %s try %d failed: %s%s", job.id, job.attempt, failure,
                             "" if delay is None else f"; again in {delay:.2f}s")
        if failure.retry_after_s is not None:
            self.pacer.hold(now + failure.retry_after_s)
        self.publish("forward.error", event)
        if delay is not None:
            self.retry = (job, now + delay)
            return
        if fatal:
            self.stopped = str(failure)
            self._settle(job.frames, "dropped", "forward_stopped")
            self._drop_waiting("forward_stopped")
            self.log.error("forwarding stopped: %s", failure)
            self.next_stats = now  # status learns of the stop now, not an interval later
        else:
            self._settle(job.frames, "dropped", "send_failed")
        self._journal(out, "failed", error=str(failure), status=failure.status)

    # ------------------------------------------------------------------ end

    def shutdown(self) -> None:
        if self.busy is not None:
            try:
                out = self.sender.results.get(timeout=SHUTDOWN_WAIT_S)
            except queue.Empty:
                self._settle(self.busy.frames, "dropped", "shutdown")
                self._journal(Outcome(self.busy), "cancelled", error="still in flight at shutdown")
            else:
                self.busy = None
                self.queue.extendleft(reversed(out.leftover))
                if out.failure is None:
                    self._succeeded(out)
                else:
                    self._failed(out, out.failure, time.monotonic())
        self._drop_waiting("shutdown")
        self.sender.jobs.put(None)
        super().shutdown()

    def _cache_note(self) -> str:
        """Said in forward_state while live requests are too short for the model to cache them."""
        if self.mode == "live" and self.prefix_tokens and self.prefix_tokens < self.cache_min:
            return f" (prompt cache off: a prefix of ~{self.prefix_tokens} tokens, {self.cfg.forward.model} caches " \
                   f"{self.cache_min} or more)"
        return ""

    def extra_stats(self) -> dict[str, Any]:
        enc = list(self.sender.encode_ms)
        failing = self.write_failures.state()
        return {
            "queued": len(self.queue),
            "requests": self.requests,
            "retries": self.retries,
            "mode": self.mode,
            "paused": self.paused,
            "forward_state": (f"stopped: {self.stopped}" if self.stopped
                              else f"failing: {failing}" if failing else self.mode + self._cache_note()),
            "write_failures": dict(self.write_failures.count),
            "encode_ms_p50": round(float(np.median(enc)), 2) if enc else None,
            "usage": dict(self.totals),
            "cost_usd": round(self.cost, 6),
            "malformed_answers": self.malformed,
            "cache_prefix_tokens": self.prefix_tokens,
            "cache_min_tokens": self.cache_min,
        }


def _shown(raw: Any) -> Any:
    """An unusable tool input as the journal can hold it (JSON data as it
    came, anything else as text), at most MAX_EVENT_TEXT characters of it."""
    try:
        text = msgspec.json.encode(raw).decode()
    except (TypeError, msgspec.EncodeError):
        text = repr(raw)
    return text[:MAX_EVENT_TEXT]

