"""`videollama batch IN.jsonl --out OUT.jsonl`: answer many questions about many media files.

Each input line: `{"id": ..., "media": "path", "question": "..."}` (or `"questions": [...]`, one output line
each; optional `"use_audio": false`). Relative media paths are resolved against --media-root (default: the
input file's folder). Each media file is encoded once; up to --batch-size prompts share a forward pass.

The output is appended to and fsync'ed after every chunk: rerun the same command after a crash or Ctrl-C
and it picks up where it stopped (requests already in OUT are skipped; a truncated last line is repaired).
Lines that cannot be answered get an output line with "error" and never stop the run; the exit code is 1
when any line had an error, else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videollama.cli.ask import (
    _positive_int, add_generation_options, add_model_options, generation_overrides, load_pipeline,
)


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="answer a JSONL file of questions (batched, resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="input JSONL file")
    p.add_argument("--out", "-o", type=Path, required=True, help="output JSONL file (appended to; resumable)")
    p.add_argument("--media-root", type=Path, default=None,
                   help="folder for relative media paths (default: the input file's folder)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="prompts per forward pass (default 8)")
    p.add_argument("--retry-errors", action="store_true",
                   help="answer again the requests whose earlier output line is an error")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_options(p)
    add_generation_options(p, system=False)
    return p


def run(args: argparse.Namespace) -> int:
    from videollama.errors import VideoLLaMAError
    from videollama.inference.batch import read_requests, run_batch

    if not args.input.is_file():
        raise VideoLLaMAError(f"{args.input}: input file not found")
    if args.out.resolve() == args.input.resolve():
        raise VideoLLaMAError(f"{args.out}: the output file must differ from the input file")
    read_requests(args.input, args.media_root)  # fail on an unreadable input before loading the model
    pipe = load_pipeline(args)
    result = run_batch(
        pipe, args.input, args.out, media_root=args.media_root, batch_size=args.batch_size,
        retry_errors=args.retry_errors, progress=False if args.no_progress else None,
        model_name=str(args.model) if args.model is not None else "tiny-random", **generation_overrides(args),
    )
    repaired = "; repaired a truncated last line" if result.repaired_tail else ""
    print(f"{result.answered} answered, {result.errors} errors, {result.skipped} already done "
          f"({result.total} requests, {result.encoded} media files encoded){repaired} -> {args.out}",
          file=sys.stderr)
    return 1 if result.errors else 0
