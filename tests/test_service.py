"""Running at login: the systemd user unit and the launchd agent that
`jarvis-pipeline service install` writes, checked by systemd-analyze and
plistlib; and `up --service`, what they run: the supervisor in the
foreground logging to stderr, ended with status 0 by `down` (so a service
restarted only on failure stays down)."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pipeline_harness import FAST_CONFIG, pipeline, wait_for

from pipeline import service

ROOT = Path(__file__).resolve().parents[1]


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """systemd's own check of a user unit (it needs a private XDG_RUNTIME_DIR, not the session's)."""
    runtime = tempfile.mkdtemp(prefix="xdg-")
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
    return subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=runtime)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd is Linux's (scripts/system-packages.txt)")
def test_the_systemd_unit_installs_verifies_and_uninstalls(tmp_path: Path) -> None:
    config = tmp_path / "my config%$.toml"  # a path systemd must be told literally
    config.write_text(FAST_CONFIG)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "-i", "svc", "service", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    assert cli("status").returncode == 1
    out = cli("install", "--no-start", "-c", str(config))
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / "jarvis-pipeline-svc.service"
    assert f"wrote {unit}" in out.stdout and "systemctl --user enable --now" in out.stdout
    text = unit.read_text()
    assert "Restart=on-failure" in text and "KillMode=mixed" in text and "WantedBy=default.target" in text
    assert '"up" "--service" "-c"' in text and '"-i" "svc"' in text and "my config%%$$.toml" in text
    checked = verify(unit)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    # The check can fail: a unit whose program does not exist, or with a setting systemd cannot read.
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace(sys.executable, "/nonexistent/python"))
    assert verify(broken).returncode != 0
    broken.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    assert "Failed to parse" in verify(broken).stderr
    status = cli("status")
    assert status.returncode == 0 and f"installed: {unit}" in status.stdout, status.stdout
    out = cli("uninstall")
    assert out.returncode == 0 and not unit.exists(), out
    assert cli("uninstall").returncode == 1


def test_the_launchd_agent_is_a_plist_that_restarts_only_on_failure(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(FAST_CONFIG)
    svc = service.service_for("svc", config, live=True, platform="darwin", env={"HOME": str(tmp_path)})
    assert svc.path == tmp_path / "Library" / "LaunchAgents" / "com.jarvis-pipeline.svc.plist"
    plist = plistlib.loads(svc.text.encode())
    assert plist["Label"] == "com.jarvis-pipeline.svc"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "pipeline.cli", "-i", "svc", "up", "--service",
                                         "-c", str(config), "--live"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["StandardErrorPath"].startswith(str(tmp_path / "Library" / "Logs"))
    service.install(svc, start=False)
    assert plistlib.loads(svc.path.read_bytes()) == plist


def test_up_as_a_service_logs_to_stderr_and_down_ends_it_with_status_0() -> None:
    with pipeline() as p:
        p.watch_bus()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up", "--service", "-c", str(p.config_path)],
                                env=p.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for("every stage running", lambda: p.supervisor_pid() and all(
                s["state"] == "running" for s in p.status().values()), timeout=90)
            p.cli("down")
            code = proc.wait(timeout=60)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, err
        assert "INFO jarvis.supervisor: capture running" in err and "final counters" in err
        assert not (p.rt.log_dir / "supervisor.log").exists(), "under a service manager the log is its stderr"
        assert p.rt.final_counters_path.exists()
