"""One Messages API call through the official SDK (imported only here, and
only when forwarding is live), and what its exceptions mean for forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic

from procs.forward.request import REPORT
from procs.forward.retry import Failure, retry_after, should_retry

#: 429s that mean the money ran out, not a rate (newer SDKs name them).
_SPEND_LIMITS = tuple(
    getattr(anthropic, name) for name in
    ("EnforcedSpendLimitReachedError", "ContractSpendLimitReachedError", "LinkedOrganizationSpendLimitReachedError")
    if hasattr(anthropic, name)
)


@dataclass
class Answer:
    text: str  # any text blocks beside the tool call
    model: str
    usage: dict[str, int]
    stop_reason: str | None
    report: Any  # the `report` tool's input as the API gave it (unchecked), or None without one


def classify(exc: Exception) -> Failure:
    """What an SDK exception means for forward."""
    if isinstance(exc, anthropic.APITimeoutError):  # before APIConnectionError: it is one
        return Failure("timeout", "no answer within forward.timeout_s")
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure("connection", f"cannot reach the API: {exc}")
    if isinstance(exc, anthropic.APIStatusError):
        failure = _status_failure(exc)
        failure.should_retry = should_retry(exc.response.headers)
        return failure
    return Failure("malformed", f"unusable answer: {type(exc).__name__}: {exc}")


def _status_failure(exc: anthropic.APIStatusError) -> Failure:
    """What an error status means, before the API's x-should-retry."""
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
    if status == 408:
        return Failure("timeout", f"the server timed out the request ({status}): {message}", status, wait)
    if status == 409:
        return Failure("conflict", f"conflict ({status}): {message}", status, wait)
    return Failure("bad_request", f"request refused ({status}): {message}", status)


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:500]
    return str(exc.message)[:500]


class ClaudeClient:
    """One Messages API call at a time, through the official SDK."""

    def __init__(self, key: str, base_url: str, timeout_s: float) -> None:
        self.sdk = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def call(self, body: dict[str, Any]) -> Answer:
        """Sends one request body; raises Failure."""
        params = dict(body)
        # The SDK's typed signature no longer has sampling parameters; the body still may.
        extra = {k: params.pop(k) for k in ("temperature",) if k in params}
        try:
            msg = self.sdk.messages.create(**params, extra_body=extra or None)
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
        report = next((block.input for block in msg.content if block.type == "tool_use" and block.name == REPORT), None)
        return Answer(text, msg.model, usage, msg.stop_reason, report)

    def close(self) -> None:
        self.sdk.close()
