"""Mixture determinism / resume / sharding, the frozen-feature cache, and `videollama data-check`."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import yaml

from videollama.training.data import MixturePlan, build_training_data
from videollama.training.feature_cache import FeatureCache, build_feature_cache

from .conftest import recipe_for, spec_for


def _sig(batch):
    return (batch["step"], batch["dataset"], tuple(batch.get("indices", ())), batch["size"])


def test_mixture_weights_and_determinism():
    plan = MixturePlan(["a", "b", "c"], [50, 30, 7], [100, 24, 0], batch_size=4, seed=1)
    picks = Counter(plan.dataset_at(s) for s in range(5000))
    assert picks[2] == 0 and abs(picks[0] / 5000 - 100 / 124) < 0.03
    again = MixturePlan(["a", "b", "c"], [50, 30, 7], [100, 24, 0], batch_size=4, seed=1)
    assert [again.batch_at(s) for s in range(2100, 2110)] == [plan.batch_at(s) for s in range(2100, 2110)]
    other = MixturePlan(["a", "b", "c"], [50, 30, 7], [100, 24, 0], batch_size=4, seed=2)
    assert [other.batch_at(s) for s in range(20)] != [plan.batch_at(s) for s in range(20)]
    # each dataset's stream walks whole epochs: every index once per epoch
    d0 = [plan.batch_at(s)[1] for s in range(200) if plan.dataset_at(s) == 0]
    first_epoch = [i for items in d0 for i, e in items if e == 0]
    assert sorted(first_epoch) == list(range(50))


def test_distributed_sharding_is_disjoint():
    world = 3
    plans = [MixturePlan(["a", "b"], [20, 11], [1, 1], 2, seed=5, rank=r, world_size=world) for r in range(world)]
    for d, n in ((0, 20), (1, 11)):
        seen = [{plans[r].sample_at(d, p) for p in range(n // world)} for r in range(world)]
        assert all(not (seen[a] & seen[b]) for a in range(world) for b in range(a + 1, world))
        assert sum(len(s) for s in seen) == (n // world) * world
    # all ranks choose the same dataset at each step
    assert all(len({p.dataset_at(s) for p in plans}) == 1 for s in range(300))


def _padded_over_real(batches, lengths):
    """Tokens after padding each batch to its longest sample, over the samples' own tokens."""
    return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths[i] for b in batches for i in b)


def test_length_grouping_pads_less_and_keeps_epochs():
    n, bs = 1003, 8  # 1003 % 8 != 0: later epochs start inside a batch of the stream
    lengths = torch.randint(100, 500, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    plain = MixturePlan(["a"], [n], [1], bs, seed=3)
    grouped = MixturePlan(["a"], [n], [1], bs, seed=3, sample_lengths=[lengths])
    steps = range(3 * n // bs)
    for plan in (plain, grouped):
        items = [plan.batch_at(s)[1] for s in steps]
        for epoch in range(2):  # each epoch still visits every sample once
            assert sorted(i for b in items for i, e in b if e == epoch) == list(range(n))
    per_epoch = {}
    for name, plan in (("plain", plain), ("grouped", grouped)):
        batches = [[i for i, _ in plan.batch_at(s)[1]] for s in steps]
        per_epoch[name] = [_padded_over_real(batches[k * (n // bs) + 1:(k + 1) * (n // bs) - 1], lengths)
                           for k in range(3)]
    assert all(r > 1.25 for r in per_epoch["plain"])
    assert all(r < 1.05 for r in per_epoch["grouped"]), per_epoch  # also in epochs that start mid-batch
    # seeded and not sorted over the whole epoch: consecutive batches are not in length order
    again = MixturePlan(["a"], [n], [1], bs, seed=3, sample_lengths=[lengths])
    assert [again.batch_at(s) for s in range(300)] == [grouped.batch_at(s) for s in range(300)]
    firsts = [lengths[grouped.batch_at(s)[1][0][0]] for s in range(50)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    with pytest.raises(ValueError, match="sample lengths"):
        MixturePlan(["a"], [n], [1], bs, seed=3, sample_lengths=[lengths[:-1]])


def test_length_grouping_from_the_recipe(data_root, tokenizer, model_config):
    spec = spec_for(data_root, "videochat_instruct")
    data = build_training_data(recipe_for([spec], batch_size=2, group_by_length=True), tokenizer, model_config)
    ds = data.datasets[spec.name]
    lengths = ds.text_lengths()
    assert len(lengths) == len(ds) and all(k > 0 for k in lengths)
    assert data.plan().sample_lengths == [lengths]
    assert build_training_data(recipe_for([spec], batch_size=2), tokenizer, model_config).plan().sample_lengths == [None]


def test_iterator_resume_and_workers(data_root, tokenizer, model_config):
    specs = [spec_for(data_root, "cc_sbu_align", sample_ratio=2), spec_for(data_root, "jsonl", sample_ratio=1)]
    data = build_training_data(recipe_for(specs, batch_size=2), tokenizer, model_config)
    it = data.batches(num_steps=6)
    full = list(it)
    assert [b["step"] for b in full] == list(range(6)) and it.state_dict()["step"] == 6
    it2 = data.batches(num_steps=3)
    part = list(it2)
    state = json.loads(json.dumps(it2.state_dict()))  # JSON-serialisable
    it3 = data.batches(num_steps=3)
    it3.load_state_dict(state)
    rest = list(it3)
    assert [_sig(b) for b in part + rest] == [_sig(b) for b in full]
    for a, b in zip(part + rest, full):
        if a["size"]:
            assert torch.equal(a["pixel_values"], b["pixel_values"])
    with_workers = list(data.batches(start_step=2, num_steps=3, num_workers=1))
    assert [_sig(b) for b in with_workers] == [_sig(b) for b in full[2:5]]
    assert torch.equal(with_workers[-1]["pixel_values"], full[4]["pixel_values"])
    assert sum(len(b["skipped"]) for b in full) > 0  # skips travel back in the batch
    assert data.skips.total() > 0


@pytest.fixture(scope="module")
def tiny_vl(tiny_model):
    from videollama.model.videollama import VideoLLaMA

    return VideoLLaMA.from_pretrained(tiny_model, dtype=torch.float32)


@pytest.mark.parametrize("branch", ["vl", "al"])
def test_feature_cache_loss_matches_uncached(branch, data_root, tokenizer, model_config, tiny_vl, tmp_path):
    from videollama.training.objective import batch_loss, media_embeddings

    torch.manual_seed(0)
    specs = [spec_for(data_root, "webvid", n_frames=4), spec_for(data_root, "videochat_instruct", n_frames=4),
             spec_for(data_root, "cc_sbu_align")]
    if branch == "al":
        specs = specs[1:]
    recipe = recipe_for(specs, branch=branch)
    results = {}
    for dtype in ("float32", "float16"):
        out = tmp_path / dtype
        stats = build_feature_cache(recipe, tiny_vl, out, dtype=dtype)
        assert stats[specs[0].name]["cached"] >= 3 and stats[specs[0].name]["failed"] >= 1
        cache = FeatureCache(out)
        plain = build_training_data(recipe, tokenizer, model_config, feature_cache=False, augment=False)
        cached = build_training_data(recipe, tokenizer, model_config, feature_cache=cache, augment=False)
        diffs = []
        for name in plain.datasets:
            idx = [0, 1]
            b0 = plain.collate([plain.datasets[name].load(i, epoch=0) for i in idx])
            b1 = cached.collate([cached.datasets[name].load(i, epoch=0) for i in idx])
            key = "frame_features" if branch == "vl" else "imagebind_embeds"
            assert key in b1 and "pixel_values" not in b1 and "pixel_values" in b0
            for k in ("text_ids", "input_ids", "labels"):
                if k in b0:
                    assert torch.equal(b0[k], b1[k])
            with torch.no_grad():
                l0 = batch_loss(tiny_vl, b0, branch, plain.token_ids)
                l1 = batch_loss(tiny_vl, b1, branch, cached.token_ids)
                # the tiny LLM's loss barely depends on the media, so also compare the media embeddings
                e0 = media_embeddings(tiny_vl, b0, branch)
                e1 = media_embeddings(tiny_vl, b1, branch)
                px = b0["pixel_values"]
                f0 = (tiny_vl.frame_features(px) if branch == "vl"
                      else tiny_vl.imagebind_frame_embeddings(px.permute(0, 2, 1, 3, 4)))
            diffs.append((abs(float(l0) - float(l1)), float((e0 - e1).abs().max() / e0.abs().max()),
                          float((f0 - b1[key]).abs().max() / f0.abs().max())))
        results[dtype] = tuple(max(d[k] for d in diffs) for k in (0, 1, 2))
    print(f"\n[{branch}] max |loss diff| / max rel. media-embedding diff: float32 {results['float32'][0]:.2e} / "
          f"{results['float32'][1]:.2e}, float16 {results['float16'][0]:.2e} / {results['float16'][1]:.2e}; "
          f"rel. feature diff float32 {results['float32'][2]:.2e}, float16 {results['float16'][2]:.2e}")
    assert results["float32"][0] < 1e-4 and results["float32"][1] < 1e-4
    assert results["float16"][0] < 1e-2 and results["float16"][1] < 2e-2
    assert results["float32"][2] < 1e-5 and 0 < results["float16"][2] < 2e-3  # fp16 storage rounding


def test_cache_miss_falls_back_to_pixels(data_root, tokenizer, model_config, tiny_vl, tmp_path):
    spec = spec_for(data_root, "cc_sbu_align")
    recipe = recipe_for([spec])
    build_feature_cache(recipe, tiny_vl, tmp_path / "c")
    cache = FeatureCache(tmp_path / "c")
    key = next(k for k in cache.entries if k.endswith("img1.jpg"))
    del cache.entries[key]
    data = build_training_data(recipe, tokenizer, model_config, feature_cache=cache)
    ds = data.datasets["cc_sbu_align"]
    assert "frame_features" in ds[0] and "pixel_values" in ds[1]
    batch = data.collate([ds[0], ds[1]])  # mixed hits/misses: the whole batch uses pixels
    assert batch["pixel_values"].shape == (2, 3, 1, 224, 224) and "frame_features" not in batch


def _write_recipe(path, specs):
    data = {"name": "check", "model": "unused", "branch": "vl",
            "datasets": [{k: v for k, v in s.__dict__.items()} for s in specs]}
    path.write_text(yaml.safe_dump(data))
    return path


def test_data_check(data_root, tmp_path, capsys):
    from videollama.cli.main import main

    fmts = ["webvid", "cc_sbu_align", "llava_instruct", "videochat_instruct", "jsonl", "webdataset"]
    recipe = _write_recipe(tmp_path / "r.yaml", [spec_for(data_root, f) for f in fmts])
    assert main(["data-check", str(recipe)]) == 1
    out = capsys.readouterr().out
    for kind in ("missing", "corrupt", "too_short", "empty_caption", "missing_field", "not_alternating", "bad_json"):
        assert f": {kind}: " in out, kind
    assert "part0.csv:6: webvid: missing:" in out  # file:line of the CSV row
    assert "train.jsonl:4: jsonl: bad_json:" in out
    assert "train.jsonl:6: jsonl: bad_value:" in out
    assert "shard-000001.tar:s3: webdataset: corrupt:" in out
    assert main(["data-check", "--quick", str(recipe)]) == 1
    out = capsys.readouterr().out
    assert ": corrupt: " not in out and ": missing: " in out
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"media": "media/b.png", "caption": "fine"}) + "\n")
    clean = _write_recipe(tmp_path / "ok.yaml", [spec_for(data_root, "jsonl", annotations=str(good))])
    assert main(["data-check", str(clean)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
