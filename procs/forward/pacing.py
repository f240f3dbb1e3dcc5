"""When forward may send: a minimum interval between requests, and token
buckets for requests and input tokens per minute (the API's own limits, kept
on this side so a request is not sent only to be refused). Time comes from
the caller, so tests drive it with a fake clock."""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable
from typing import Generic, TypeVar


class TokenBucket:
    """Holds up to `per_minute` tokens, refilled continuously at that rate."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
            self.at = now

    def ready_at(self, n: float, now: float) -> float:
        """When `n` tokens will be available (inf: never, more than the bucket holds)."""
        if n > self.capacity:
            return math.inf
        self._refill(now)
        return now if self.level >= n else now + (n - self.level) / self.rate

    def take(self, n: float, now: float) -> None:
        self._refill(now)
        self.level -= n


class Pacer:
    """The minimum interval, the request bucket, the input-token bucket and any
    hold the API asked for (retry-after), together."""

    def __init__(self, min_interval_s: float, requests_per_minute: float, tokens_per_minute: float, now: float) -> None:
        self.min_interval_s = min_interval_s
        self.requests = TokenBucket(requests_per_minute, now)
        self.tokens = TokenBucket(tokens_per_minute, now)
        self.next_interval = now
        self.hold_until = now

    def ready_at(self, tokens: int, now: float) -> float:
        """The earliest time a request of `tokens` input tokens may go."""
        return max(self.next_interval, self.hold_until, self.requests.ready_at(1, now), self.tokens.ready_at(tokens, now))

    def limited(self, tokens: int, now: float) -> bool:
        """Whether a budget (not the interval) is what holds a request back."""
        return max(self.hold_until, self.requests.ready_at(1, now), self.tokens.ready_at(tokens, now)) > now

    def commit(self, tokens: int, now: float) -> None:
        self.requests.take(1, now)
        self.tokens.take(tokens, now)
        self.next_interval = now + self.min_interval_s

    def hold(self, until: float) -> None:
        """The API asked for a pause (retry-after): nothing goes before `until`."""
        self.hold_until = max(self.hold_until, until)


T = TypeVar("T")


class Batcher(Generic[T]):
    """The bounded queue of frames waiting for a request, and the decision of
    when the next request goes and what it holds: the oldest `batch` frames,
    once the pacer allows their estimated tokens. `cost` gives a frame's
    estimated input tokens."""

    def __init__(self, pacer: Pacer, batch: int, queue_max: int, cost: Callable[[T], int]) -> None:
        self.pacer, self.batch, self.queue_max, self.cost = pacer, batch, queue_max, cost
        self.queue: collections.deque[T] = collections.deque()

    def _head(self) -> list[T]:
        return list(itertools.islice(self.queue, self.batch))

    def refusal(self, now: float) -> str | None:
        """Why a new frame cannot wait (the queue is full), or None."""
        if len(self.queue) < self.queue_max:
            return None
        return "rate_limited" if self.pacer.limited(sum(map(self.cost, self._head())), now) else "batch_overflow"

    def take(self, now: float) -> tuple[list[T], list[T], float | None]:
        """(frames of a request to send now, frames to drop as rate_limited
        because they exceed the whole per-minute budget, when to look again)."""
        head = self._head()
        if not head:
            return [], [], None
        need = sum(map(self.cost, head))
        ready = self.pacer.ready_at(need, now)
        if ready == math.inf:
            return [], [self.queue.popleft() for _ in head], now
        if ready > now:
            return [], [], ready
        for _ in head:
            self.queue.popleft()
        self.pacer.commit(need, now)
        return head, [], None
