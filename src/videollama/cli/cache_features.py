"""`videollama cache-features RECIPE.yaml`: precompute the frozen encoder outputs of a recipe's media.

VL recipes store the image Q-Former output per frame (T, 32, Hq); AL recipes the ImageBind vision embedding
per frame (T, O); audio-visual ("av") recipes the frame features plus the ImageBind audio embedding per clip. Frames use the eval transform (no random crop: training from the cache is un-augmented).
See `videollama.training.feature_cache` for which frames are stored and the on-disk format. Point the recipe's
`feature_cache:` at the output folder (or pass it to `build_training_data`). Re-running resumes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help="precompute frozen-encoder features of a training recipe's media")
    p.add_argument("recipe", help="training recipe YAML")
    p.add_argument("--out", help="cache folder (default: the recipe's feature_cache, else OUTPUT_DIR/feature_cache)")
    p.add_argument("--dtype", choices=("float32", "float16"), default=None,
                   help="storage dtype (default: the recipe's feature_cache_dtype)")
    p.add_argument("--model", help="model folder (default: the recipe's model)")
    p.add_argument("--device", default="cpu", help="torch device for the frozen encoders (default cpu)")
    p.add_argument("--frame-stride", type=int, default=1,
                   help="headtail/random datasets: cache every N-th frame (default 1 = all frames)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (dotted key, YAML value); repeatable")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from videollama.errors import ConfigError
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.feature_cache import build_feature_cache
    from videollama.training.recipe import TrainRecipe

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    recipe = TrainRecipe.from_yaml(args.recipe, args.overrides)
    model_dir = Path(args.model or recipe.model)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: not a model folder (pass --model DIR)")
    out = args.out or recipe.feature_cache or str(Path(recipe.output_dir) / "feature_cache")
    dtype = args.dtype or recipe.feature_cache_dtype
    model = VideoLLaMA.from_pretrained(model_dir, dtype=torch.float32, device=args.device)
    if recipe.branch == "av":
        from videollama.training.data.av_cache import build_av_feature_cache

        stats = build_av_feature_cache(recipe, model, out, dtype=dtype)
    else:
        stats = build_feature_cache(recipe, model, out, dtype=dtype, frame_stride=args.frame_stride,
                                    model_id=str(model_dir.resolve()))
    failed = 0
    for name, st in stats.items():
        print(f"{name}: {st['cached']} cached, {st['skipped_existing']} already cached, {st['failed']} failed")
        failed += st["failed"]
    print(f"feature cache: {out} ({dtype}); set `feature_cache: {out}` in the recipe to use it")
    return 1 if failed else 0
