"""The Messages API request for a batch of frames, as live forwarding sends it
and the dry-run outbox records it: the system prompt with `cache_control`,
then one user turn with the images first (oldest frame first) and the text
after them, as Anthropic's vision guide advises. No API key is ever part of it.

The answer comes as structured data: the request defines one tool, `report`,
whose input schema is pipeline.schemas.Report's, and forces it
(`tool_choice`), so every answer says whether the person is needed, in a field
a program can read instead of prose."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import msgspec

from pipeline import schemas
from procs.forward_image import MAX_REQUEST_BYTES, Encoded, tokens

REPORT = "report"


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


def capture_time(ref: dict[str, Any]) -> str:
    t = datetime.datetime.fromtimestamp(int(ref["t_wall_ns"]) / 1e9, tz=datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prompt_text(template: str, shots: list[Shot]) -> str:
    times = [capture_time(s.ref) for s in shots]
    lines = [template.format(count=len(shots), times=", ".join(times))]
    for i, (s, t) in enumerate(zip(shots, times), 1):
        x, y, w, h = s.box
        part = "whole screen" if (w, h) == (s.ref["w"], s.ref["h"]) else f"region x={x} y={y} {w}x{h} of {s.ref['w']}x{s.ref['h']}"
        lines.append(f"Image {i}: monitor {s.ref['monitor']}, captured {t}, {part}"
                     + (" (periodic refresh, no change seen)" if s.keepalive else ""))
    return "\n".join(lines)


def build(f: Any, shots: list[Shot], *, inline_images: bool = True) -> dict[str, Any]:
    """The request body for `shots` under forward config
    `f`; without `inline_images` each image's data is replaced by its file name
    (the outbox keeps the images next to the request)."""
    content: list[dict[str, Any]] = []
    for s in shots:
        data = s.image.b64 if inline_images else s.file_name
        content.append({"type": "image", "source": {"type": "base64", "media_type": s.image.media_type, "data": data}})
    content.append({"type": "text", "text": prompt_text(f.user_prompt, shots)})
    body: dict[str, Any] = {
        "model": f.model,
        "max_tokens": f.max_tokens,
        "system": [{"type": "text", "text": f.system_prompt, "cache_control": {"type": "ephemeral"}}],
        "tools": [REPORT_TOOL],
        "tool_choice": {"type": "tool", "name": REPORT},
        "messages": [{"role": "user", "content": content}],
    }
    if f.temperature >= 0:
        body["temperature"] = f.temperature
    return body


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
