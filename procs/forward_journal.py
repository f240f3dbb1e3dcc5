"""The journal: one JSON line per request forward made (or wrote to the
outbox), with what was sent (frame metadata, token estimate, images only when
forward.journal_images is on), the answer, the usage and its cost.

<data dir>/journal.jsonl, 0600 in a 0700 directory. Retention: when the file
passes forward.journal_max_mb it becomes journal.1.jsonl (replacing the
previous one), so the journal never holds more than twice the cap.

Cost uses the prices in forward.price (USD per million tokens): they are the
user's to keep current with Anthropic's price list for the configured model.
"""

from __future__ import annotations

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
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > self.max_bytes:
            os.replace(self.path, self.old)
