"""A local fake of the Messages API: a real HTTP server on 127.0.0.1 that
records every request (arrival time, headers, JSON body) and answers each one
as scripted (success, an error status with or without retry-after, a stall
past the client's timeout, malformed JSON), then with success.

Prompt caching as the API does it: the blocks of a request (tools, system,
then the messages' content) up to each cache breakpoint are a prefix; one
written before (within 5 minutes of its last use) is read back for the
longest such prefix ending at a breakpoint or up to 20 blocks before one, and
the rest up to the last breakpoint is written, when that prefix reaches the
fake's `cache_min_tokens`; usage reports cache_read_input_tokens,
cache_creation_input_tokens and the remaining input_tokens accordingly.

Tools and breakpoints as the API takes them: a request with more than four
cache breakpoints, tools lacking a name or an object input_schema, or a
tool_choice naming no tool it defines gets the API's 400
invalid_request_error; with a tool forced, the answer is that tool's call
(`tool_use`, its input the scripted report: by default the answer's text as
the summary, nothing needing attention), else text.

Usage: `with FakeClaude() as api: ...` and point the SDK (or forward.base_url)
at `api.url`. Input tokens in its answers are estimated the way the API
documents for images (w*h/750, from the decoded image) plus text length / 4.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass
class Reply:
    status: int = 200
    text: str = "The user is editing a document."
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0
    malformed: bool = False
    error_type: str = ""
    usage: dict[str, int] = field(default_factory=dict)  # overrides of the usage it reports
    report: Any = None  # the forced tool's input (None: made from `text`)
    no_tool: bool = False  # answer with text even when a tool is forced (a model ignoring it)


def ok(text: str = "The user is editing a document.", **usage: int) -> Reply:
    return Reply(text=text, usage=usage)


def report(summary: str, *items: tuple[str, str], attention_needed: bool = True) -> Reply:
    """An answer reporting `items` ((kind, text) pairs)."""
    return Reply(text=summary, report={"attention_needed": attention_needed, "summary": summary,
                                       "items": [{"kind": k, "text": t} for k, t in items]})


def bad_report(raw: Any) -> Reply:
    """A tool call whose input is `raw` as given (not a valid report)."""
    return Reply(report=raw)


def text_only(text: str = "Nothing to report.") -> Reply:
    return Reply(text=text, no_tool=True)


def error(status: int, error_type: str, retry_after: str | None = None) -> Reply:
    return Reply(status=status, error_type=error_type, headers={"retry-after": retry_after} if retry_after else {})


def stall(seconds: float) -> Reply:
    return Reply(stall_s=seconds)


def malformed() -> Reply:
    return Reply(malformed=True)


@dataclass
class Recorded:
    arrival_ns: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def images(self) -> list[dict[str, Any]]:
        return [c for m in self.body["messages"] for c in m["content"] if c["type"] == "image"]

    def decoded(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(base64.b64decode(c["source"]["data"]))) for c in self.images()]


def block_tokens(block: dict[str, Any]) -> int:
    """A block's input tokens as the fake counts them: an image as the API
    documents (w*h/750 of the decoded image), anything else at four
    characters a token."""
    if block.get("type") == "image":
        img = Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))
        return math.ceil(img.width * img.height / 750)
    if block.get("type") == "text":
        return len(block["text"]) // 4
    return len(json.dumps(block)) // 4  # a tool definition


def image_tokens(body: dict[str, Any]) -> int:
    """The messages' tokens (what the fake counted before it knew of tools and caching)."""
    return sum(block_tokens(c) for m in body.get("messages", []) for c in m["content"])


CACHE_TTL_NS = 5 * 60 * 10**9
LOOKBACK = 20  # blocks before a breakpoint the API also checks for a cached prefix


def request_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's blocks in the order the API reads them for caching."""
    return [*body.get("tools", []), *body.get("system", []),
            *(c for m in body.get("messages", []) for c in m["content"])]


def prefix_keys(blocks: list[dict[str, Any]]) -> list[str]:
    """Per block, a digest of the request up to and including it (cache markers left out)."""
    digest, keys = hashlib.sha256(), []
    for block in blocks:
        bare = {k: v for k, v in block.items() if k != "cache_control"}
        digest.update(json.dumps(bare, sort_keys=True).encode())
        keys.append(digest.copy().hexdigest())
    return keys


MAX_BREAKPOINTS = 4


def request_error(body: dict[str, Any]) -> str | None:
    """Why the API would refuse the request's tools or cache breakpoints, or None."""
    marks = sum("cache_control" in block for block in request_blocks(body))
    if marks > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {marks}."
    tools = body.get("tools", [])
    names = set()
    for tool in tools:
        schema = tool.get("input_schema") if isinstance(tool, dict) else None
        if not isinstance(tool.get("name") if isinstance(tool, dict) else None, str) or \
                not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools: each needs a name and an input_schema of type object, not {tool!r}"
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None and (choice.get("type") != "tool" or choice.get("name") not in names):
        return f"tool_choice {choice!r} names no tool of this request"
    return None


class FakeClaude:
    def __init__(self, *script: Reply, held: bool = False, cache_min_tokens: int = 1024) -> None:
        """`held`: answers wait until `release()` (a test subscribes to the
        events first, so none is published before it listens)."""
        self.script = list(script)
        self.cache_min_tokens = cache_min_tokens
        self.cache: dict[str, int] = {}  # prefix digest -> when last used (ns)
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                arrival = time.time_ns()
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with fake.lock:
                    fake.requests.append(Recorded(arrival, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    reply = fake.script.pop(0) if fake.script else Reply()
                    fake.arrived.notify_all()
                fake.gate.wait()
                if reply.stall_s and fake.closing.wait(reply.stall_s):
                    return
                if reply.malformed:
                    self._send(200, b'{"id": "msg_1", "type": "mess', {})
                elif reply.status != 200:
                    payload = {"type": "error", "error": {"type": reply.error_type, "message": f"fake {reply.error_type}"}}
                    self._send(reply.status, json.dumps(payload).encode(), reply.headers)
                elif (refused := request_error(body)) is not None:
                    payload = {"type": "error", "error": {"type": "invalid_request_error", "message": refused}}
                    self._send(400, json.dumps(payload).encode(), {})
                else:
                    answer = fake.message(body, reply)
                    with fake.lock:
                        answer["usage"].update(fake.cached(body, arrival))
                    answer["usage"].update(reply.usage)
                    self._send(200, json.dumps(answer).encode(), reply.headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        forced = (body.get("tool_choice") or {}).get("name")
        if forced and not reply.no_tool:
            given = reply.report if reply.report is not None else \
                {"attention_needed": False, "summary": reply.text, "items": []}
            content = [{"type": "tool_use", "id": "toolu_fake", "name": forced, "input": given}]
            stop, out = "tool_use", json.dumps(given)
        else:
            content, stop, out = [{"type": "text", "text": reply.text}], "end_turn", reply.text
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model", "?"),
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": image_tokens(body), "output_tokens": max(1, len(out) // 4),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }

    def cached(self, body: dict[str, Any], now_ns: int) -> dict[str, int]:
        """The request's input tokens split as prompt caching splits them (see
        the module docstring); called with the lock held."""
        blocks = request_blocks(body)
        counts = [block_tokens(b) for b in blocks]
        total = sum(counts)
        marks = [i for i, b in enumerate(blocks) if "cache_control" in b]
        if not marks or sum(counts[: marks[-1] + 1]) < self.cache_min_tokens:
            return {"input_tokens": total, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        keys = prefix_keys(blocks)
        for key in [k for k, used in self.cache.items() if now_ns - used > CACHE_TTL_NS]:
            del self.cache[key]
        candidates = {j for i in marks for j in range(max(0, i - LOOKBACK), i + 1)}
        hit = max((j for j in candidates if keys[j] in self.cache), default=-1)
        read = sum(counts[: hit + 1])
        written = sum(counts[hit + 1 : marks[-1] + 1])
        for i in [*marks, hit] if hit >= 0 else marks:
            self.cache[keys[i]] = now_ns
        return {"input_tokens": total - read - written, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": written}

    def wait_requests(self, n: int, timeout: float = 30.0) -> list[Recorded]:
        """Blocks until at least `n` requests arrived; fails after `timeout`."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"the fake API got {len(self.requests)} requests, not {n}, within {timeout:g}s")
            return list(self.requests)

    def release(self) -> None:
        self.gate.set()

    def snapshot(self) -> list[Recorded]:
        with self.lock:
            return list(self.requests)

    def __enter__(self) -> FakeClaude:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.closing.set()
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.snapshot())
