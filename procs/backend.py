"""Where analysis runs the change model's per-pixel pass (analysis.backend):
on the CPU (the Rust kernels) or on a GPU (jarvis_rust_core.GpuKernels,
wgpu), with the same answers either way.

- "cpu": always the CPU.
- "auto": a hardware GPU when there is one, else the CPU (a software
  rasterizer such as lavapipe is the CPU under another name: not chosen).
- "gpu": any GPU adapter, software ones included; without one, `up` stops
  with the reason (the supervisor asks `python -m procs.backend` first).

A device lost while running (a driver reset, an unplugged eGPU) is not a
crash: analysis judges the frame again on the CPU and stays there. Tests
make one happen with the environment variable JARVIS_FAULT_GPU_LOST_AFTER=N:
analysis destroys its device (GpuKernels.lose_device) after N frames judged
on it.

`python -m procs.backend [auto|cpu|gpu]` prints the adapter as JSON
(schemas.GpuProbe) and exits 0, or prints why there is none and exits 1: how
the supervisor and `doctor` learn it without opening a device themselves.
"""

from __future__ import annotations

import sys

import msgspec

import jarvis_rust_core as jrc
from pipeline import schemas

FAULT_LOST_AFTER = "JARVIS_FAULT_GPU_LOST_AFTER"


def open_gpu(choice: str) -> tuple[jrc.GpuKernels | None, str]:
    """The GPU that `choice` ("auto", "cpu" or "gpu") gives analysis, or None
    for the CPU, and what was decided in words. GpuError for "gpu" without
    an adapter."""
    if choice == "cpu":
        return None, "cpu (analysis.backend = \"cpu\")"
    try:
        gpu = jrc.GpuKernels(software=choice == "gpu")
    except jrc.GpuError as exc:
        if choice == "gpu":
            raise
        return None, f"cpu ({exc})"
    return gpu, f"gpu: {describe(gpu.adapter)}"


def describe(adapter: dict[str, object]) -> str:
    kind = "software" if adapter["software"] else "hardware"
    return f"{adapter['name']} ({adapter['backend']}, {kind}, {adapter['driver']})"


def main(argv: list[str]) -> int:
    choice = argv[0] if argv else "gpu"
    if choice not in ("auto", "cpu", "gpu"):
        print(f"usage: python -m procs.backend [auto|cpu|gpu], not {choice!r}", file=sys.stderr)
        return 2
    try:
        gpu, decided = open_gpu(choice)
    except jrc.GpuError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    probe = schemas.GpuProbe(backend="gpu" if gpu is not None else "cpu", decided=decided,
                             adapter=None if gpu is None else schemas.AdapterInfo(**gpu.adapter))
    sys.stdout.buffer.write(msgspec.json.encode(probe))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
