"""The jarvis-pipeline command line."""

from __future__ import annotations

import argparse
import sys

import jarvis_rust_core


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jarvis-pipeline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jarvis-pipeline (core {jarvis_rust_core.__version__})")
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser("demo", help="hand frames between two processes through the ring")
    demo.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    demo.add_argument("--fps", type=float, default=30.0, help="frames per second to write (default 30)")
    args = parser.parse_args(argv)
    if args.verb == "demo":
        if args.seconds <= 0 or args.fps <= 0:
            parser.error("--seconds and --fps must be positive")
        from pipeline import demo as demo_module

        return demo_module.run(args.seconds, args.fps)
    return 2


if __name__ == "__main__":
    sys.exit(main())
