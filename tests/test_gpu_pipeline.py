"""analysis.backend = "gpu" end to end (on lavapipe in CI, a real Vulkan
device): the pipeline runs on it with every frame accounted for, a device lost
while running leaves analysis on the CPU without losing or double-counting a
frame, `up` stops when there is no adapter, and the change model decides on
the GPU exactly as on the CPU, frame by frame, on the recorded session."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipeline_harness import FAST_CONFIG, pipeline, wait_for
from test_pipeline import all_running, assert_balanced

import jarvis_rust_core as jrc
from pipeline.config import Config
from procs import backend
from procs.change_policy import ChangePolicy

GPU_CONFIG = FAST_CONFIG.replace("[analysis]\n", "[analysis]\nbackend = \"gpu\"\n")
SESSION = Path(__file__).resolve().parent / "data" / "session"
SESSION_FRAMES = 240  # a minute of the session: typing, the clock, the browser, a dialog


def backend_events(tap: Any, want: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only {seen} of {want} analysis.backend events"
        for topic, body in tap:
            if topic == "analysis.backend":
                seen.append(body)
            break
    return seen


def test_the_pipeline_runs_on_the_gpu_and_accounts_for_every_frame() -> None:
    with pipeline(GPU_CONFIG) as p:
        p.rt.prepare()
        with p.tap("analysis.") as tap:  # subscribed before up: the start's event is not missed
            p.up()
            (event,) = backend_events(tap, 1)
        assert event["backend"].startswith("gpu: ") and not event["fallback"], event
        st = wait_for("analysis judging frames on the GPU",
                      lambda: (r := p.status_result())["analysis_gpu_ms"] and r["analysis_gpu_ms"]["p50"] is not None and r)
        assert st["analysis_backend"] == event["backend"]
        assert "on gpu: " in p.cli("status").stdout and "ms per frame on it" in p.cli("status").stdout
        wait_for("frames forwarded", lambda: p.status()["forward"]["frames_in"] >= 3)
        p.cli("down")
        assert_balanced(p.final_counters())


def test_a_lost_gpu_leaves_analysis_on_the_cpu_without_losing_a_frame() -> None:
    with pipeline(GPU_CONFIG, env={backend.FAULT_LOST_AFTER: "10"}) as p:
        p.rt.prepare()
        with p.tap("analysis.") as tap:
            p.up()
            start, fallback = backend_events(tap, 2)
        assert start["backend"].startswith("gpu: ") and not start["fallback"]
        assert fallback["fallback"] and fallback["backend"].startswith("cpu (the GPU failed: ") and "lost" in fallback["backend"]
        judged = p.status()["analysis"]["frames_in"]
        st = wait_for("analysis going on on the CPU",
                      lambda: (s := all_running(p)) and s["analysis"]["frames_in"] >= judged + 10 and s)
        assert st["analysis"]["restarts"] == 0 and st["analysis"]["incarnation"] == 1, "a fallback, not a crash"
        result = p.status_result()
        assert result["analysis_backend"] == fallback["backend"]
        p.cli("down")
        assert_balanced(p.final_counters())
        log = (p.rt.log_dir / "analysis.log").read_text()
        assert "analysis goes on on the CPU" in log


def test_up_with_the_gpu_backend_and_no_adapter_stops_with_the_reason() -> None:
    # The Vulkan loader is pointed at no driver: no adapter at all.
    nothing = {"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    with pipeline(GPU_CONFIG, env=nothing) as p:
        out = p.cli("up", "-c", str(p.config_path), check=False)
        assert out.returncode != 0 and "analysis.backend = 'gpu': no GPU adapter" in out.stderr, out.stderr
        assert p.supervisor_pid() is None
        doctor = p.cli("doctor", "-c", str(p.config_path), check=False)
        assert doctor.returncode == 1 and "NO  gpu" in doctor.stdout, doctor.stdout
    with pipeline(FAST_CONFIG, env=nothing) as p:  # auto: the CPU, and doctor says why
        doctor = p.cli("doctor", "-c", str(p.config_path), check=False)
        assert "ok  gpu            analysis.backend = 'auto': analysis runs on cpu (no GPU adapter" in doctor.stdout


def test_the_backend_switch() -> None:
    """cpu never opens a device; gpu takes any adapter; auto a hardware one
    only (on a machine with only lavapipe: the CPU, saying why)."""
    assert backend.open_gpu("cpu") == (None, 'cpu (analysis.backend = "cpu")')
    gpu, decided = backend.open_gpu("gpu")
    assert gpu is not None and decided == f"gpu: {backend.describe(gpu.adapter)}"
    auto, why = backend.open_gpu("auto")
    if gpu.adapter["software"]:
        assert auto is None and why.startswith("cpu (no hardware GPU adapter, only software ones")
    else:
        assert auto is not None and why.startswith("gpu: ")


def test_the_model_decides_on_the_gpu_exactly_as_on_the_cpu() -> None:
    """The session's frames through two change models, one on the CPU and one
    on the GPU (its frames named as analysis names them, so the reference
    stays on the device and a kept frame is not sent again): the same
    counts, verdicts and causes, frame after frame."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import eval_policy

    meta = json.loads((SESSION / "labels.json").read_text())
    a = Config().analysis
    gpu = jrc.GpuKernels(software=True)
    cpu_model: ChangePolicy | None = None
    gpu_model: ChangePolicy | None = None
    reference: np.ndarray | None = None
    ref_index = 0
    judged = kept = 0
    frames = eval_policy.decode(SESSION / meta["video"], meta["width"], meta["height"])
    for i, (entry, frame) in enumerate(zip(meta["frames"][:SESSION_FRAMES], frames, strict=False)):
        t = float(entry["t"])
        if reference is None or cpu_model is None or gpu_model is None:
            cpu_model, gpu_model = ChangePolicy(a, frame.shape), ChangePolicy(a, frame.shape, gpu=gpu)
            reference, ref_index = frame.copy(), i
            continue
        on_cpu = cpu_model.judge(t, frame, reference)
        on_gpu = gpu_model.judge(t, frame, reference, keys=(i, ref_index))
        assert np.array_equal(on_cpu.counts, on_gpu.counts), i
        assert np.array_equal(on_cpu.meaningful, on_gpu.meaningful) and on_cpu.causes == on_gpu.causes, i
        judged += 1
        for model in (cpu_model, gpu_model):
            model.settle(frame, on_cpu.kept)
        if on_cpu.kept:
            kept += 1
            reference, ref_index = frame.copy(), i
    assert judged == SESSION_FRAMES - 1 and 10 < kept < judged, (judged, kept)


@pytest.fixture(autouse=True)
def _gpu_present() -> None:
    """These tests need an adapter (lavapipe at least: scripts/system-packages.txt); none is a failure, not a skip."""
    jrc.GpuKernels(software=True)
