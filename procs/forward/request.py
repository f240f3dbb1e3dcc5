"""The Messages API request for a batch of frames, as live forwarding sends it
and the dry-run outbox records it: the tool, the system prompt, then one user
turn: the rolling context (procs.forward.context: a reference screenshot per
monitor, then the recent reports, one block each), then the new screenshots
(oldest frame first) and the text after them, as Anthropic's vision guide
advises. No API key is ever part of it.

Cache breakpoints (at most four): the system prompt, the last reference
screenshot and the last report. Everything before a breakpoint is the same
bytes from one request to the next until a reference is renewed, so each
request reads from the cache what the one before wrote, and writes only the
report added since (the API looks back from a breakpoint for the longest
prefix it cached).

The answer comes as structured data: the request defines one tool, `report`,
whose input schema is pipeline.schemas.Report's, and forces it
(`tool_choice`), so every answer says whether the person is needed, in a field
a program can read instead of prose."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import msgspec

from pipeline import schemas
from procs.forward.context import Said
from procs.forward.image import MAX_REQUEST_BYTES, Encoded, tokens

REPORT = "report"
CACHED = {"type": "ephemeral"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`node` of a JSON schema with every `$ref` into `defs` replaced by what
    it names (the tool's schema stands alone, with no $defs), less the
    structs' own descriptions (their docstrings, written for developers)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return _inline({k: v for k, v in target.items() if k != "description"}, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _report_tool() -> dict[str, Any]:
    schema = msgspec.json.schema(schemas.Report)
    return {
        "name": REPORT,
        "description": "Report what the screenshots show: whether the person is needed, what they are doing, "
                       "and each thing worth their attention.",
        "input_schema": _inline(schema, schema.get("$defs", {})),
    }


#: The tool every answer comes through.
REPORT_TOOL = _report_tool()


@dataclass
class Shot:
    """One frame of a request: where it came from and its encoded image."""

    ref: dict[str, Any]
    box: list[int]
    keepalive: bool
    image: Encoded

    @property
    def file_name(self) -> str:
        """The image's name in the outbox."""
        return f"frame-{self.ref['seq']}{self.image.suffix}"


@dataclass
class ReferenceShot:
    """A monitor's reference screenshot as one request repeats it."""

    monitor: int
    captured: str
    width: int
    height: int
    image: Encoded

    @property
    def file_name(self) -> str:
        """The image's name in the outbox."""
        return f"reference-{self.monitor}-{self.captured.replace(':', '')}{self.image.suffix}"


def capture_time(ref: dict[str, Any]) -> str:
    t = datetime.datetime.fromtimestamp(int(ref["t_wall_ns"]) / 1e9, tz=datetime.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prompt_text(template: str, shots: list[Shot]) -> str:
    times = [capture_time(s.ref) for s in shots]
    lines = [template.format(count=len(shots), times=", ".join(times))]
    for i, (s, t) in enumerate(zip(shots, times, strict=False), 1):
        x, y, w, h = s.box
        part = (
            "whole screen" if (w, h) == (s.ref["w"], s.ref["h"]) else f"region x={x} y={y} {w}x{h} of {s.ref['w']}x{s.ref['h']}"
        )
        lines.append(f"Image {i}: monitor {s.ref['monitor']}, captured {t}, {part}"
                     + (" (periodic refresh, no change seen)" if s.keepalive else ""))
    return "\n".join(lines)


def _image(image: Encoded, name: str, inline: bool) -> dict[str, Any]:
    data = image.b64 if inline else name
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": data}}


def build(f: Any, shots: list[Shot], *, inline_images: bool = True, references: tuple[ReferenceShot, ...] = (),
          said: tuple[Said, ...] = ()) -> dict[str, Any]:
    """The request body for `shots` under forward config `f`, after the
    rolling context (`references`, `said`); without `inline_images` each
    image's data is replaced by its file name (the outbox keeps the images
    next to the request)."""
    content: list[dict[str, Any]] = []
    if references:
        content.append({"type": "text", "text": "Reference screenshots of the whole screen, taken when this "
                                                "context began:"})
        for r in references:
            content.append({"type": "text", "text": f"Monitor {r.monitor}, captured {r.captured}, "
                                                    f"{r.width}x{r.height}"})
            content.append(_image(r.image, r.file_name, inline_images))
        content[-1]["cache_control"] = CACHED
        if said:
            content.append({"type": "text", "text": "Your recent reports, oldest first:"})
            for w in said:
                content.append({"type": "text", "text": f"[about frames captured {', '.join(w.captured)}]\n{w.text}"})
            content[-1]["cache_control"] = CACHED
    for s in shots:
        content.append(_image(s.image, s.file_name, inline_images))
    content.append({"type": "text", "text": prompt_text(f.user_prompt, shots)})
    body: dict[str, Any] = {
        "model": f.model,
        "max_tokens": f.max_tokens,
        "system": [{"type": "text", "text": f.system_prompt, "cache_control": CACHED}],
        "tools": [REPORT_TOOL],
        "tool_choice": {"type": "tool", "name": REPORT},
        "messages": [{"role": "user", "content": content}],
    }
    if f.temperature >= 0:
        body["temperature"] = f.temperature
    return body


def prefix_tokens(f: Any, references: tuple[ReferenceShot, ...], said: tuple[Said, ...]) -> int:
    """A request's tokens up to its last cache breakpoint, estimated (the
    tool's schema and the texts at four characters a token, images as the API
    counts them): the most a request can read from the cache."""
    chars = len(json.dumps(REPORT_TOOL)) + len(f.system_prompt)  # up to the system prompt's breakpoint
    if references:  # (reports are repeated only after references)
        chars += 80 * len(references) + sum(len(w.text) + 80 for w in said)
    return chars // 4 + sum(tokens(r.image.width, r.image.height) for r in references)


def cache_minimum(table: dict[str, int], model: str) -> int:
    """The shortest prefix `model` caches: the entry of the longest model-name
    prefix that matches, else "*"'s (forward.cache_min_tokens)."""
    matches = [k for k in table if k != "*" and model.startswith(k)]
    return table[max(matches, key=len)] if matches else table.get("*", 4096)


def report_text(report: schemas.Report) -> str:
    """The report for people: the summary, then one line per item."""
    return "\n".join([report.summary, *(f"{item.kind}: {item.text}" for item in report.items)])


def fit_request(shots: list[Shot]) -> list[Shot]:
    """The oldest frames whose images together stay under the request limit
    (with room for the text); the caller settles the rest."""
    total, kept = 64 * 1024, []
    for s in shots:
        total += s.image.b64_len
        if total > MAX_REQUEST_BYTES:
            break
        kept.append(s)
    return kept


def image_tokens(shots: list[Shot]) -> int:
    return sum(tokens(s.image.width, s.image.height) for s in shots)
