"""The whole pipeline capturing a real screen: a private Xvfb server with real
X programs on it (an xterm the test writes lines into, an xclock ticking every
second), the screen source, every stage as a real process. Every wait is for
events with a deadline; nothing sleeps and hopes.

What makes consecutive captures byte-identical on Xvfb: its framebuffer is
plain memory that changes only when a client draws. The pointer never moves
and is not part of a grab, no window manager or compositor runs, the xterm's
cursor does not blink (+bc), so once the clock is stopped (SIGSTOP: it cannot
draw) and the xterm has nothing to print, every capture is the same bytes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
from pipeline_harness import FAST_CONFIG, alive, pipeline
from xvfb import start_xvfb

from pipeline import control, protocol
from pipeline.tap import Tap

SCREEN_W, SCREEN_H = 800, 480
TILE = 32  # analysis.tile: changed regions are whole tiles
# No window manager: windows land exactly where -geometry puts them (plus a 1 px border).
# Both stay clear of the screen's centre, where the pointer rests.
XTERM_GEOMETRY = "40x8+8+8"  # 40x8 cells of 6x13: 246x110 px at (8, 8) with the border
XTERM_BOX = (8, 8, 246, 110)
CLOCK_GEOMETRY = "160x160+560+60"
CLOCK_BOX = (560, 60, 162, 162)
QUIET_FRAMES = 8  # consecutive captures that must all be duplicates (2 s at 4 fps)
DEADLINE_S = 60.0  # per wait; generous for a busy 2-core machine

SCREEN_CONFIG = FAST_CONFIG.replace('[capture]\nsource = "synthetic"\nfps = 8.0', '[capture]\nsource = "screen"\nfps = 4.0')
assert 'source = "screen"' in SCREEN_CONFIG, "FAST_CONFIG's [capture] section changed"


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (Debian packages in scripts/system-packages.txt)")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
        proc.terminate()
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class XServer:
    display: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"} | {"DISPLAY": self.display}
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc


@pytest.fixture
def xserver() -> Iterator[XServer]:
    """A fresh Xvfb on a free display with one SCREEN_W x SCREEN_H screen; every
    program spawned on it is ended afterwards, then the server."""
    need("Xvfb", "xterm", "xclock")
    xvfb, display = start_xvfb(f"{SCREEN_W}x{SCREEN_H}x24")
    server = None
    try:
        server = XServer(display)
        yield server
    finally:
        for proc in reversed(server.procs if server else []):
            stop(proc)
        stop(xvfb)


class Frames:
    """Frame events from a tap, kept by seq: the order of capture, what each
    frame ended as, and the frame.changed bodies."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        tap.sock.setsockopt(zmq.RCVTIMEO, 500)  # wake up to check deadlines
        self.captured: list[int] = []  # seqs, in capture order (one publisher: in order)
        self.geometries: set[tuple[int, int, int]] = set()
        self.outcome: dict[int, str] = {}
        self.changed: list[dict[str, Any]] = []

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = DEADLINE_S) -> float:
        """Reads events until `condition` holds; returns the seconds it took."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; {self.summary()}")
            for topic, body in self.tap:
                self._note(topic, body)
                break  # re-check the condition after every event
        return time.monotonic() - start

    def _note(self, topic: str, body: dict[str, Any]) -> None:
        ref = body.get("ref")
        if not ref:
            return
        if topic == "frame.captured":
            self.captured.append(ref["seq"])
            self.geometries.add((ref["monitor"], ref["w"], ref["h"]))
        elif topic == "frame.changed":
            self.changed.append(body)
            self.outcome[ref["seq"]] = "changed"  # forward may still decide its terminal state
        elif topic in ("frame.duplicate", "frame.unchanged", "frame.dropped"):
            self.outcome[ref["seq"]] = topic.split(".")[1]

    def last_seq(self) -> int:
        return self.captured[-1] if self.captured else 0

    def changed_inside(self, box: tuple[int, int, int, int], after_seq: int) -> Callable[[], bool]:
        """A meaningful (not keepalive) change of a frame captured after
        `after_seq` with every changed region inside `box` (widened to whole tiles)."""
        x, y, w, h = box
        x0, y0 = x // TILE * TILE - TILE, y // TILE * TILE - TILE
        x1, y1 = -(-(x + w) // TILE) * TILE + TILE, -(-(y + h) // TILE) * TILE + TILE

        def inside(r: list[int]) -> bool:
            return x0 <= r[0] and y0 <= r[1] and r[0] + r[2] <= x1 and r[1] + r[3] <= y1

        return lambda: any(
            b["ref"]["seq"] > after_seq and not b["keepalive"] and b["regions"] and all(inside(r) for r in b["regions"])
            for b in self.changed
        )

    def quiet_after(self, after_seq: int, n: int = QUIET_FRAMES) -> Callable[[], bool]:
        """n frames captured one after another after `after_seq`, all dropped by dedup as duplicates."""

        def check() -> bool:
            run = 0
            for seq in self.captured:
                if seq <= after_seq:
                    continue
                run = run + 1 if self.outcome.get(seq) == "duplicate" else 0
                if run >= n:
                    return True
            return False

        return check

    def summary(self) -> str:
        tail = self.captured[-12:]
        return f"{len(self.captured)} captured, last outcomes {[(s, self.outcome.get(s)) for s in tail]}"


def test_pipeline_captures_a_real_xvfb_screen(xserver: XServer, tmp_path: Path) -> None:
    fifo = tmp_path / "lines"
    os.mkfifo(fifo)
    # Read-write: opening never blocks, and cat's open for reading finds a writer at once.
    lines = os.open(fifo, os.O_RDWR)
    try:
        xserver.spawn("xterm", "+bc", "-geometry", XTERM_GEOMETRY, "-e", "cat", str(fifo))
        clock = xserver.spawn("xclock", "-update", "1", "-geometry", CLOCK_GEOMETRY)
        with pipeline(SCREEN_CONFIG, env={"DISPLAY": xserver.display}) as p:
            p.rt.prepare()
            with p.tap("frame.") as tap:  # subscribed before up: no frame event is missed
                frames = Frames(tap)
                p.up()
                took: dict[str, float] = {}
                took["first frame"] = frames.wait("a captured frame", lambda: bool(frames.captured))
                assert frames.geometries == {(1, SCREEN_W, SCREEN_H)}, frames.geometries

                # The clock ticks on an idle terminal: changes confined to the clock.
                took["clock tick"] = frames.wait("a change inside the ticking clock",
                                                 frames.changed_inside(CLOCK_BOX, after_seq=0))

                # Clock stopped, terminal idle: the screen is static, dedup drops every capture.
                clock.send_signal(signal.SIGSTOP)
                mark = frames.last_seq()
                took["static (clock stopped)"] = frames.wait(f"{QUIET_FRAMES} duplicates in a row", frames.quiet_after(mark))

                # The terminal prints, line by line when the test says: each line is seen as a change there.
                for i in range(1, 4):
                    mark = frames.last_seq()
                    os.write(lines, f"line {i}\n".encode())
                    took[f"xterm line {i}"] = frames.wait(f"line {i} as a change inside the xterm",
                                                          frames.changed_inside(XTERM_BOX, after_seq=mark))
                mark = frames.last_seq()
                took["static (xterm idle)"] = frames.wait(f"{QUIET_FRAMES} duplicates in a row after the xterm went idle",
                                                          frames.quiet_after(mark))

                # The clock runs again: the static stretch did not blind the pipeline.
                clock.send_signal(signal.SIGCONT)
                mark = frames.last_seq()
                took["clock resumed"] = frames.wait("a change inside the resumed clock",
                                                    frames.changed_inside(CLOCK_BOX, after_seq=mark))
                assert frames.geometries == {(1, SCREEN_W, SCREEN_H)}, "every capture is the whole Xvfb screen"
                print("seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))

            status = control.request(p.rt, "status")
            assert status.source == "screen", status
            assert status.counters["duplicate"] > 0, status.counters
            pids = [s.pid for s in status.stages if s.pid] + [p.supervisor_pid()]
            assert len(pids) == 5, status.stages

            p.cli("down")
            assert not any(alive(pid) for pid in pids), "down ends the supervisor and every stage"
            assert not p.jarvis_processes()
            assert not list(p.shm.rglob("*.ring"))
            final = p.final_counters()
            assert final["captured"] >= len(frames.captured) > 0, final
            assert final["pending.forward"] == 0, final
            assert protocol.terminal_total(final) == final["captured"], f"frames lost or counted twice: {final}"
            assert final["duplicate"] >= 2 * QUIET_FRAMES, final
    finally:
        os.close(lines)
