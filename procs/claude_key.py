"""The API key: from $ANTHROPIC_API_KEY, else from a file only its owner can
read. It is handed to the SDK and nowhere else: never logged, never part of
the configuration, the outbox or the journal."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

ENV_KEY = "ANTHROPIC_API_KEY"


class ApiKeyError(ValueError):
    """A key file that must not be used; the message says what to do."""


def api_key(env: Mapping[str, str], key_file: str) -> str | None:
    """The key from $ANTHROPIC_API_KEY, else from `key_file` (owned by us, no
    access for group or others); None when there is neither."""
    if env.get(ENV_KEY):
        return env[ENV_KEY].strip()
    if not key_file:
        return None
    path = Path(key_file).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ApiKeyError(f"forward.api_key_file {path}: cannot open: {exc.strerror}") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ApiKeyError(
                f"forward.api_key_file {path} must be a regular file owned by uid {os.geteuid()} that only its "
                f"owner can read (found mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
            )
        key = f.read().strip()
    if not key:
        raise ApiKeyError(f"forward.api_key_file {path} is empty")
    return key
