"""Training throughput on CPU (one run, ratios printed):

1. step time with the frozen-feature cache (`frame_features` precomputed, what `videollama cache-features`
   stores) vs without (pixels through the frozen EVA + image Q-Former every step), for a base-size EVA
   (width 768, depth 12, 224 px, 8 frames); the rest of the model is the tiny preset.
2. samples/s of the engine, 1 process vs 2 gloo DDP processes, same global batch (tiny model, cached features).
3. `group_by_length`: the learning proof's stage 2 (recipes/world/stage2_instruct.yaml: tiny "av" model, cached
   features, instruction records of 157-489 tokens) on a small generated world, records/s and padded/real tokens
   with and without length grouping, the two runs alternated in rounds.
4. `compile`: the same stage 2's forward + backward with the LLM decoder eager and under torch.compile,
   alternated on the same batches.
5. `label`: the same, both compiled, with the LLM's last layer everywhere or at the answer positions only
   (`VideoLLaMA.last_layer_at_labels`, `model/label_decoder.py`).

    python benchmarks/train.py [--steps 3] [--ddp-steps 24] [--group-steps 150 --group-batch 8 --group-rounds 2]
                               [--compile-batches 40 --compile-batch 16] [--only cache|ddp|group|compile|label]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def cache_benchmark(steps: int, frames: int, batch: int) -> tuple[float, float]:
    from videollama.config import load_preset
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.objective import TokenIds, batch_loss, set_train_mode, set_trainable
    from videollama.training.recipe import OptimConfig
    from videollama.training.schedule import build_optimizer

    c = load_preset("tiny")
    c = c.replace(vision=dataclasses.replace(c.vision, width=768, depth=12, heads=12, mlp_hidden=3072),
                  image_qformer=dataclasses.replace(c.image_qformer, encoder_width=768))
    torch.manual_seed(0)
    model = VideoLLaMA(c)
    set_trainable(model, "vl")
    set_train_mode(model, "vl")
    opt = build_optimizer(model, OptimConfig())
    ids = TokenIds(1, 0, 512)
    pixels = torch.randn(batch, 3, frames, 224, 224)
    text = torch.randint(3, 500, (batch, 16))
    with torch.no_grad():
        feats = model.frame_features(pixels)

    def step(media: dict) -> float:
        t = time.perf_counter()
        loss = batch_loss(model, {"task": "caption", **media, "text_ids": text, "text_mask": torch.ones_like(text)},
                          "vl", ids)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t

    def timed(media: dict) -> float:
        step(media)  # warm-up
        return min(step(media) for _ in range(steps))

    return timed({"pixel_values": pixels}), timed({"frame_features": feats})


def ddp_benchmark(steps: int, global_batch: int) -> tuple[float, float]:
    from videollama.tiny import make_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="vl-train-bench-"))
    model = make_tiny_model(tmp / "model", seed=0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]), "OMP_NUM_THREADS": "1"}

    def run(nproc: int) -> float:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        cmd = [*launcher, "-m", "videollama.cli.train", str(REPO / "recipes/tiny.yaml"), f"model={model}",
               f"output_dir={tmp / f'run{nproc}'}", f"optim.batch_size={global_batch // nproc}",
               f"optim.iters_per_epoch={steps}", "optim.max_epoch=1", "save_every_steps=0",
               "--data-factory", "tests.training.synthetic:make_batches", "--no-progress", "--no-export"]
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
        secs = float(re.search(r"steps in ([0-9.]+) s", out).group(1))
        return steps * global_batch / secs

    return run(1), run(2)


def small_world_stage2(tmp: Path):
    """A 60-video world, its leak-free stage-2 file, the tiny world model and its av feature cache under `tmp`;
    returns (model folder, recipe(k, *overrides) -> the stage-2 TrainRecipe writing to tmp/run<k>)."""
    sys.path.insert(0, str(REPO / "recipes" / "world"))
    from make_model import make_world_model
    from prepare_instruct import prepare

    from videollama.model.videollama import VideoLLaMA
    from videollama.training.data.av_cache import build_av_feature_cache
    from videollama.training.recipe import TrainRecipe
    from videollama.world.generate import WorldOptions, generate_world

    world = tmp / "world"
    generate_world(world, WorldOptions(n=60, seed=1), workers=2, progress=None)
    prepare(world, leak_free=True)
    model = make_world_model(tmp / "model", seed=0)

    def recipe(k: int, *overrides: str) -> TrainRecipe:
        return TrainRecipe.from_yaml(REPO / "recipes/world/stage2_instruct.yaml", [
            f"model={model}", f"output_dir={tmp / f'run{k}'}", f"feature_cache={tmp / 'cache'}",
            f"datasets.0.annotations={world / 'videochat' / 'videochat_instruct_all.json'}",
            f"datasets.0.media_root={world / 'videos'}", *overrides])

    build_av_feature_cache(recipe(0), VideoLLaMA.from_pretrained(model), tmp / "cache")
    return model, recipe


def group_benchmark(steps: int, batch: int, rounds: int) -> dict[bool, dict[str, float]]:
    """{grouped: {"records_s", "padded_over_real"}} of the world stage 2 (see the module doc), summed over rounds."""
    from videollama.checkpoint.folder import read_config
    from videollama.text.tokenizer import load_tokenizer
    from videollama.training.data import build_training_data
    from videollama.training.engine import train

    model, stage2 = small_world_stage2(Path(tempfile.mkdtemp(prefix="vl-group-bench-")))

    def recipe(grouped: bool, k: int):
        return stage2(k, f"optim.batch_size={batch}", f"optim.iters_per_epoch={steps}", "compile=false",
                      f"group_by_length={str(grouped).lower()}")

    out = {g: {"seconds": 0.0, "records": 0, "padded": 0, "real": 0} for g in (False, True)}
    for k in range(rounds):
        for grouped in (False, True) if k % 2 == 0 else (True, False):
            res = train(recipe(grouped, k), resume=False, overwrite=True, export=False, progress=False)
            out[grouped]["seconds"] += res.train_seconds
            out[grouped]["records"] += steps * batch
    for grouped in (False, True):  # the padding of the same steps, from the data stream alone
        data = build_training_data(recipe(grouped, 0), load_tokenizer(model / "llm"), read_config(model))
        for b in data.batches(num_steps=steps, num_workers=0):
            mask = b["attention_mask"]
            out[grouped]["padded"] += mask.numel()
            out[grouped]["real"] += int(mask.sum())
    return {g: {"records_s": v["records"] / v["seconds"], "padded_over_real": v["padded"] / v["real"]}
            for g, v in out.items()}


def compile_benchmark(batches: int, batch: int) -> dict[str, float]:
    """Recipe key `compile`: forward + backward of the world stage 2's loss (batch `batch`, length-grouped records)
    with the eager LLM decoder and the torch.compile'd one, alternated on the same batches (the first 3 left out
    as warm-up); also the first compiled call's seconds and the largest relative loss difference."""
    r = alternate_losses(batches, batch, {False: lambda model: None, True: lambda model: model.compile_decoder()})
    return {"eager_s": r[False], "compiled_s": r[True], "first_compiled_s": r["first"][True],
            "max_rel_loss_diff": r["max_rel_loss_diff"]}


def label_benchmark(batches: int, batch: int) -> dict[str, float]:
    """`VideoLLaMA.last_layer_at_labels`: forward + backward of the world stage 2's loss, both LLM decoders
    compiled (as the world recipes train), the last layer everywhere or at the answer positions only."""

    def setup(at_labels: bool):
        def apply(model) -> None:
            model.last_layer_at_labels = at_labels
            model.compile_decoder()
        return apply

    r = alternate_losses(batches, batch, {False: setup(False), True: setup(True)})
    return {"full_s": r[False], "labels_s": r[True], "max_rel_loss_diff": r["max_rel_loss_diff"]}


def alternate_losses(batches: int, batch: int, setups: dict) -> dict:
    """Forward + backward of the world stage 2's loss (batch `batch`, length-grouped records) by two copies of the
    model (same LoRA init, no dropout) set up by `setups` {False: fn(model), True: fn(model)}, alternated on the
    same batches (the first 3 left out as warm-up): {False: mean s, True: mean s, "first": {each: first call's s},
    "max_rel_loss_diff": largest relative loss difference}."""
    from videollama.checkpoint.folder import read_config
    from videollama.model.videollama import VideoLLaMA
    from videollama.text.tokenizer import load_tokenizer
    from videollama.training.data import build_training_data
    from videollama.training.engine import BranchLoss, prepare_trainable

    model_dir, stage2 = small_world_stage2(Path(tempfile.mkdtemp(prefix="vl-compile-bench-")))
    recipe = stage2(0, f"optim.batch_size={batch}", f"optim.iters_per_epoch={batches}")
    data = build_training_data(recipe, load_tokenizer(model_dir / "llm"), read_config(model_dir))
    losses = {}
    for variant in (False, True):  # two copies with the same LoRA init
        model = VideoLLaMA.from_pretrained(model_dir)
        torch.manual_seed(0)
        prepare_trainable(model, recipe)
        model.eval()  # no dropout: both copies compute the same numbers
        setups[variant](model)
        losses[variant] = BranchLoss(model, recipe.branch, data.token_ids)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    first, worst = {}, 0.0
    for k, b in enumerate(data.batches(num_steps=batches, num_workers=0)):
        values = {}
        for variant in (False, True) if k % 2 == 0 else (True, False):
            t = time.perf_counter()
            value = losses[variant](b)
            value.backward()
            dt = time.perf_counter() - t
            losses[variant].zero_grad(set_to_none=True)
            values[variant] = float(value.detach())
            if k == 0:
                first[variant] = dt
            if k >= 3:
                seconds[variant].append(dt)
        worst = max(worst, abs(values[True] - values[False]) / abs(values[False]))
    return {**{v: sum(seconds[v]) / len(seconds[v]) for v in (False, True)}, "first": first, "max_rel_loss_diff": worst}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ddp-steps", type=int, default=24)
    p.add_argument("--ddp-global-batch", type=int, default=8)
    p.add_argument("--group-steps", type=int, default=150, help="stage-2 steps per run of the grouping benchmark")
    p.add_argument("--group-batch", type=int, default=8)
    p.add_argument("--group-rounds", type=int, default=2, help="plain and grouped runs each, alternated")
    p.add_argument("--compile-batches", type=int, default=40, help="batches of the compile benchmark")
    p.add_argument("--compile-batch", type=int, default=16)
    p.add_argument("--only", choices=("cache", "ddp", "group", "compile", "label"), default=None,
                   help="run one benchmark only")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"load average {os.getloadavg()[0]:.2f} (a shared machine: small ops suffer most from busy cores)")
    threads0 = torch.get_num_threads()
    for threads in sorted({1, threads0}) if args.only in (None, "cache") else ():
        torch.set_num_threads(threads)
        raw, cached = cache_benchmark(args.steps, args.frames, args.batch)
        print(f"[cache] EVA-B/14 768x12 @224, {args.frames} frames, batch {args.batch}, {threads} thread(s): "
              f"step without cache {raw:.3f} s, with cached frame_features {cached:.4f} s -> {raw / cached:.1f}x faster")
    torch.set_num_threads(threads0)
    if args.only in (None, "ddp"):
        one, two = ddp_benchmark(args.ddp_steps, args.ddp_global_batch)
        print(f"[ddp] tiny model, global batch {args.ddp_global_batch}, {args.ddp_steps} steps: 1 process {one:.1f} "
              f"samples/s, 2 gloo processes {two:.1f} samples/s -> {two / one:.2f}x")
    if args.only in (None, "group"):
        r = group_benchmark(args.group_steps, args.group_batch, args.group_rounds)
        print(f"[group] world stage 2, batch {args.group_batch}, {args.group_rounds} x {args.group_steps} steps each: "
              f"plain {r[False]['records_s']:.1f} records/s (padded/real tokens {r[False]['padded_over_real']:.2f}), "
              f"group_by_length {r[True]['records_s']:.1f} records/s ({r[True]['padded_over_real']:.2f}) -> "
              f"{r[True]['records_s'] / r[False]['records_s']:.2f}x")
    if args.only in (None, "compile"):
        r = compile_benchmark(args.compile_batches, args.compile_batch)
        print(f"[compile] world stage 2, batch {args.compile_batch}, {args.compile_batches} batches alternated: "
              f"forward + backward eager {r['eager_s']:.3f} s, compiled LLM decoder {r['compiled_s']:.3f} s -> "
              f"{r['eager_s'] / r['compiled_s']:.2f}x (first compiled call {r['first_compiled_s']:.1f} s; "
              f"largest relative loss difference {r['max_rel_loss_diff']:.1e})")
    if args.only in (None, "label"):
        r = label_benchmark(args.compile_batches, args.compile_batch)
        print(f"[label] world stage 2, batch {args.compile_batch}, {args.compile_batches} batches alternated, LLM "
              f"decoder compiled: forward + backward with the last layer everywhere {r['full_s']:.3f} s, at the "
              f"answer positions only {r['labels_s']:.3f} s -> {r['full_s'] / r['labels_s']:.2f}x (largest relative "
              f"loss difference {r['max_rel_loss_diff']:.1e})")


if __name__ == "__main__":
    main()
