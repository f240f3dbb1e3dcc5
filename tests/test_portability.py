"""What a Mac needs, checked here on Linux: one clock for the ring and Python,
a holder whose lock file a cleaner removed is not taken for dead, memory
figures where only root may read them, runtime files where macOS does not
clean, and every module importable with sys.platform saying darwin."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from xvfb import start_xvfb

import jarvis_rust_core as jrc
from pipeline import usage
from pipeline.config import CaptureConfig
from pipeline.runtime import Runtime
from procs.sources import base
from procs.sources.screen import ScreenSource

ROOT = Path(__file__).resolve().parent.parent


def test_ring_stamps_on_pythons_monotonic_clock(shm_base: Path) -> None:
    """A frame written without a time is stamped on the clock stages compare
    it with (time.monotonic_ns): on macOS CLOCK_MONOTONIC is another clock
    (it counts sleep) and every frame would look hours old after a nap."""
    with jrc.SharedVisionMemory(name="clock", slots=2, max_width=8, max_height=8, holder="me") as mem:
        before = time.monotonic_ns()
        ref = mem.write_frame(bytes(8 * 8 * 4), width=8, height=8, fmt="BGRA")
        after = time.monotonic_ns()
        assert before <= ref.t_mono_ns <= after


HOLDER = textwrap.dedent("""
    import json, sys
    import jarvis_rust_core as jrc
    mem = jrc.SharedVisionMemory.attach("gone", holder="reader")
    ref = jrc.FrameRef.from_dict(json.loads(sys.argv[1]))
    mem.hold(ref)
    print("holding", flush=True)
    sys.stdin.read()
""")


def test_a_holder_whose_lock_file_vanished_is_not_taken_for_dead(shm_base: Path, ring_dir: Path) -> None:
    """A cleaner (macOS's for /tmp, or a person) removes a live holder's lock
    file: its process, not the missing file, says whether it lives, so its
    frame is not reclaimed under it; once it is gone, the frame is."""
    with jrc.SharedVisionMemory(name="gone", slots=2, max_width=8, max_height=8, holder="writer") as mem:
        ref = mem.write_frame(bytes(8 * 8 * 4), width=8, height=8, fmt="BGRA")
        child = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(ref.to_dict())], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "holding"
            (reader,) = [h for h in mem.holders() if h["name"] == "reader"]
            lock = ring_dir / f"gone.h{reader['index']:02d}.lock"
            assert lock.exists()
            lock.unlink()
            (reader,) = [h for h in mem.holders() if h["name"] == "reader"]
            assert reader["alive"] and reader["holds"] == 1
            assert mem.reclaim_dead() == {}
            assert [h["holds"] for h in mem.holders() if h["name"] == "reader"] == [1]
        finally:
            child.kill()  # (a clean exit would let go of its holds itself)
            child.wait(timeout=60)
        (reader,) = [h for h in mem.holders() if h["name"] == "reader"]
        assert not reader["alive"]
        assert set(mem.reclaim_dead()) == {"reader"}
        assert not [h for h in mem.holders() if h["name"] == "reader"]


def test_memory_where_only_root_may_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS lets only root read another process's USS: the resident set
    stands in, never an error or a zero."""
    proc = psutil.Process()

    def denied() -> None:
        raise psutil.AccessDenied(proc.pid)

    monkeypatch.setattr(proc, "memory_full_info", denied)
    rss_mb = proc.memory_info().rss / 2**20
    assert usage.pss_mb(proc) == pytest.approx(rss_mb, rel=0.5)
    assert usage.pss_mb(proc) > 1


def test_runtime_files_on_macos_stay_out_of_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))  # a home short enough for socket paths
    monkeypatch.setattr(sys, "platform", "darwin")
    rt = Runtime.locate("default", {"HOME": str(tmp_path)})
    assert rt.dir == tmp_path / "Library" / "Caches" / "jarvis-pipeline" / "run" / "default"
    # Set explicitly, the places people choose still win.
    assert Runtime.locate("default", {"HOME": str(tmp_path), "JARVIS_RUNTIME_DIR": str(tmp_path / "r")}).dir \
        == tmp_path / "r" / "default"
    monkeypatch.setattr(sys, "platform", "linux")
    assert Runtime.locate("default", {"HOME": str(tmp_path)}).dir == Path("/tmp") / f"jarvis-{os.geteuid()}" / "default"
    tmp_path.rmdir()


def test_the_cores_ring_directory_is_the_one_doctor_reports(shm_base: Path) -> None:
    assert Path(jrc.default_ring_dir()) == shm_base
    doctor = subprocess.run([sys.executable, "-m", "pipeline.cli", "doctor"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "JARVIS_RUNTIME_DIR": str(shm_base / "run")})
    assert f"free in {shm_base}" in doctor.stdout, doctor.stdout


MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts) for d in ("pipeline", "procs") for p in (ROOT / d).rglob("*.py")
    if p.stem not in ("__init__", "__main__")  # (__main__ runs the command line when imported)
)


def test_every_module_imports_on_darwin() -> None:
    """No module reaches for a Linux-only call at import time (os.pipe2,
    os.eventfd, /proc) without a macOS branch: each is imported afresh in a
    process whose sys.platform says darwin (the libraries they use, loaded
    before, are this system's)."""
    assert len(MODULES) > 20
    script = textwrap.dedent(f"""
        import importlib, sys
        names = {MODULES!r}
        for name in names:  # the libraries they use, loaded as on this system
            importlib.import_module(name)
        for name in [m for m in sys.modules if m.split(".")[0] in ("pipeline", "procs")]:
            del sys.modules[name]
        sys.platform = "darwin"
        for name in names:
            importlib.import_module(name)
        print("imported", len(names))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"imported {len(MODULES)}"


def test_without_the_screen_recording_permission_the_user_is_told_how_to_grant_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What macOS's CGPreflightScreenCaptureAccess answers is the edge faked
    here; auto then captures the synthetic desktop saying why, and an
    explicit screen source refuses to start with the same instructions."""
    assert base.screen_recording_allowed() is None  # (no such permission on Linux)
    monkeypatch.setattr(base, "screen_recording_allowed", lambda: False)
    usable, why = base.display_usable()
    assert not usable and "Privacy & Security > Screen Recording" in why
    with pytest.raises(base.SourceConfigError, match="Screen Recording"):
        base.open_source(CaptureConfig(source="screen"))


def test_a_grab_of_another_size_than_its_monitor_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Retina display's scale changing (or its resolution) makes grabs of
    another size than the monitor capture enumerated: a SourceError (capture
    enumerates again), never a ValueError that crash-loops capture. Here a
    monitor told it has two pixels per point, on an X server that has one."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed (Debian: xvfb)")
    proc, display = start_xvfb("640x480x24")
    monkeypatch.setenv("DISPLAY", display)
    src = ScreenSource()
    try:
        (m,) = src.monitors()
        assert (m.width, m.height, m.scale) == (640, 480, 1)
        assert src.grab(m).shape == (480, 640, 4)
        with pytest.raises(base.SourceError, match="gave 320x240 pixels where 640x480 were expected"):
            src.grab(dataclasses.replace(m, scale=2))
    finally:
        src.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_a_region_on_a_retina_display_grows_to_whole_points() -> None:
    """The system grabs in points: a region of a 2x display starting or ending
    inside a point grows to whole points, so its grabs have its size (else
    every grab would be a size mismatch and capture would re-enumerate for ever)."""
    retina = base.Monitor(1, 0, 0, 3024, 1964, scale=2)
    (m,) = base._select([retina], 0, (101, 51, 200, 99), strict=True, kind="screen")
    assert (m.left, m.top, m.width, m.height, m.scale) == (100, 50, 202, 100, 2)
    (m,) = base._select([retina], 0, (100, 50, 200, 100), strict=True, kind="screen")
    assert (m.left, m.top, m.width, m.height) == (100, 50, 200, 100)  # whole points already: as asked
    (m,) = base._select([base.Monitor(1, 0, 0, 640, 480)], 0, (101, 51, 200, 99), strict=True, kind="screen")
    assert (m.left, m.top, m.width, m.height) == (101, 51, 200, 99)  # one pixel a point: as asked
