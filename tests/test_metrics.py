"""The metrics endpoint ([metrics]): scraped with a real HTTP client while
frames flow, over the private socket and over loopback TCP; its figures are
status's, and it is off unless asked for."""

from __future__ import annotations

import functools
import http.client
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

import pytest
from pipeline_harness import FAST_CONFIG, Pipeline, pipeline, wait_for
from prometheus_client.parser import text_string_to_metric_families

from pipeline import config, metrics
from pipeline.stages import PIPELINE


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=15)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(self.path)


def get(conn: http.client.HTTPConnection, url: str = "/metrics") -> tuple[int, str, str]:
    conn.request("GET", url)
    r = conn.getresponse()
    return r.status, r.getheader("Content-Type") or "", r.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def flowing(p: Pipeline) -> dict[str, Any] | None:
    st = p.status_result()
    rows = {s["name"]: s for s in st["stages"]}
    # (CPU is sampled every supervisor.sample_interval_s: wait for a sample of each)
    ok = all(r["state"] == "running" and r["frames_in"] + r["frames_out"] > 0 and r["cpu_seconds"] > 0
             for r in rows.values())
    return st if ok and rows["forward"]["frames_in"] > 0 else None


def between(lo: float, x: float, hi: float) -> bool:
    return lo <= x <= hi


def check_against_status(p: Pipeline, connect: Callable[[], http.client.HTTPConnection], hostile: bool = False) -> None:
    """A scrape between two status results: every counter lies between them,
    every gauge that cannot move is equal."""
    before = wait_for("frames through every stage", lambda: flowing(p), timeout=90)
    code, ctype, text = get(connect())
    after = p.status_result()
    assert code == 200 and ctype.startswith("text/plain; version="), (code, ctype)
    m = samples(text)
    c0, c1 = before["counters"], after["counters"]
    assert between(c0["captured"], m[("jarvis_frames_captured_total", ())], c1["captured"])
    for state in ("duplicate", "unchanged", "forwarded"):
        assert between(c0[state], m[("jarvis_frames_terminal_total", (("state", state),))], c1[state]), state
    assert between(c0["dropped.backpressure"], m[("jarvis_frames_dropped_total", (("reason", "backpressure"),))],
                   c1["dropped.backpressure"])
    rows0 = {s["name"]: s for s in before["stages"]}
    rows1 = {s["name"]: s for s in after["stages"]}
    for name in PIPELINE.names:
        label = (("stage", name),)
        assert rows0[name]["pid"] == rows1[name]["pid"], "a stage restarted during the scrape"
        assert m[("jarvis_stage_up", label)] == 1.0
        assert between(rows0[name]["frames_in"], m[("jarvis_stage_frames_in_total", label)], rows1[name]["frames_in"])
        assert m[("jarvis_stage_restarts_total", label)] == rows1[name]["restarts"] == 0
        assert m[("jarvis_stage_hangs_total", label)] == 0
        assert between(rows0[name]["cpu_seconds"], m[("jarvis_stage_cpu_seconds_total", label)],
                       rows1[name]["cpu_seconds"]) and rows0[name]["cpu_seconds"] > 0
        if name != "capture":  # capture receives no frames: its latency starts with it
            count = m[("jarvis_stage_since_capture_seconds_count", label)]
            assert count == m[("jarvis_stage_since_capture_seconds_bucket", (("le", "+Inf"),) + label)]
            assert between(sum(rows0[name]["since_capture_hist"]["counts"]), count,
                           sum(rows1[name]["since_capture_hist"]["counts"]))
    assert m[("jarvis_ring_slots", ())] == after["ring"]["slots"]
    assert m[("jarvis_paused", ())] == 0.0
    assert m[("jarvis_forward_requests_total", ())] >= before["forward_requests"]
    assert m[("jarvis_forward_tokens_total", (("kind", "output"),))] == 0  # dry-run: nothing was asked
    assert m[("jarvis_analysis_on_gpu", ())] == float(after["analysis_backend"].startswith("gpu"))
    assert get(connect(), "/nothing")[0] == 404
    if not hostile:
        return
    # Hostile clients: idle connections past the cap are closed; once they time out, scrapes are served again.
    idle = [connect() for _ in range(metrics.MAX_CONNECTIONS + 4)]
    for c in idle:
        wait_for("a connection", functools.partial(_connected, c))  # (a full listen backlog refuses for a moment)
    wait_for("the idle connections timed out", lambda: _answers(connect), timeout=60)
    for c in idle:
        c.close()


def _connected(c: http.client.HTTPConnection) -> bool:
    try:
        c.connect()
    except BlockingIOError:
        return False
    return True


def _answers(connect: Callable[[], http.client.HTTPConnection]) -> bool:
    try:
        return get(connect())[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def test_metrics_on_the_private_socket_are_status_figures() -> None:
    with pipeline(FAST_CONFIG + "[metrics]\nenabled = true\n") as p:
        p.up()
        path = p.rt.socket("metrics")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(path).st_mode)
        check_against_status(p, lambda: UnixHTTPConnection(str(path)))
        p.cli("down")
        assert not path.exists(), "down removes the socket"


def test_metrics_on_loopback_tcp() -> None:
    with socket.socket() as s:  # a free port (the race with another program is the test's, not the code's)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pipeline(FAST_CONFIG + f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n') as p:
        p.up()
        assert not p.rt.socket("metrics").exists()
        check_against_status(p, lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=15), hostile=True)
        p.cli("down")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_metrics_are_off_unless_asked_for_and_a_bad_address_is_refused() -> None:
    assert config.Config().metrics.enabled is False
    for bad in ("9464", "host:", ":9464", "127.0.0.1:0", "127.0.0.1:70000", "unix:/tmp/x"):
        with pytest.raises(config.ConfigError, match="metrics.listen"):
            config.load(env={"JARVIS__METRICS__LISTEN": bad})
    assert config.tcp_address("[::1]:9464") == ("::1", 9464)
    with pipeline() as p:
        p.up()
        wait_for("all stages running", lambda: all(s["state"] == "running" for s in p.status().values()))
        assert not p.rt.socket("metrics").exists()
        p.cli("down")
