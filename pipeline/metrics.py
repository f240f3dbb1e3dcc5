"""The opt-in metrics endpoint (`[metrics]`): Prometheus text format, served
by the supervisor from threads of its own.

Each scrape asks the supervisor for `status` over its control socket, like
any other client, and turns the result into metric families (`families`):
the figures are status's own, nothing is aggregated a second time, and a
supervisor too busy to answer gives a 503, never a stale page.

Where: metrics.sock in the instance's runtime directory (0600: this user
only) unless metrics.listen names HOST:PORT; a host other than loopback is
allowed with a warning, since costs and activity are visible to whoever
can connect.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from pipeline import commands, control, protocol
from pipeline.config import tcp_address
from pipeline.runtime import Runtime
from pipeline.schemas import HISTOGRAM_BOUNDS_MS, Histogram, StageState

log = logging.getLogger("jarvis.supervisor")

#: How long a scrape waits for the supervisor's status.
SCRAPE_TIMEOUT_S = 5.0
MB = 2**20


def _histogram(h: Histogram) -> tuple[list[tuple[str, float]], float]:
    """Prometheus buckets (cumulative, in seconds, +Inf last) and the sum in seconds."""
    total, buckets = 0, []
    for bound, n in zip((*HISTOGRAM_BOUNDS_MS, float("inf")), h.counts, strict=False):
        total += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound / 1000), float(total)))
    return buckets, h.sum_ms / 1000


def families(st: commands.StatusResult) -> Iterator[Metric]:
    """The metrics of one status result."""
    c = st.counters
    yield CounterMetricFamily("jarvis_frames_captured", "Frames written into the ring.", value=c.get("captured", 0))
    terminal = CounterMetricFamily("jarvis_frames_terminal", "Frames that reached a terminal state other than "
                                   "dropped, by state.", labels=["state"])
    for state in protocol.TERMINAL_STATES:
        if state.name != "dropped":
            terminal.add_metric([state.name], c.get(state.name, 0))
    yield terminal
    dropped = CounterMetricFamily("jarvis_frames_dropped", "Frames dropped, by reason.", labels=["reason"])
    for r in protocol.DROP_REASON_NAMES:
        dropped.add_metric([r], c.get(f"dropped.{r}", 0))
    yield dropped
    yield GaugeMetricFamily("jarvis_frames_pending", "Frames forward copied out and has not sent yet.",
                            value=c.get("pending.forward", 0))

    per_stage: dict[str, Any] = {
        "up": GaugeMetricFamily("jarvis_stage_up", "1 while the stage runs.", labels=["stage"]),
        "in": CounterMetricFamily("jarvis_stage_frames_in", "Frames the stage's current process received.",
                                  labels=["stage"]),
        "out": CounterMetricFamily("jarvis_stage_frames_out", "Frames the stage's current process passed on.",
                                   labels=["stage"]),
        "restarts": CounterMetricFamily("jarvis_stage_restarts", "Restarts after a crash.", labels=["stage"]),
        "hangs": CounterMetricFamily("jarvis_stage_hangs", "Kills for a missed heartbeat (each then restarted).",
                                     labels=["stage"]),
        "cpu": CounterMetricFamily("jarvis_stage_cpu_seconds", "CPU time of the stage's current process.",
                                   labels=["stage"]),
        "pss": GaugeMetricFamily("jarvis_stage_pss_bytes", "Proportional set size (the ring shared among its "
                                 "mappers).", labels=["stage"]),
        "private": GaugeMetricFamily("jarvis_stage_private_memory_bytes", "Memory only the stage holds.",
                                     labels=["stage"]),
        "proc": HistogramMetricFamily("jarvis_stage_processing_seconds", "Per-frame processing time.",
                                      labels=["stage"]),
        "latency": HistogramMetricFamily("jarvis_stage_since_capture_seconds", "From capture to arrival at the "
                                         "stage (the hand-offs on the way).", labels=["stage"]),
    }
    for s in st.stages:
        per_stage["up"].add_metric([s.name], 1.0 if s.state is StageState.RUNNING else 0.0)
        per_stage["in"].add_metric([s.name], s.frames_in)
        per_stage["out"].add_metric([s.name], s.frames_out)
        per_stage["restarts"].add_metric([s.name], s.restarts)
        per_stage["hangs"].add_metric([s.name], s.hangs)
        per_stage["cpu"].add_metric([s.name], s.cpu_seconds)
        per_stage["pss"].add_metric([s.name], s.pss_mb * MB)
        if s.private_mb is not None:
            per_stage["private"].add_metric([s.name], s.private_mb * MB)
        for key, h in (("proc", s.proc_hist), ("latency", s.since_capture_hist)):
            if h is not None and h.counts:
                buckets, total = _histogram(h)
                per_stage[key].add_metric([s.name], buckets, total)
    yield from per_stage.values()

    if st.ring is not None:
        yield GaugeMetricFamily("jarvis_ring_slots", "Frame slots of the ring.", value=st.ring.slots)
        yield GaugeMetricFamily("jarvis_ring_slots_in_use", "Slots being written or held.", value=st.ring.in_use)
        yield GaugeMetricFamily("jarvis_ring_bytes", "Bytes of the ring's frame slots.",
                                value=st.ring.slots * st.ring.slot_bytes)
    yield GaugeMetricFamily("jarvis_paused", "1 while nothing leaves the machine.", value=1.0 if st.paused else 0.0)
    yield GaugeMetricFamily("jarvis_memory_used_bytes", "The stages' private memory plus the ring.",
                            value=st.memory.used_mb * MB)
    yield GaugeMetricFamily("jarvis_memory_budget_bytes", "memory.budget_mb.", value=st.memory.budget_mb * MB)
    rejected = CounterMetricFamily("jarvis_supervisor_rejected_messages", "Bad messages the supervisor refused, by "
                                   "kind.", labels=["kind"])
    for kind, n in st.rejected.items():
        rejected.add_metric([kind], n)
    yield rejected
    if st.forward_requests is not None:
        yield CounterMetricFamily("jarvis_forward_requests", "Requests forward made.", value=st.forward_requests)
    if st.forward_tokens is not None:
        tokens = CounterMetricFamily("jarvis_forward_tokens", "Tokens by kind: input (neither from nor into the "
                                     "cache), output, cache_write, cache_read.", labels=["kind"])
        for kind, key in (("input", "input_tokens"), ("output", "output_tokens"),
                          ("cache_write", "cache_creation_input_tokens"), ("cache_read", "cache_read_input_tokens")):
            tokens.add_metric([kind], st.forward_tokens.get(key, 0))
        yield tokens
    if st.forward_cost_usd is not None:
        yield CounterMetricFamily("jarvis_forward_cost_usd", "USD spent, at forward.price.", value=st.forward_cost_usd)
    if st.analysis_backend is not None:
        yield GaugeMetricFamily("jarvis_analysis_on_gpu", "1 while analysis's per-pixel pass runs on a GPU, 0 on the CPU.",
                                value=float(st.analysis_backend.startswith("gpu")))
    if st.analysis_gpu_ms is not None and st.analysis_gpu_ms.p50 is not None:
        yield GaugeMetricFamily("jarvis_analysis_gpu_ms_p50", "The GPU's time per judged frame, median of analysis's "
                                "last 512 frames, ms.", value=st.analysis_gpu_ms.p50)


class _StatusCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        yield from families(control.request(self.rt, "status", timeout_s=SCRAPE_TIMEOUT_S))


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    timeout = 10  # a connection that says nothing is closed: a scraper asks at once

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path.split("?", 1)[0] not in ("/", "/metrics"):
            self._reply(404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
            return
        try:
            body = generate_latest(self.registry)
        except (control.ControlError, control.NotRunning) as exc:
            self._reply(503, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        self._reply(200, body, CONTENT_TYPE_LATEST)

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "local" if isinstance(self.client_address, str) else str(self.client_address[0])

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass  # a scrape every few seconds is no news


#: Scrapes served at once; more connections are closed unanswered (a thread
#: each: whoever can connect must not make the supervisor start thousands).
MAX_CONNECTIONS = 8


class _Bounded(socketserver.ThreadingMixIn, socketserver.BaseServer):
    daemon_threads = True
    request_queue_size = 32  # the listen backlog: a burst of scrapers waits instead of being refused

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _UnixServer(_Bounded, socketserver.UnixStreamServer):
    pass


class _TcpServer(_Bounded, ThreadingHTTPServer):
    pass


class MetricsServer:
    """The endpoint, serving until `close`."""

    def __init__(self, rt: Runtime, listen: str) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StatusCollector(rt))
        handler = type("Handler", (_Handler,), {"registry": registry})
        self.path: Path | None = None
        self.server: socketserver.BaseServer
        if listen:
            host, port = tcp_address(listen)
            if not _loopback(host):
                log.warning("metrics.listen = %s: the metrics (costs, activity) are served to whoever can reach "
                            "this address", listen)
            server = type("Server", (_TcpServer,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
            self.server = server((host, port), handler)
            self.where = f"http://{listen}/metrics"
        else:
            self.path = rt.socket("metrics")
            self.path.unlink(missing_ok=True)
            old = os.umask(0o177)
            try:
                self.server = _UnixServer(str(self.path), handler)
            finally:
                os.umask(old)
            self.where = str(self.path)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)
        self.thread.start()
        log.info("metrics at %s", self.where)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
