"""`python -m procs.sources.probe`: the capture source a configuration gets
and its monitors, for the supervisor and `doctor`, which must know them
before any stage starts (the ring is sized for the largest monitor) but never
import a stage, nor a display library: a display that misbehaves can take
this short-lived process down, not the supervisor.

Reads the resolved configuration on stdin (pipeline.config.to_json); writes a
schemas.SourceProbe as JSON on stdout and exits 0, or writes why not on
stderr and exits 1.
"""

from __future__ import annotations

import dataclasses
import sys

import msgspec

from pipeline import config as config_mod
from pipeline import schemas
from procs.sources import base


def probe(cfg: config_mod.Config) -> schemas.SourceProbe:
    kind, why = base.resolve(cfg.capture.source)
    resolved = dataclasses.replace(cfg, capture=dataclasses.replace(cfg.capture, source=kind))
    src = base.open_source(resolved.capture)
    try:
        monitors = [schemas.MonitorInfo(m.index, m.left, m.top, m.width, m.height, m.scale) for m in src.monitors()]
    finally:
        src.close()
    return schemas.SourceProbe(kind, why, monitors)


def main() -> int:
    try:
        cfg = config_mod.from_json(sys.stdin.read(1 << 20))
        result = probe(cfg)
    except Exception as exc:  # noqa: BLE001 - whatever the source says goes to the supervisor as text
        print(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(msgspec.json.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
