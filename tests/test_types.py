"""The code type-checks (mypy, strict, as configured in pyproject.toml) for
Linux and for macOS alike. Checking for macOS too is the point: mypy follows
`sys.platform` checks, so a Linux-only call (os.eventfd, os.setresuid, ...)
without a macOS branch fails here even on a Linux machine, instead of passing
unnoticed until the code first runs on a Mac."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_mypy_finds_no_errors(platform: str, request: pytest.FixtureRequest,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    # A cache per platform (the platform is part of mypy's cache key: one shared
    # cache would be rebuilt at every switch), kept across runs in pytest's cache
    # when it has one: a warm check takes seconds, a cold one a good deal longer.
    cache = getattr(request.config, "cache", None)  # (absent under -p no:cacheprovider)
    cache_dir = cache.mkdir(f"mypy-{platform}") if cache is not None else tmp_path_factory.mktemp(f"mypy-{platform}")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--platform", platform, "--cache-dir", str(cache_dir), "pipeline", "procs", "tests"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, f"mypy --platform {platform}:\n{result.stdout}{result.stderr}"


def test_ruff_finds_nothing() -> None:
    """The lint rules of pyproject.toml ([tool.ruff]: pycodestyle, pyflakes,
    isort, bugbear, pyupgrade) over the code, its tests and its scripts."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "pipeline", "procs", "tests", "scripts"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, f"ruff:\n{result.stdout}{result.stderr}"
