"""What a failed call to Claude means, and the one retry policy forward
applies to it (the SDK's own retries are off: forward owns the policy, so a
wait for `retry-after` never happens out of sight of pause, shutdown or the
rate budget). No SDK import here: dry-run never loads it."""

from __future__ import annotations

import datetime
import email.utils
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: Failure kinds, and which of them are worth another try (the SDK's rules:
#: 408, 409, 429 and 5xx, connection errors and timeouts).
RETRYABLE = frozenset({"rate_limited", "overloaded", "server", "timeout", "connection", "conflict"})
#: Failures after which sending again cannot help until the user acts.
FATAL = frozenset({"auth", "unknown_model", "spend_limit"})


@dataclass
class Failure(Exception):
    """A call that did not produce an answer."""

    kind: str
    message: str
    status: int | None = None
    retry_after_s: float | None = None
    should_retry: bool | None = None  # the API's x-should-retry header, which overrides the kind

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def retry_after(headers: Mapping[str, str], now: datetime.datetime | None = None) -> float | None:
    """Seconds the API asked to wait: retry-after-ms, else retry-after in
    seconds or as an HTTP date."""
    for name, unit in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * unit)
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                continue
            return max(0.0, (when - (now or datetime.datetime.now(datetime.UTC))).total_seconds())
    return None


def should_retry(headers: Mapping[str, str]) -> bool | None:
    """The API's own word on retrying (x-should-retry: true or false), if it said."""
    value = headers.get("x-should-retry", "").strip().lower()
    return {"true": True, "false": False}.get(value)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_s: float
    backoff_max_s: float
    jitter: Callable[[], float] = field(default=random.random, compare=False)  # in [0, 1)

    def delay(self, failure: Failure, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: give up.
        x-should-retry, when the API sent it, decides whether; else the kind.
        `retry-after` is honoured as given; when it asks for longer than the
        cap the request is given up instead of sent early. Without it the
        backoff doubles per try, less up to a quarter at random (as the SDK's),
        so that clients failing together do not come back together."""
        retry = failure.should_retry if failure.should_retry is not None else failure.kind in RETRYABLE
        if not retry or attempt > self.max_retries:
            return None
        if failure.retry_after_s is not None:
            return failure.retry_after_s if failure.retry_after_s <= self.backoff_max_s else None
        return min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1)) * (1 - 0.25 * self.jitter())
