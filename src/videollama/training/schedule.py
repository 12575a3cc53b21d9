"""Official optimisation rules (SPEC §5.5): AdamW parameter groups and the per-step learning rate.

The LR is the official `linear_warmup_cosine_lr` schedule, with one FIX (quirk 31): the warmup uses the
*global* step g, so it never restarts at an epoch boundary.

    while g < warmup_steps:  lr = min(init, warmup_lr + (init - warmup_lr) * g / max(warmup_steps, 1))
    afterwards:              lr = min_lr + (init - min_lr) * 0.5 * (1 + cos(pi * g / (max_epoch * iters_per_epoch)))

Step g (0-based) is the g-th optimizer step; its update uses lr(g), as the official runner sets the LR
before each step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from videollama.training.recipe import OptimConfig

NO_DECAY_SUBSTRINGS = ("bias", "ln", "bn")


def official_lr(step: int, optim: OptimConfig) -> float:
    """The learning rate of global optimizer step `step` (0-based)."""
    if step < optim.warmup_steps:
        frac = step / max(optim.warmup_steps, 1)
        return min(optim.init_lr, optim.warmup_lr + (optim.init_lr - optim.warmup_lr) * frac)
    total = optim.max_epoch * optim.iters_per_epoch
    return optim.min_lr + (optim.init_lr - optim.min_lr) * 0.5 * (1.0 + math.cos(math.pi * step / total))


class OfficialLRScheduler:
    """Sets every param group's LR to `official_lr(step)`; `step()` advances one optimizer step.

    Unlike LambdaLR it writes the formula's value directly (no base_lr * factor rounding), and its
    state is just the step counter, so resume is exact.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, optim: OptimConfig, last_step: int = 0) -> None:
        self.optimizer = optimizer
        self.optim = optim
        self.last_step = last_step
        self._apply()

    def _apply(self) -> None:
        lr = official_lr(self.last_step, self.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


def decays(name: str, param: torch.Tensor) -> bool:
    """Official rule: weight decay for ndim >= 2 parameters whose names contain none of bias/ln/bn."""
    return param.ndim >= 2 and not any(s in name for s in NO_DECAY_SUBSTRINGS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups over the trainable parameters (query tokens are 3-D, so they are decayed)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if decays(name, param) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW(betas=(0.9, beta2)), default eps, official weight-decay groups."""
    groups = param_groups(model, optim.weight_decay)
    if not groups:
        raise ValueError("no trainable parameters")
    return torch.optim.AdamW(groups, lr=official_lr(0, optim), betas=(0.9, optim.beta2))
