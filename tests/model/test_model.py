"""The model on tiny presets: dtypes, other HF LLM families, save/load, splicing errors, quantised LLM loading."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from videollama.config import LLMConfig, load_preset
from videollama.errors import CheckpointError
from videollama.model.videollama import VideoLLaMA
from videollama.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "tiny", seed=0)


def _inputs(cfg):
    g = torch.Generator().manual_seed(1)
    s = cfg.vision.image_size
    video = torch.randn(2, 3, 4, s, s, generator=g)
    audio = torch.randn(2, 3, 1, cfg.audio_encoder.num_mel_bins, cfg.audio_encoder.target_length, generator=g)
    return video, audio


@torch.no_grad()
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precisions_track_fp32(tiny_dir, dtype) -> None:
    ref = VideoLLaMA.from_pretrained(tiny_dir, dtype="float32")
    half = VideoLLaMA.from_pretrained(tiny_dir, dtype=dtype)
    assert half.dtype == getattr(torch, dtype) and half.llm.dtype == getattr(torch, dtype)
    video, audio = _inputs(ref.config)
    for name in ("encode_video", "encode_audio"):
        x = video if name == "encode_video" else audio
        want = getattr(ref, name)(x).llm_embeds
        got = getattr(half, name)(x).llm_embeds
        assert got.dtype == getattr(torch, dtype)
        rel = (got.float() - want).norm() / want.norm()
        assert rel < 0.05, f"{name} {dtype}: relative error {rel:.3g}"


@torch.no_grad()
@pytest.mark.parametrize("family", ["mistral", "qwen2"])
def test_other_llm_families(tmp_path, family) -> None:
    """Any transformers causal LM can be the frozen LLM; splicing and persistence do not assume LLaMA."""
    base = load_preset("tiny")
    hf = {"model_type": family, "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256}
    cfg = base.replace(llm=LLMConfig(hf_config=hf))
    torch.manual_seed(0)
    model = VideoLLaMA(cfg).eval()
    assert model.llm.config.model_type == family
    video, audio = _inputs(cfg)
    v = model.encode_video(video[:1]).llm_embeds
    a = model.encode_audio(audio[:1]).llm_embeds
    ids = torch.tensor([[5, 6, 7]])
    ctx = model.context_embeds([ids, ids, ids], [a, v])
    assert ctx.shape == (1, 9 + 8 + 32, 48)
    logits = model.llm(inputs_embeds=ctx).logits
    model.save_pretrained(tmp_path / "m")
    again = VideoLLaMA.from_pretrained(tmp_path / "m")
    assert torch.equal(again.llm(inputs_embeds=again.context_embeds([ids, ids, ids], [a, v])).logits, logits)


@torch.no_grad()
def test_splicing_checks(tiny_dir) -> None:
    model = VideoLLaMA.from_pretrained(tiny_dir)
    media = torch.zeros(1, 4, model.config.llm.hidden_size)
    ok = model.instruct_inputs(media, torch.tensor([[1, 9, 9, 9, 9, 5]]), media_token_id=9)
    assert torch.equal(ok[0, 1:5], media[0])
    with pytest.raises(ValueError, match="expected 4 consecutive media placeholder tokens, found 3"):
        model.instruct_inputs(media, torch.tensor([[1, 9, 9, 9, 5, 5]]), media_token_id=9)
    with pytest.raises(ValueError, match="expected 4 consecutive"):
        model.instruct_inputs(media, torch.tensor([[9, 9, 5, 9, 9, 5]]), media_token_id=9)
    s = model.config.vision.image_size
    with pytest.raises(ValueError, match="exceed max_frame_pos"):
        model.encode_video(torch.zeros(1, 3, model.config.max_frame_pos + 1, s, s))
    with pytest.raises(ValueError, match="segments need"):
        model.context_embeds([torch.tensor([1])], [media])


def test_missing_llm_subfolder(tiny_dir, tmp_path) -> None:
    import shutil

    broken = tmp_path / "m"
    shutil.copytree(tiny_dir, broken)
    shutil.rmtree(broken / "llm")
    with pytest.raises(CheckpointError, match="missing the LLM subfolder"):
        VideoLLaMA.from_pretrained(broken)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="optional extra 'quant' not installed")
@pytest.mark.parametrize("mode", ["8bit", "4bit"])
@torch.no_grad()
def test_quantised_llm_loading(tmp_path, mode) -> None:
    import json

    base = load_preset("tiny")
    hf = dict(base.llm.hf_config, hidden_size=64, intermediate_size=128)  # bnb's CPU 4-bit kernel wants 64-multiples
    folder = make_tiny_model(tmp_path / "q", base.replace(llm=LLMConfig(hf_config=hf)), seed=0)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["llm"]["load_in"] = mode
    (folder / "config.json").write_text(json.dumps(cfg))
    model = VideoLLaMA.from_pretrained(folder)
    linear_types = {type(m).__name__ for m in model.llm.modules()}
    assert ("Linear8bitLt" if mode == "8bit" else "Linear4bit") in linear_types
    video, _ = _inputs(model.config)
    ctx = model.context_embeds([torch.tensor([1, 5]), torch.tensor([6])], [model.encode_video(video[:1]).llm_embeds])
    out = model.llm.generate(inputs_embeds=ctx.to(model.llm.dtype), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 3)
