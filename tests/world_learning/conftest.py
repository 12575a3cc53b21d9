"""A tiny generated world + the learning-proof model (session scoped: built once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "world"


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    from videollama.world.generate import WorldOptions, generate_world

    sys.path.insert(0, str(RECIPES))
    from prepare_instruct import prepare

    out = tmp_path_factory.mktemp("wl") / "train"
    generate_world(out, WorldOptions(n=24, seed=3, max_seconds=4.0), workers=2)
    prepare(out)
    return out


@pytest.fixture(scope="session")
def heldout_dir(tmp_path_factory) -> Path:
    from videollama.world.generate import WorldOptions, generate_world

    out = tmp_path_factory.mktemp("wl") / "heldout"
    generate_world(out, WorldOptions(n=6, seed=11, split="heldout", max_seconds=4.0), workers=2)
    return out


@pytest.fixture(scope="session")
def world_model(tmp_path_factory) -> Path:
    sys.path.insert(0, str(RECIPES))
    from make_model import make_world_model

    return make_world_model(tmp_path_factory.mktemp("wl") / "model")


def stage_recipe(stage: int, world: Path, model: Path, out: Path, extra=(), cache: Path | None = None):
    from videollama.training.recipe import TrainRecipe

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from world_learning import recipe_overrides

    path = RECIPES / ("stage1_caption.yaml" if stage == 1 else "stage2_instruct.yaml")
    return TrainRecipe.from_yaml(path, recipe_overrides(world, model, out, cache, stage, ["num_workers=0", *extra]))


def pretrain_against_probe(world_model: Path, pretrain, opts, probe_opts, changed_modules: set[str], **kw):
    """Run `pretrain` on a fresh model with `opts` and on another with `probe_opts` (heads only: the baseline);
    check that the run keeps the global RNG, changes exactly `changed_modules` and that the probe changes nothing.
    Returns (probe info, run info, trained model)."""
    import torch

    from videollama.model.videollama import VideoLLaMA

    probe = VideoLLaMA.from_pretrained(world_model)
    base = pretrain(probe, probe_opts, progress=False, **kw)
    model = VideoLLaMA.from_pretrained(world_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    info = pretrain(model, opts, progress=False, **kw)
    assert torch.equal(rng, torch.get_rng_state()), "must not touch the global RNG"
    after = model.state_dict()
    assert {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])} == changed_modules
    assert all(torch.equal(v, probe.state_dict()[k]) for k, v in before.items())  # the probe changed nothing
    return base, info, model
