"""Training throughput on CPU (one run, ratios printed):

1. step time with the frozen-feature cache (`frame_features` precomputed, what `videollama cache-features`
   stores) vs without (pixels through the frozen EVA + image Q-Former every step), for a base-size EVA
   (width 768, depth 12, 224 px, 8 frames); the rest of the model is the tiny preset.
2. samples/s of the engine, 1 process vs 2 gloo DDP processes, same global batch (tiny model, cached features).

    python benchmarks/train.py [--steps 3] [--ddp-steps 24]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ddp-steps", type=int, default=24)
    p.add_argument("--ddp-global-batch", type=int, default=8)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(f"load average {os.getloadavg()[0]:.2f} (a shared machine: small ops suffer most from busy cores)")
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        raw, cached = cache_benchmark(args.steps, args.frames, args.batch)
        print(f"[cache] EVA-B/14 768x12 @224, {args.frames} frames, batch {args.batch}, {threads} thread(s): "
              f"step without cache {raw:.3f} s, with cached frame_features {cached:.4f} s -> {raw / cached:.1f}x faster")
    one, two = ddp_benchmark(args.ddp_steps, args.ddp_global_batch)
    print(f"[ddp] tiny model, global batch {args.ddp_global_batch}, {args.ddp_steps} steps: 1 process {one:.1f} samples/s, "
          f"2 gloo processes {two:.1f} samples/s -> {two / one:.2f}x")


if __name__ == "__main__":
    main()
