"""Where forward sends and with what key. The key: from $ANTHROPIC_API_KEY,
else from a file only its owner can read; it is handed to the SDK and nowhere
else: never logged, never part of the configuration, the outbox or the
journal. The endpoint: forward.base_url, else $ANTHROPIC_BASE_URL as the SDK
reads it (gateways and proxies are set so), else Anthropic's."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

ENV_KEY = "ANTHROPIC_API_KEY"
ENV_BASE_URL = "ANTHROPIC_BASE_URL"
DEFAULT_BASE_URL = "https://api.anthropic.com"


class ApiKeyError(ValueError):
    """A key file or an endpoint that must not be used; the message says what to do."""


def endpoint(env: Mapping[str, str], base_url: str) -> tuple[str, str]:
    """The Messages API's base URL and where it was set: forward.base_url (a
    file or JARVIS__FORWARD__BASE_URL), else $ANTHROPIC_BASE_URL, else the
    default. A $ANTHROPIC_BASE_URL that is no http(s) URL is refused rather
    than passed over: whoever set it meant requests to go somewhere else."""
    if base_url:
        return base_url, "forward.base_url"
    url = env.get(ENV_BASE_URL, "").strip()
    if url:
        if not url.startswith(("https://", "http://")):
            raise ApiKeyError(f"{ENV_BASE_URL} must be an http(s) URL, not {url[:100]!r}; fix it or set forward.base_url")
        return url, ENV_BASE_URL
    return DEFAULT_BASE_URL, "the default"


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
