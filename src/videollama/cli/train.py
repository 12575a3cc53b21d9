"""`videollama train RECIPE.yaml [key=value ...]`: run or resume one training recipe (see recipes/).

Single process:            videollama train recipes/vl_stage2.yaml model=models/vl1 template=vicuna
Several processes / GPUs:  torchrun --nproc_per_node 8 -m videollama.cli.train RECIPE.yaml [key=value ...]
                           (more launch lines, multi-node and DeepSpeed: videollama.training.distributed)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="train one branch with an official recipe (recipes/*.yaml)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML (recipes/vl_stage1.yaml, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="recipe overrides, dotted keys, YAML values (optim.init_lr=3e-5 datasets.0.sample_ratio=2)")
    p.add_argument("--resume", default="auto", metavar="auto|never|CHECKPOINT",
                   help="auto (default): continue from the newest checkpoint in output_dir if there is one; "
                        "never: start from the model folder; or a checkpoint folder")
    p.add_argument("--overwrite", action="store_true",
                   help="drop checkpoints in output_dir past the step this run starts from (an earlier run's); "
                        "without it such a start is refused")
    p.add_argument("--max-steps", type=int, help="stop after this global step (a checkpoint is written)")
    p.add_argument("--no-export", action="store_true", help="do not write the final model folder / official .pth")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-dropout", action="store_true",
                   help="run the trained modules in eval mode, without dropout (for 1-vs-N-process equivalence checks)")
    p.add_argument("--data-factory", metavar="MODULE:FUNCTION",
                   help="custom batch source factory (recipe, tokenizer, model_config, rank, world_size) -> iterator "
                        "with state_dict/load_state_dict; default: the data layer")


def run(args: argparse.Namespace) -> int:
    from videollama.errors import ConfigError
    from videollama.training.engine import train
    from videollama.training.recipe import TrainRecipe

    recipe = TrainRecipe.from_yaml(args.recipe, args.overrides)
    factory = None
    if args.data_factory:
        mod, _, fn = args.data_factory.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--data-factory {args.data_factory}: {exc}") from exc
    resume: str | bool = {"auto": True, "never": False}.get(args.resume, args.resume)
    result = train(recipe, data_factory=factory, resume=resume, max_steps=args.max_steps,
                   export=not args.no_export, progress=not args.no_progress,
                   no_dropout=args.no_dropout, overwrite=args.overwrite)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if result.losses:
        print(f"[train] done: step {result.steps}, last loss {result.losses[-1]:.4f}, {len(result.losses)} steps in "
              f"{result.train_seconds:.2f} s (total {result.seconds:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m videollama.cli.train` (what torchrun / accelerate launch run on every rank)."""
    from videollama.errors import VideoLLaMAError

    p = argparse.ArgumentParser(prog="videollama train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    args = p.parse_intermixed_args(argv)
    try:
        return run(args)
    except VideoLLaMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
