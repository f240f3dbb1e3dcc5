"""Starting a real Xvfb for the tests that capture a screen."""

from __future__ import annotations

import os
import select
import subprocess
import time


def _launch(display: list[str], screen: str, timeout: float) -> tuple[subprocess.Popen[bytes], str] | None:
    """Xvfb on `display` ([] lets it pick one) once it accepts connections, and
    the display's number as it reported it (-displayfd); None if it exited first
    (the display is taken). -noreset: without it the server resets when its last
    client leaves (forgetting, e.g., xrandr's monitors)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", *display, "-displayfd", str(write_end), "-nolisten", "tcp", "-noreset", "-screen", "0", screen],
        pass_fds=[write_end], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        number = b""
        deadline = time.monotonic() + timeout
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_end, 16) if ready else b""
            if not chunk:
                proc.kill()
                proc.wait()
                return None
            number += chunk
    finally:
        os.close(read_end)
    return proc, f":{number.decode().strip()}"


def start_xvfb(screen: str, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb with one screen of `screen` ("WxHxDEPTH") on a free display, and that display (":N")."""
    started = _launch([], screen, timeout)
    if started is None:
        raise AssertionError("Xvfb did not report a display in time")
    return started


def start_xvfb_on(display: str, screen: str, timeout: float = 30.0) -> subprocess.Popen[bytes] | None:
    """An Xvfb on `display` (":N"), e.g. the same display again at another
    size; None if that display is taken."""
    started = _launch([display], screen, timeout)
    return None if started is None else started[0]
