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
