"""The dry-run outbox: each request that would have gone to Claude, written
where a person can inspect exactly what would leave the machine.

<data dir>/outbox/<time>-<first seq>/request.json (the Messages API request
as it would be sent, without any key, each image's data replaced by its file
name) plus the images (frame-<seq>.jpg or .png, and the context's
reference-<monitor>-<time> screenshots, masked and downscaled as sent);
directories 0700, files 0600; the oldest requests are removed beyond
forward.outbox_max_requests or forward.outbox_max_mb.

A request folder is whole or absent: it is written under a name starting with
a dot (which nothing here lists) and renamed into place, and a folder being
removed is renamed to such a name first. A failed write removes what it
wrote; one cut short by a crash is removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pipeline.runtime import private_dir
from procs.forward.request import ReferenceShot, Shot

#: Names starting with this are work in progress (being written or removed), never requests.
HIDDEN = "."


class Outbox:
    def __init__(self, root: Path, max_requests: int, max_bytes: int) -> None:
        self.root = private_dir(root)
        self.max_requests, self.max_bytes = max_requests, max_bytes
        for p in self.root.iterdir():
            if p.name.startswith(HIDDEN):  # left by a crash in the middle of a write or a removal
                shutil.rmtree(p, ignore_errors=True)

    def write(self, request_id: str, params: dict[str, Any], shots: list[ReferenceShot | Shot],
              meta: dict[str, Any]) -> Path:
        """Writes one request folder, or raises OSError leaving nothing behind."""
        folder = self.root / request_id
        tmp = Path(tempfile.mkdtemp(prefix=f"{HIDDEN}{request_id}.", dir=self.root))  # 0700
        try:
            for s in shots:
                self._write(tmp / s.file_name, s.image.data)
            body = {"id": request_id, "mode": "dry-run", **meta, "request": params}
            self._write(tmp / "request.json", json.dumps(body, indent=1).encode())
            os.rename(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._enforce_caps()
        return folder

    def remove(self, folder: Path) -> None:
        """Removes a request folder; nobody sees it half removed."""
        gone = self.root / f"{HIDDEN}{folder.name}.removed"
        try:
            os.rename(folder, gone)
        except FileNotFoundError:  # removed already (by the user, say)
            return
        shutil.rmtree(gone, ignore_errors=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def _enforce_caps(self) -> None:
        requests = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(HIDDEN))
        sizes = {p: sum(f.stat().st_size for f in p.iterdir()) for p in requests}
        total = sum(sizes.values())
        while requests and (len(requests) > self.max_requests or total > self.max_bytes):
            oldest = requests.pop(0)
            total -= sizes[oldest]
            self.remove(oldest)
