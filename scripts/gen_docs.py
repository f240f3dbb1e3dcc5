#!/usr/bin/env python3
"""Regenerates the files that are derived from the code, so they cannot drift:
docs/events.md (from pipeline/protocol.py), configs/default.toml (from
pipeline/config.py) and docs/change-judgement.md (the change model's
docstring and keys). `--check` fails instead if one is out of date."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import config, protocol  # noqa: E402
from procs import change_policy  # noqa: E402


def change_judgement() -> str:
    """The change model's semantics and workings (its module docstring, the
    one place they are written) and the keys that tune it."""
    lines = ["# Change judgement: which frames matter", "",
             "Generated from procs/change_policy.py (its docstring) and pipeline/config.py (the keys).", "",
             "```text", change_policy.__doc__.strip(), "```", "", "## Keys (`[analysis]`)", "",
             "| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(config.AnalysisConfig):
        lines.append(f"| `{f.name}` | {f.default} | {f.metadata['doc']} |")
    lines += ["", "How well it judges, on recorded sessions it was tuned on and on held-out ones: BENCHMARKS.md."]
    return "\n".join(lines) + "\n"

GENERATED = {
    ROOT / "docs" / "events.md": protocol.events_markdown,
    ROOT / "configs" / "default.toml": config.default_toml,
    ROOT / "docs" / "change-judgement.md": change_judgement,
}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, make in GENERATED.items():
        text = make()
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(map(str, stale))}; run scripts/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
