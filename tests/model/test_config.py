"""The config tree: presets load, JSON/YAML round-trip, bad configs get one-line errors."""

from __future__ import annotations

import pytest

from videollama.config import VideoLLaMAConfig, list_presets, load_preset
from videollama.errors import ConfigError


@pytest.mark.parametrize("name", list_presets())
def test_presets_round_trip(name, tmp_path) -> None:
    cfg = load_preset(name)
    cfg.to_json(tmp_path / "c.json")
    assert VideoLLaMAConfig.from_json(tmp_path / "c.json") == cfg
    cfg.to_yaml(tmp_path / "c.yaml")
    assert VideoLLaMAConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_release_presets_have_official_dims() -> None:
    assert {"videollama2-7b-finetuned", "videollama2-13b-finetuned", "videollama2-7b-pretrained",
            "videollama2-13b-pretrained", "videollama1-vicuna-7b", "videollama1-vicuna-13b", "tiny"} <= set(list_presets())
    c7 = load_preset("videollama2-7b-finetuned")
    assert (c7.vision.width, c7.vision.depth, c7.vision.heads, c7.vision.mlp_hidden) == (1408, 39, 16, 6144)
    assert (c7.image_qformer.layers, c7.image_qformer.cross_attention_freq, c7.image_qformer.num_query_tokens) == (12, 2, 32)
    assert (c7.video_qformer.layers, c7.video_qformer.encoder_width) == (2, 768)
    assert c7.audio_qformer is not None and c7.audio_qformer.num_query_tokens == 8
    assert c7.llm.hidden_size == 4096 and load_preset("videollama2-13b-finetuned").llm.hidden_size == 5120
    assert c7.template.name == "llama_2" and load_preset("videollama1-vicuna-7b").template.name == "vicuna"
    assert not load_preset("videollama1-vicuna-13b").has_audio


def test_unknown_key_names_the_nearest(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("vision:\n  widht: 64\n")
    with pytest.raises(ConfigError, match=r"unknown key 'widht'.*did you mean 'width'"):
        VideoLLaMAConfig.from_yaml(tmp_path / "c.yaml")


@pytest.mark.parametrize("text,message", [
    ("vision: [1, 2]\n", r"expected a mapping for VisionEncoderConfig"),
    ("vision:\n  width: wide\n", r"vision\.width: expected an integer"),
    ("standardize_media_features: 1\n", r"standardize_media_features: expected true or false, got 1"),
    ("template:\n  name: alpaca\n", r"'alpaca' is not one of"),
    ("vision: {width: 32}\n", r"image_qformer.encoder_width=1408 must equal vision.width=32"),
    ("audio_encoder: null\n", r"audio_encoder and audio_qformer must both be set"),
    ("video_qformer: {encoder_width: 768, attention_dropout: 1.0}\n", r"video_qformer.attention_dropout=1.0 must be in \[0, 1\)"),
    ("audio_qformer: {hidden_dropout: -0.1}\n", r"audio_qformer.hidden_dropout=-0.1 must be in \[0, 1\)"),
    ("vision: {width: 1\n", r"invalid YAML"),
])
def test_bad_config_one_line_error(tmp_path, text, message) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        VideoLLaMAConfig.from_yaml(tmp_path / "c.yaml")
    assert "\n" not in str(info.value)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope' \\(known: "):
        load_preset("nope")


def test_qformer_dropout_rates_reach_the_layers() -> None:
    from torch import nn

    from videollama.model.qformer import QFormer

    def rates(qformer):
        return ({m.attention_dropout for m in qformer.modules() if hasattr(m, "attention_dropout")},
                {m.p for m in qformer.modules() if isinstance(m, nn.Dropout)})

    cfg = load_preset("tiny")
    assert (cfg.video_qformer.attention_dropout, cfg.video_qformer.hidden_dropout) == (0.1, 0.1)  # BERT's, as official
    assert rates(QFormer(cfg.video_qformer)) == ({0.1}, {0.1})
    data = cfg.to_dict()
    data["video_qformer"].update(attention_dropout=0.0, hidden_dropout=0.2)
    assert rates(QFormer(VideoLLaMAConfig.from_dict(data).video_qformer)) == ({0.0}, {0.2})
