"""Deterministic frozen encoders, trainable sizes and the adapters format (no SmolLM2 needed: a small LLM stands in)."""

from __future__ import annotations

import json

import pytest
import torch

from videollama.default_model import (
    FITTED_MODULES, FROZEN_MODULES, FROZEN_SHA256_SEED0, TRAINABLE_MODULES, _det_uniform, adapter_state, build_default_videollama,
    export_adapters, frozen_fingerprint, load_adapters, read_provenance, save_adapters, size_report, smol_config, trainable_parameters,
)
from videollama.errors import CheckpointError


def _small_llm(seed: int = 0):
    """A 2-layer Llama with SmolLM2's width/heads (so the smol preset's projections fit) and a small vocab."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = dict(smol_config().llm.hf_config)
    hf.update(num_hidden_layers=2, vocab_size=256, intermediate_size=128, tie_word_embeddings=True)
    hf.pop("model_type")
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**hf)).eval()


def _model(seed: int = 0):
    return build_default_videollama(seed, llm=_small_llm())


def test_frozen_encoders_are_regenerated_bit_exactly_from_the_seed() -> None:
    llm = _small_llm()
    state = torch.get_rng_state()
    a = build_default_videollama(0, llm=llm)
    assert torch.equal(state, torch.get_rng_state()), "building must not touch the global RNG"
    b = _model(0)
    for name in FROZEN_MODULES + FITTED_MODULES + TRAINABLE_MODULES:  # incl. the ViT's seeded init (pretrained later)
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    # the recorded fingerprint: if this fails, the frozen encoders differ on this machine/torch (adapters invalid)
    assert frozen_fingerprint(a) == FROZEN_SHA256_SEED0
    assert frozen_fingerprint(_model(1)) != FROZEN_SHA256_SEED0


def test_deterministic_uniform_has_the_right_statistics() -> None:
    x = _det_uniform((200_000,), 0.02, 0, "probe")
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 2e-4 and abs(float(x.std()) - 0.02) < 2e-4
    assert float(x.abs().max()) <= 0.02 * 3 ** 0.5
    assert torch.equal(x, _det_uniform((200_000,), 0.02, 0, "probe"))
    assert not torch.equal(x, _det_uniform((200_000,), 0.02, 0, "other"))


def test_norms_and_biases_follow_the_init_rules() -> None:
    m = _model(0)
    width, mlp = m.config.vision.width, m.config.vision.mlp_hidden
    assert torch.equal(m.vision.ln_vision.weight, torch.ones(width)) and torch.equal(m.vision.ln_vision.bias, torch.zeros(width))
    assert torch.equal(m.vision.encoder.blocks[0].attn.q_bias, torch.zeros(width))
    assert abs(float(m.video_proj.weight.detach().std()) - 0.13 / 16) < 3e-4  # token-embedding scale / sqrt(256)
    assert abs(float(m.vision.encoder.blocks[0].mlp.fc2.weight.detach().std()) - mlp ** -0.5) < 1e-3  # 1/sqrt(fan_in)
    assert abs(float(m.video_qformer.query_tokens.detach().std()) - 0.02) < 2e-3
    assert abs(float(m.frame_position_embedding.weight.detach().std()) - 0.5) < 0.03
    assert float(m.audio_encoder.log_logit_scale.exp()) == pytest.approx(20.0)  # buffers keep their constants


def test_trainable_parts_are_small() -> None:
    m = _model(0)
    report = size_report(m)
    assert report["trainable_params"] == sum(p.numel() for p in trainable_parameters(m).values())
    assert 3_000_000 < report["trainable_params"] < 6_000_000
    assert report["fitted_params"] == sum(t.numel() for m_ in FITTED_MODULES for t in getattr(m, m_).state_dict().values())
    assert report["shipped_fp32_bytes"] + 4 * report["lora_r8_qv_params"] < 50 * 2**20
    assert set(n.split(".")[0] for n in trainable_parameters(m)) == set(TRAINABLE_MODULES)


def _perturb(model, seed: int, vision: bool = False) -> None:
    """Move the trainable parameters (`vision`: the pretrained encoders too) off their seeded init."""
    g = torch.Generator().manual_seed(seed)
    encoders = (model.vision, model.image_qformer, model.audio_encoder)
    stack = [p for m in encoders for p in m.parameters()] if vision else []
    params = list(trainable_parameters(model).values()) + stack
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * 0.01)


def _add_lora(model) -> None:
    """LoRA r 8 on q/v with non-zero B (so the deltas matter)."""
    from peft import LoraConfig, get_peft_model

    model.llm = get_peft_model(model.llm, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)


def test_adapters_round_trip_with_lora(tmp_path) -> None:
    trained = _model(0)
    _perturb(trained, 1, vision=True)  # the ViT, image Q-Former and audio encoder are shipped too (pretrained)
    _add_lora(trained)
    folder = save_adapters(trained, tmp_path / "assets", recipe={"name": "probe"}, data_hash="abc")
    prov = read_provenance(folder)
    assert prov["lora"] == {"r": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]}
    assert prov["seed"] == 0 and prov["frozen_sha256"] == FROZEN_SHA256_SEED0 and prov["data_hash"] == "abc"
    keys = set(adapter_state(trained))
    assert sum(k.startswith("lora.") for k in keys) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert (folder / "adapters.safetensors").stat().st_size < 50 * 2**20

    fresh = _model(0)
    load_adapters(fresh, folder)
    want, got = adapter_state(trained), adapter_state(fresh)
    for k, v in got.items():
        assert torch.equal(v, want[k]), k
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        ref = trained.llm(input_ids=ids).logits
        out = fresh.llm(input_ids=ids).logits  # LoRA merged into q/v weights: no peft at inference
    assert torch.allclose(ref, out, atol=1e-5)
    qf = fresh.config.image_qformer
    media = torch.randn(1, 8, qf.num_query_tokens, qf.hidden)  # image Q-Former tokens of 8 frames
    with torch.no_grad():
        assert torch.equal(trained.video_from_frame_features(media).llm_embeds, fresh.video_from_frame_features(media).llm_embeds)
        frames = torch.randn(1, 3, 2, 224, 224)
        assert torch.equal(trained.frame_features(frames), fresh.frame_features(frames))
        assert not torch.equal(_model(0).frame_features(frames), fresh.frame_features(frames))
    prov = read_provenance(folder)
    assert prov["format_version"] == 4 and {"vision", "image_qformer", "audio_encoder"} <= set(prov["fitted_modules"])
    clips = torch.randn(2, 1, 128, 204)
    with torch.no_grad():
        assert torch.equal(trained.audio_encoder(clips), fresh.audio_encoder(clips))
    (folder / "provenance.json").write_text(json.dumps({**prov, "format_version": 3}))
    with pytest.raises(CheckpointError, match="retrain"):
        read_provenance(folder)


def test_adapters_checks(tmp_path) -> None:
    m = _model(0)
    folder = save_adapters(m, tmp_path / "a")
    with pytest.raises(CheckpointError, match="other frozen encoders"):
        load_adapters(_model(3), folder)
    prov = json.loads((folder / "provenance.json").read_text())
    (folder / "provenance.json").write_text(json.dumps({**prov, "adapters_sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="sha256"):
        load_adapters(_model(0), folder)
    (folder / "provenance.json").unlink()
    with pytest.raises(CheckpointError, match="without provenance.json"):
        read_provenance(folder)
    assert read_provenance(tmp_path / "empty") is None


def test_export_adapters_from_a_training_checkpoint(tmp_path) -> None:
    """What the training engineer runs: trainable.safetensors (VL stage with LoRA) -> shipped adapters."""
    from safetensors.torch import save_file

    trained = _model(0)
    _perturb(trained, 2)
    _add_lora(trained)
    vl = ("video_qformer", "frame_position_embedding", "video_proj")
    ckpt = {n: p.detach().clone() for n, p in trained.named_parameters() if n.split(".")[0] in vl or "lora_" in n}
    save_file(ckpt, tmp_path / "trainable.safetensors")
    spec = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    with pytest.raises(ValueError, match="fitted_from"):
        export_adapters(tmp_path / "trainable.safetensors", tmp_path / "assets", lora=spec, llm=_small_llm())
    # the stage's model folder holds the fitted standardiser statistics (buffers, absent from checkpoints)
    fitted = _model(0)
    hq, o = fitted.config.image_qformer.hidden, fitted.config.audio_encoder.out_dim
    fitted.media_standardizer.fit(torch.randn(50, hq) * 3 + 1, torch.randn(50, o) * 2 - 1)
    with torch.no_grad():  # as if pretrained (world.vision_pretraining, world.audio_pretraining)
        fitted.vision.encoder.patch_embed.proj.weight.mul_(1.5)
        fitted.image_qformer.query_tokens.add_(1.0)
        fitted.audio_encoder.stem.weight.mul_(1.5)
    trained.media_standardizer.load_state_dict(fitted.media_standardizer.state_dict())
    fitted.save_pretrained(tmp_path / "stage_model")
    out = export_adapters(tmp_path / "trainable.safetensors", tmp_path / "assets", lora=spec, llm=_small_llm(),
                          recipe="probe", data_hash="d", fitted_from=tmp_path / "stage_model")
    fresh = _model(0)
    load_adapters(fresh, out)
    std = fresh.media_standardizer.state_dict()
    assert all(torch.equal(v, fitted.media_standardizer.state_dict()[k]) for k, v in std.items())
    assert not torch.equal(std["video_std"], torch.ones_like(std["video_std"]))
    for name in ("vision", "image_qformer", "audio_encoder"):
        want = getattr(fitted, name).state_dict()
        assert all(torch.equal(v, want[k]) for k, v in getattr(fresh, name).state_dict().items()), name
    untouched = _model(0)
    for name in TRAINABLE_MODULES:
        want = (trained if name in vl else untouched)
        a, b = getattr(want, name).state_dict(), getattr(fresh, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.allclose(trained.llm(input_ids=ids).logits, fresh.llm(input_ids=ids).logits, atol=1e-5)
    bad = {"imagebind_vision.cls_token": torch.ones(1)}  # a frozen encoder: never shipped
    save_file(bad, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="not a trainable weight"):
        export_adapters(tmp_path / "bad.safetensors", tmp_path / "x", llm=_small_llm())
