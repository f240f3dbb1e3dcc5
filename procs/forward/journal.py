"""The journal: one JSON line per request forward made (or wrote to the
outbox), with what was sent (frame metadata, token estimate, images only when
forward.journal_images is on), the answer, the usage and its cost.

<data dir>/journal.jsonl, 0600 in a 0700 directory. Retention: when the file
passes forward.journal_max_mb it becomes journal.1.jsonl (replacing the
previous one), so the journal never holds more than twice the cap.

Whole lines or nothing: an append that the file system takes only in part (a
full disk) is cut off again and raised, so the next entry never lands on a
torn line. A crash in the middle of an append can still leave a torn last
line: `read` skips it, and the next append cuts it off first.

Cost uses the prices in forward.price (USD per million tokens): they are the
user's to keep current with Anthropic's price list for the configured model.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from pipeline.runtime import private_dir


def cost_usd(usage: dict[str, int], price: Any) -> float:
    """The cost of one answer's `usage` at `price` (forward.price)."""
    per_token = 1e-6
    return round(
        per_token * float(
            usage.get("input_tokens", 0) * price.input_per_mtok
            + usage.get("output_tokens", 0) * price.output_per_mtok
            + usage.get("cache_creation_input_tokens", 0) * price.cache_write_per_mtok
            + usage.get("cache_read_input_tokens", 0) * price.cache_read_per_mtok
        ),
        8,
    )


class Journal:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.path = private_dir(folder) / "journal.jsonl"
        self.old = self.path.with_name("journal.1.jsonl")
        self.max_bytes = max_bytes

    def write(self, entry: dict[str, Any]) -> None:
        """Appends `entry` as one line, or raises OSError with the file as it was."""
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            start = _whole_lines_end(fd, os.fstat(fd).st_size)
            try:
                done = 0
                while done < len(line):  # after a short write the next one says why (ENOSPC, EFBIG, EDQUOT)
                    n = os.write(fd, line[done:])
                    if n == 0:
                        raise OSError(errno.EIO, "the file system took no bytes")
                    done += n
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        if start + len(line) > self.max_bytes:
            os.replace(self.path, self.old)


def _whole_lines_end(fd: int, size: int) -> int:
    """The size of the file without a torn last line, which is cut off: only a
    crash in the middle of an append leaves one (a failed append is undone)."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        end = start
    os.ftruncate(fd, end)
    return end


def read(path: Path) -> list[dict[str, Any]]:
    """The entries of one journal file, oldest first, without a torn last line
    (a line is whole once its newline is written)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]  # the part after the last newline is torn, or empty
    return [json.loads(x) for x in lines]
