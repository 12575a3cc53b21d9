"""Tiny model folder + recipe helpers for the engine tests (CPU, seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny.yaml"
FACTORY = "tests.training.synthetic:make_batches"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from videollama.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def expressive_model(tmp_path_factory) -> Path:
    """Tiny model whose LLM is initialised with std 0.2 (0.02 gives near-uniform logits the media cannot move)."""
    import dataclasses

    from videollama.config import load_preset
    from videollama.tiny import make_tiny_model

    c = load_preset("tiny")
    c = c.replace(llm=dataclasses.replace(c.llm, hf_config={**c.llm.hf_config, "initializer_range": 0.2}))
    return make_tiny_model(tmp_path_factory.mktemp("tiny02") / "model", c, seed=0)


def recipe(model: Path, out: Path, *overrides: str):
    from videollama.training.recipe import TrainRecipe

    return TrainRecipe.from_yaml(TINY_RECIPE, [f"model={model}", f"output_dir={out}", *overrides])


def run_cli(model: Path, out: Path, *extra: str, nproc: int = 1, env: dict | None = None, check: bool = True):
    """`python -m videollama.cli.train` (or under torch.distributed.run with `nproc` gloo processes)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    overrides = [e for e in extra if "=" in e and not e.startswith("-")]
    options = [e for e in extra if e not in overrides]
    cmd = [*launcher, "-m", "videollama.cli.train", str(TINY_RECIPE), f"model={model}", f"output_dir={out}", *overrides,
           "--data-factory", FACTORY, "--no-progress", *options]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def final_trainable(out: Path, step: int = 8) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoints" / f"step-{step:08d}" / "trainable.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
