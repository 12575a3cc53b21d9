"""Entry point of the `videollama` console script.

Each subcommand lives in its own module under `videollama.cli` and exposes
`add_parser(subparsers, name) -> argparse.ArgumentParser` and `run(args) -> int`.
Only the module of the subcommand being run is imported, so `videollama --help` stays fast
and one subcommand's optional dependencies never break another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under videollama.cli, one-line help). One table, nothing else to keep in sync.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ask": ("ask", "ask one question about a video, image or audio file (streams the answer)"),
    "chat": ("chat", "interactive multi-turn chat about a media file"),
    "batch": ("batch", "answer many media x questions from a JSONL file (resumable)"),
    "serve": ("serve", "OpenAI-compatible HTTP server (/v1/chat/completions)"),
    "demo": ("demo", "Gradio web demo"),
    "inspect": ("inspect_media", "show streams, duration, frame rate, rotation, sampled frames and audio use"),
    "convert": ("convert", "convert the official checkpoint files into a videollama model folder"),
    "train": ("train", "train or fine-tune from a recipe (both stages, both branches)"),
    "data-check": ("data_check", "check a recipe's datasets for missing or broken samples before training"),
    "cache-features": ("cache_features", "precompute the frozen encoders' outputs for faster training"),
    "eval": ("eval", "evaluate on a benchmark (MSVD/MSRVTT/ActivityNet-QA, MVBench, NExT-QA, world)"),
    "demo-forward": ("demo_forward", "run one forward pass on a video and print every stage (smoke test)"),
    "world": ("world", "generate the synthetic audio-visual world (videos, annotations, question sets)"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The full parser for `selected`; the other subcommands appear in the help only."""
    parser = argparse.ArgumentParser(prog="videollama", description="Video-LLaMA: ask questions about videos.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if name == selected:
            module = importlib.import_module(f"videollama.cli.{module_name}")
            p = module.add_parser(sub, name)
            p.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    from videollama.errors import VideoLLaMAError

    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected if selected in SUBCOMMANDS else None).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except VideoLLaMAError as exc:
        # Bad input gets one clear line, never a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
