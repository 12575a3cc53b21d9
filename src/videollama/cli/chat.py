"""`videollama chat MEDIA`: a multi-turn conversation about one video, image or audio file.

Type a question and press Enter; the answer streams in. Commands: `/reset` starts a new conversation about the
same file (the media is not encoded again), `/quit` (or `/exit`, Ctrl-D) ends. Questions may also be piped
in, one per line (`printf 'Q1\\nQ2\\n' | videollama chat clip.mp4`): then no prompts are shown and each
answer is printed on its own line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videollama.cli.ask import (
    add_generation_options, add_model_options, generation_overrides, load_pipeline, open_media, stream_answer,
)

HELP = "commands: /reset (new conversation, same media), /quit or Ctrl-D (end)"


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="chat about a video, image or audio file (multi-turn, streams answers)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("media", type=Path, help="video, image or audio file")
    p.add_argument("--no-audio", action="store_true", help="ignore the video's sound track")
    add_model_options(p)
    add_generation_options(p)
    return p


def _read_question(interactive: bool) -> str | None:
    """The next line of input, or None at end of input."""
    if interactive:
        try:
            return input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:  # pragma: no cover - Windows
            pass
    pipe = load_pipeline(args)
    prepared, session = open_media(pipe, args.media, args.no_audio, args.system)
    overrides = generation_overrides(args)
    if interactive:
        print(f"chatting about {args.media} ({prepared.kind}); {HELP}", file=sys.stderr)
    try:
        while True:
            question = _read_question(interactive)
            if question is None:
                break
            question = question.strip()
            if not question:
                continue
            if question.startswith("/"):
                command = question.split()[0].lower()
                if command in ("/quit", "/exit", "/q"):
                    break
                if command == "/reset":
                    session = pipe.chat(prepared, system=args.system)
                    print("(new conversation)", file=sys.stderr)
                    continue
                if command in ("/help", "/?"):
                    print(HELP, file=sys.stderr)
                    continue
                print(f"unknown command {command!r}; {HELP}", file=sys.stderr)
                continue
            if interactive:
                sys.stdout.write("videollama> ")
            stream_answer(session, question, overrides)
            sys.stdout.write("\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("\n(interrupted)", file=sys.stderr)
        return 130
    return 0
