"""Branch "av" in the data layer: real audio per video sample, the audio+video prompt, skip-and-count, the cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.world_learning.conftest import stage_recipe
from videollama.text import load_tokenizer
from videollama.text.templates import VIDEO_AUDIO_FIRST_TURN
from videollama.training.data import build_training_data
from videollama.training.data.dataset import audio_video_first_turn
from videollama.training.objective import batch_loss


def _data(recipe, model_dir, **kw):
    from videollama.checkpoint.folder import read_config

    cfg = read_config(Path(model_dir))
    return build_training_data(recipe, load_tokenizer(Path(model_dir) / "llm"), cfg, **kw)


def _runs(ids, media_id):
    pos = [i for i, t in enumerate(ids) if t == media_id]
    runs = []
    for k, p in enumerate(pos):
        if k and p == pos[k - 1] + 1:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


def test_first_turn_expansion():
    text = audio_video_first_turn(2, 3)
    assert text.count("<ImageHere>") == 5
    assert text.replace("<ImageHere>" * 2, "<ImageHere>", 1).replace("<ImageHere>" * 3, "<ImageHere>") == VIDEO_AUDIO_FIRST_TURN


def test_av_caption_and_instruct_samples(world_dir, world_model, tmp_path):
    for stage in (1, 2):
        data = _data(stage_recipe(stage, world_dir, world_model, tmp_path / "o"), world_model)
        ds = data.datasets["world"]
        s = ds.load(0)
        assert isinstance(s, dict), s
        assert s["audio_values"].shape == (8, 1, 128, 204)
        assert s["pixel_values"].shape[:2] == (3, 8)
        if stage == 2:
            assert _runs(s["input_ids"], data.token_ids.media) == [8, 32]
            text = data.tokenizer.decode(s["input_ids"]) if hasattr(data.tokenizer, "decode") else ""
            assert "Close your eyes" in text and "<</SYS>>" in text
        batch = data.collate([ds.load(0), ds.load(1)])
        assert batch["audio_values"].shape == (2, 8, 1, 128, 204)


def test_vl_path_unchanged(world_dir, world_model, tmp_path):
    r = stage_recipe(2, world_dir, world_model, tmp_path / "o")
    data = _data(dataclasses.replace(r, branch="vl"), world_model)
    s = data.datasets["world"].load(0)
    assert "audio_values" not in s and "audio_embeds" not in s
    assert _runs(s["input_ids"], data.token_ids.media) == [32]


def test_video_without_audio_is_skipped_and_counted(world_dir, world_model, tmp_path):
    from tests.training_data.conftest import make_video

    vid = make_video(tmp_path / "videos" / "silent.mp4", n_frames=12)
    ann = tmp_path / "vc.json"
    import json

    ann.write_text(json.dumps([{"video": "silent.mp4", "QA": [{"q": "What?", "a": "red"}]}]))
    r = stage_recipe(2, world_dir, world_model, tmp_path / "o")
    spec = dataclasses.replace(r.datasets[0], annotations=str(ann), media_root=str(vid.parent))
    data = _data(dataclasses.replace(r, datasets=(spec,)), world_model)
    s = data.datasets["world"].load(0)
    assert not s and s.reason == "no_audio"
    assert data.skips.as_dict()["world"]["no_audio"] == 1


def test_av_cache_matches_decoding(world_dir, world_model, tmp_path):
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.data.av_cache import build_av_feature_cache

    model = VideoLLaMA.from_pretrained(world_model).eval()
    r = stage_recipe(2, world_dir, world_model, tmp_path / "o")
    stats = build_av_feature_cache(r, model, tmp_path / "cache")
    assert stats["world"]["cached"] == 24 and stats["world"]["failed"] == 0
    plain = _data(r, world_model, augment=False)
    cached = _data(dataclasses.replace(r, feature_cache=str(tmp_path / "cache")), world_model)
    bp = plain.collate([plain.datasets["world"].load(i) for i in range(3)])
    bc = cached.collate([cached.datasets["world"].load(i) for i in range(3)])
    assert "frame_features" in bc and "audio_embeds" in bc and "pixel_values" not in bc
    assert torch.equal(bp["input_ids"], bc["input_ids"])
    with torch.no_grad():
        lp = batch_loss(model, bp, "av", plain.token_ids)
        lc = batch_loss(model, bc, "av", cached.token_ids)
    assert abs(lp.item() - lc.item()) < 1e-4


def test_av_cache_augmented_views(world_dir, world_model, tmp_path):
    """--views K: K train-transform views per video next to the eval one; training draws among them, eval does not."""
    from videollama.media.video import index_video, read_frames
    from videollama.media.sampling import uniform_indices
    from videollama.model.videollama import VideoLLaMA
    from videollama.training.data.av_cache import build_av_feature_cache, view_generator
    from videollama.training.data.transforms import video_train_transform
    from videollama.training.feature_cache import FeatureCache, view_key

    model = VideoLLaMA.from_pretrained(world_model).eval()
    r = stage_recipe(2, world_dir, world_model, tmp_path / "o")
    stats = build_av_feature_cache(r, model, tmp_path / "cache", views=2)
    assert stats["world"] == {"cached": 24, "skipped_existing": 0, "failed": 0}
    cache = FeatureCache(tmp_path / "cache")
    videos = [k for k in cache.entries if "#" not in k and "@" not in k]
    assert cache.views == 2 and len(videos) == 24 and len(cache.entries) == 24 * 4  # eval + audio + 2 views

    key = videos[0]
    stat = (cache.entries[key]["size"], cache.entries[key]["mtime"])
    base = cache.load(cache.lookup(key, stat))
    stored = [base] + [cache.load(cache.lookup(view_key(key, k), stat)) for k in (1, 2)]
    media = str(Path(r.datasets[0].media_root) / key.split("/", 1)[1])
    idx = index_video(media)
    px, _, _ = read_frames(media, uniform_indices(idx.vlen, r.datasets[0].n_frames), idx)
    with torch.no_grad():
        want = model.frame_features(video_train_transform(px, view_generator(key, 1)).unsqueeze(0))[0]
    assert torch.allclose(stored[1], want, atol=1e-5)
    assert not torch.allclose(stored[1], base, atol=1e-3) and not torch.allclose(stored[1], stored[2], atol=1e-3)

    # adding views later computes only the new ones
    assert build_av_feature_cache(r, model, tmp_path / "cache", views=2)["world"]["skipped_existing"] == 24
    build_av_feature_cache(r, model, tmp_path / "cache", views=3)
    assert FeatureCache(tmp_path / "cache").views == 3 and len(FeatureCache(tmp_path / "cache").entries) == 24 * 5
    assert torch.equal(FeatureCache(tmp_path / "cache").load(cache.lookup(view_key(key, 1), stat)), stored[1])

    def served(augment: bool) -> list[int]:
        data = _data(dataclasses.replace(r, feature_cache=str(tmp_path / "cache")), world_model, augment=augment)
        ds = data.datasets["world"]
        i = next(i for i, rec in enumerate(ds.records) if rec.media == media)
        now = FeatureCache(tmp_path / "cache")
        views = [base] + [now.load(now.lookup(view_key(key, k), stat)) for k in (1, 2, 3)]
        out = []
        for epoch in range(12):
            got = ds.load(i, epoch=epoch)["frame_features"]
            out.append(next(k for k, v in enumerate(views) if torch.equal(got, v)))
        return out

    assert set(served(False)) == {0}
    assert len(set(served(True))) >= 3  # 12 draws among 4 views


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_recipe_records_the_av_cache_dtype(dtype, world_dir, world_model, tmp_path) -> None:
    """world_learning's recipe overrides name the feature cache and record its storage dtype as the cache's index
    gives it (the shipped default model's provenance shows which cache trained it)."""
    from videollama.training.feature_cache import FeatureCacheWriter

    cache = tmp_path / "cache"
    FeatureCacheWriter(cache, "av", dtype=dtype).close()
    recipe = stage_recipe(2, world_dir, world_model, tmp_path / "out", cache=cache)
    assert recipe.feature_cache == str(cache) and recipe.feature_cache_dtype == dtype
