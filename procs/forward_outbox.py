"""The dry-run outbox: each request that would have gone to Claude, written
where a person can inspect exactly what would leave the machine.

<data dir>/outbox/<time>-<first seq>/request.json (the Messages API request
as it would be sent, without any key, each image's data replaced by its file
name) plus the images (frame-<seq>.jpg or .png, masked and downscaled as
sent); directories 0700, files 0600; the oldest requests are removed beyond
forward.outbox_max_requests or forward.outbox_max_mb.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.runtime import private_dir
from procs.claude_request import Shot


class Outbox:
    def __init__(self, root: Path, max_requests: int, max_bytes: int) -> None:
        self.root = private_dir(root)
        self.max_requests, self.max_bytes = max_requests, max_bytes

    def write(self, request_id: str, params: dict[str, Any], shots: list[Shot], meta: dict[str, Any]) -> Path:
        folder = self.root / request_id
        folder.mkdir(mode=0o700)
        for s in shots:
            self._write(folder / s.file_name, s.image.data)
        body = {"id": request_id, "mode": "dry-run", **meta, "request": params}
        self._write(folder / "request.json", json.dumps(body, indent=1).encode())
        self._enforce_caps()
        return folder

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def _enforce_caps(self) -> None:
        requests = sorted(p for p in self.root.iterdir() if p.is_dir())
        sizes = {p: sum(f.stat().st_size for f in p.iterdir()) for p in requests}
        total = sum(sizes.values())
        while requests and (len(requests) > self.max_requests or total > self.max_bytes):
            oldest = requests.pop(0)
            total -= sizes[oldest]
            shutil.rmtree(oldest, ignore_errors=True)
