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


def test_lm_loss_heads_only_labelled_positions_same_loss(tiny_dir) -> None:
    """lm_loss runs the output head on the labelled positions only; the loss is the LLM's own (HF) loss, also
    through a peft wrapper, and gradients reach the inputs the same way."""
    from peft import LoraConfig, get_peft_model

    model = VideoLLaMA.from_pretrained(tiny_dir)
    g = torch.Generator().manual_seed(3)
    d = model.llm.config.hidden_size
    embeds = torch.randn(3, 12, d, generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[2, 9:] = 0
    labels = torch.randint(0, model.llm.config.vocab_size, (3, 12), generator=g)
    labels[:, :5] = -100
    labels[1, 7:] = -100
    for llm in (model.llm, get_peft_model(model.llm, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))):
        model.llm = llm
        ours_in = embeds.clone().requires_grad_(True)
        ours = model.lm_loss(ours_in, mask, labels)
        ours.backward()
        ref_in = embeds.clone().requires_grad_(True)
        ref = llm(inputs_embeds=ref_in, attention_mask=mask, labels=labels).loss
        ref.backward()
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
        assert torch.allclose(ours_in.grad, ref_in.grad, atol=1e-7, rtol=1e-5)


def test_media_standardizer_fits_round_trips_and_is_off_by_default(tmp_path) -> None:
    import dataclasses

    cfg = load_preset("tiny")
    assert not cfg.standardize_media_features and not hasattr(VideoLLaMA(cfg), "media_standardizer")
    model = VideoLLaMA(dataclasses.replace(cfg, standardize_media_features=True)).eval()
    g = torch.Generator().manual_seed(5)
    hq, o = cfg.image_qformer.hidden, cfg.audio_encoder.out_dim
    frames = 3.0 + 0.1 * torch.randn(6, 4, cfg.image_qformer.num_query_tokens, hq, generator=g)
    audio = -2.0 + 0.5 * torch.randn(6, 3, o, generator=g)
    model.media_standardizer.fit(frames, audio)
    z = model.media_standardizer.video(frames).reshape(-1, hq)
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0) - 1).abs().max() < 1e-4
    za = model.media_standardizer.audio(audio).reshape(-1, o)
    assert za.mean(0).abs().max() < 1e-4 and (za.std(0) - 1).abs().max() < 1e-4
    with torch.no_grad():
        ref = model.video_from_frame_features(frames[:2]).llm_embeds
        ref_a = model.audio_from_embeddings(audio[:2]).llm_embeds
    # the standardiser is applied before the trainable Q-Formers: same as feeding standardised features unscaled
    plain = VideoLLaMA(cfg).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("media_standardizer.")})
    with torch.no_grad():
        assert torch.allclose(plain.video_from_frame_features(model.media_standardizer.video(frames[:2])).llm_embeds, ref, atol=1e-6)
    folder = model.save_pretrained(tmp_path / "m")
    again = VideoLLaMA.from_pretrained(folder).eval()
    assert torch.equal(again.media_standardizer.video_std, model.media_standardizer.video_std)
    with torch.no_grad():
        assert torch.equal(again.audio_from_embeddings(audio[:2]).llm_embeds, ref_a)
