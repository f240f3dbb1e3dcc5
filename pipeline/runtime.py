"""Where an instance keeps its files, and the lock that makes it one instance.

Ring: $JARVIS_SHM_DIR/jarvis-<uid>/<instance>.ring, else under the core's
  default (jarvis_rust_core.default_ring_dir: /dev/shm; macOS
  ~/Library/Caches/jarvis-pipeline).

Runtime directory (sockets, instance lock, resolved config, logs):
  $JARVIS_RUNTIME_DIR/<instance>, else $XDG_RUNTIME_DIR/jarvis/<instance>, else
  (macOS) ~/Library/Caches/jarvis-pipeline/run/<instance>, else
  /tmp/jarvis-<uid>/<instance>; 0700 and owned by us, checked every time.
Data directory (dry-run outbox, journal): $JARVIS_DATA_DIR/<instance>, else
  $XDG_STATE_HOME/jarvis-pipeline/<instance>, else ~/.local/state/jarvis-pipeline/<instance>.
ipc socket paths must stay under ~100 bytes (104 on macOS, 108 on Linux).

Trust chain: every directory from the runtime and data bases down is this
user's own, a real directory (not a symlink) and closed to group and others;
each directory above a base belongs to root or this user and, if others may
write to it, has the sticky bit (like /tmp), so nobody else can rename or
replace what lies below. Anything else is refused with a message saying what
to do. Directories the project creates are 0700 whatever the umask.
"""

from __future__ import annotations

import fcntl
import io
import logging.handlers
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline import stages

MAX_SOCKET_PATH = 100
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


class RuntimeDirError(RuntimeError):
    """The runtime or data directory cannot be used safely."""


def _refuse(path: Path, why: str, hint: str) -> RuntimeDirError:
    return RuntimeDirError(f"{path} {why}; {hint}")


def _check_above(path: Path, hint: str) -> None:
    """A directory above a base: root's or ours, and others may not replace
    its entries (not writable by them, or sticky like /tmp). Symlinks (e.g.
    macOS's /tmp) are checked as links, then along their targets."""
    me = os.geteuid()
    for chain in (path.absolute(), Path(os.path.realpath(path))):
        for p in reversed([chain, *chain.parents]):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                break  # created below, by us
            except OSError as exc:
                raise _refuse(p, f"cannot be inspected ({exc.strerror})", hint) from None
            if st.st_uid not in (0, me):
                raise _refuse(p, f"belongs to uid {st.st_uid}, who could replace what lies below it", hint)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise _refuse(p, f"is writable by others (mode {stat.S_IMODE(st.st_mode):o}) without the sticky bit", hint)


def _check_own(path: Path, hint: str, *, leaf: bool) -> None:
    """A directory from a base down: ours, real, closed to others (the leaf
    entirely: 0700)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _refuse(path, f"cannot be inspected ({exc.strerror})", hint) from None
    closed = st.st_mode & (0o077 if leaf else 0o022) == 0
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or not closed:
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode) else "not a directory"
        raise _refuse(
            path,
            f"must be a directory owned by uid {os.geteuid()} with mode 0700 (found {kind} of uid {st.st_uid}, "
            f"mode {stat.S_IMODE(st.st_mode):o})",
            "remove it or fix its permissions, or " + hint,
        )


def _chain(path: Path, base: Path | None) -> tuple[Path, Path]:
    path = Path(os.path.abspath(path))
    base = path if base is None else Path(os.path.abspath(base))
    if path != base and base not in path.parents:
        raise ValueError(f"{path} is not below {base}")
    return path, base


def private_dir(path: Path, base: Path | None = None, *, hint: str = "set JARVIS_RUNTIME_DIR to a private place") -> Path:
    """Creates `path` (0700, with any missing parents) and checks the trust
    chain: from `base` (default: `path` itself) down, ours and closed; above
    it, root's or ours and safe from renames by others. Top down: nothing is
    created inside a directory before that directory passed."""
    path, base = _chain(path, base)
    _check_above(base.parent, hint)
    for p in reversed([path, *path.parents]):
        inside = p == base or base in p.parents
        if not inside and os.path.lexists(p):
            continue  # above the base, and checked there
        if not os.path.lexists(p):
            try:
                os.mkdir(p, 0o700)
                os.chmod(p, 0o700, follow_symlinks=False)  # the umask may have taken bits; 0700 exactly
            except FileExistsError:
                pass  # made meanwhile: checked below like any existing directory
            except OSError as exc:
                raise _refuse(p, f"cannot be created ({exc.strerror})", hint) from None
        if inside:
            _check_own(p, hint, leaf=p == path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise _refuse(path, "is not writable", hint)
    return path


def check_dir(path: Path, base: Path | None = None, *, hint: str = "set JARVIS_RUNTIME_DIR to a private place") -> bool:
    """The trust chain of `path` as far as it exists, creating nothing:
    whether `path` itself exists (checked)."""
    path, base = _chain(path, base)
    _check_above(base.parent, hint)
    for p in reversed([path, *path.parents]):
        if p == base or base in p.parents:
            if not os.path.lexists(p):
                return False
            _check_own(p, hint, leaf=p == path)
    return True


def open_private_log(path: Path) -> int:
    """An append-only descriptor of a log file: never through a symlink,
    0600 when created, refused (RuntimeDirError) unless it is this user's
    regular file with no other name."""
    try:
        # O_NONBLOCK: a FIFO planted there must not block the open.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise RuntimeDirError(f"cannot open the log {path} ({exc.strerror}); remove it") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
        os.close(fd)
        raise RuntimeDirError(f"{path} is not a log file of this user (a link, or not a regular file); remove it")
    os.set_blocking(fd, True)
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def write_replacing(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Written to a temporary file beside `path` (never through a symlink)
    and renamed into place: a crash leaves the old or the new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # whatever the umask
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class PrivateLogHandler(logging.handlers.RotatingFileHandler):
    """A log rotated at `max_mb` (logs.max_mb), `backups` old files kept;
    every file opened with open_private_log (no symlink followed, 0600)."""

    def __init__(self, path: Path, max_mb: float = 1.0, backups: int = 2) -> None:
        # Opened now: a log that cannot be used is refused at start, not reported per record.
        super().__init__(path, maxBytes=max(1, int(max_mb * 2**20)), backupCount=backups)

    def _open(self) -> io.TextIOWrapper:
        return os.fdopen(open_private_log(Path(self.baseFilename)), "a", encoding="utf-8", errors="replace")


def log_to(handler: logging.Handler, fmt: str = LOG_FORMAT) -> None:
    """Every logger of the process, libraries' included, writes to `handler`
    from INFO up (the root logger's only handler)."""
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class OutputLog:
    """What a stage process writes to its stdout and stderr (tracebacks, a
    fatal error's dump), read by the supervisor from a pipe and written to
    `<stage>.out`, rotated like the logs: the output outlives the stage."""

    def __init__(self, path: Path, max_mb: float, backups: int) -> None:
        self.handler = PrivateLogHandler(path, max_mb, backups)
        self.handler.terminator = ""
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, data: bytes) -> None:
        self.handler.emit(logging.makeLogRecord({"msg": data.decode("utf-8", errors="replace")}))

    def close(self) -> None:
        self.handler.close()


def check_instance_name(name: str) -> str:
    if not _NAME.match(name):
        raise RuntimeDirError(f"instance name {name!r} must be 1-24 characters from A-Z a-z 0-9 _ -")
    return name


@dataclass(frozen=True)
class Runtime:
    """The paths of one instance."""

    instance: str
    dir: Path
    data_dir: Path
    #: Base directory of the ring file ($JARVIS_SHM_DIR; None: the core's default, /dev/shm).
    shm_base: Path | None = None
    #: Where the trust chains of `dir` and `data_dir` start (see the module docstring).
    dir_base: Path | None = None
    data_base: Path | None = None

    @classmethod
    def locate(cls, instance: str, env: dict[str, str] | None = None) -> Runtime:
        env = dict(os.environ) if env is None else env
        check_instance_name(instance)
        if env.get("JARVIS_RUNTIME_DIR"):
            base = Path(env["JARVIS_RUNTIME_DIR"])
        elif env.get("XDG_RUNTIME_DIR"):
            base = Path(env["XDG_RUNTIME_DIR"]) / "jarvis"
        elif sys.platform == "darwin":
            # Not /tmp or $TMPDIR: macOS removes files there untouched for three days,
            # the lock of an instance running all week among them.
            base = Path(env.get("HOME") or Path.home()) / "Library" / "Caches" / "jarvis-pipeline" / "run"
        else:
            base = Path("/tmp") / f"jarvis-{os.geteuid()}"
        if env.get("JARVIS_DATA_DIR"):
            data = Path(env["JARVIS_DATA_DIR"])
        else:
            state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
            data = state / "jarvis-pipeline"
        shm = Path(env["JARVIS_SHM_DIR"]) if env.get("JARVIS_SHM_DIR") else None
        rt = cls(instance, base / instance, data / instance, shm, base, data)
        longest = max((rt.socket(name) for name in stages.PIPELINE.sockets), key=lambda p: len(str(p)))
        if len(str(longest)) > MAX_SOCKET_PATH:
            raise RuntimeDirError(
                f"socket paths under {rt.dir} would be {len(str(longest))} bytes, over the {MAX_SOCKET_PATH}-byte "
                "limit of ipc sockets; set JARVIS_RUNTIME_DIR to a shorter directory"
            )
        return rt

    def socket(self, name: str) -> Path:
        return self.dir / f"{name}.sock"

    def endpoint(self, name: str) -> str:
        return f"ipc://{self.socket(name)}"

    @property
    def lock_path(self) -> Path:
        return self.dir / "instance.lock"

    @property
    def pause_path(self) -> Path:
        """The pause, kept across restarts of the supervisor (pipeline.schemas.PauseFile)."""
        return self.data_dir / "control.json"

    @property
    def final_counters_path(self) -> Path:
        """The ring's counters when the pipeline last stopped (JSON, the names of protocol.COUNTER_NAMES)."""
        return self.data_dir / "final-counters.json"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def log_path(self, stage: str) -> Path:
        return self.log_dir / f"{stage}.log"

    @property
    def ring_name(self) -> str:
        return self.instance

    def prepare(self) -> None:
        """Creates the runtime directory if needed and checks its trust chain."""
        self.check(create=True)

    def check(self, create: bool = False) -> None:
        """The runtime directory's trust chain (see the module docstring);
        every verb checks it before it uses a socket or file in it. Without
        `create`, a missing directory is left missing (nothing runs)."""
        hint = "set JARVIS_RUNTIME_DIR to a private place"
        if create:
            private_dir(self.dir, self.dir_base, hint=hint)
            private_dir(self.log_dir, self.dir_base, hint=hint)
        elif check_dir(self.dir, self.dir_base, hint=hint):
            check_dir(self.log_dir, self.dir_base, hint=hint)

    def prepare_data(self) -> Path:
        """The data directory (outbox, journal, kept pause), created and checked."""
        return private_dir(self.data_dir, self.data_base, hint="set JARVIS_DATA_DIR to a private place")

    def owner_pid(self) -> int | None:
        """The pid of the supervisor holding the instance lock, or None."""
        self.check()
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


class InstanceLock:
    """Held by the supervisor for its whole life: a second `up` finds it taken,
    and whoever takes it knows any leftover files are stale."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.fd = -1

    def acquire(self) -> bool:
        self.rt.prepare()
        fd = os.open(self.rt.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def to_env(rt: Runtime) -> str:
    """The runtime as the supervisor hands it to its stages."""
    import json

    return json.dumps({"instance": rt.instance, "dir": str(rt.dir), "data_dir": str(rt.data_dir),
                       "shm_base": str(rt.shm_base) if rt.shm_base else None,
                       "dir_base": str(rt.dir_base) if rt.dir_base else None,
                       "data_base": str(rt.data_base) if rt.data_base else None})


def from_env(text: str) -> Runtime:
    import json

    spec = json.loads(text)

    def path(key: str) -> Path | None:
        return Path(spec[key]) if spec.get(key) else None

    return Runtime(spec["instance"], Path(spec["dir"]), Path(spec["data_dir"]), path("shm_base"),
                   path("dir_base"), path("data_base"))
