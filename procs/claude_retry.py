"""What a failed call to Claude means, and the one retry policy forward
applies to it (the SDK's own retries are off: forward owns the policy, so a
wait for `retry-after` never happens out of sight of pause, shutdown or the
rate budget). No SDK import here: dry-run never loads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Failure kinds, and which of them are worth another try.
RETRYABLE = frozenset({"rate_limited", "overloaded", "server", "timeout", "connection"})
#: Failures after which sending again cannot help until the user acts.
FATAL = frozenset({"auth", "unknown_model", "spend_limit"})


@dataclass
class Failure(Exception):
    """A call that did not produce an answer."""

    kind: str
    message: str
    status: int | None = None
    retry_after_s: float | None = None

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
        return min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
