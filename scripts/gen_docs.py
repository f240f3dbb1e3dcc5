#!/usr/bin/env python3
"""Regenerates the files that are derived from the code, so they cannot drift:
docs/events.md (from pipeline/protocol.py) and configs/default.toml (from
pipeline/config.py). `--check` fails instead if one is out of date."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import config, protocol  # noqa: E402

GENERATED = {
    ROOT / "docs" / "events.md": protocol.events_markdown,
    ROOT / "configs" / "default.toml": config.default_toml,
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
