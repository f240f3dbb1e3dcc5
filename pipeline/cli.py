"""jarvis-pipeline: watch the screen, keep what changed, ask Claude about it.

Verbs follow docker compose: up (foreground with a live status; -d detaches),
down, status, restart STAGE, logs [STAGE] [-f], tap [TOPIC ...], pause, resume,
doctor; demo runs the two-process ring demo. -i/--instance goes before or
after the verb.

Exit status: 0 done; 1 a check failed (status: a stage failed, hung or not
applying the control state; doctor: the pipeline could not run as
configured); 2 usage; 3 already running; 4 not running; 78 the configuration
or the environment refused (a bad config file, key or directory).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil

import jarvis_rust_core
from pipeline import commands, control, runtime, stages
from pipeline import config as config_mod
from pipeline.runtime import Runtime, RuntimeDirError
from pipeline.schemas import StageState

EXIT_USAGE, EXIT_CONFIG, EXIT_RUNNING, EXIT_NOT_RUNNING = 2, 78, 3, 4
#: How long `restart` follows a stage through its drain and start.
RESTART_WAIT_S = 180.0
FAILED, RUNNING, STOPPING = StageState.FAILED, StageState.RUNNING, StageState.STOPPING


def _version() -> str:
    from importlib import metadata

    from pipeline import protocol

    try:
        package = metadata.version("jarvis-pipeline")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        package = "(not installed)"
    major, minor = protocol.PROTOCOL_VERSION
    return (f"jarvis-pipeline {package} (core jarvis-rust-core {jarvis_rust_core.__version__}, "
            f"ring layout {jarvis_rust_core.LAYOUT_VERSION}, protocol {major}.{minor})")


INSTANCE_HELP = "instance name (default: instance.name of the config)"


def _parser(topology: stages.Topology) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jarvis-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("-i", "--instance", default=None, help=INSTANCE_HELP)
    # Also after the verb; there, unless given, it leaves the one before the verb alone.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("-i", "--instance", default=argparse.SUPPRESS, help=INSTANCE_HELP)
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", parents=[after])

    up = verb("up", "start the pipeline")
    up.add_argument("-c", "--config", help="a TOML configuration file (see configs/default.toml)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background")
    up.add_argument("--live", action="store_true",
                    help="send frames to Claude (needs ANTHROPIC_API_KEY or forward.api_key_file)")
    up.add_argument("--paused", action="store_true",
                    help="start paused: nothing leaves the machine until `resume` (a pause also survives restarts)")
    up.add_argument("--service", action="store_true",
                    help="run under a service manager: in the foreground, the supervisor logging to stderr "
                         "(see `service install`)")
    up.add_argument("--supervise", action="store_true", help=argparse.SUPPRESS)  # the detached supervisor itself
    # The supervisor's commands: their help is the command table's (pipeline.commands).
    verb("down", commands.BY_NAME["down"].help)
    st = verb("status", commands.BY_NAME["status"].help)
    st.add_argument("--json", action="store_true", help="machine-readable output (the status result's schema)")
    rs = verb("restart", commands.BY_NAME["restart"].help)
    rs.add_argument("stage", choices=topology.names, help="the stage to restart")
    lg = verb("logs", "show stage logs")
    lg.add_argument("stage", nargs="?", choices=(*topology.names, "supervisor"), help="only this one's log (default: all)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("-n", "--lines", type=int, default=40, help="lines per log to show first (default 40)")
    tp = verb("tap", "print events as JSON lines")
    tp.add_argument("topics", nargs="*", help="topic prefixes, e.g. frame. insight (default: all)")
    tp.add_argument("--count", type=int, default=0, help="stop after this many events")
    verb("pause", commands.BY_NAME["pause"].help)
    verb("resume", commands.BY_NAME["resume"].help)
    sv = verb("service", "run the pipeline at login: a systemd user unit (Linux) or a launchd agent (macOS)")
    sv.add_argument("action", choices=("install", "uninstall", "status"), help="install (and start), uninstall "
                    "(and stop), or show it")
    sv.add_argument("-c", "--config", help="install: the TOML configuration file the service runs with")
    sv.add_argument("--live", action="store_true", help="install: send frames to Claude (the key from "
                    "forward.api_key_file: a service does not see your shell's ANTHROPIC_API_KEY)")
    sv.add_argument("--no-start", action="store_true", help="install: write the file only; say how to start it")
    dr = verb("doctor", "check what the pipeline needs")
    dr.add_argument("-c", "--config", help="check with this TOML configuration file (default: the defaults)")
    demo = verb("demo", "hand frames between two processes through the ring")
    demo.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    demo.add_argument("--fps", type=float, default=30.0, help="frames per second to write (default 30)")
    return p


def _runtime(args: argparse.Namespace, cfg: config_mod.Config | None = None) -> Runtime:
    """-i wins; else the configured instance name (defaults and environment)."""
    return Runtime.locate(args.instance or (cfg or config_mod.load(None)).instance.name)


def main(argv: list[str] | None = None, topology: stages.Topology = stages.PIPELINE) -> int:
    """The command line; `topology` is the stage table `up` runs (tests run
    pipelines of other tables through it)."""
    args = _parser(topology).parse_args(argv)
    try:
        if args.verb == "up":
            return cmd_up(args, topology)
        if args.verb == "demo":
            from pipeline import demo

            if args.seconds <= 0 or args.fps <= 0:
                print("jarvis-pipeline demo: --seconds and --fps must be positive", file=sys.stderr)
                return EXIT_USAGE
            return demo.run(args.seconds, args.fps)
        if args.verb == "doctor":
            return cmd_doctor(args)
        if args.verb == "service":
            return cmd_service(args)
        rt = _runtime(args)
        if args.verb == "logs":
            return cmd_logs(rt, args)
        if args.verb == "tap":
            return cmd_tap(rt, args)
        if args.verb == "status":
            return cmd_status(rt, args)
        if args.verb == "down":
            return cmd_down(rt)
        if args.verb == "restart":
            return cmd_restart(rt, args.stage)
        if args.verb in ("pause", "resume"):
            try:
                paused = control.request(rt, args.verb).paused
            except control.NotRunning:
                from pipeline import supervisor as sup

                # Said while nothing runs: kept for the next `up`, which applies it before any stage starts.
                paused = args.verb == "pause"
                sup.save_paused(rt, paused)
                print(f"jarvis-pipeline {rt.instance}: not running; the next start will be "
                      f"{'paused' if paused else 'allowed to forward'}")
                return 0
            print("paused: nothing leaves the machine" if paused else "resumed")
            return 0
    except config_mod.ConfigError as exc:
        print(f"jarvis-pipeline: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except control.NotRunning as exc:
        print(f"jarvis-pipeline: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (control.ControlError, RuntimeDirError) as exc:
        print(f"jarvis-pipeline: {exc}", file=sys.stderr)
        return 1
    return EXIT_USAGE


# ---------------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace, topology: stages.Topology = stages.PIPELINE) -> int:
    from pipeline import supervisor as sup

    cfg = config_mod.load(args.config)
    rt = _runtime(args, cfg)
    if args.instance:
        cfg = dataclasses.replace(cfg, instance=config_mod.InstanceConfig(args.instance))
    if args.live or cfg.forward.mode == "live":
        from pipeline.api_key import ApiKeyError, api_key

        try:
            key = api_key(os.environ, cfg.forward.api_key_file)
        except ApiKeyError as exc:
            print(f"jarvis-pipeline: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if key is None:
            print("jarvis-pipeline: live forwarding needs a key (ANTHROPIC_API_KEY or forward.api_key_file); "
                  "running dry-run", file=sys.stderr)
            args.live = False
    if args.detach:
        if topology is not stages.PIPELINE:
            print("jarvis-pipeline: a pipeline of another stage table runs in the foreground (no -d)", file=sys.stderr)
            return EXIT_USAGE
        return _detach(rt, args, cfg)
    rt.prepare()
    if args.service:  # the service manager keeps the supervisor's log (journald)
        runtime.log_to(logging.StreamHandler(sys.stderr), "%(levelname)s %(name)s: %(message)s")
    else:
        runtime.log_to(runtime.PrivateLogHandler(rt.log_dir / "supervisor.log", cfg.logs.max_mb, cfg.logs.backups))
    faulthandler.enable()  # a fatal error's stacks go to stderr: supervisor.out when detached
    s = sup.Supervisor(cfg, rt, live=args.live, paused=args.paused, topology=topology)
    try:
        s.start()
    except sup.AlreadyRunning as exc:
        print(f"jarvis-pipeline: {exc}", file=sys.stderr)
        return EXIT_RUNNING
    except (sup.StartError, jarvis_rust_core.RingError, ValueError, RuntimeDirError) as exc:
        print(f"jarvis-pipeline: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    signal.signal(signal.SIGINT, s.request_stop)
    signal.signal(signal.SIGTERM, s.request_stop)
    if not (args.supervise or args.service) and sys.stdout.isatty():
        s.on_tick = _live_status
    elif not (args.supervise or args.service):
        print(f"jarvis-pipeline {rt.instance}: running (source {s.cfg.capture.source}); Ctrl-C stops", flush=True)
    s.run()
    if not (args.supervise or args.service):
        print("\njarvis-pipeline: stopped")
    return 0


def _detach(rt: Runtime, args: argparse.Namespace, cfg: config_mod.Config) -> int:
    rt.prepare()
    cmd = [sys.executable, "-m", "pipeline.cli", "-i", rt.instance, "up", "--supervise"]
    if args.config:
        cmd += ["-c", str(Path(args.config).resolve())]
    if args.live:
        cmd.append("--live")
    if args.paused:
        cmd.append("--paused")
    log_path = rt.log_dir / "supervisor.out"
    # The detached supervisor's stdout and stderr (only a fatal error's dump,
    # tracebacks: it logs to supervisor.log), rotated at each start.
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > cfg.logs.max_mb * 2**20:
            rotating = runtime.PrivateLogHandler(log_path, cfg.logs.max_mb, cfg.logs.backups)
            rotating.doRollover()
            rotating.close()
    out = runtime.open_private_log(log_path)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            print("\n".join(tail), file=sys.stderr)
            return code or 1
        if rt.owner_pid() == proc.pid:
            try:
                status = control.request(rt, "status", timeout_s=2)
            except (control.ControlError, control.NotRunning):
                status = None
            # Up once every stage's main loop runs (it heartbeats), or it failed:
            # a stage crashing during its start is reported, not taken for up.
            if status and all(st.state is FAILED or st.state is RUNNING and st.heartbeat_age_s is not None
                              for st in status.stages):
                failed = [st.name for st in status.stages if st.state is FAILED]
                if failed:
                    _report_failed(rt, failed, len(failed) == len(status.stages))
                    return 1
                paused = ", PAUSED" if status.paused else ""
                print(f"jarvis-pipeline {rt.instance}: up (pid {proc.pid}, source {status.source}{paused})")
                return 0
        time.sleep(0.1)
    print(f"jarvis-pipeline: the supervisor did not come up within 60 s; see {log_path}", file=sys.stderr)
    return 1


def _report_failed(rt: Runtime, failed: list[str], stop: bool) -> None:
    """`up -d` with failed stages: which, and the end of each one's log."""
    for name in failed:
        print(f"jarvis-pipeline: {name} failed (it crashed too often); the end of its log:", file=sys.stderr)
        for path in (rt.log_path(name), rt.log_dir / f"{name}.out"):
            if path.exists():
                for line in path.read_text(errors="replace").splitlines()[-8:]:
                    print(f"  {path.name}: {line}", file=sys.stderr)
    if stop:
        print("jarvis-pipeline: no stage runs; stopping", file=sys.stderr)
        cmd_down(rt)
    else:
        print("jarvis-pipeline: the other stages keep running; `jarvis-pipeline down` stops them", file=sys.stderr)


def _live_status(s: Any) -> None:
    st: commands.StatusResult = s.cmd_status(None)
    lines = [
        f"jarvis-pipeline {st.instance}  source {st.source}  forward {_forward_state(st)}"
        f"{'  PAUSED' if st.paused else ''}  memory {st.memory.level} "
        f"({st.memory.used_mb:.0f}/{st.memory.budget_mb:.0f} MB)   Ctrl-C stops",
        "",
        _table(st.stages),
        "",
        "counters: " + "  ".join(f"{k} {v}" for k, v in st.counters.items() if v),
        *(f"ERROR: {e}" for e in st.errors),
    ]
    sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- status


def _table(stages: list[commands.StageStatus]) -> str:
    head = ("STAGE", "STATE", "PID", "UPTIME", "RESTARTS", "HEARTBEAT", "CPU%", "PSS MB", "FPS", "IN", "OUT", "DROPS",
            "P95 MS", "LATENCY P95")
    rows = [head]
    for s in stages:
        rows.append(
            (
                s.name,
                s.state.value,
                str(s.pid or "-"),
                f"{s.uptime_s:.0f}s",
                str(s.restarts),
                "-" if s.heartbeat_age_s is None else f"{s.heartbeat_age_s:.1f}s ago",
                f"{s.cpu_percent:.1f}",
                f"{s.pss_mb:.1f}",
                "-" if s.fps is None else f"{s.fps:.1f}",
                str(s.frames_in),
                str(s.frames_out),
                str(sum(s.drops.values())),
                "-" if s.p95_ms is None else f"{s.p95_ms:.2f}",
                "-" if s.latency_p95_ms is None else f"{s.latency_p95_ms:.1f} ms",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def _forward_state(st: commands.StatusResult) -> str:
    """What forward reports about itself (dry-run, live, or why it stopped),
    else the configured mode (forward has not reported yet)."""
    cost = st.forward_cost_usd
    return (st.forward_state or st.forward_mode) + (f", ${cost:.4f} spent" if cost else "")


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    st: commands.StatusResult = control.request(rt, "status")
    problems = [*st.errors, *(f"{s.name} has failed: it is not restarted again" for s in st.stages if s.state is FAILED),
                *(f"{s.name} is hung (no heartbeat for {s.heartbeat_age_s} s): it is being replaced"
                  for s in st.stages if s.hung)]
    if args.json:
        print(json.dumps(msgspec.to_builtins(st), indent=1))  # the status result, as its schema defines it
        return 1 if problems else 0
    print(f"instance {st.instance} (pid {st.pid}, up {st.uptime_s:.0f}s), source {st.source}, "
          f"forward {_forward_state(st)}{', PAUSED' if st.paused else ''}, memory {st.memory.level}")
    print(_table(st.stages))
    if st.analysis_backend is not None:
        gpu = st.analysis_gpu_ms
        per_frame = (f", {gpu.p50:.2f} ms per frame on it (p95 {gpu.p95:.2f})"
                     if gpu is not None and gpu.p50 is not None and gpu.p95 is not None else "")
        print(f"analysis on {st.analysis_backend}{per_frame}")
    for problem in problems:
        print(f"ERROR: {problem}")
    return 1 if problems else 0


def cmd_restart(rt: Runtime, stage: str) -> int:
    """Asks for the restart (the supervisor answers at once), then follows the
    stage through its drain until its next incarnation runs."""
    started: commands.RestartResult = control.request(rt, "restart", stage=stage)
    if started.state is STOPPING:
        print(f"{stage}: draining (incarnation {started.incarnation})", flush=True)
    deadline = time.monotonic() + RESTART_WAIT_S
    while time.monotonic() < deadline:
        row = next(s for s in control.request(rt, "status").stages if s.name == stage)
        if row.incarnation > started.incarnation and row.state is RUNNING:
            print(f"{stage} restarted (pid {row.pid})")
            return 0
        if row.state is FAILED:
            print(f"jarvis-pipeline: {stage} did not come back: it has failed (see `jarvis-pipeline logs {stage}`)",
                  file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"jarvis-pipeline: {stage} is not running again after {RESTART_WAIT_S:.0f} s; see `jarvis-pipeline status`",
          file=sys.stderr)
    return 1


def cmd_down(rt: Runtime) -> int:
    pid = rt.owner_pid()
    if pid is None:
        from pipeline import supervisor as sup

        # Nothing runs; a supervisor killed (even during `down`) may have left files and stages.
        try:
            removed = sup.clean_leftovers(rt)
        except (sup.AlreadyRunning, jarvis_rust_core.RingError) as exc:
            print(f"jarvis-pipeline: {exc}", file=sys.stderr)
            return 1
        if not removed:
            print(f"jarvis-pipeline: instance {rt.instance!r} is not running", file=sys.stderr)
            return EXIT_NOT_RUNNING
        print(f"jarvis-pipeline {rt.instance}: down (removed what a stopped run left: {', '.join(removed)})")
        return 0
    # Known before asking, so the wait below follows this supervisor, not a later one with a reused pid.
    supervisor = _process(pid)
    control.request(rt, "down")
    deadline = time.monotonic() + 120
    # The lock is released at the end of the shutdown, but the process still has its
    # interpreter to tear down: `down` returns once the process itself is gone.
    while rt.owner_pid() is not None or _running(supervisor):
        if time.monotonic() > deadline:
            print(f"jarvis-pipeline: the supervisor (pid {pid}) is still stopping", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"jarvis-pipeline {rt.instance}: down")
    return 0


def _process(pid: int | None) -> psutil.Process | None:
    try:
        return psutil.Process(pid) if pid is not None and pid > 0 else None
    except psutil.NoSuchProcess:
        return None


def _running(proc: psutil.Process | None) -> bool:
    """Still running (a zombie has finished: it only waits to be reaped)."""
    try:
        return proc is not None and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------- logs, tap


def cmd_logs(rt: Runtime, args: argparse.Namespace) -> int:
    rt.check()
    names = [args.stage] if args.stage else ["supervisor", *stages.PIPELINE.names]
    paths = [p for n in names for p in (rt.log_dir / f"{n}.log", rt.log_dir / f"{n}.out") if p.exists()]
    if not paths:
        print(f"jarvis-pipeline: no logs yet in {rt.log_dir}", file=sys.stderr)
        return 1
    positions = {}
    for p in paths:
        lines = p.read_text(errors="replace").splitlines()
        for line in lines[-args.lines :]:
            print(f"{p.stem}: {line}" if len(paths) > 1 else line)
        positions[p] = p.stat().st_size
    while args.follow:
        time.sleep(0.25)
        for p in paths:
            size = p.stat().st_size if p.exists() else 0
            if size < positions[p]:
                positions[p] = 0  # rotated
            if size > positions[p]:
                with open(p, errors="replace") as f:
                    f.seek(positions[p])
                    for line in f.read().splitlines():
                        print(f"{p.stem}: {line}" if len(paths) > 1 else line, flush=True)
                positions[p] = size
    return 0


def cmd_tap(rt: Runtime, args: argparse.Namespace) -> int:
    from pipeline.tap import Tap

    if rt.owner_pid() is None:
        raise control.NotRunning(f"jarvis-pipeline instance {rt.instance!r} is not running")
    n = 0
    with Tap(rt, args.topics) as tap:
        try:
            for topic, body in tap:
                print(json.dumps({"topic": topic, **body}), flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # the reader went away (`tap | head`): a quiet end, as cat's
            # Python would complain again when it flushes stdout at exit: point it at nothing.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# ---------------------------------------------------------------------- doctor


def cmd_service(args: argparse.Namespace) -> int:
    from pipeline import service

    instance = args.instance or config_mod.load(args.config).instance.name
    config = Path(args.config).resolve() if args.config else None
    try:
        svc = service.service_for(instance, config, args.live)
        if args.action == "install":
            said = service.install(svc, start=not args.no_start)
            if not args.live and config_mod.load(config).forward.mode != "live":
                said.append("it forwards nothing until installed with --live (or forward.mode = \"live\")")
            ok = True
        elif args.action == "uninstall":
            said, ok = service.uninstall(svc), True
        else:
            ok, said = service.status(svc)
    except (service.ServiceError, OSError) as exc:
        print(f"jarvis-pipeline service: {exc}", file=sys.stderr)
        return 1
    print("\n".join(said))
    return 0 if ok else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    """Each thing the pipeline needs, ok or NO with what to do; exits 1 only
    when the pipeline could not run as configured (a missing key is no
    failure: it runs dry)."""
    from pipeline import supervisor as sup

    checks: list[tuple[str, bool, str]] = []
    hard = {"core", "config", "runtime dir", "shared memory"}
    checks.append(
        ("core", True, f"jarvis_rust_core {jarvis_rust_core.__version__}, ring layout {jarvis_rust_core.LAYOUT_VERSION}")
    )
    cfg: config_mod.Config | None
    try:
        cfg = config_mod.load(args.config)
        checks.append(("config", True, args.config or "the defaults and the environment"))
    except config_mod.ConfigError as exc:
        cfg = None
        checks.append(("config", False, str(exc)))
    try:  # what `up` would find with capture.source = "auto" (secrets stay out of the probe's environment)
        known = cfg or config_mod.Config()
        auto = dataclasses.replace(known, capture=dataclasses.replace(known.capture, source="auto"))
        found = sup.probe_source(auto, {k: v for k, v in os.environ.items() if k not in stages.PIPELINE.private_env})
        usable, why = found.kind == "screen", found.why
    except sup.StartError as exc:
        usable, why = False, str(exc)
    if cfg is not None and cfg.capture.source == "screen":
        hard.add("display")  # nothing to fall back to
        checks.append(("display", usable, why))
    else:
        checks.append(("display", usable, why + ("" if usable else "; the synthetic desktop will be captured")))
    checks.append(_doctor_gpu(cfg))
    if cfg is not None and cfg.analysis.backend == "gpu":
        hard.add("gpu")  # `up` would stop
    if cfg is not None:
        checks.append(_doctor_key(cfg))
        checks.append(_doctor_endpoint(cfg))
        try:
            rt = _runtime(args, cfg)
            rt.prepare()
            checks.append(("runtime dir", True, str(rt.dir)))
            running = rt.owner_pid()
            checks.append(("instance", True, f"{rt.instance} is {f'running (pid {running})' if running else 'not running'}"))
        except RuntimeDirError as exc:
            checks.append(("runtime dir", False, str(exc)))
    base = Path(jarvis_rust_core.default_ring_dir())
    try:
        st = os.statvfs(next(p for p in (base, *base.parents) if p.exists()))  # (made at the first `up`)
    except (OSError, StopIteration) as exc:
        checks.append(("shared memory", False, f"cannot read the free space of {base}: {exc}"))
    else:
        free_mb = st.f_bavail * st.f_frsize / 2**20
        c = cfg or config_mod.Config()
        slots = c.ring.slots or stages.PIPELINE.min_ring_slots(c.hops.credit, 1, c.supervisor.tap_holds)
        width, height = (c.ring.max_width, c.ring.max_height) if c.ring.max_width else (1920, 1080)
        need_mb = slots * width * height * 4 / 2**20
        checks.append(("shared memory", free_mb >= need_mb,
                       f"{free_mb:.0f} MB free in {base} (a {width}x{height} pipeline of one monitor, {slots} slots, "
                       f"needs ~{need_mb:.0f} MB)"))
    for name, ok, detail in checks:
        print(f"{'ok ' if ok else 'NO '} {name:14s} {detail}")
    return 0 if all(ok for name, ok, _ in checks if name in hard) else 1


def _doctor_gpu(cfg: config_mod.Config | None) -> tuple[str, bool, str]:
    """Where analysis would run: a failure only when analysis.backend =
    "gpu" finds no adapter (`up` would stop)."""
    from pipeline import supervisor as sup

    choice = cfg.analysis.backend if cfg is not None else "auto"
    env = {k: v for k, v in os.environ.items() if k not in stages.PIPELINE.private_env}  # without secrets, as `up` gives it
    try:
        found = sup.probe_backend(choice, env)
    except sup.StartError as exc:
        return "gpu", False, f"{exc}: `up` would stop"
    detail = f"analysis.backend = {choice!r}: analysis runs on {found.decided}"
    if choice != "gpu":  # what a software adapter would do, for the record
        try:
            soft = sup.probe_backend("gpu", env)
            if soft.adapter is not None and soft.adapter.software:
                detail += f"; a software adapter is there too ({soft.adapter.name}: analysis.backend = \"gpu\" uses it)"
        except sup.StartError:
            pass
    return "gpu", True, detail


def _doctor_key(cfg: config_mod.Config) -> tuple[str, bool, str]:
    from pipeline.api_key import ApiKeyError, api_key

    try:
        key = api_key(os.environ, cfg.forward.api_key_file)
    except ApiKeyError as exc:
        return ("api key", False, str(exc))
    if key is None:
        return ("api key", False, "no ANTHROPIC_API_KEY and no forward.api_key_file: dry-run only")
    where = "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else cfg.forward.api_key_file
    return ("api key", True, f"found in {where} (live forwarding also needs --live or forward.mode = \"live\")")


def _doctor_endpoint(cfg: config_mod.Config) -> tuple[str, bool, str]:
    from pipeline.api_key import ApiKeyError, endpoint

    try:
        url, where = endpoint(os.environ, cfg.forward.base_url)
    except ApiKeyError as exc:
        return ("api endpoint", False, str(exc))
    return ("api endpoint", True, f"{url} (from {where})")


if __name__ == "__main__":
    sys.exit(main())
