"""`videollama data-check RECIPE.yaml`: find broken training data before a run does.

Per dataset of the recipe: number of records, missing media files, unreadable/corrupt media (every file is
opened: images decoded, videos indexed and their first and last frames decoded; ``--quick`` only checks that
files exist), too-short videos (fewer frames than ``n_frames``), and annotation format errors (bad JSON, missing
fields, conversations not alternating, empty captions). Each problem is printed as ``file:line: dataset: kind:
message``, then a summary table. Exit code 1 when any problem was found, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="check a training recipe's datasets: annotations and media files")
    p.add_argument("recipe", help="training recipe YAML")
    p.add_argument("--quick", action="store_true", help="only check that media files exist (no decoding)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (dotted key, YAML value); repeatable")
    p.add_argument("--max-lines", type=int, default=50, help="problems printed per dataset (default 50; 0 = all)")
    return p


def run(args: argparse.Namespace) -> int:
    from videollama.training.data.check import check_dataset
    from videollama.training.recipe import TrainRecipe

    recipe = TrainRecipe.from_yaml(args.recipe, args.overrides)
    reports = []
    for spec in recipe.datasets:
        rep = check_dataset(spec, quick=args.quick)
        reports.append(rep)
        shown = rep.problems if args.max_lines <= 0 else rep.problems[: args.max_lines]
        for issue in shown:
            print(f"{issue.source}: {spec.name}: {issue.reason}: {issue.message}")
        if len(shown) < len(rep.problems):
            print(f"... {len(rep.problems) - len(shown)} more problem(s) in {spec.name}")
    cols = ("dataset", "format", "records", "missing", "corrupt", "too_short", "format_err", "status")
    rows = [(r.name, r.format, str(r.records), str(r.counts["missing"]),
             "-" if args.quick else str(r.counts["corrupt"]), "-" if args.quick else str(r.counts["too_short"]),
             str(r.counts["format"]), "ok" if r.ok else "PROBLEMS") for r in reports]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    bad = sum(len(r.problems) for r in reports)
    print(f"\n{bad} problem(s) in {sum(not r.ok for r in reports)} of {len(reports)} dataset(s)"
          + (" (--quick: media not decoded)" if args.quick else ""))
    sys.stdout.flush()
    return 1 if bad else 0
