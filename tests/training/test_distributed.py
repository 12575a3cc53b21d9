"""Subprocess runs: SIGKILL mid-run + resume == uninterrupted (1 and 2 gloo processes); DDP == one process."""

from __future__ import annotations

import pytest

from tests.training.conftest import final_trainable, max_diff, run_cli
from videollama.training.engine import KILL_ENV


@pytest.mark.parametrize("nproc", [1, 2])
def test_kill_and_resume_matches_uninterrupted(tiny_model, tmp_path, nproc):
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_cli(tiny_model, ref, nproc=nproc)
    killed = run_cli(tiny_model, run, nproc=nproc, env={KILL_ENV: "5"}, check=False)  # checkpoint at 4, dies at 5
    assert killed.returncode != 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    resumed = run_cli(tiny_model, run, nproc=nproc)
    assert "resumed from" in resumed.stdout and "at step 4" in resumed.stdout
    assert max_diff(final_trainable(ref), final_trainable(run)) <= 1e-6


def test_ddp_step_equals_single_process(tiny_model, tmp_path):
    """2 ranks x batch 2 == 1 process x batch 4 (same global batch; dropout off), after 3 steps."""
    common = ("save_every_steps=3", "--max-steps", "3", "--no-dropout", "--no-export")
    run_cli(tiny_model, tmp_path / "one", "optim.batch_size=4", *common, nproc=1)
    run_cli(tiny_model, tmp_path / "two", "optim.batch_size=2", *common, nproc=2)
    diff = max_diff(final_trainable(tmp_path / "one", 3), final_trainable(tmp_path / "two", 3))
    assert diff <= 1e-5, diff
