"""Mixed precision (bf16 autocast on CPU; fp16 is GPU-only) and gradient checkpointing, on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.conftest import recipe
from tests.training.synthetic import make_batches
from videollama.errors import ConfigError
from videollama.training import engine
from videollama.training.engine import train


def test_bf16_autocast_trains_with_fp32_master_weights(expressive_model, tmp_path, monkeypatch):
    seen: list[tuple] = []
    original = engine.batch_loss

    def spy(model, batch, branch, ids):  # what the forward runs under, and the dtype the trained modules produce
        out: list[torch.dtype] = []
        handle = model.video_proj.register_forward_hook(lambda m, a, o: out.append(o.dtype))
        try:
            loss = original(model, batch, branch, ids)
        finally:
            handle.remove()
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out[0],
                     model.video_proj.weight.dtype))
        return loss

    monkeypatch.setattr(engine, "batch_loss", spy)
    r = recipe(expressive_model, tmp_path / "run", "precision=bf16", "optim.init_lr=1.0e-2", "optim.min_lr=1.0e-3",
               "optim.iters_per_epoch=12", "optim.warmup_steps=2", "save_every_steps=0", "keep_last=1")
    res = train(r, data_factory=make_batches, resume=False, progress=False, export=False)
    assert len(seen) == 24
    assert all(s == (True, torch.bfloat16, torch.bfloat16, torch.float32) for s in seen), seen[:2]
    assert all(math.isfinite(x) for x in res.losses)
    first, last = sum(res.losses[:4]) / 4, sum(res.losses[-4:]) / 4
    assert last < first - 0.5, res.losses
    trainable = [p for p in res.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)  # fp32 master weights


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is supported on GPU")
def test_fp16_on_cpu_is_a_clear_error(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="fp16.*needs a GPU"):
        train(recipe(tiny_model, tmp_path / "run", "precision=fp16"), data_factory=make_batches, resume=False,
              progress=False, export=False)


def _loss_and_grads(tiny_model, tmp_path, branch: str, checkpointing: bool):
    """Engine-style setup (official freezing, eval mode: no dropout) -> loss and trainable grads of 2 batches, and
    how many times each checkpointing layer's first submodule ran (2 per forward when recomputed in backward)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    from videollama.model.videollama import VideoLLaMA
    from videollama.text import load_tokenizer
    from videollama.training.objective import TokenIds, batch_loss, set_trainable

    model = VideoLLaMA.from_pretrained(tiny_model)
    set_trainable(model, branch)
    if checkpointing:
        engine.enable_gradient_checkpointing(model)
    model.eval()
    n_layers = engine.checkpointing_layers_on(model) if checkpointing else 0
    calls: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, GradientCheckpointingLayer):
            first = next(module.children())
            first.register_forward_hook(lambda m, a, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    tok = load_tokenizer(tiny_model / "llm")
    ids = TokenIds.from_tokenizer(tok)
    batches = make_batches(recipe(tiny_model, tmp_path / "r", f"branch={branch}"), tok, model.config, 0, 1)
    losses = []
    for _ in range(2):  # a caption batch, then an instruction batch
        loss = batch_loss(model, next(batches), branch, ids)
        loss.backward()
        losses.append(loss.detach())
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return torch.stack(losses), grads, calls, n_layers


@pytest.mark.parametrize("branch", ["vl", "al"])
def test_gradient_checkpointing_same_loss_and_grads(tiny_model, tmp_path, branch):
    loss0, grads0, calls0, _ = _loss_and_grads(tiny_model, tmp_path, branch, checkpointing=False)
    loss1, grads1, calls1, n_layers = _loss_and_grads(tiny_model, tmp_path, branch, checkpointing=True)
    assert torch.allclose(loss0, loss1, atol=1e-5, rtol=0), (loss0, loss1)
    assert grads0.keys() == grads1.keys() and all(g.abs().sum() > 0 for g in grads0.values())
    diff = max(float((grads0[k] - grads1[k]).abs().max()) for k in grads0)
    assert diff <= 1e-5, diff
    # checkpointing is really on: the trainable Q-Former's layers and the frozen LLM's decoder layers run their
    # forward again in backward (2 forwards x 2 = 4 calls), without it once per forward
    trained = "video_qformer." if branch == "vl" else "audio_qformer."
    used = [n for n in calls1 if n.startswith((trained, "llm."))]
    assert any(n.startswith(trained) for n in used) and any(n.startswith("llm.") for n in used), sorted(calls1)
    assert n_layers >= len(used)
    for name in used:
        assert calls0[name] == 2 and calls1[name] == 4, (name, calls0[name], calls1[name])
