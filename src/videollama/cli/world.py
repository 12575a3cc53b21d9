"""`videollama world generate OUT`: the synthetic audio-visual world (videos, timelines, annotations, question sets).

Deterministic per seed: the same command gives byte-identical annotation files and identical decoded media
(same library versions; they are recorded in OUT/manifest.json). `--workers` only changes the speed.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="generate the synthetic audio-visual world")
    sub = p.add_subparsers(dest="world_command", metavar="ACTION")
    sub.required = True
    g = sub.add_parser("generate", help="render videos and write annotations + question sets into OUT",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("out", help="output folder (created; must be empty unless --overwrite)")
    g.add_argument("--n", type=int, default=100, help="number of videos (default 100)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--split", choices=("train", "heldout"), default="train",
                   help="heldout: its own random stream, and every video shows a (shape, colour) pair never used "
                        "in train")
    g.add_argument("--speech", action=argparse.BooleanOptionalAction, default=False,
                   help="also spoken words through espeak-ng (default: off)")
    g.add_argument("--min-seconds", type=float, default=2.0, help="shortest video (default 2)")
    g.add_argument("--max-seconds", type=float, default=8.0, help="longest video (default 8)")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: all cores)")
    g.add_argument("--overwrite", action="store_true", help="replace a previously generated world in OUT")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def run(args: argparse.Namespace) -> int:
    from videollama.world import WorldOptions, generate_world

    opts = WorldOptions(n=args.n, seed=args.seed, split=args.split, speech=args.speech,
                        min_seconds=args.min_seconds, max_seconds=args.max_seconds)

    def progress(k: int, n: int) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\rrendering {k}/{n}", end="" if k < n else "\n", file=sys.stderr, flush=True)

    res = generate_world(args.out, opts, workers=args.workers, overwrite=args.overwrite, progress=progress)
    st = res["stats"]
    print(f"{st['videos']} videos ({opts.split}, seed {opts.seed}) in {res['seconds']:.1f} s "
          f"({res['render_seconds'] / st['videos'] * 1000:.0f} ms/video rendering, {args.workers} worker(s)) -> {args.out}")
    print(f"  videos/{{page_dir}}/{{videoid}}.mp4 + .json timelines, images/, webvid/, videochat/, llava/, cc_sbu/, "
          f"jsonl/, datasets.yaml")
    print(f"  questions.jsonl: {st['questions']['n']} questions (eval task `world`)")
    for kind, k in st["questions"]["kinds"].items():
        if k["n"]:
            print(f"    {kind:<12} {k['n']:>5}  chance {k['chance_random']:.2f} (random) / "
                  f"{k['chance_majority']:.2f} (majority)")
    return 0
