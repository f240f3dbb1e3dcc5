"""A C program (examples/c/tap.c: libzmq + msgpack-c) reads the real pipeline's
events: the wire format needs nothing from Python. Its lines must match what a
Python tap on the same endpoint saw."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import pipeline

SOURCE = Path(__file__).resolve().parent.parent / "examples" / "c" / "tap.c"
LINE = re.compile(r"^(\S+) seq=(\S+) w=(\S+) h=(\S+) fmt=(\S+) monitor=(\S+)$")


def _pkg_flags() -> list[str]:
    if not shutil.which("cc"):
        pytest.skip("no C compiler `cc` on PATH (Debian: build-essential)")
    if not shutil.which("pkg-config"):
        pytest.skip("pkg-config not installed (Debian: pkg-config)")

    def exists(mod: str) -> bool:
        return subprocess.run(["pkg-config", "--exists", mod]).returncode == 0

    if not exists("libzmq"):
        pytest.skip("pkg-config finds no libzmq (Debian: libzmq3-dev)")
    msgpack = next((m for m in ("msgpack-c", "msgpack") if exists(m)), None)
    if msgpack is None:
        pytest.skip("pkg-config finds no msgpack-c (Debian: libmsgpack-dev)")
    out = subprocess.run(["pkg-config", "--cflags", "--libs", "libzmq", msgpack],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def tap_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    flags = _pkg_flags()
    exe = tmp_path_factory.mktemp("c-tap") / "tap"
    cmd = ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o", str(exe), str(SOURCE), *flags]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0 and not built.stderr, f"{' '.join(cmd)}\n{built.stderr}"
    return exe


def test_usage_error_is_nonzero(tap_c: Path) -> None:
    run = subprocess.run([str(tap_c), "ipc:///nowhere.sock", "frame."], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2 and "usage" in run.stderr


def test_c_consumer_matches_python_tap(tap_c: Path) -> None:
    n = 5
    with pipeline() as p:
        p.up()
        with p.tap("frame.captured") as tap:
            seen: dict[int, dict[str, Any]] = {}
            events = iter(tap)
            topic, body = next(events)  # the Python tap is subscribed before the C one starts
            seen[body["ref"]["seq"]] = body["ref"]
            proc = subprocess.Popen([str(tap_c), p.rt.endpoint("events"), "frame.captured", str(n)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                for topic, body in events:
                    assert topic == "frame.captured"
                    seen[body["ref"]["seq"]] = body["ref"]
                    if proc.poll() is not None:
                        break
                out, err = proc.communicate(timeout=40)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == 0, f"C tap exited {proc.returncode}: {err}"
            lines = out.splitlines()
            assert len(lines) == n, out
            parsed = []
            for line in lines:
                m = LINE.match(line)
                assert m, f"unexpected line from the C tap: {line!r}"
                topic, seq, w, h, fmt, monitor = m.groups()
                assert topic == "frame.captured"
                parsed.append((int(seq), int(w), int(h), fmt, int(monitor)))
            last = parsed[-1][0]
            if max(seen) < last:  # the Python tap may trail behind
                for _topic, body in events:
                    seen[body["ref"]["seq"]] = body["ref"]
                    if body["ref"]["seq"] >= last:
                        break
        seqs = [x[0] for x in parsed]
        assert seqs == sorted(set(seqs)), f"C tap seqs not increasing: {seqs}"
        for seq, w, h, fmt, monitor in parsed:
            assert (w, h, fmt) == (640, 360, "BGRA")
            assert seq in seen, f"C tap saw seq {seq}, the Python tap (subscribed earlier) did not: {sorted(seen)}"
            ref = seen[seq]
            assert (ref["w"], ref["h"], ref["fmt"], ref["monitor"]) == (w, h, fmt, monitor), (ref, seq)
