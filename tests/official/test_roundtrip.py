"""convert -> from_pretrained -> save_pretrained -> from_pretrained gives identical outputs; export round-trips."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import official_fixture_sets
from tests.official.manifest_config import config_from_manifest
from videollama.checkpoint.convert import convert_official, export_official
from videollama.model.videollama import VideoLLaMA

SETS = official_fixture_sets()
pytestmark = pytest.mark.skipif(not SETS, reason="no official fixture sets found")
SOURCES = {"eva": "eva_vit_g.pth", "blip2": "blip2_pretrained_flant5xxl.pth", "imagebind": "imagebind_huge.pth",
           "vl": "vl_ckpt.pth", "al": "al_ckpt.pth"}


@torch.no_grad()
def _outputs(model: VideoLLaMA, cfg) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    s = cfg.vision.image_size
    video = torch.randn(1, 3, 4, s, s, generator=g)
    audio = torch.randn(1, 2, 1, cfg.audio_encoder.num_mel_bins, cfg.audio_encoder.target_length, generator=g)
    v = model.encode_video(video).llm_embeds
    a = model.encode_audio(audio).llm_embeds
    ids = torch.tensor([[1, 5, 6, 7]])
    ctx = model.context_embeds([ids, ids[:, 1:], ids[:, 2:]], [a, v])
    return {"video": v, "audio": a, "logits": model.llm(inputs_embeds=ctx).logits}


@pytest.mark.parametrize("root", SETS, ids=[p.name for p in SETS])
def test_convert_save_load_and_export_round_trip(root, tmp_path) -> None:
    cfg = config_from_manifest(json.loads((root / "manifest.json").read_text()))
    first = VideoLLaMA.from_pretrained(
        convert_official(tmp_path / "a", cfg, {k: root / v for k, v in SOURCES.items()}, root / "llama"))
    want = _outputs(first, cfg)

    first.save_pretrained(tmp_path / "b")
    second = VideoLLaMA.from_pretrained(tmp_path / "b")
    for name, value in _outputs(second, cfg).items():
        assert torch.equal(value, want[name]), name
    assert (tmp_path / "b" / "llm" / "tokenizer.model").exists()

    # Export the trainable parts back to the official layout, then convert those files again.
    export_official(second, tmp_path / "vl.pth", "vl")
    export_official(second, tmp_path / "al.pth", "al")
    sources = {k: root / v for k, v in SOURCES.items()} | {"vl": tmp_path / "vl.pth", "al": tmp_path / "al.pth"}
    third = VideoLLaMA.from_pretrained(convert_official(tmp_path / "c", cfg, sources, root / "llama"))
    for name, value in _outputs(third, cfg).items():
        assert torch.equal(value, want[name]), name
    exported = torch.load(tmp_path / "vl.pth", weights_only=True)["model"]
    official = torch.load(root / "vl_ckpt.pth", weights_only=True)["model"]
    for key, value in exported.items():
        assert torch.equal(value, official[key]), key  # same names and values as the official file


def test_save_pretrained_is_atomic_and_overwrite_guarded(tmp_path) -> None:
    root = SETS[0]
    cfg = config_from_manifest(json.loads((root / "manifest.json").read_text()))
    folder = convert_official(tmp_path / "m", cfg, {k: root / v for k, v in SOURCES.items()}, root / "llama")
    from videollama.errors import CheckpointError

    with pytest.raises(CheckpointError, match="already exists"):
        convert_official(folder, cfg, {k: root / v for k, v in SOURCES.items()}, root / "llama")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left behind
