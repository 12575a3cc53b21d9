"""Q-Former token diagnostics: the shared-variance fraction and its report on a model's real videos."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from videollama.model.diagnostics import (
    motion_direction_probe, probe_accuracy, qformer_token_sharing, shared_token_fraction, video_qformer_reads,
)
from videollama.model.videollama import VideoLLaMA
from videollama.tiny import make_tiny_model

ASSETS = Path(__file__).resolve().parents[2] / "src" / "videollama" / "assets"


def test_shared_token_fraction_bounds() -> None:
    gen = torch.Generator().manual_seed(0)
    one = torch.randn(50, 1, 16, generator=gen)
    assert shared_token_fraction(one.expand(50, 32, 16)) == pytest.approx(1.0)
    # fixed differences between the queries are not diversity: only what varies with the input counts
    offsets = torch.randn(1, 32, 16, generator=gen) * 10
    assert shared_token_fraction(one.expand(50, 32, 16) + offsets) == pytest.approx(1.0)
    independent = torch.randn(400, 32, 16, generator=gen)
    assert shared_token_fraction(independent) == pytest.approx(1 / 32, abs=0.01)
    # a common part with the same variance as each token's own part: about half shared
    mixed = one.expand(50, 32, 16) + torch.randn(50, 32, 16, generator=gen)
    assert 0.4 < shared_token_fraction(mixed) < 0.6


def test_shared_token_fraction_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="V >= 2"):
        shared_token_fraction(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="V >= 2"):
        shared_token_fraction(torch.randn(4, 8))
    with pytest.raises(ValueError, match="do not vary"):
        shared_token_fraction(torch.ones(3, 4, 8))


def test_probe_accuracy_finds_linear_classes_and_not_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = [i % 4 for i in range(200)]
    centres = torch.randn(4, 16, generator=gen) * 3
    readable = centres[labels] + torch.randn(200, 16, generator=gen)
    assert probe_accuracy(readable, labels) > 95
    noise = torch.randn(200, 16, generator=gen)
    assert probe_accuracy(noise, labels) < 40  # chance 25
    # a class carried by 4 features of 32 is still found; (N, T, H) features are flattened
    hidden = torch.randn(200, 8, 4, generator=gen)
    hidden[:, 3] += torch.nn.functional.one_hot(torch.tensor(labels)).float() * 5
    assert probe_accuracy(hidden, labels) > 95


def test_probe_accuracy_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="as many labels as inputs"):
        probe_accuracy(torch.randn(10, 3), [0, 1] * 4)
    with pytest.raises(ValueError, match="at least 5"):
        probe_accuracy(torch.randn(4, 3), [0, 1, 0, 1])


def test_motion_direction_probe_reads_each_stage_of_the_video_path(tmp_path) -> None:
    """Labels that follow the video are read at every stage (the two videos differ); labels that do not are not."""
    model = VideoLLaMA.from_pretrained(make_tiny_model(tmp_path / "m", "tiny", seed=0)).eval()
    videos = [ASSETS / "example.mp4", ASSETS / "world_example.mp4"] * 5
    following = motion_direction_probe(model, videos, ["left", "right"] * 5)
    assert following == {"videos": 10, "frame_tokens": 100.0, "video_qformer": 100.0, "llm_embeds": 100.0}
    unrelated = motion_direction_probe(model, videos, ["up", "up", "down", "down"] * 2 + ["up", "down"])
    assert all(unrelated[k] <= 60 for k in ("frame_tokens", "video_qformer", "llm_embeds")), unrelated


def test_qformer_token_sharing_sees_collapsed_queries(tmp_path) -> None:
    model = VideoLLaMA.from_pretrained(make_tiny_model(tmp_path / "m", "tiny", seed=0)).eval()
    videos = [ASSETS / "example.mp4", ASSETS / "world_example.mp4"]
    with torch.no_grad():  # distinct queries, N(0, 1)
        model.video_qformer.query_tokens.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    distinct = qformer_token_sharing(model, videos)
    assert distinct["videos"] == 2
    assert 0 < distinct["image_qformer_per_frame"] <= 1
    assert distinct["video_qformer"] < 0.99
    with torch.no_grad():  # every query the same: the outputs are one token repeated
        queries = model.video_qformer.query_tokens
        queries.copy_(queries[:, :1].expand_as(queries))
    assert qformer_token_sharing(model, videos)["video_qformer"] == pytest.approx(1.0, abs=1e-6)


def test_video_qformer_reads_measures_where_the_queries_look(tmp_path) -> None:
    model = VideoLLaMA.from_pretrained(make_tiny_model(tmp_path / "m", "tiny", seed=0)).eval()
    videos = [ASSETS / "example.mp4", ASSETS / "world_example.mp4"]
    cfg = model.config.video_qformer
    reads = video_qformer_reads(model, videos)
    assert len(reads) == len(range(0, cfg.layers, cfg.cross_attention_freq))
    keys = 8 * model.config.image_qformer.num_query_tokens  # 8 frames of image Q-Former tokens
    for heads in reads:
        assert len(heads) == cfg.heads
        for head in heads:
            assert sum(head["frame_mass"]) == pytest.approx(1.0, abs=0.01) and len(head["frame_mass"]) == 8
            assert 0 <= head["entropy"] <= math.log(keys) + 1e-6
            assert 1 <= head["distinct_keys"] <= cfg.num_query_tokens
    with torch.no_grad():  # no query projection in the first cross-attention: uniform attention over every token
        attention = model.video_qformer.model.encoder.layer[0].crossattention.attention
        attention.query.weight.zero_()
        attention.query.bias.zero_()
    first = video_qformer_reads(model, videos)[0]
    for head in first:
        assert head["entropy"] == pytest.approx(math.log(keys), abs=1e-3)
        assert head["frame_mass"] == pytest.approx([1 / 8] * 8, abs=1e-3)
    with torch.no_grad():  # every query the same: one peak for all of them
        queries = model.video_qformer.query_tokens
        queries.copy_(queries[:, :1].expand_as(queries))
    assert all(head["distinct_keys"] == 1 for heads in video_qformer_reads(model, videos)[1:] for head in heads)
    assert model.video_qformer.model.config._attn_implementation == "sdpa"  # restored after reading the attention
    with pytest.raises(ValueError, match="at least one video"):
        video_qformer_reads(model, [])


def test_answer_attention_splits_the_answer_positions_attention(tmp_path) -> None:
    from videollama.inference.pipeline import VideoLLaMAPipeline
    from videollama.model.diagnostics import answer_attention

    pipe = VideoLLaMAPipeline.from_pretrained(make_tiny_model(tmp_path / "m", "tiny", seed=0))
    requests = [(ASSETS / "example.mp4", "What happens?"), (ASSETS / "world_example.mp4", "Which shape moves?")]
    layers = answer_attention(pipe, requests)
    llm_cfg = pipe.model.llm.config
    assert len(layers) == llm_cfg.num_hidden_layers
    n_video = pipe.model.config.video_qformer.num_query_tokens
    for heads in layers:
        assert len(heads) == llm_cfg.num_attention_heads
        for head in heads:
            assert sum(head["share"].values()) == pytest.approx(1.0, abs=3e-3)  # rounded to 3 places
            assert {"first", "video", "text"} <= set(head["share"])
            assert 0 <= head["video_entropy"] <= math.log(n_video) + 1e-3
            assert 1 / n_video - 1e-3 <= head["video_top"] <= 1
    # no query projection anywhere: every head attends uniformly to the whole prompt, so each span's share is its
    # length over the prompt's, and the video tokens get equal weights
    session = pipe.chat(requests[0][0])
    length = session.prompt_for(requests[0][1]).shape[1]
    spans = session.media_spans
    assert spans["video"][1] - spans["video"][0] == n_video
    with torch.no_grad():
        for layer in pipe.model.llm.model.layers:
            layer.self_attn.q_proj.weight.zero_()
    uniform = answer_attention(pipe, requests[:1])
    for heads in uniform:
        for head in heads:
            for name, (a, b) in spans.items():
                assert head["share"][name] == pytest.approx((b - a) / length, abs=1e-3)
            assert head["share"]["first"] == pytest.approx(1 / length, abs=1e-3)
            assert head["video_entropy"] == pytest.approx(math.log(n_video), abs=1e-3)
    assert pipe.model.llm.config._attn_implementation == "sdpa"  # restored after reading the attention
    with pytest.raises(ValueError, match="at least one"):
        answer_attention(pipe, [])
