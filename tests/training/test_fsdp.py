"""FSDP2 (`strategy: fsdp`) over 2 gloo processes (torchrun subprocesses): the frozen LLM / encoders are sharded,
the trainable modules replicated. Same numbers as one process; exact resume; full weights in the export."""

from __future__ import annotations

import re

import torch

from tests.training.conftest import final_trainable, max_diff, run_cli
from videollama.training.engine import KILL_ENV


def _shard_line(stdout: str) -> tuple[int, int]:
    m = re.search(r"FSDP2 over 2 ranks: sharded (.*) \(this rank holds ([\d,]+) of ([\d,]+) frozen weights\)", stdout)
    assert m, stdout
    assert "llm" in m.group(1).split(", ") and "vision" in m.group(1)
    return int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))


def test_fsdp_step_equals_single_process(tiny_model, tmp_path):
    """2 FSDP ranks x batch 2 == 1 process x batch 4 (same global batch; dropout off), after 3 steps."""
    common = ("save_every_steps=3", "--max-steps", "3", "--no-dropout", "--no-export")
    run_cli(tiny_model, tmp_path / "one", "optim.batch_size=4", *common, nproc=1)
    two = run_cli(tiny_model, tmp_path / "two", "optim.batch_size=2", "strategy=fsdp", *common, nproc=2)
    local, full = _shard_line(two.stdout)
    assert full > 0 and local < 0.6 * full, (local, full)  # each rank holds about half (rank 0: dim-0 ceil)
    one, fsdp = final_trainable(tmp_path / "one", 3), final_trainable(tmp_path / "two", 3)
    assert all(v.dtype == torch.float32 for v in fsdp.values())  # complete fp32 tensors (replicated, no gather needed)
    diff = max_diff(one, fsdp)
    assert diff <= 1e-5, diff


def test_fsdp_kill_and_resume_matches_uninterrupted(tiny_model, tmp_path):
    from videollama.model.videollama import VideoLLaMA

    ref, run = tmp_path / "ref", tmp_path / "run"
    run_cli(tiny_model, ref, "strategy=fsdp", nproc=2)
    killed = run_cli(tiny_model, run, "strategy=fsdp", nproc=2, env={KILL_ENV: "5"}, check=False)
    assert killed.returncode != 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    resumed = run_cli(tiny_model, run, "strategy=fsdp", nproc=2)
    assert "resumed from" in resumed.stdout and "at step 4" in resumed.stdout
    state = final_trainable(ref)
    assert max_diff(state, final_trainable(run)) <= 1e-6
    # the final export of an FSDP run is a complete model: trained weights + the full (unsharded) frozen LLM
    final, base = VideoLLaMA.from_pretrained(ref / "final"), VideoLLaMA.from_pretrained(tiny_model)
    params, base_params = dict(final.named_parameters()), dict(base.named_parameters())
    assert params.keys() == base_params.keys()
    for name, p in params.items():
        if name in state:
            assert torch.equal(p, state[name]), name
        else:
            assert torch.equal(p, base_params[name]), f"frozen {name} changed in the export"
