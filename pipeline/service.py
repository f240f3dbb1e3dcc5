"""Running the pipeline at login: `jarvis-pipeline service install |
uninstall | status` writes a systemd user unit (Linux) or a launchd agent
(macOS) that runs `up --service`: the supervisor in the foreground, so the
service manager supervises it, logging to stderr (journald; on macOS a file
in ~/Library/Logs). It is restarted only on failure: `jarvis-pipeline down`
ends it with status 0, and the service manager leaves it down.

The service does not see a key in the shell's environment: for live
forwarding, name a key file in the configuration (forward.api_key_file).
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import config as config_mod
from pipeline.runtime import write_replacing

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Service:
    manager: str  # systemd or launchd
    name: str  # the unit's name, or the agent's label
    path: Path
    text: str


def command(instance: str, config: Path | None, live: bool) -> list[str]:
    """What the service runs."""
    cmd = [sys.executable, "-m", "pipeline.cli", "-i", instance, "up", "--service"]
    if config is not None:
        cmd += ["-c", str(config)]
    return cmd + (["--live"] if live else [])


def _systemd_quote(arg: str) -> str:
    """An ExecStart= word: double-quoted, with the escapes systemd reads
    ("%" is a specifier, "$" a variable)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def systemd_unit(instance: str, config: Path | None, live: bool, cfg: config_mod.Config,
                 env: Mapping[str, str] = os.environ) -> Service:
    base = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")
    name = f"jarvis-pipeline-{instance}.service"
    s = cfg.supervisor
    # Stopping: the supervisor stops each stage in turn, each within drain_s + stop_grace_s at worst.
    stop_s = int(s.drain_s + 4 * s.stop_grace_s + 10)
    text = "\n".join([
        "# Written by `jarvis-pipeline service install`; removed by `jarvis-pipeline service uninstall`.",
        "[Unit]",
        f"Description=jarvis-pipeline ({instance}): watches the screen and asks Claude about what changed",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in command(instance, config, live)),
        f"WorkingDirectory={ROOT}",
        # `down` exits 0: not restarted. A crash of the supervisor is.
        "Restart=on-failure",
        "RestartSec=5",
        # SIGTERM to the supervisor, which stops the stages in order; then SIGKILL to what is left.
        "KillMode=mixed",
        f"TimeoutStopSec={stop_s}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])
    return Service("systemd", name, base / "systemd" / "user" / name, text)


def launchd_agent(instance: str, config: Path | None, live: bool, env: Mapping[str, str] = os.environ) -> Service:
    home = Path(env.get("HOME") or Path.home())
    label = f"com.jarvis-pipeline.{instance}"
    log = home / "Library" / "Logs" / f"jarvis-pipeline-{instance}.log"
    plist = {
        "Label": label,
        "ProgramArguments": command(instance, config, live),
        "WorkingDirectory": str(ROOT),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restarted only on failure: `down` is left alone
        "ThrottleInterval": 5,
        "ProcessType": "Interactive",  # it captures the screen of the person logged in
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    text = plistlib.dumps(plist).decode()
    return Service("launchd", label, home / "Library" / "LaunchAgents" / f"{label}.plist", text)


def service_for(instance: str, config: Path | None, live: bool, platform: str = sys.platform,
                env: Mapping[str, str] = os.environ) -> Service:
    cfg = config_mod.load(config, env=env)
    if platform == "darwin":
        return launchd_agent(instance, config, live, env)
    if platform.startswith("linux"):
        return systemd_unit(instance, config, live, cfg, env)
    raise ServiceError(f"no service manager of this system ({platform}) is supported: systemd or launchd")


class ServiceError(RuntimeError):
    pass


def _run(cmd: list[str]) -> tuple[bool, str]:
    if shutil.which(cmd[0]) is None:
        return False, f"{cmd[0]} not found"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def _start_commands(svc: Service) -> list[list[str]]:
    if svc.manager == "systemd":
        return [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", svc.name]]
    return [["launchctl", "bootstrap", f"gui/{os.getuid()}", str(svc.path)]]


def _stop_commands(svc: Service) -> list[list[str]]:
    if svc.manager == "systemd":
        return [["systemctl", "--user", "disable", "--now", svc.name]]
    return [["launchctl", "bootout", f"gui/{os.getuid()}/{svc.name}"]]


def install(svc: Service, start: bool) -> list[str]:
    """Writes the service file; `start`: enables and starts it. Returns what to tell the person."""
    said = []
    old = svc.path.read_text() if svc.path.is_file() else None
    svc.path.parent.mkdir(parents=True, exist_ok=True)
    write_replacing(svc.path, svc.text.encode(), 0o644)
    said.append(f"{'updated' if old is not None and old != svc.text else 'wrote'} {svc.path}")
    if not start:
        said.append("to start it now and at every login: " + "; ".join(shlex.join(c) for c in _start_commands(svc)))
        return said
    for cmd in _start_commands(svc):
        ok, out = _run(cmd)
        if not ok:
            said.append(f"{shlex.join(cmd)} failed ({out or 'no output'}); run it in your session to start the "
                        "service")
            return said
    said.append(f"started; it starts at every login ({svc.manager} {svc.name})")
    return said


def uninstall(svc: Service) -> list[str]:
    if not svc.path.exists():
        raise ServiceError(f"not installed: no {svc.path}")
    said = []
    for cmd in _stop_commands(svc):
        ok, out = _run(cmd)
        if not ok:
            said.append(f"{shlex.join(cmd)}: {out or 'failed'} (it may not have been running)")
    svc.path.unlink()
    if svc.manager == "systemd":
        _run(["systemctl", "--user", "daemon-reload"])
    return [*said, f"removed {svc.path}"]


def status(svc: Service) -> tuple[bool, list[str]]:
    """Whether it is installed, and what the service manager says of it."""
    if not svc.path.exists():
        return False, [f"not installed (no {svc.path}); `jarvis-pipeline service install` installs it"]
    said = [f"installed: {svc.path}" + ("" if svc.path.read_text() == svc.text else
                                         " (written for another configuration: install again to update it)")]
    if svc.manager == "systemd":
        for what in ("is-enabled", "is-active"):
            _, out = _run(["systemctl", "--user", what, svc.name])
            said.append(f"{what.removeprefix('is-')}: {out or 'unknown'}")
    else:
        ok, _ = _run(["launchctl", "print", f"gui/{os.getuid()}/{svc.name}"])
        said.append(f"loaded: {'yes' if ok else 'no'}")
    return True, said
