"""`videollama eval TASK --model DIR --data ANNOTATIONS --out OUTDIR`: run a benchmark and score it.

Tasks: msvd_qa, msrvtt_qa, activitynet_qa (open-ended; LLM judge with --judge-url/--judge-model, else exact or
contained match), videochatgpt_generative (five criteria, judge only), mvbench and nextqa (multiple choice), world
(the synthetic world's JSONL question sets). Decoding is greedy unless --sample. Predictions and verdicts are
written as they come; rerunning the same command resumes where it stopped, and a rerun costs no judge calls
(verdicts are cached on disk). The judge API key is read from VIDEOLLAMA_JUDGE_API_KEY or OPENAI_API_KEY.
See docs/evaluation.md for data layouts and reproduction commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from videollama.cli.argtypes import non_negative_int as _non_negative_int
from videollama.cli.argtypes import positive_float as _positive_float
from videollama.cli.argtypes import positive_int as _positive_int


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    from videollama.evaluation.tasks import TASKS

    p = sub.add_parser(name, help="run a benchmark (video QA, MVBench, NExT-QA, ...) and score it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=list(TASKS), metavar="TASK", help="one of: " + ", ".join(TASKS))
    p.add_argument("--model", type=Path, required=True, help="model folder from `videollama convert`")
    p.add_argument("--data", type=Path, required=True, help="annotation file (or folder, see docs/evaluation.md)")
    p.add_argument("--answers", type=Path, default=None,
                   help="separate answers file (Video-ChatGPT's test_a.json) for open-ended QA")
    p.add_argument("--media-root", type=Path, default=None, help="folder with the videos (default: the data's folder)")
    p.add_argument("--out", type=Path, required=True, help="output folder (predictions, verdicts, summary)")
    p.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N items")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="prompts per forward pass (default 8)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in --out instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("model")
    g.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda (default: cuda if available)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None, help="weights dtype")
    g.add_argument("--frames", type=_positive_int, default=8, help="frames sampled per video (default 8)")
    g.add_argument("--no-audio", action="store_true", help="ignore the videos' sound tracks")
    g = p.add_argument_group("generation (greedy by default)")
    g.add_argument("--sample", action="store_true", help="sample (official demo settings) instead of greedy decoding")
    g.add_argument("--seed", type=_non_negative_int, default=None, help="seed (for --sample)")
    g.add_argument("--max-new-tokens", type=_positive_int, default=None, help="answer length limit (default 300)")
    g.add_argument("--num-beams", type=_positive_int, default=None, help="beam search width (default 1)")
    g.add_argument("--temperature", type=_positive_float, default=None, help="sampling temperature (with --sample)")
    g.add_argument("--top-p", type=_positive_float, default=None, help="nucleus mass (with --sample)")
    g = p.add_argument_group("judge (OpenAI-compatible endpoint, e.g. `videollama serve` or api.openai.com)")
    g.add_argument("--judge-url", default=None, help="base URL, e.g. https://api.openai.com/v1 or http://localhost:8000")
    g.add_argument("--judge-model", default=None, help="judge model name, e.g. gpt-3.5-turbo-0125")
    g.add_argument("--judge-workers", type=_positive_int, default=4, help="parallel judge requests (default 4)")
    g.add_argument("--judge-cache", type=Path, default=None,
                   help="verdict cache folder (default: $VIDEOLLAMA_CACHE/judge-cache)")
    return p


def run(args: argparse.Namespace) -> int:
    from videollama.evaluation import EvalConfig, Evaluation
    from videollama.evaluation.summary import print_summary

    logger = logging.getLogger("videollama")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    if not args.model.is_dir():
        from videollama.errors import CheckpointError

        raise CheckpointError(f"{args.model}: model folder not found")
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = ["seed", "max_new_tokens", "num_beams", "temperature", "top_p"]
    generation = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    cfg = EvalConfig(task=args.task, data=args.data, out=args.out, model=args.model, media_root=args.media_root,
                     answers=args.answers, judge_url=args.judge_url, judge_model=args.judge_model,
                     judge_workers=args.judge_workers, judge_cache=args.judge_cache, limit=args.limit,
                     batch_size=args.batch_size, greedy=not args.sample, generation=generation,
                     use_audio=not args.no_audio, n_frames=args.frames, device=device, dtype=args.dtype,
                     overwrite=args.overwrite, progress=not args.no_progress)
    summary = Evaluation(cfg).run()
    print_summary(summary)
    if summary["scorer"]["kind"] == "none":
        print("notice: predictions written; this task is scored by an LLM judge: rerun with --judge-url and "
              "--judge-model to score them", file=sys.stderr)
    print(f"results: {args.out / 'summary.json'}, {args.out / 'summary.md'}", file=sys.stderr)
    return 0
