"""Where an instance keeps its files, and the lock that makes it one instance.

Ring: $JARVIS_SHM_DIR/jarvis-<uid>/<instance>.ring, else under /dev/shm.

Runtime directory (sockets, instance lock, resolved config, logs):
  $JARVIS_RUNTIME_DIR/<instance>, else $XDG_RUNTIME_DIR/jarvis/<instance>, else
  /tmp/jarvis-<uid>/<instance>; 0700 and owned by us, checked every time.
Data directory (dry-run outbox, journal): $JARVIS_DATA_DIR/<instance>, else
  $XDG_STATE_HOME/jarvis-pipeline/<instance>, else ~/.local/state/jarvis-pipeline/<instance>.
ipc socket paths must stay under ~100 bytes (104 on macOS, 108 on Linux).
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_SOCKET_PATH = 100
STAGES = ("capture", "dedup", "analysis", "forward")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


class RuntimeDirError(RuntimeError):
    """The runtime or data directory cannot be used safely."""


def private_dir(path: Path) -> Path:
    """Creates `path` (and parents) 0700 if missing; refuses one that is not a
    directory owned by us and closed to others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise RuntimeDirError(f"cannot create {path}: {exc.strerror}; set JARVIS_RUNTIME_DIR to a writable place") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise RuntimeDirError(
            f"{path} must be a directory owned by uid {os.geteuid()} with mode 0700 "
            f"(found uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); remove it or fix its permissions"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise RuntimeDirError(f"{path} is not writable; set JARVIS_RUNTIME_DIR to a writable place")
    return path


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

    @classmethod
    def locate(cls, instance: str, env: dict[str, str] | None = None) -> Runtime:
        env = dict(os.environ) if env is None else env
        check_instance_name(instance)
        if env.get("JARVIS_RUNTIME_DIR"):
            base = Path(env["JARVIS_RUNTIME_DIR"])
        elif env.get("XDG_RUNTIME_DIR"):
            base = Path(env["XDG_RUNTIME_DIR"]) / "jarvis"
        else:
            base = Path("/tmp") / f"jarvis-{os.geteuid()}"
        if env.get("JARVIS_DATA_DIR"):
            data = Path(env["JARVIS_DATA_DIR"])
        else:
            state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
            data = state / "jarvis-pipeline"
        shm = Path(env["JARVIS_SHM_DIR"]) if env.get("JARVIS_SHM_DIR") else None
        rt = cls(instance, base / instance, data / instance, shm)
        longest = rt.socket("analysis")
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
    def config_path(self) -> Path:
        """The resolved configuration the supervisor hands to its stages."""
        return self.dir / "config.json"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def log_path(self, stage: str) -> Path:
        return self.log_dir / f"{stage}.log"

    @property
    def ring_name(self) -> str:
        return self.instance

    def prepare(self) -> None:
        private_dir(self.dir)
        private_dir(self.log_dir)

    def owner_pid(self) -> int | None:
        """The pid of the supervisor holding the instance lock, or None."""
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
                       "shm_base": str(rt.shm_base) if rt.shm_base else None})


def from_env(text: str) -> Runtime:
    import json

    spec = json.loads(text)
    return Runtime(spec["instance"], Path(spec["dir"]), Path(spec["data_dir"]),
                   Path(spec["shm_base"]) if spec.get("shm_base") else None)
