"""Fast learning-proof pipeline: tiny world, a few steps of both "av" recipes through the engine, eval per kind."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.world_learning.conftest import ROOT, stage_recipe


def test_two_stages_train_and_eval(world_dir, heldout_dir, world_model, tmp_path):
    from videollama.checkpoint.folder import read_config
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.data.av_cache import build_av_feature_cache

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from world_learning import (KINDS, RECIPES, answer_reads, answer_reads_summary, evaluate, motion_probe,
                                qformer_diagnostics, reads_summary, recipe_overrides, train_stage, type_table)

    from videollama.world.questions import QUESTION_TYPES

    cache = tmp_path / "cache"  # one cache for both stages (same dataset name and media root)
    build_av_feature_cache(stage_recipe(2, world_dir, world_model, tmp_path / "x"), VideoLLaMA.from_pretrained(world_model),
                           cache)
    fast = ["optim.iters_per_epoch=8", "optim.warmup_steps=1", "optim.batch_size=4", "num_workers=0", "instruct_max_len=320"]
    s1, info1 = train_stage(RECIPES / "stage1_caption.yaml",
                            recipe_overrides(world_dir, world_model, tmp_path / "s1", cache, 1, fast))
    s2, info2 = train_stage(RECIPES / "stage2_instruct.yaml", recipe_overrides(world_dir, s1, tmp_path / "s2", cache, 2, fast))
    for info in (info1, info2):
        assert info["steps"] == 8
        losses = info["losses"]
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    results = {}
    for ablation in ("a", "d"):
        out = results[ablation] = evaluate(s2, heldout_dir, tmp_path / "eval", ablation, max_new_tokens=6, limit=8)
        assert out["overall"]["n"] == 8
        assert out["kind"] and set(out["kind"]) <= set(KINDS)
        assert all(0.0 <= m["accuracy"] <= 100.0 for m in out["kind"].values())
        assert out["type"] and set(out["type"]) <= {t for ts in QUESTION_TYPES.values() for t in ts}
        assert sum(m["n"] for m in out["type"].values()) == 8
    rows = type_table(results).splitlines()[2:]
    assert {row.split(" | ")[0].lstrip("| ") for row in rows} == set(results["a"]["type"])
    sharing, reads = qformer_diagnostics(s2, heldout_dir, n_videos=3, n_read=2)  # reported with the ablation table
    assert sharing["videos"] == 3
    assert all(0.0 <= sharing[k] <= 1.0 for k in ("image_qformer_per_frame", "video_qformer")), sharing
    vq = read_config(s2).video_qformer  # one entry per cross-attention layer, one per head
    assert len(reads) == len(range(0, vq.layers, vq.cross_attention_freq))
    assert all(len(heads) == vq.heads for heads in reads)
    assert reads_summary(reads).count("layer ") == len(reads)
    looks = answer_reads(s2, heldout_dir, n_per_kind=2)  # where the LLM looks when it starts an answer
    assert set(results["a"]["kind"]) <= set(looks) <= set(KINDS)
    n_layers = read_config(s2).llm.hf_config["num_hidden_layers"]
    assert all(len(layers) == n_layers and all(0.0 <= h["share"]["video"] <= 1.0 for hs in layers for h in hs)
               for layers in looks.values())
    assert answer_reads_summary(looks).count("layer ") == n_layers * len(looks)
    # --motion-probe: a world with too few videos where a shape moves (this one has a handful) is refused, named
    with pytest.raises(SystemExit, match=rf"{re.escape(str(world_dir))}: --motion-probe needs .* at least 10 .* found [0-9]"):
        motion_probe(s2, world_dir)
