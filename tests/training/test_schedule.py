"""Official LR formula (SPEC §5.5, quirk 31 FIX) and weight-decay grouping."""

from __future__ import annotations

import math

import pytest
import torch

from videollama.training.recipe import OptimConfig
from videollama.training.schedule import OfficialLRScheduler, build_optimizer, decays, official_lr, param_groups


def lavis_lr(epoch: int, i: int, o: OptimConfig) -> float:
    """The official LinearWarmupCosineLRScheduler.step(cur_epoch, cur_step), written out independently."""
    g = epoch * o.iters_per_epoch + i
    if g < o.warmup_steps:
        return min(o.init_lr, o.warmup_lr + (o.init_lr - o.warmup_lr) * i / max(o.warmup_steps, 1))
    return (o.init_lr - o.min_lr) * 0.5 * (1.0 + math.cos(math.pi * g / (o.max_epoch * o.iters_per_epoch))) + o.min_lr


STAGES = {
    "vl1": OptimConfig(1e-4, 8e-5, 1e-6, 2500, max_epoch=5, iters_per_epoch=2500),
    "vl2": OptimConfig(3e-5, 1e-5, 1e-6, 1000, max_epoch=3, iters_per_epoch=1000),
    "al1": OptimConfig(1e-4, 8e-5, 1e-6, 5000, max_epoch=5, iters_per_epoch=5000),
    "al2": OptimConfig(3e-5, 1e-5, 1e-6, 400, max_epoch=3, iters_per_epoch=1000),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_lr_matches_official_formula(stage):
    o = STAGES[stage]
    for g in [0, 1, 2, 199, 399, 400, 401, 999, 1000, 1001, 2499, 2500, 2501, 4999, 5000, 7777,
              o.max_epoch * o.iters_per_epoch - 1]:
        if g >= o.max_epoch * o.iters_per_epoch:
            continue
        epoch, i = divmod(g, o.iters_per_epoch)
        assert official_lr(g, o) == pytest.approx(lavis_lr(epoch, i, o), rel=1e-12, abs=0), (stage, g)
    assert official_lr(0, o) == o.warmup_lr
    assert official_lr(o.max_epoch * o.iters_per_epoch, o) == pytest.approx(o.min_lr)


def test_warmup_uses_global_step():
    """Quirk 31: with warmup longer than an epoch, the warmup continues across the epoch boundary."""
    o = OptimConfig(1e-3, 1e-4, 1e-6, warmup_steps=30, max_epoch=4, iters_per_epoch=10)
    lrs = [official_lr(g, o) for g in range(30)]
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    assert official_lr(10, o) == pytest.approx(1e-6 + (1e-3 - 1e-6) * 10 / 30)


def test_scheduler_drives_optimizer_and_resumes():
    o = STAGES["al2"]
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = OfficialLRScheduler(opt, o)
    seen = []
    for _ in range(450):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    assert seen == [official_lr(g, o) for g in range(450)]
    opt2 = torch.optim.AdamW([p], lr=1.0)
    sched2 = OfficialLRScheduler(opt2, o)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == official_lr(450, o)


def test_weight_decay_grouping(tiny_model):
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.objective import set_trainable

    model = VideoLLaMA.from_pretrained(tiny_model)
    set_trainable(model, "vl")
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert decays("video_qformer.query_tokens", named["video_qformer.query_tokens"])  # 3-D: decayed (official)
    assert decays("video_proj.weight", named["video_proj.weight"])
    assert decays("frame_position_embedding.weight", named["frame_position_embedding.weight"])
    assert not decays("video_proj.bias", named["video_proj.bias"])
    assert not decays("x.ln_1.weight", torch.zeros(3, 3)) and not decays("x.bn.weight", torch.zeros(3, 3))
    groups = param_groups(model, 0.05)
    ids_decay = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    for n, p in named.items():
        expected = p.ndim >= 2 and not any(s in n for s in ("bias", "ln", "bn"))
        assert (id(p) in ids_decay) == expected, n
    assert sum(len(g["params"]) for g in groups) == len(named)  # only trainable params, each once
    opt = build_optimizer(model, STAGES["vl1"])
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.param_groups[0]["lr"] == 1e-6
