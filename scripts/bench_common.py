"""What every benchmark script reports the same way: the machine it ran on
(with the command, so a run can be repeated) and markdown tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def l3_cache() -> str | None:
    with contextlib.suppress(OSError):
        base = Path("/sys/devices/system/cpu/cpu0/cache")
        for index in sorted(base.glob("index*")):
            if (index / "level").read_text().strip() == "3":
                return (index / "size").read_text().strip()
    return None


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _relative(path: str) -> str:
    return os.path.relpath(path, REPO) if path.startswith(str(REPO)) else path


def machine(argv: Sequence[str] | None = None, packages: Sequence[str] = ()) -> dict[str, Any]:
    """The machine, the software and the command of a run. `packages`: more
    versions to name (the peers compared with)."""
    import numpy as np

    import jarvis_rust_core as jrc

    argv = list(sys.argv if argv is None else argv)
    memory_gb = None
    with contextlib.suppress(ImportError):
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "l3": l3_cache(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": memory_gb,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "core": jrc.__version__,
        "versions": {p: version(p) for p in packages},  # the peers
        "command": shlex.join([_relative(sys.executable), *(_relative(a) for a in argv[:1]), *argv[1:]]),
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    """The markdown head of a report: machine, date and software, command."""
    l3 = f", L3 {info['l3']}" if info.get("l3") else ""
    memory = f", {info['memory_gb']} GB" if info.get("memory_gb") else ""
    extra = "".join(f", {k} {v}" for k, v in info.get("versions", {}).items())
    return [
        f"- machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable){l3}{memory}; "
        f"load average at start {info['loadavg_at_start']}",
        f"- date: {info['date']}; kernel {info['kernel']}, Python {info['python']}, numpy {info['numpy']}, "
        f"jarvis_rust_core {info['core']}{extra}",
        f"- command: `{info['command']}`",
    ]


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table; None shows as "-"."""
    def cell(x: object) -> str:
        return "-" if x is None else str(x)

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(cell, row)) + " |" for row in rows)]
