"""The live client against a local fake of the Messages API (a real HTTP
server on 127.0.0.1) through the real SDK: the request body as it goes on the
wire, what each kind of answer means, and the retry policy."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import time

import numpy as np
import pytest
from fake_claude import FakeClaude, Reply, error, malformed, ok, stall
from text_images import text_image

from pipeline import config as config_mod
from procs.forward.client import ClaudeClient
from procs.forward.image import MAX_IMAGE_B64_BYTES, MAX_REQUEST_BYTES, Encoded, Geometry, encode
from procs.forward.request import Shot, build, fit_request
from procs.forward.retry import Failure, RetryPolicy, retry_after

KEY = "sk-test-not-a-real-key-1234"


def shots(n: int = 2) -> list[Shot]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        frame = rng.integers(0, 256, (300 + 7 * i, 401, 4), dtype=np.uint8)  # photo-like: JPEG
        ref = {"seq": 10 + i, "monitor": 1, "w": 1920, "h": 1080, "t_wall_ns": 1_700_000_000_000_000_000 + i * 10**9}
        out.append(Shot(ref, [100, 50, 401, 300 + 7 * i], False, encode(frame, Geometry())))
    text = text_image(320, 240)
    ref = {"seq": 99, "monitor": 2, "w": 320, "h": 240, "t_wall_ns": 1_700_000_005_000_000_000}
    out.append(Shot(ref, [0, 0, 320, 240], True, encode(text, Geometry())))
    return out


def test_request_body_on_the_wire() -> None:
    f = config_mod.load(None, env={}).forward
    with FakeClaude(ok("hello")) as api:
        client = ClaudeClient(KEY, api.url, 10.0)
        answer = client.call(build(f, shots()))
        (req,) = api.snapshot()
    assert answer.report == {"attention_needed": False, "summary": "hello", "items": []}
    assert answer.text == "" and answer.stop_reason == "tool_use" and answer.usage["input_tokens"] > 0
    assert req.path == "/v1/messages"
    assert KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "").removeprefix("Bearer "))
    assert KEY not in str(req.body), "the key travels in its header only"
    body = req.body
    assert body["model"] == f.model and body["max_tokens"] == f.max_tokens
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    # One tool, forced: the answer is a report a program can read (its schema is pipeline.schemas.Report's).
    assert [t["name"] for t in body["tools"]] == ["report"] and body["tool_choice"] == {"type": "tool", "name": "report"}
    schema = body["tools"][0]["input_schema"]
    assert schema["type"] == "object" and set(schema["required"]) == {"attention_needed", "summary"}
    assert "$ref" not in json.dumps(schema) and "$defs" not in schema
    item = schema["properties"]["items"]["items"]["properties"]
    assert {"kind", "text", "image", "region", "since", "resolved"} <= set(item), "what persists is marked, not repeated"
    assert "temperature" not in body, "not sent unless configured: current models refuse it"
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image", "image", "image", "text"], "images first, then the text"
    assert [c["source"]["media_type"] for c in content[:3]] == ["image/jpeg", "image/jpeg", "image/png"]
    for c, img in zip(content[:3], req.decoded(), strict=False):
        assert len(c["source"]["data"]) <= MAX_IMAGE_B64_BYTES
        assert img.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[c["source"]["media_type"]]
        assert img.width <= 1568 and img.height <= 1568 and img.width * img.height <= 1456 * 819
    assert [img.size for img in req.decoded()] == [(401, 300), (401, 307), (320, 240)]
    text = content[3]["text"]
    assert "2023-11-14T22:13:20.000Z" in text and "2023-11-14T22:13:25.000Z" in text, "capture times in the text"
    assert text.index("Image 1:") < text.index("Image 2:") < text.index("Image 3:")
    assert "region x=100 y=50 401x300 of 1920x1080" in text and "whole screen" in text


def test_configured_temperature_is_sent() -> None:
    f = config_mod.load(None, env={"JARVIS__FORWARD__TEMPERATURE": "0.3"}).forward
    with FakeClaude(ok("warm")) as api:
        assert ClaudeClient(KEY, api.url, 10.0).call(build(f, shots(1))).report["summary"] == "warm"
        (req,) = api.snapshot()
    assert req.body["temperature"] == 0.3 and req.body["model"] == f.model


def test_cache_reads_and_writes_are_reported() -> None:
    f = config_mod.load(None, env={}).forward
    with FakeClaude(ok("a", cache_creation_input_tokens=1500), ok("b", cache_read_input_tokens=1500)) as api:
        client = ClaudeClient(KEY, api.url, 10.0)
        first, second = client.call(build(f, shots(1))), client.call(build(f, shots(1)))
    assert first.usage["cache_creation_input_tokens"] == 1500 and first.usage["cache_read_input_tokens"] == 0
    assert second.usage["cache_read_input_tokens"] == 1500


def test_a_batch_is_cut_to_the_request_size_limit() -> None:
    big = Encoded("image/png", b"x" * (3 * 2**20), 1456, 819, 0.0)  # 4 MiB after base64
    many = [Shot({"seq": i, "monitor": 1, "w": 1456, "h": 819, "t_wall_ns": 0}, [0, 0, 1456, 819], False, big)
            for i in range(10)]
    kept = fit_request(many)
    assert [s.ref["seq"] for s in kept] == list(range(7)), "the oldest that fit under 32 MB"
    assert sum(s.image.b64_len for s in kept) <= MAX_REQUEST_BYTES


def call(reply: object, timeout: float = 10.0) -> Failure:
    f = config_mod.load(None, env={}).forward
    with FakeClaude(reply) as api:  # type: ignore[arg-type]
        with pytest.raises(Failure) as exc:
            ClaudeClient(KEY, api.url, timeout).call(build(f, shots(1)))
        assert len(api.snapshot()) == 1, "the SDK does not retry on its own"
    return exc.value


@pytest.mark.parametrize(
    "reply, kind, status, wait",
    [
        (error(429, "rate_limit_error", "2"), "rate_limited", 429, 2.0),
        (error(429, "rate_limit_error"), "rate_limited", 429, None),
        (error(529, "overloaded_error", "1"), "overloaded", 529, 1.0),
        (error(529, "overloaded_error"), "overloaded", 529, None),
        (error(500, "api_error"), "server", 500, None),
        (error(401, "authentication_error"), "auth", 401, None),
        (error(404, "not_found_error"), "unknown_model", 404, None),
        (error(400, "invalid_request_error"), "bad_request", 400, None),
        (error(408, "timeout_error"), "timeout", 408, None),
        (error(409, "conflict_error"), "conflict", 409, None),
        (error(503, "api_error", "Wed, 21 Oct 2015 07:28:00 GMT"), "server", 503, 0.0),  # an HTTP date long past
        (malformed(), "malformed", None, None),
    ],
)
def test_each_answer(reply: object, kind: str, status: int | None, wait: float | None) -> None:
    failure = call(reply)
    assert (failure.kind, failure.status, failure.retry_after_s) == (kind, status, wait)
    assert KEY not in str(failure)


def test_a_stall_past_the_timeout() -> None:
    start = time.monotonic()
    failure = call(stall(30.0), timeout=0.5)
    assert failure.kind == "timeout"
    assert time.monotonic() - start < 10.0, "gave up at the client timeout, not at the server's stall"


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the call: connection refused
    f = config_mod.load(None, env={}).forward
    with pytest.raises(Failure) as exc:
        ClaudeClient(KEY, f"http://127.0.0.1:{port}", 5.0).call(build(f, shots(1)))
    assert exc.value.kind == "connection"


def test_the_api_decides_whether_to_retry_when_it_says_so() -> None:
    """x-should-retry, as the SDK reads it: true makes a refusal worth another
    try, false a server error not worth one."""
    refused = call(Reply(status=400, error_type="invalid_request_error", headers={"x-should-retry": "true"}))
    assert refused.kind == "bad_request" and refused.should_retry is True
    final = call(Reply(status=500, error_type="api_error", headers={"x-should-retry": "false"}))
    assert final.kind == "server" and final.should_retry is False
    p = RetryPolicy(max_retries=3, backoff_s=0.5, backoff_max_s=4.0, jitter=lambda: 0.0)
    assert p.delay(refused, 1) == 0.5 and p.delay(final, 1) is None
    assert call(error(500, "api_error")).should_retry is None


def test_retry_after_as_an_http_date() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    assert retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:07 GMT"}, now) == 7.0
    assert retry_after({"retry-after": "Thu, 01 Jan 2026 11:00:00 GMT"}, now) == 0.0
    assert retry_after({"retry-after": "soon"}, now) is None
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now) == 1.5


def test_backoff_has_jitter() -> None:
    """Less up to a quarter at random, as the SDK's: clients failing together spread out."""
    server = Failure("server", "boom")
    waits = {RetryPolicy(3, 0.5, 4.0).delay(server, 2) for _ in range(50)}
    assert len(waits) > 1 and all(0.75 <= w <= 1.0 for w in waits if w is not None)
    assert RetryPolicy(3, 0.5, 4.0, jitter=lambda: 0.999).delay(Failure("rate_limited", "", 429, 3.0), 1) == 3.0, \
        "a retry-after is waited as given"


def test_retry_policy() -> None:
    p = RetryPolicy(max_retries=3, backoff_s=0.5, backoff_max_s=4.0, jitter=lambda: 0.0)
    server = Failure("server", "boom")
    assert [p.delay(server, a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, None]
    assert p.delay(Failure("timeout", ""), 1) == 0.5
    assert p.delay(Failure("rate_limited", "", 429, 3.0), 1) == 3.0, "retry-after is honoured, not the backoff"
    assert p.delay(Failure("rate_limited", "", 429, 60.0), 1) is None, "a wait past the cap gives the request up"
    assert p.delay(Failure("overloaded", "", 529, None), 2) == 1.0
    for kind in ("auth", "unknown_model", "bad_request", "malformed", "spend_limit"):
        assert p.delay(Failure(kind, ""), 1) is None
    capped = RetryPolicy(max_retries=10, backoff_s=1.0, backoff_max_s=4.0, jitter=lambda: 0.0)
    assert capped.delay(server, 8) == 4.0


def test_image_data_is_base64_of_the_encoded_bytes() -> None:
    s = shots(1)[0]
    params = build(config_mod.load(None, env={}).forward, [s])
    assert base64.b64decode(params["messages"][0]["content"][0]["source"]["data"]) == s.image.data


def test_the_fake_refuses_tools_and_breakpoints_as_the_api_does() -> None:
    """The fake's checks can fail: a tool_choice naming no tool of the
    request, or more than four cache breakpoints, is the API's 400, which
    forward takes for a bad request."""
    f = config_mod.load(None, env={}).forward
    body = build(f, shots(1))
    body["tool_choice"] = {"type": "tool", "name": "describe"}
    with FakeClaude() as api:
        with pytest.raises(Failure) as exc:
            ClaudeClient(KEY, api.url, 10.0).call(body)
    assert exc.value.kind == "bad_request" and "names no tool" in exc.value.message
    body = build(f, shots())  # three images and the text: with the system prompt's, five breakpoints
    for block in body["messages"][0]["content"]:
        block["cache_control"] = {"type": "ephemeral"}
    with FakeClaude() as api:
        with pytest.raises(Failure, match="A maximum of 4 blocks with cache_control"):
            ClaudeClient(KEY, api.url, 10.0).call(body)
