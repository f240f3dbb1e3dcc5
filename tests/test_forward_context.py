"""Forward's rolling context and the requests built with it: references
renewed only when due, reports bounded oldest first, at most four cache
breakpoints, and a prefix that stays byte-identical from one request to the
next while nothing in it changed (and only grows when a report is added)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fake_claude import FakeClaude

from pipeline import config as config_mod
from procs.forward.client import ClaudeClient
from procs.forward.context import Context, View
from procs.forward.image import Geometry, encode
from procs.forward.request import ReferenceShot, Shot, build, cache_minimum, prefix_tokens

F = config_mod.load(None, env={}).forward
KEY = "sk-ant-test-context"
G = Geometry.from_config(F)


def screen(seed: int, w: int = 1920, h: int = 1080) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.full((h, w, 4), 230, np.uint8)
    frame[100:400, 200:900, :3] = rng.integers(0, 255, (300, 700, 3), dtype=np.uint8) // 64 * 64
    return frame


def shot(seq: int) -> Shot:
    ref = {"seq": seq, "monitor": 1, "w": 1920, "h": 1080, "t_wall_ns": 1_700_000_000_000_000_000 + seq * 10**9}
    return Shot(ref, [100, 100, 400, 300], False, encode(screen(seq)[100:400, 100:500].copy(), G))


def request(context: Context, seq: int) -> dict[str, Any]:
    view = context.view()
    assert view is not None
    references = tuple(ReferenceShot(r.monitor, r.captured, r.width, r.height, r.image(G)) for r in view.references)
    return build(F, [shot(seq)], references=references, said=view.said)


def prefix(body: dict[str, Any]) -> str:
    """The request up to its last cache breakpoint, as the API reads it (tools, system, then messages)."""
    content = body["messages"][0]["content"]
    last = max(i for i, block in enumerate(content) if "cache_control" in block)
    return json.dumps([body["tools"], body["system"], content[: last + 1]])


def bare(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Content blocks without their cache markers (a breakpoint moves; the bytes it covers do not)."""
    return [{k: v for k, v in block.items() if k != "cache_control"} for block in blocks]


def breakpoints(body: dict[str, Any]) -> int:
    blocks = [*body["tools"], *body["system"], *body["messages"][0]["content"]]
    return sum("cache_control" in block for block in blocks)


def test_the_prefix_is_byte_identical_until_a_report_extends_it() -> None:
    context = Context(F.context_refresh_s, F.context_tokens, G)
    context.set_reference(1, "2023-11-14T22:13:20.000Z", screen(0), now=0.0)
    first, second = request(context, 1), request(context, 2)
    assert prefix(first) == prefix(second), "nothing changed in the context: the same bytes"
    assert first["messages"][0]["content"][-2:] != second["messages"][0]["content"][-2:], "new frames differ"
    context.add(["2023-11-14T22:13:21.000Z"], "Editing a document")
    third = request(context, 3)
    grown = prefix(third)
    assert grown != prefix(second)
    # What the request before cached is where this one's prefix begins (the API looks back from the
    # last breakpoint for the longest prefix it cached).
    cached = json.loads(prefix(second))[2]
    assert bare(third["messages"][0]["content"][: len(cached)]) == bare(cached)
    assert breakpoints(third) <= 4


def test_references_are_renewed_only_when_due_and_keep_their_bytes() -> None:
    context = Context(300.0, F.context_tokens, G)
    assert context.wants_reference(1, now=0.0)
    context.set_reference(1, "t0", screen(0), now=0.0)
    assert not context.wants_reference(1, now=299.0) and context.wants_reference(2, now=1.0)
    image = request(context, 1)["messages"][0]["content"][2]
    assert image["type"] == "image" and request(context, 2)["messages"][0]["content"][2] == image
    assert context.wants_reference(1, now=300.0)
    assert not Context(0.0, F.context_tokens, G).wants_reference(1, now=0.0), "0: no rolling context"
    assert Context(0.0, F.context_tokens, G).view() is None


def test_reports_leave_oldest_first_within_the_budget() -> None:
    context = Context(300.0, 2000, G)
    context.set_reference(1, "t0", screen(0), now=0.0)  # a 1080p screen: about 1590 tokens
    for i in range(40):
        context.add([f"t{i}"], f"report {i}: " + "x" * 200)
    view = context.view()
    assert isinstance(view, View)
    kept = [s.text.split(":")[0] for s in view.said]
    assert kept and kept[-1] == "report 39" and kept == [f"report {i}" for i in range(40 - len(kept), 40)]
    assert sum(r.tokens for r in view.references) + sum(s.tokens for s in view.said) <= 2000


def test_the_default_prefix_is_long_enough_for_the_default_model_to_cache() -> None:
    """With the defaults, a 1080p monitor's reference makes the prefix longer
    than the shortest the default model caches (forward.cache_min_tokens);
    without the context it is not (the system prompt and the tool alone)."""
    context = Context(F.context_refresh_s, F.context_tokens, G)
    context.set_reference(1, "t0", screen(0), now=0.0)
    view = context.view()
    assert view is not None
    references = tuple(ReferenceShot(r.monitor, r.captured, r.width, r.height, r.image(G)) for r in view.references)
    minimum = cache_minimum(F.cache_min_tokens, F.model)
    assert prefix_tokens(F, references, view.said) >= minimum > prefix_tokens(F, (), ())


def test_the_cache_minimum_is_the_longest_matching_model_prefix() -> None:
    table = {"claude-opus-4": 1024, "claude-opus-4-5": 4096, "*": 2048}
    assert cache_minimum(table, "claude-opus-4-5-20251101") == 4096
    assert cache_minimum(table, "claude-opus-4-1") == 1024
    assert cache_minimum(table, "claude-haiku-9") == 2048
    assert cache_minimum({}, "anything") == 4096


def test_consecutive_requests_read_what_the_one_before_wrote() -> None:
    """Through the real SDK against the fake API, which caches as the API
    does: the first request writes its prefix, the next reads all of it, and
    one after a new report reads the old prefix and writes only the report."""
    context = Context(F.context_refresh_s, F.context_tokens, G)
    context.set_reference(1, "2023-11-14T22:13:20.000Z", screen(0), now=0.0)
    with FakeClaude() as api:
        client = ClaudeClient(KEY, api.url, 10.0)
        first, second = client.call(request(context, 1)), client.call(request(context, 2))
        context.add(["2023-11-14T22:13:21.000Z"], "Editing a document")
        third = client.call(request(context, 3))
        alone = client.call(build(F, [shot(4)]))  # no context: the system prompt and the tool alone
    written = first.usage["cache_creation_input_tokens"]
    assert written >= cache_minimum(F.cache_min_tokens, F.model) and first.usage["cache_read_input_tokens"] == 0
    assert second.usage["cache_read_input_tokens"] == written and second.usage["cache_creation_input_tokens"] == 0
    assert third.usage["cache_read_input_tokens"] == written
    assert 0 < third.usage["cache_creation_input_tokens"] < 100, "only the report's blocks are new"
    assert alone.usage["cache_read_input_tokens"] == alone.usage["cache_creation_input_tokens"] == 0
