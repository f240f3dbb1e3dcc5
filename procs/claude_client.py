"""Talking to Claude: the API key, one Messages API call through the official
SDK, what its failures mean, and the retry policy forward applies to them.

The SDK's own retries are off (max_retries=0): forward owns the one retry
policy, so a wait for `retry-after` never happens out of sight of pause,
shutdown or the rate budget.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic

ENV_KEY = "ANTHROPIC_API_KEY"

#: Failure kinds, and which of them are worth another try.
RETRYABLE = frozenset({"rate_limited", "overloaded", "server", "timeout", "connection"})
#: Failures after which sending again cannot help until the user acts.
FATAL = frozenset({"auth", "unknown_model", "spend_limit"})
#: 429s that mean the money ran out, not a rate (newer SDKs name them).
_SPEND_LIMITS = tuple(
    getattr(anthropic, name) for name in
    ("EnforcedSpendLimitReachedError", "ContractSpendLimitReachedError", "LinkedOrganizationSpendLimitReachedError")
    if hasattr(anthropic, name)
)


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


@dataclass
class Answer:
    text: str
    model: str
    usage: dict[str, int]
    stop_reason: str | None


@dataclass
class Failure(Exception):
    """A call that did not produce an answer."""

    kind: str
    message: str
    status: int | None = None
    retry_after_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the API asked to wait (retry-after-ms, else retry-after in seconds)."""
    for name, unit in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return max(0.0, float(raw) * unit)
            except ValueError:
                continue
    return None


def classify(exc: Exception) -> Failure:
    """What an SDK exception means for forward."""
    if isinstance(exc, anthropic.APITimeoutError):  # before APIConnectionError: it is one
        return Failure("timeout", "no answer within forward.timeout_s")
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure("connection", f"cannot reach the API: {exc}")
    if isinstance(exc, anthropic.APIStatusError):
        status, wait = exc.status_code, retry_after(exc.response.headers)
        message = _error_message(exc)
        if isinstance(exc, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
            return Failure("auth", f"the API refused the key ({status}): {message}", status)
        if isinstance(exc, anthropic.NotFoundError):
            return Failure("unknown_model", f"unknown model or endpoint ({status}): {message}", status)
        if _SPEND_LIMITS and isinstance(exc, _SPEND_LIMITS):
            return Failure("spend_limit", f"the spend limit is reached ({status}): {message}", status)
        if isinstance(exc, anthropic.RateLimitError):
            return Failure("rate_limited", message, status, wait)
        if status == 529:
            return Failure("overloaded", message, status, wait)
        if status >= 500:
            return Failure("server", f"server error {status}: {message}", status, wait)
        return Failure("bad_request", f"request refused ({status}): {message}", status)
    return Failure("malformed", f"unusable answer: {type(exc).__name__}: {exc}")


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:500]
    return str(exc.message)[:500]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_s: float
    backoff_max_s: float

    def delay(self, failure: Failure, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: give up.
        `retry-after` is honoured as given; when it asks for longer than the
        cap the request is given up instead of sent early."""
        if failure.kind not in RETRYABLE or attempt > self.max_retries:
            return None
        if failure.retry_after_s is not None:
            return failure.retry_after_s if failure.retry_after_s <= self.backoff_max_s else None
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))


class ClaudeClient:
    """One Messages API call at a time, through the official SDK."""

    def __init__(self, key: str, base_url: str, timeout_s: float) -> None:
        self.sdk = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def call(self, params: dict[str, Any]) -> Answer:
        """Sends one request; raises Failure."""
        try:
            msg = self.sdk.messages.create(**params)
        except (anthropic.APIError, ValueError) as exc:
            raise classify(exc) from None
        # Models that think first put thinking blocks before the text: select by type.
        text = "".join(getattr(block, "text", "") for block in msg.content if block.type == "text")
        u = msg.usage
        usage = {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_creation_input_tokens": u.cache_creation_input_tokens or 0,
            "cache_read_input_tokens": u.cache_read_input_tokens or 0,
        }
        return Answer(text, msg.model, usage, msg.stop_reason)

    def close(self) -> None:
        self.sdk.close()
