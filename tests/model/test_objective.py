"""Official freezing and the training loss through the feature-cache entry points."""

from __future__ import annotations

import torch

from videollama.config import load_preset
from videollama.model.videollama import VideoLLaMA
from videollama.training.objective import TokenIds, batch_loss, set_trainable


def test_trainable_counts_equal_official_for_7b_and_13b() -> None:
    # SPEC §1.2: VL 22,104,064 (7B) / 22,891,520 (13B); AL 22,855,680 / 23,643,136.
    want = {"videollama2-7b-finetuned": (22_104_064, 22_855_680), "videollama2-13b-finetuned": (22_891_520, 23_643_136)}
    for preset, (vl, al) in want.items():
        with torch.device("meta"):
            model = VideoLLaMA(load_preset(preset))
        assert set_trainable(model, "vl") == vl
        assert set_trainable(model, "al") == al
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == al


def test_cached_features_give_the_same_loss() -> None:
    torch.manual_seed(0)
    model = VideoLLaMA(load_preset("tiny")).eval()
    s = model.config.vision.image_size
    video = torch.randn(2, 3, 3, s, s)
    batch = {"task": "caption", "pixel_values": video, "text_ids": torch.tensor([[5, 6, 7], [8, 9, 0]]),
             "text_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
    ids = TokenIds(bos=1, pad=0, media=512)
    for branch, key, fn in (("vl", "frame_features", lambda: model.frame_features(video)),
                            ("al", "imagebind_embeds", lambda: model.imagebind_frame_embeddings(video.permute(0, 2, 1, 3, 4)))):
        with torch.no_grad():
            direct = batch_loss(model, batch, branch, ids)
            cached = batch_loss(model, {**batch, key: fn(), "pixel_values": None}, branch, ids)
        assert torch.allclose(direct, cached, atol=1e-6), branch


def test_audio_visual_branch_splices_audio_then_video() -> None:
    torch.manual_seed(0)
    model = VideoLLaMA(load_preset("tiny")).eval()
    cfg = model.config
    s = cfg.vision.image_size
    video = torch.randn(1, 3, 2, s, s)
    audio = torch.randn(1, 3, 1, cfg.audio_encoder.num_mel_bins, cfg.audio_encoder.target_length)
    n_a, n_v = cfg.audio_qformer.num_query_tokens, cfg.video_qformer.num_query_tokens
    ids = [1, 5] + [600] * n_a + [6, 7] + [600] * n_v + [8, 9]
    batch = {"task": "instruct", "pixel_values": video, "audio_values": audio, "input_ids": torch.tensor([ids]),
             "labels": torch.tensor([[-100] * (len(ids) - 2) + [8, 9]]), "attention_mask": torch.ones(1, len(ids))}
    counts = {branch: set_trainable(model, branch) for branch in ("al", "vl", "av")}
    assert counts["av"] == counts["al"] + counts["vl"]
    with torch.no_grad():
        loss = batch_loss(model, batch, "av", TokenIds(bos=1, pad=0, media=600))
        a = model.encode_audio(audio).llm_embeds
        v = model.encode_video(video).llm_embeds
        embeds = model.instruct_inputs([a, v], batch["input_ids"], 600)
    assert torch.isfinite(loss)
    assert torch.equal(embeds[0, 2:2 + n_a], a[0]) and torch.equal(embeds[0, 4 + n_a:4 + n_a + n_v], v[0])
    import pytest

    with pytest.raises(ValueError, match=rf"expected {n_v} \+ {n_a} consecutive media placeholder tokens, found {n_a} \+ {n_v}"):
        model.instruct_inputs([v, a], batch["input_ids"], 600)
