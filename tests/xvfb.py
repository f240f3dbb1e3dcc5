"""Starting a real Xvfb for the tests that capture a screen."""

from __future__ import annotations

import os
import select
import subprocess
import time


def start_xvfb(screen: str, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb with one screen of `screen` ("WxHxDEPTH") on a free display, and
    that display (":N"). -displayfd: Xvfb picks the display and writes its
    number once it accepts connections. -noreset: without it the server resets
    when its last client leaves (forgetting, e.g., xrandr's monitors)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-nolisten", "tcp", "-noreset", "-screen", "0", screen],
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
                raise AssertionError(f"Xvfb did not report a display in time (exit code {proc.poll()})")
            number += chunk
    finally:
        os.close(read_end)
    return proc, f":{number.decode().strip()}"
