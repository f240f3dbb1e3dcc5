"""Forward on a full disk: the real pipeline (dry-run) with its data directory
on a small tmpfs, mounted in a private mount namespace so that no root
privilege leaks outside the test. The supervisor and its stages run inside
the namespace; the test looks at their files through /proc/<pid>/root of a
process that holds the namespace, and talks to the pipeline through its
sockets, which are outside the tmpfs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pipeline_harness import FAST_CONFIG, Pipeline, pipeline, wait_for
from test_forward_live import assert_balanced

from procs.forward import journal

DISK = "3m"
#: Room left beside the filler file: a few requests, then the disk is full.
ROOM = 320 * 1024
#: What the outbox and the journal hold at most once the filler is gone: they fit on the disk.
CONFIG = FAST_CONFIG.replace(
    "[forward]\nmin_interval_s = 0.3\n",
    "[forward]\nmin_interval_s = 0.2\noutbox_max_mb = 1.0\njournal_max_mb = 0.1\n",
)
FULL = "outbox: No space left on device"


@contextmanager
def small_disk(mount_point: Path) -> Iterator[tuple[int, Path]]:
    """A private mount namespace with a tmpfs of DISK on `mount_point`, held
    by a process that lives until the test closes its stdin (or dies).
    Yields that process's pid and where the tmpfs is seen from here."""
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a mount namespace needs root")
    mount_point.mkdir(mode=0o700, exist_ok=True)
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o size={DISK},mode=0700 jarvis-test "$0" && echo mounted && exec cat', str(mount_point)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None and holder.stderr is not None
    try:
        if holder.stdout.readline().strip() != "mounted":  # a line, or end of file when sh gave up
            holder.wait(timeout=30)
            pytest.skip(f"cannot mount a tmpfs in a private mount namespace: {holder.stderr.read().strip()}")
        yield holder.pid, Path(f"/proc/{holder.pid}/root") / mount_point.relative_to("/")
    finally:
        holder.stdin.close()  # cat ends, and with the last process inside, the tmpfs
        holder.wait(timeout=30)


def up_inside(p: Pipeline, holder: int) -> None:
    """`jarvis-pipeline up -d` in the holder's mount namespace: the supervisor
    and the stages it starts stay in it."""
    proc = subprocess.run(
        ["nsenter", f"--mount=/proc/{holder}/ns/mnt", f"--wd={os.getcwd()}", "--",
         sys.executable, "-m", "pipeline.cli", "up", "-d", "-c", str(p.config_path)],
        env=p.env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"up exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


class OutboxWatch:
    """Checks, each time it is called, that every request folder visible in
    the outbox is whole: request.json and each image it names, complete.
    Returns how many whole requests it has seen so far."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.whole: set[str] = set()  # folders are renamed into place: once whole, always whole

    def __call__(self) -> int:
        if not self.outbox.is_dir():
            return 0
        for name in os.listdir(self.outbox):
            if name.startswith(".") or name in self.whole:
                continue
            folder = self.outbox / name
            try:
                body = json.loads((folder / "request.json").read_bytes())
                for frame in body["frames"]:
                    with Image.open(folder / frame["image"]) as img:
                        img.load()  # a cut-off image fails to decode
            except FileNotFoundError:
                if folder.exists():
                    raise AssertionError(f"partial request folder {name}: {sorted(os.listdir(folder))}") from None
                continue  # removed by the cap meanwhile, as a whole
            self.whole.add(name)
        return len(self.whole)


def whole_lines(path: Path) -> list[dict[str, Any]]:
    """The entries of a journal file that must hold whole JSON lines only."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path.name} ends in a torn line: {data[-200:]!r}"
    for i, line in enumerate(data.splitlines()):
        try:
            json.loads(line)
        except ValueError:
            raise AssertionError(f"{path.name} line {i + 1} is not one JSON entry: {line[:300]!r}") from None
    return journal.read(path)


def test_full_data_disk_fails_cleanly_and_recovers() -> None:
    with pipeline(CONFIG) as p, small_disk(p.root / "data") as (holder, disk):
        filler = disk / "filler"
        st = os.statvfs(disk)
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - ROOM))
        up_inside(p, holder)
        data = disk / p.rt.instance
        watch = OutboxWatch(data / "outbox")
        errors: list[dict[str, Any]] = []
        states: list[str] = []
        with p.tap("stats.forward", "forward.error") as tap:
            deadline = time.monotonic() + 60
            for topic, body in tap:
                watch()
                if topic == "forward.error":
                    errors.append(body)
                else:
                    states.append(body["forward_state"])
                if states and FULL in states[-1]:
                    break
                assert time.monotonic() < deadline, f"the disk never filled: states {sorted(set(states))}"
            else:
                raise AssertionError(f"forward went quiet: states {sorted(set(states))}, errors {errors}")
        assert states[-1].startswith("failing: "), states
        assert errors and {(e["kind"], e["error"], e["stopped"]) for e in errors} == {("outbox", FULL, False)}

        def status_says(*words: str) -> bool:
            watch()
            line = p.cli("status").stdout.splitlines()[0]
            return all(w in line for w in words)

        # Shown until the next write that works: a small request may still fit now and then.
        wait_for("status saying forwarding fails and why", lambda: status_says("forward failing: ", FULL), timeout=60)
        dropped = wait_for("frames of failed writes dropped",
                           lambda: p.status()["forward"]["drops"].get("send_failed", 0), timeout=60)
        assert dropped > 0

        filler.unlink()  # room again: the outbox fills up to its cap, which fits on the disk
        wait_for("status back to dry-run", lambda: status_says("forward dry-run,"), timeout=60)
        before = watch()
        wait_for("requests written again", lambda: watch() >= before + 3, timeout=60)
        assert status_says("forward dry-run,"), "and it stays so"
        fwd = p.status()["forward"]
        assert fwd["state"] == "running" and fwd["restarts"] == 0, "a full disk is no crash"
        p.cli("down")
        watch()
        final = p.final_counters()
        assert_balanced(final)
        assert final["dropped.send_failed"] >= dropped and final["forwarded"] > 0

        left = sorted(os.listdir(data / "outbox"))
        assert [x for x in left if x.startswith(".")] == [], "no temporary folder outlives its write"
        entries = whole_lines(data / "journal.1.jsonl") + whole_lines(data / "journal.jsonl")
        outcomes = {e["outcome"] for e in entries}
        assert {"dry_run", "failed"} <= outcomes, outcomes
        assert all(e["error"] == FULL for e in entries if e["outcome"] == "failed")
