"""What the world encoders' pretrainings share (`world.vision_pretraining`, `world.audio_pretraining`): the seeded
scene blocks they render from, batching of their sample streams, and the optimisation loop."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from videollama.world.generate import WorldOptions, make_scenes

FIRST_SEED = 10_000  # rendered scenes use world seeds from here on; worlds trained or evaluated on stay below


def training_scene_blocks(seed: int, scenes_per_block: int, speech: bool = False,
                          speech_lengths: dict[str, float] | None = None
                          ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Endless (block, scenes): `scenes_per_block` fresh *training-split* timelines per block, from world seed
    ``FIRST_SEED + 1000 * seed + block`` (never a world's own videos, never a held-out (shape, colour) pair)."""
    for block in range(1 << 30):
        opts = WorldOptions(n=scenes_per_block, seed=FIRST_SEED + 1_000 * seed + block, split="train", speech=speech)
        yield block, make_scenes(opts, speech_lengths)


def next_batch(stream: Iterator[tuple], n: int) -> list[torch.Tensor]:
    """The next `n` samples of `stream` stacked field by field (tensors with torch.stack, arrays with np.stack)."""
    items = [next(stream) for _ in range(n)]
    return [torch.stack(list(field)) if isinstance(field[0], torch.Tensor) else torch.from_numpy(np.stack(field))
            for field in zip(*items)]


def train_then_freeze(modules: list[nn.Module], heads: nn.Module, step_loss: Callable[[], torch.Tensor], steps: int,
                      lr: float, weight_decay: float, warmup_steps: int, desc: str, progress: bool,
                      frozen_steps: int = 0) -> dict[str, Any]:
    """The pretraining loop: AdamW on `modules` and `heads`, linear warmup then cosine to 0 (the training engine's
    `linear_warmup_cosine_lr` is the official schedule, with its own floor), `step_loss()` per step; then
    `modules` are frozen (eval mode, requires_grad False). During the first `frozen_steps` only `heads` learn
    (fresh heads on an already trained module settle before their gradients reach it). Returns seconds and the
    mean loss of the first and last steps (up to 20 each)."""
    from tqdm.auto import tqdm

    params = [p for m in modules for p in m.parameters()]
    for m in modules:
        m.train()
        m.requires_grad_(True)
    opt = torch.optim.AdamW(params + list(heads.parameters()), lr=lr, weight_decay=weight_decay)
    span = max(steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(warmup_steps, 1)) * 0.5 * (1 + np.cos(np.pi * min(s / span, 1.0))))
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        if step in (0, frozen_steps):
            for p in params:
                p.requires_grad_(step >= frozen_steps)
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    for m in modules:
        m.eval()
        m.requires_grad_(False)
    k = max(1, min(20, len(losses) // 5))
    return {"seconds": round(time.perf_counter() - t0, 1),
            "loss_first": round(float(np.mean(losses[:k])), 4) if losses else None,
            "loss_last": round(float(np.mean(losses[-k:])), 4) if losses else None}
