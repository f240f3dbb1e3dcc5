"""The shell scripts run on a stock Mac (bash 3.2, no GNU timeout or
sha256sum): they are POSIX sh, checked here by checkbashisms and by running
them under dash with the Linux-only tools out of reach."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in [*(ROOT / "scripts").rglob("*"), ROOT / ".ci" / "run"]
                 if p.is_file() and p.read_bytes().startswith(b"#!") and b"python" not in p.read_bytes().split(b"\n")[0])


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian: {'devscripts' if name == 'checkbashisms' else name})")
    return path


def shims(tmp_path: Path, *names: str, **fakes: str) -> str:
    """A PATH of only `names` (the real commands) and `fakes` (name: shell
    body), so whatever else a script reaches for is missing, as on a Mac."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name)
        assert real, name
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(real)
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!{shutil.which('dash')}\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def test_every_script_is_posix_sh() -> None:
    assert len(SCRIPTS) >= 7, SCRIPTS  # test, setup, system-deps, run, test-under-load, the library, CI's
    for script in SCRIPTS:
        assert script.read_text().split("\n")[0] == "#!/bin/sh", f"{script}: not a POSIX sh script"
    subprocess.run([tool("checkbashisms"), "--posix", *map(str, SCRIPTS)], check=True)
    for script in SCRIPTS:
        subprocess.run([tool("dash"), "-n", str(script)], check=True)


def test_checkbashisms_catches_a_bashism(tmp_path: Path) -> None:
    """The check above can fail: an array, as the old system-deps had."""
    bad = tmp_path / "bad"
    bad.write_text("#!/bin/sh\nmapfile -t lines < list\nlines=(a b)\n")
    assert subprocess.run([tool("checkbashisms"), "--posix", str(bad)], capture_output=True).returncode != 0


def limited(tmp_path: Path, *command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`limited` of scripts/lib/portable.sh under dash without GNU timeout."""
    path = shims(tmp_path, "sleep", "date", "true", "false")
    start = time.monotonic()
    done = subprocess.run([tool("dash"), "-c", '. scripts/lib/portable.sh; limited "$@"', "limited", *command],
                          cwd=ROOT, env={"PATH": path}, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - start


def test_time_limit_without_gnu_timeout_stops_an_overrun(tmp_path: Path) -> None:
    done, took = limited(tmp_path, "1", "sleep", "60")
    assert done.returncode != 0
    assert took < 20, took  # stopped after its 1 s, not after the 60 s it asked for


def test_time_limit_without_gnu_timeout_passes_the_status_on(tmp_path: Path) -> None:
    done, took = limited(tmp_path, "40", "true")
    assert done.returncode == 0
    # The watchdog's sleep does not hold the output pipes open until its 40 s are up.
    assert took < 13, took
    done, _ = limited(tmp_path, "40", "false")
    assert done.returncode == 1


def test_sha256_without_sha256sum(tmp_path: Path) -> None:
    data = b"frames\n" * 1000
    want = hashlib.sha256(data).hexdigest()
    for names in (("sha256sum", "cut"), ("shasum", "cut", "perl")):  # Linux, then a Mac's shasum
        bin_dir = tmp_path / names[0]
        bin_dir.mkdir()
        got = subprocess.run([tool("dash"), "-c", ". scripts/lib/portable.sh; sha256"], cwd=ROOT, input=data,
                             env={"PATH": shims(bin_dir, *names)}, capture_output=True, check=True)
        assert got.stdout.decode().strip() == want, names


def test_setup_under_dash_is_a_no_op_when_current() -> None:
    """The fingerprint and the extras' bookkeeping work in POSIX sh: the venv
    the suite runs in is current, so nothing is installed."""
    done = subprocess.run([tool("dash"), "scripts/setup", "test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stdout


def test_system_deps_on_a_mac_names_homebrew_formulas(tmp_path: Path) -> None:
    """On macOS (uname says Darwin; Homebrew has none of the formulas) it
    neither calls apt-get nor fails: it says what to brew install and which
    tests skip there."""
    path = shims(tmp_path, "dirname", uname="echo Darwin", brew="exit 1",
                 **{"apt-get": 'echo "apt-get called" >&2; exit 9'})
    done = subprocess.run([tool("dash"), "scripts/system-deps"], cwd=ROOT, env={"PATH": path}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "apt-get" not in done.stderr + done.stdout
    assert "brew install ffmpeg pkg-config" in done.stderr
    assert "xvfb" in done.stderr and "skip on macOS" in done.stderr
