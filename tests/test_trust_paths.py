"""The trust chain of paths (DESIGN.md): the runtime, data and shared-memory
directories are refused when another local user controls them or anything
above them, the project's own directories and files stay private whatever the
umask, and logs are never written through a symlink.

"Another user" is a process forked from the test that switches to an unused
uid and gid (no account needed), so the tests that need one run as root (as CI
does). Every wait is for a condition, with a deadline."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from pipeline_harness import Pipeline, alive, pipeline, wait_for

STAGES = ("capture", "dedup", "analysis", "forward")
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="switching to another uid needs root (CI runs the tests as root)")


def _unused_id() -> int:
    uid = 65123
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


OTHER = _unused_id()  # another local user: uid and gid


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short private directory under /tmp (ipc socket paths must stay under
    ~100 bytes, which pytest's tmp_path can exceed), traversable by the other
    user (0711: it may not list nor write it), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="jt-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sticky_dir(path: Path) -> Path:
    """A directory like /tmp: root's (ours), world-writable, sticky."""
    path.mkdir()
    path.chmod(0o1777)
    return path


def _become_other() -> None:
    os.setgroups([])
    os.setgid(OTHER)  # as root: real, effective and saved ids alike (POSIX; setresuid is not on macOS)
    os.setuid(OTHER)


def _reaped(pid: int) -> tuple[int] | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return (status,) if done else None


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def as_other_user(fn: Callable[[], None]) -> None:
    """Runs `fn` in a forked child as the other user; fails with its traceback."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.close(r)
            _become_other()
            fn()
            code = 0
        except BaseException:
            os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    try:
        (status,) = wait_for("the other user's process to finish", lambda: _reaped(pid), timeout=30)
        err = _read_all(r).decode(errors="replace")
    finally:
        os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0, f"the other user's process failed:\n{err}"


@contextmanager
def fake_supervisor_of_other_user(inst_dir: Path) -> Iterator[Callable[[], int]]:
    """The other user's trap in `inst_dir` (which it owns): a held instance lock
    naming its pid and a real ZeroMQ REP socket at control.sock answering every
    request with {"ok": true, "result": {"paused": true}}. Yields a function
    that says how many requests reached it."""
    ready_r, ready_w = os.pipe()
    seen_r, seen_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(seen_r)
            _become_other()
            ctx = zmq.Context()
            rep = ctx.socket(zmq.REP)
            rep.bind(f"ipc://{inst_dir / 'control.sock'}")
            lock = os.open(inst_dir / "instance.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock, fcntl.LOCK_EX)
            os.write(lock, str(os.getpid()).encode())
            os.write(ready_w, b"ready")
            while True:
                if rep.poll(1000):
                    rep.recv()
                    os.write(seen_w, b".")
                    rep.send(msgpack.packb({"ok": True, "result": {"paused": True}}))
        except BaseException:
            os.write(ready_w, traceback.format_exc().encode())
        finally:
            os._exit(1)
    os.close(ready_w)
    os.close(seen_w)
    seen: list[bytes] = []
    try:
        wait_for("the other user's control socket", lambda: select.select([ready_r], [], [], 0)[0], timeout=30)
        said = os.read(ready_r, 65536)
        assert said == b"ready", f"the other user's fake supervisor failed:\n{said.decode(errors='replace')}"

        def requests() -> int:
            seen.append(_read_all(seen_r))
            return len(b"".join(seen))

        yield requests
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_for("the fake supervisor gone", lambda: _reaped(pid), timeout=30)
        os.close(ready_r)
        os.close(seen_r)


def tree(path: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `path` (not following links): relative name -> (uid, mode, size)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            out[str(p.relative_to(path))] = (st.st_uid, st.st_mode, st.st_size if stat.S_ISREG(st.st_mode) else 0)
    return out


def not_dirs(entries: dict[str, tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
    return {k: v for k, v in entries.items() if not stat.S_ISDIR(v[1])}


def assert_refused(out: subprocess.CompletedProcess[str], path: Path, variable: str) -> None:
    assert out.returncode != 0, f"exit 0:\n{out.stdout}\n{out.stderr}"
    assert str(path) in out.stderr and variable in out.stderr, f"the message should name {path} and {variable}:\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr


def all_running(p: Pipeline) -> dict[str, dict[str, Any]] | None:
    st = p.status()
    return st if all(s["state"] == "running" for s in st.values()) else None


def other_user_makes(base: Path, layout: str) -> Path:
    """`base` (in a sticky directory) made by the other user: its own directory
    (0700 or 0777), or a symlink to its own directory. Returns the directory
    that really holds what lies below `base`."""
    real = base.with_name(base.name + "-real") if layout == "symlink" else base

    def make() -> None:
        os.mkdir(real, 0o700)
        os.chmod(real, 0o777 if layout == "dir0777" else 0o700)
        if layout == "symlink":
            os.symlink(real, base)

    as_other_user(make)
    assert os.lstat(base).st_uid == OTHER
    return real


LAYOUTS = ["dir0700", "dir0777", "symlink"]


# ---------------------------------------------------------------------- 1. runtime base


@needs_root
@pytest.mark.parametrize("layout", LAYOUTS)
def test_up_refuses_a_runtime_base_of_another_user(short_tmp: Path, layout: str) -> None:
    sticky = sticky_dir(short_tmp / "sticky")
    base = sticky / "jarvis-base"
    real = other_user_makes(base, layout)
    before = tree(sticky)
    with pipeline(env={"JARVIS_RUNTIME_DIR": str(base)}) as p:
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        assert_refused(out, base, "JARVIS_RUNTIME_DIR")
        assert p.supervisor_pid() is None and not p.jarvis_processes()
        assert not_dirs(tree(sticky)) == not_dirs(before), f"a socket or file was created in the other user's {real}"
        for verb in ("pause", "status"):  # nothing runs there, and nothing of ours is connected to
            out = p.cli(verb, check=False)
            assert out.returncode != 0 and "paused:" not in out.stdout and "Traceback" not in out.stderr, out
        assert not_dirs(tree(sticky)) == not_dirs(before)


@needs_root
@pytest.mark.parametrize("layout", LAYOUTS)
def test_verbs_do_not_talk_to_a_control_socket_planted_by_another_user(short_tmp: Path, layout: str) -> None:
    sticky = sticky_dir(short_tmp / "sticky")
    base = sticky / "jarvis-base"
    real = other_user_makes(base, layout)
    as_other_user(lambda: os.mkdir(real / "default", 0o700))
    with fake_supervisor_of_other_user(real / "default") as requests, pipeline(env={"JARVIS_RUNTIME_DIR": str(base)}) as p:
        before = tree(sticky)
        for verb in ("pause", "status", "resume", "down"):
            out = p.cli(verb, check=False)
            assert "paused: nothing leaves the machine" not in out.stdout, out.stdout
            assert_refused(out, base, "JARVIS_RUNTIME_DIR")
        assert requests() == 0, "a verb sent its request to the other user's socket"
        assert tree(sticky) == before


# ---------------------------------------------------------------------- 2. data base


@needs_root
@pytest.mark.parametrize("layout", LAYOUTS)
def test_up_refuses_a_data_base_of_another_user(short_tmp: Path, layout: str) -> None:
    sticky = sticky_dir(short_tmp / "sticky")
    base = sticky / "jarvis-data"
    real = other_user_makes(base, layout)
    before = tree(sticky)
    with pipeline(env={"JARVIS_DATA_DIR": str(base)}) as p:
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        assert_refused(out, base, "JARVIS_DATA_DIR")
        wait_for("the refused supervisor gone", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=30)
        assert not_dirs(tree(sticky)) == not_dirs(before), f"a socket or file was created in the other user's {real}"


# ---------------------------------------------------------------------- 3. open parents


@pytest.mark.parametrize("where", ["parent", "grandparent", "through_symlink"])
@pytest.mark.parametrize("variable", ["JARVIS_RUNTIME_DIR", "JARVIS_DATA_DIR"])
def test_up_refuses_a_base_below_a_directory_others_may_write(short_tmp: Path, where: str, variable: str) -> None:
    """0777 without the sticky bit (root's, or ours when not root): anyone can
    rename the base away and put their own in its place."""
    open_dir = short_tmp / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    if where == "parent":
        base = open_dir / "base"
    elif where == "grandparent":
        (open_dir / "mid").mkdir(mode=0o755)
        base = open_dir / "mid" / "base"
    else:  # the path names only closed directories, the link leads through the open one
        (short_tmp / "link").symlink_to(open_dir)
        base = short_tmp / "link" / "base"
    base.mkdir(mode=0o700)  # even an existing base of ours, 0700, is not enough
    base.chmod(0o700)
    before = tree(open_dir)
    with pipeline(env={variable: str(base)}) as p:
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        assert out.returncode != 0, out.stdout
        assert "writable by others" in out.stderr and str(open_dir) in out.stderr and variable in out.stderr, out.stderr
        wait_for("nothing running", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=30)
        assert tree(open_dir) == before, "something was created below the open directory"


# ---------------------------------------------------------------------- 4. umask 0


def test_umask_0_still_makes_private_directories_and_files(short_tmp: Path) -> None:
    run_base, data_base = short_tmp / "a" / "b" / "c", short_tmp / "d" / "e" / "f"
    with pipeline(env={"JARVIS_RUNTIME_DIR": str(run_base), "JARVIS_DATA_DIR": str(data_base)}) as p:
        up = subprocess.run(
            ["sh", "-c", 'umask 0; exec "$@"', "sh", sys.executable, "-m", "pipeline.cli", "up", "-d", "-c", str(p.config_path)],
            env=p.env, capture_output=True, text=True, timeout=120,
        )
        assert up.returncode == 0, up.stderr
        wait_for("all stages running", lambda: all_running(p))
        wait_for("a dry-run request in the outbox",
                 lambda: (p.rt.data_dir / "outbox").is_dir() and any((p.rt.data_dir / "outbox").iterdir()), timeout=60)
        supervisor = p.supervisor_pid()
        if os.path.exists(f"/proc/{supervisor}/status"):  # not vacuous: the pipeline runs under umask 0
            umask = [line.split()[1] for line in Path(f"/proc/{supervisor}/status").read_text().splitlines()
                     if line.startswith("Umask:")]
            assert umask == ["0000"], umask
        p.cli("pause")
        pause_file = p.rt.data_dir / "control.json"
        assert pause_file.is_file()
        p.cli("down")
        ring_dir = p.shm / f"jarvis-{os.geteuid()}"
        made = [short_tmp / "a", short_tmp / "d", ring_dir]
        dirs = [d for top in made for d in [top, *(Path(x) for x, _, _ in os.walk(top) if Path(x) != top)]]
        loose = {str(d): oct(stat.S_IMODE(d.lstat().st_mode)) for d in dirs if stat.S_IMODE(d.lstat().st_mode) != 0o700}
        assert not loose, f"directories not 0700 under umask 0: {loose}"
        files = [Path(x) / f for top in made for x, _, fs in os.walk(top) for f in fs]
        logs = [f for f in files if f.parent == p.rt.log_dir]
        assert {f.name for f in logs} >= {"supervisor.log", "supervisor.out", *(f"{s}.log" for s in STAGES)}
        regular = [f for f in files if stat.S_ISREG(f.lstat().st_mode)]
        assert pause_file in regular
        loose = {str(f): oct(stat.S_IMODE(f.lstat().st_mode)) for f in regular if stat.S_IMODE(f.lstat().st_mode) != 0o600}
        assert not loose, f"files not 0600 under umask 0: {loose}"


# ---------------------------------------------------------------------- 5. logs and symlinks


@pytest.mark.parametrize("log_name", ["capture.log", "supervisor.log"])
def test_logs_are_not_written_through_a_symlink(log_name: str) -> None:
    """A stage or the supervisor may fail to log, or `up` may refuse, but the
    link's target stays as it was (the pipeline runs long enough to log:
    start, stop, final counters)."""
    with pipeline() as p:
        target = p.root / "precious.txt"
        target.write_text("not a log\n")
        target.chmod(0o600)
        before = target.stat()
        p.rt.log_dir.mkdir(parents=True, mode=0o700)
        for d in (p.rt.dir.parent, p.rt.dir, p.rt.log_dir):
            d.chmod(0o700)
        (p.rt.log_dir / log_name).symlink_to(target)
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        print(f"up with {log_name} a symlink: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
        if out.returncode == 0:
            wait_for("all stages running", lambda: all_running(p))
        if p.supervisor_pid():  # up -d may also report a failed stage and leave the rest running
            p.cli("down")
        wait_for("nothing running", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=60)
        assert target.read_text() == "not a log\n", "a log was written through the symlink"
        after = target.stat()
        assert (after.st_size, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
            before.st_size, before.st_mtime_ns, 0o600)


# ---------------------------------------------------------------------- 6. shared memory


@needs_root
def test_a_shm_directory_of_another_user_is_refused_then_a_private_one_works() -> None:
    sticky = Path(tempfile.mkdtemp(prefix="jt-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        sticky.chmod(0o1777)
        theirs = sticky / f"jarvis-{os.geteuid()}"
        as_other_user(lambda: os.mkdir(theirs, 0o700))
        before = tree(sticky)
        with pipeline(env={"JARVIS_SHM_DIR": str(sticky)}) as p:
            out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
            assert_refused(out, theirs, "JARVIS_SHM_DIR")
            wait_for("the refused supervisor gone", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=30)
            assert tree(sticky) == before, "something was created in the other user's directory"

            p.env["JARVIS_SHM_DIR"] = str(p.shm)  # the way out the message names: a private directory
            p.up()
            wait_for("all stages running", lambda: all_running(p))
            p.cli("down")
            assert sorted(x.name for x in p.rt.dir.iterdir()) == ["logs"], "no sockets, lock or config left"
            assert not list(p.shm.rglob("*.ring")) and not list(p.shm.rglob("*.lock"))
            assert tree(sticky) == before
    finally:
        shutil.rmtree(sticky, ignore_errors=True)


# ---------------------------------------------------------------------- open questions (these fail today)


@needs_root
@pytest.mark.parametrize("layout", ["dir0700", "symlink"])
@pytest.mark.parametrize("variable", ["JARVIS_RUNTIME_DIR", "JARVIS_DATA_DIR"])
def test_nothing_at_all_is_created_in_a_base_of_another_user(short_tmp: Path, variable: str, layout: str) -> None:
    """Not even an empty directory: the chain that exists is checked before
    anything is created in it (through a symlink, a directory would otherwise
    be made wherever the other user points it)."""
    sticky = sticky_dir(short_tmp / "sticky")
    base = sticky / "jarvis-base"
    real = other_user_makes(base, layout)
    before = tree(sticky)
    with pipeline(env={variable: str(base)}) as p:
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        assert_refused(out, base, variable)
        wait_for("nothing running", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=30)
        assert tree(sticky) == before, f"created in the other user's {real}: {set(tree(sticky)) - set(before)}"


@needs_root
@pytest.mark.parametrize("layout", LAYOUTS)
def test_verbs_refuse_a_runtime_base_of_another_user(short_tmp: Path, layout: str) -> None:
    """Without any `up` before: the base alone is reason to refuse, as the other
    user may add the instance directory, a lock and sockets at any moment
    (between the verb's look and its open)."""
    sticky = sticky_dir(short_tmp / "sticky")
    base = sticky / "jarvis-base"
    other_user_makes(base, layout)
    with pipeline(env={"JARVIS_RUNTIME_DIR": str(base)}) as p:
        for verb in ("pause", "status"):
            out = p.cli(verb, check=False)
            assert "paused:" not in out.stdout, out.stdout
            assert_refused(out, base, "JARVIS_RUNTIME_DIR")


@pytest.mark.parametrize("log_name", ["supervisor.out", "forward.out"])
def test_a_symlinked_out_log_is_refused_with_a_message(log_name: str) -> None:
    with pipeline() as p:
        target = p.root / "precious.txt"
        target.write_text("not a log\n")
        p.rt.log_dir.mkdir(parents=True, mode=0o700)
        for d in (p.rt.dir.parent, p.rt.dir, p.rt.log_dir):
            d.chmod(0o700)
        (p.rt.log_dir / log_name).symlink_to(target)
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        wait_for("nothing running", lambda: p.supervisor_pid() is None and not p.jarvis_processes(), timeout=60)
        assert target.read_text() == "not a log\n"
        assert out.returncode != 0
        said = out.stderr + ((p.rt.log_dir / "supervisor.out").read_text() if log_name != "supervisor.out" else "")
        assert log_name in out.stderr and "remove it" in out.stderr and "Traceback" not in said, said


def test_a_log_that_cannot_be_opened_is_reported() -> None:
    """capture.log a symlink: `up` refuses, or `status` says that capture
    cannot log (not only a traceback per record in capture.out)."""
    with pipeline() as p:
        target = p.root / "precious.txt"
        target.write_text("not a log\n")
        p.rt.log_dir.mkdir(parents=True, mode=0o700)
        for d in (p.rt.dir.parent, p.rt.dir, p.rt.log_dir):
            d.chmod(0o700)
        (p.rt.log_dir / "capture.log").symlink_to(target)
        out = p.cli("up", "-d", "-c", str(p.config_path), check=False)
        if out.returncode == 0:
            wait_for("all stages running", lambda: all_running(p))
            status = p.cli("status", check=False).stdout
            p.cli("down")
            assert "capture.log" in status, status
        else:
            assert "capture.log" in out.stderr, out.stderr
        assert target.read_text() == "not a log\n"


def test_a_stage_out_log_made_unusable_while_running_does_not_kill_the_supervisor() -> None:
    with pipeline() as p:
        p.up()
        st = wait_for("all stages running", lambda: all_running(p))
        supervisor = p.supervisor_pid()
        target = p.root / "precious.txt"
        target.write_text("not a log\n")
        (p.rt.log_dir / "dedup.out").unlink()
        (p.rt.log_dir / "dedup.out").symlink_to(target)
        os.kill(st["dedup"]["pid"], signal.SIGKILL)  # its restart opens dedup.out again

        def settled() -> str | None:
            if not alive(supervisor or 0):
                return "the supervisor died"
            out = p.cli("status", "--json", check=False, timeout=30)
            if not out.stdout:  # (no answer yet; a failed stage answers, exiting 1)
                return None
            dedup = next(s for s in json.loads(out.stdout)["stages"] if s["name"] == "dedup")
            return "dedup back" if dedup["pid"] != st["dedup"]["pid"] and dedup["state"] in ("running", "failed") else None

        assert wait_for("dedup restarted or failed, or the supervisor dead", settled, timeout=60) == "dedup back"
        assert all(p.status()[n]["state"] == "running" for n in ("capture", "analysis", "forward"))
        p.cli("down")
        assert target.read_text() == "not a log\n"
