"""Readers, official per-sample text construction, skip-and-count of broken samples."""

from __future__ import annotations

import torch

from videollama.text import blip_caption, build_instruct_sample, llava_instruct_turns, video_instruct_turns
from videollama.training.data import build_training_data, read_records
from videollama.training.data.transforms import random_resized_crop_params

from .conftest import recipe_for, spec_for


def test_readers_every_format(data_root):
    expect = {"webvid": (7, {"empty_caption"}), "cc_sbu_align": (5, {"missing_field"}),
              "llava_instruct": (5, {"not_alternating"}), "videochat_instruct": (5, {"missing_field"}),
              "jsonl": (4, {"bad_json", "missing_field"}), "webdataset": (4, {"missing_field"})}
    for fmt, (n, reasons) in expect.items():
        records, issues = read_records(spec_for(data_root, fmt))
        assert len(records) == n, (fmt, records)
        assert {i.reason for i in issues} == reasons, (fmt, issues)
        assert all(":" in i.source for i in issues)
    records, issues = read_records(spec_for(data_root, "llava_instruct"))
    assert records[0].media.endswith("COCO_train2014_000000000000.jpg") and records[0].kind == "image"
    assert issues[0].source.endswith(":96")  # file:line where the offending (6th) record starts
    wv, _ = read_records(spec_for(data_root, "webvid"))
    assert wv[0].media.endswith("000001_000050/100.mp4") and wv[0].source.endswith("part0.csv:2")
    jl, issues = read_records(spec_for(data_root, "jsonl"))
    assert [r.kind for r in jl] == ["image", "image", "image", "video"]
    assert sorted(i.source.rsplit(":", 1)[1] for i in issues) == ["4", "5"]
    wd, _ = read_records(spec_for(data_root, "webdataset"))
    assert [r.member for r in wd] == ["s0.jpg", "s1.jpg", "s2.jpg", "s3.jpg"]


def _data(data_root, tokenizer, model_config, fmts, **kw):
    specs = [spec_for(data_root, f) for f in fmts]
    return build_training_data(recipe_for(specs, **kw), tokenizer, model_config)


def test_caption_samples(data_root, tokenizer, model_config):
    data = _data(data_root, tokenizer, model_config, ["webvid", "cc_sbu_align"])
    wv = data.datasets["webvid"]
    s = wv[0]
    assert s["task"] == "caption" and s["pixel_values"].shape == (3, 8, 224, 224)
    assert s["caption"] == blip_caption("A Dog (running) in the PARK #0!") == "a dog running in the park 0"
    cc = data.datasets["cc_sbu_align"][1]
    assert cc["caption"] == "A Raw Caption. Number 1!" and cc["pixel_values"].shape == (3, 1, 224, 224)
    # reproducible per (seed, epoch, index); a different epoch re-draws frames / crop
    assert torch.equal(wv.load(0, epoch=3)["pixel_values"], wv.load(0, epoch=3)["pixel_values"])
    assert not torch.equal(wv.load(0, epoch=3)["pixel_values"], wv.load(0, epoch=4)["pixel_values"])
    batch = data.collate([wv[0], None, wv[1]])
    assert batch["task"] == "caption" and batch["pixel_values"].shape == (2, 3, 8, 224, 224)
    assert batch["text_ids"].shape == batch["text_mask"].shape and batch["size"] == 2
    assert tokenizer.decode(batch["text_ids"][0][batch["text_mask"][0].bool()].tolist()).startswith("a dog")


def test_caption_prompts(data_root, tokenizer, model_config):
    spec = spec_for(data_root, "cc_sbu_align", prompts=str(data_root / "cc_sbu/prompts.txt"),
                    prompt_template="###Human: {} ###Assistant: ", end_sym="###", max_txt_len=320)
    data = build_training_data(recipe_for([spec], template="vicuna"), tokenizer, model_config)
    ds = data.datasets["cc_sbu_align"]
    batch = data.collate([ds[0], ds[1]])
    before, after = batch["prompt_ids"]
    assert len(data.prompts["cc_sbu_align"]) == 2
    assert tokenizer.decode(before) .startswith("###Human: <Image>")
    assert "###Assistant:" in tokenizer.decode(after)


def test_llava_text_is_official(data_root, tokenizer, model_config):
    for template in ("llama_2", "vicuna"):
        data = _data(data_root, tokenizer, model_config, ["llava_instruct"], template=template)
        s = data.datasets["llava_instruct"][0]
        turns = [{"from": "human", "value": "<image>\nWhat is in the picture?"},
                 {"from": "gpt", "value": "A boat on the water."}, {"from": "human", "value": "Which colour?"},
                 {"from": "gpt", "value": "Red."}]
        ref = build_instruct_sample(llava_instruct_turns(turns, 32), tokenizer, template)
        assert s["input_ids"] == ref.input_ids and s["labels"] == ref.labels
        assert s["input_ids"].count(tokenizer.image_token_id) == 32
        batch = data.collate([s, data.datasets["llava_instruct"][1]])
        assert set(batch) >= {"input_ids", "labels", "attention_mask", "pixel_values"}
        assert batch["task"] == "instruct" and batch["pixel_values"].shape == (2, 3, 1, 224, 224)


def test_videochat_text_is_official(data_root, tokenizer, model_config):
    from videollama.media import load_video

    data = _data(data_root, tokenizer, model_config, ["videochat_instruct"], branch="al")
    s = data.datasets["videochat_instruct"][1]
    clip = load_video(data_root / "videochat/videos/v1.mp4", 8, "uniform")
    assert clip.message == "The video contains 8 frames sampled at 0.0, 0.1, 0.3, 0.4, 0.6, 0.7, 0.9, 1.0 seconds. "
    qa = [{"q": "What happens?", "a": "A square moves."}, {"q": "Which way?", "a": "Left to right."}]
    ref = build_instruct_sample(video_instruct_turns(qa, clip.message, 8), tokenizer, "llama_2")
    assert s["input_ids"] == ref.input_ids and s["labels"] == ref.labels
    assert s["pixel_values"].shape == (3, 8, 224, 224)


def test_generic_and_webdataset(data_root, tokenizer, model_config):
    data = _data(data_root, tokenizer, model_config, ["jsonl", "webdataset"])
    jl, wd = data.datasets["jsonl"], data.datasets["webdataset"]
    assert jl.task == wd.task == "caption"
    assert jl[0]["caption"] == "an image" and jl[1]["pixel_values"].shape == (3, 1, 224, 224)
    assert len(jl) == 3 and data.skips.as_dict()["jsonl"]["bad_value"] == 1  # the video in an image dataset
    assert wd[0]["caption"] == "a tar image" and wd[1]["pixel_values"].shape == (3, 1, 224, 224)
    wv = spec_for(data_root, "webdataset", name="wv", annotations=str(data_root / "wds_video"))
    d3 = build_training_data(recipe_for([wv], template="vicuna"), tokenizer, model_config).datasets["wv"]
    s = d3[0]
    assert d3.task == "instruct" and s["pixel_values"].shape == (3, 8, 224, 224)
    assert s["input_ids"].count(tokenizer.image_token_id) == 32
    conv = spec_for(data_root, "jsonl", name="conv", annotations=str(data_root / "jsonl/conv/train.jsonl"))
    d2 = build_training_data(recipe_for([conv]), tokenizer, model_config).datasets["conv"]
    assert d2.task == "instruct"
    assert len(d2) == 1 and d2[0]["input_ids"].count(tokenizer.image_token_id) == 32


def test_broken_samples_skipped_and_counted(data_root, tokenizer, model_config):
    fmts = ["webvid", "cc_sbu_align", "llava_instruct", "videochat_instruct", "jsonl", "webdataset"]
    data = _data(data_root, tokenizer, model_config, fmts)
    for name, ds in data.datasets.items():
        out = [ds.load(i) for i in range(len(ds))]
        assert sum(isinstance(o, dict) for o in out) >= 2, name
    c = data.skips.as_dict()
    assert c["webvid"] == {"missing_media": 1, "corrupt_media": 1, "too_short": 1, "empty_caption": 1}
    assert c["cc_sbu_align"] == {"missing_media": 1, "corrupt_media": 1, "missing_field": 1}
    assert c["llava_instruct"] == {"missing_media": 1, "corrupt_media": 1, "not_alternating": 1}
    assert c["videochat_instruct"] == {"missing_media": 1, "corrupt_media": 1, "missing_field": 1}
    assert c["jsonl"] == {"missing_media": 1, "bad_json": 1, "missing_field": 1, "bad_value": 1}
    assert c["webdataset"] == {"corrupt_media": 1, "missing_field": 1}
    wv = data.datasets["webvid"]
    assert wv[4] is None  # the missing video: None, never a random substitute
    batch = data.collate([wv.load(4), wv.load(0)])
    assert batch["size"] == 1 and batch["skipped"][0]["reason"] == "missing_media"


def test_truncated_instruct_is_skipped(data_root, tokenizer, model_config):
    data = _data(data_root, tokenizer, model_config, ["llava_instruct"], instruct_max_len=20)
    assert data.datasets["llava_instruct"][0] is None
    assert data.skips.as_dict()["llava_instruct"]["truncated"] == 1


def test_crop_params_match_torchvision_algorithm():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        i, j, h, w = random_resized_crop_params(224, 224, g)
        assert 0 < h <= 224 and 0 < w <= 224 and i + h <= 224 and j + w <= 224
        assert 0.5 * 224 * 224 * 0.9 <= h * w <= 224 * 224 and 0.7 <= w / h <= 1.4
    # impossible boxes fall back to the centre crop (torchvision's 10-attempt rule)
    assert random_resized_crop_params(10, 1000, g) == (0, (1000 - 13) // 2, 10, 13)


def test_instruct_texts_are_tokenised_once_and_served_unchanged(data_root, tokenizer, model_config, monkeypatch):
    import videollama.training.data.dataset as dataset_module

    calls = []
    build = dataset_module.build_instruct_sample
    monkeypatch.setattr(dataset_module, "build_instruct_sample", lambda *a, **k: calls.append(1) or build(*a, **k))
    data = _data(data_root, tokenizer, model_config, ["llava_instruct", "videochat_instruct"], branch="al")
    firsts = {}
    for name, ds in data.datasets.items():
        for i in range(len(ds)):
            firsts[name, i] = ds[i]
    built = len(calls)
    assert built == sum(s is not None for s in firsts.values())
    for (name, i), first in firsts.items():
        again = data.datasets[name].load(i, epoch=3)
        if first is None:
            continue
        again["input_ids"].append(-1)  # a caller that edits its sample must not reach the memo
        again = data.datasets[name].load(i, epoch=5)
        assert again["input_ids"] == first["input_ids"] and again["labels"] == first["labels"]
    assert len(calls) == built  # later passes read the memo


def test_text_memo_is_bounded_by_tokens():
    from videollama.training.data.dataset import TextMemo

    memo = TextMemo(max_tokens=10)
    for k in range(4):
        memo.put(k, {"input_ids": [k] * 4, "labels": [-100] * 4})
    assert len(memo) == 2 and memo.tokens == 8 and memo.get(0) is None
    assert memo.get(2) == {"input_ids": [2] * 4, "labels": [-100] * 4}
    memo.put(9, {"input_ids": [9] * 4, "labels": [9] * 4})  # evicts 3, the least recently used
    assert memo.get(3) is None and memo.get(2) is not None and memo.get(9) is not None
    memo.put("long", {"input_ids": [1] * 11, "labels": [1] * 11})  # longer than the whole bound: not kept
    assert memo.get("long") is None and memo.tokens == 8
