"""Shared fixtures. Under JARVIS_REQUIRE_ALL=1 (CI) a skipped test fails: every
tool a test needs must be installed, not skipped over."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pluggy
import pytest

REQUIRE_ALL = os.environ.get("JARVIS_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under JARVIS_REQUIRE_ALL=1 (nothing may skip in CI): {report.longrepr}"


@pytest.fixture
def shm_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private base directory for ring files, inherited by child processes
    through JARVIS_SHM_DIR, removed afterwards."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    base = Path(tempfile.mkdtemp(prefix="jarvis-test-", dir=root))
    monkeypatch.setenv("JARVIS_SHM_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ring_dir(shm_base: Path) -> Path:
    """Where rings of this test live (the per-user directory inside shm_base)."""
    return shm_base / f"jarvis-{os.geteuid()}"
