"""Entry point of the `videollama` console script.

Each subcommand lives in its own module under `videollama.cli` and exposes
`add_parser(subparsers) -> argparse.ArgumentParser` and `run(args) -> int`.
Modules are imported lazily so `videollama --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module (relative to videollama.cli); one table, nothing else to keep in sync.
SUBCOMMANDS: dict[str, str] = {
    "inspect": "inspect_media",
    "convert": "convert",
    "demo-forward": "demo_forward",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videollama", description="Video-LLaMA: ask questions about videos.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"videollama.cli.{module_name}")
        p = module.add_parser(sub, name)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from videollama.errors import VideoLLaMAError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except VideoLLaMAError as exc:
        # Bad input gets one clear line, never a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
