"""The shipped type stubs match the compiled module (mypy's stubtest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jarvis_rust_core


def test_stubs_match_the_compiled_module(tmp_path: Path) -> None:
    package = Path(jarvis_rust_core.__file__).parent
    assert (package / "py.typed").exists() and (package / "__init__.pyi").exists()
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy.stubtest", "jarvis_rust_core",
            "--allowlist", str(Path(__file__).with_name("stubtest-allowlist.txt")),
            "--mypy-config-file", str(tmp_path / "none.ini"),
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_stubs_are_the_repository_stubs() -> None:
    shipped = Path(jarvis_rust_core.__file__).with_name("__init__.pyi").read_text()
    source = Path(__file__).parents[1].joinpath("rust", "jarvis_rust_core.pyi").read_text()
    assert shipped == source, "the installed core is stale: run scripts/setup"
