"""The shipped recipes parse and mirror the official stage values (SPEC §5.1); 7B trainable counts."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import REPO
from videollama.training.recipe import TrainRecipe

OFFICIAL = {  # init_lr, min_lr, warmup_steps, iters_per_epoch, max_epoch, batch, datasets
    "vl_stage1": (1e-4, 8e-5, 2500, 2500, 5, 32, {"webvid": 100, "cc_sbu_align": 24}),
    "vl_stage2": (3e-5, 1e-5, 1000, 1000, 3, 4, {"cc_sbu_align": 1, "llava_instruct": 1, "webvid_instruct": 1}),
    "al_stage1": (1e-4, 8e-5, 5000, 5000, 5, 32, {"webvid": 100, "cc_sbu_align": 24}),
    "al_stage2": (3e-5, 1e-5, 400, 1000, 3, 4, {"cc_sbu_align": 1, "llava_instruct": 1, "webvid_instruct": 1}),
}


@pytest.mark.parametrize("llm", ["llama_2", "vicuna"])
@pytest.mark.parametrize("stage", sorted(OFFICIAL))
def test_official_recipes(stage, llm):
    r = TrainRecipe.from_yaml(REPO / "recipes" / f"{stage}_{llm}.yaml")
    lr, min_lr, warm, ipe, ep, bs, mix = OFFICIAL[stage]
    o = r.optim
    assert (o.init_lr, o.min_lr, o.warmup_lr, o.warmup_steps, o.iters_per_epoch, o.max_epoch, o.batch_size) == \
        (lr, min_lr, 1e-6, warm, ipe, ep, bs)
    assert (o.weight_decay, o.beta2, o.grad_accum, o.max_grad_norm) == (0.05, 0.999, 1, None)
    assert r.branch == stage[:2] and r.template == llm and r.seed == 42
    assert {d.name: d.sample_ratio for d in r.datasets} == mix
    caption = r.datasets[0]
    if stage.endswith("1"):
        assert (caption.end_sym, caption.max_txt_len, caption.prompts) == ("\n", 32, None)
        assert r.datasets[0].sampling == "headtail"
    else:
        assert caption.end_sym == ("</s>" if llm == "llama_2" else "###")
        assert caption.max_txt_len == (320 if stage == "vl_stage2" else 512)
        assert caption.prompt_template == ("[INST] <<SYS>>\\n \\n<</SYS>>\\n\\n{} [/INST] " if llm == "llama_2"
                                           else "###Human: {} ###Assistant: ")
        lines = [x for x in open(caption.prompts).read().splitlines() if "<ImageHere>" in x]
        assert len(lines) == 4
        assert r.datasets[1].image_path_prefix == "COCO_train2014_"


def test_7b_trainable_counts_match_official():
    from videollama.config import load_preset
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.objective import set_trainable

    with torch.device("meta"):
        model = VideoLLaMA(load_preset("videollama2-7b-finetuned"))
    assert set_trainable(model, "vl") == 22_104_064
    assert set_trainable(model, "al") == 22_855_680


def test_cli_registered():
    from videollama.cli.main import SUBCOMMANDS, build_parser

    entry = SUBCOMMANDS["train"]
    assert (entry[0] if isinstance(entry, tuple) else entry) == "train"
    try:
        parser = build_parser("train")
    except TypeError:  # older main.py without lazy selection
        parser = build_parser()
    args = parser.parse_args(["train", "recipes/tiny.yaml", "optim.init_lr=1.0e-3", "--max-steps", "2"])
    assert args.overrides == ["optim.init_lr=1.0e-3"] and args.max_steps == 2 and args.resume == "auto"
