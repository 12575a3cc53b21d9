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
    g.add_argument("--visual-weight", action="append", default=[], metavar="STORY=K",
                   help="make visual story STORY (still, sequence, move, recolour, appear, disappear, empty) K times "
                        "as frequent as the others (0: none); repeatable (default: all equally often)")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: all cores)")
    g.add_argument("--overwrite", action="store_true", help="replace a previously generated world in OUT")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def parse_visual_weights(items: list[str]) -> tuple[tuple[str, int], ...]:
    """["move=3"] -> (("move", 3),); a one-line ConfigError for an item that is not STORY=K."""
    from videollama.errors import ConfigError

    out = []
    for item in items:
        story, sep, weight = item.partition("=")
        if not sep or not weight.strip().isdigit():
            raise ConfigError(f"--visual-weight {item!r}: expected STORY=K with a whole number K, e.g. move=3")
        out.append((story.strip(), int(weight)))
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    from videollama.world import WorldOptions, generate_world

    opts = WorldOptions(n=args.n, seed=args.seed, split=args.split, speech=args.speech,
                        min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                        visual_weights=parse_visual_weights(args.visual_weight))

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
