"""Pretraining of the world audio encoder on rendered sounds (world.audio_pretraining)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch

from tests.world_learning.conftest import pretrain_against_probe
from videollama.media.audio import load_audio
from videollama.world import vocab as V
from videollama.world.audio_pretraining import (
    SOUND_TYPES, TARGETS, AudioPretrainOptions, clip_labels, pretrain_audio, rendered_clips, scene_clips,
)
from videollama.world.generate import WorldOptions, make_scenes


def _labels(events, start, end) -> dict:
    present, targets = clip_labels(events, start, end)
    return {"present": [t for t, p in zip(SOUND_TYPES, present) if p], **dict(zip(TARGETS, targets.tolist()))}


def test_clip_labels_follow_the_events_inside_the_clip() -> None:
    tone = {"type": "tone", "pitch": "high", "timbre": "square", "start": 1.0, "end": 1.5}
    beeps = {"type": "beeps", "count": 3, "start": 2.0, "end": 2.49}  # beeps at 2.0, 2.2, 2.4 (0.09 s each)
    assert _labels([tone, beeps], 0.0, 0.98) == {"present": [], "pitch": 0, "timbre": 0, "beeps": 0, "word": 0,
                                                 "first": 0}
    got = _labels([tone, beeps], 0.5, 2.5)
    assert got["present"] == ["tone", "beeps"] and got["beeps"] == 3 and got["first"] == 1 + SOUND_TYPES.index("tone")
    assert (got["pitch"], got["timbre"]) == (1 + sorted(V.TONE_HZ).index("high"), 1 + sorted(V.TIMBRES).index("square"))
    got = _labels([tone, beeps], 1.48, 2.25)  # 0.02 s of the tone (too little), two beeps (the second in part)
    assert got["present"] == ["beeps"] and got["beeps"] == 2 and got["pitch"] == 0
    assert got["first"] == 1 + SOUND_TYPES.index("beeps")
    word = {"type": "speech", "word": V.WORDS[2], "start": 0.2, "end": 0.9}
    assert _labels([word], 0.0, 2.0)["word"] == 3


def test_scene_clips_are_the_inference_loaders_clips(tmp_path) -> None:
    """Rendered clips equal what `load_audio` makes of the world's mp4 (up to the AAC round trip)."""
    from videollama.world.generate import generate_world

    out = generate_world(tmp_path / "w", WorldOptions(n=4, seed=5, max_seconds=4.0))["manifest"]
    scenes = make_scenes(WorldOptions(n=4, seed=5, max_seconds=4.0))
    assert out
    for scene in scenes:
        clips, present, targets = scene_clips(scene, {})
        decoded = load_audio(tmp_path / "w" / "videos" / scene["video"]).tensor[0]
        assert clips.shape == decoded.shape == (V.N_SLOTS, 1, 128, 204)
        assert present.shape == (V.N_SLOTS, len(SOUND_TYPES)) and targets.shape == (V.N_SLOTS, len(TARGETS))
        assert (present.sum() > 0) == bool(scene["audio_events"])
        # AAC is lossy: the fbank features agree closely, not exactly
        assert torch.corrcoef(torch.stack([clips.flatten(), decoded.flatten()]))[0, 1] > 0.9


def test_rendered_stream_is_seeded() -> None:
    a = list(itertools.islice(rendered_clips(0, scenes_per_block=4), 40))  # crosses a block boundary
    b = list(itertools.islice(rendered_clips(0, scenes_per_block=4), 40))
    c = list(itertools.islice(rendered_clips(1, scenes_per_block=4), 5))
    assert all(torch.equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and np.array_equal(x[2], y[2]) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    assert a[0][0].shape == (1, 128, 204)
    assert sum(x[1].sum() > 0 for x in a) > 5 and sum(x[1].sum() == 0 for x in a) > 2  # sounds and silences


def test_pretraining_trains_only_the_audio_encoder_and_beats_a_probe_of_the_random_one(world_model) -> None:
    opts = AudioPretrainOptions(steps=60, batch_size=32, lr=3e-3, warmup_steps=5, scenes_per_block=16)
    base, info, model = pretrain_against_probe(world_model, pretrain_audio, opts,
                                               dataclasses.replace(opts, train_encoder=False), {"audio_encoder"},
                                               eval_clips=128)
    assert not any(p.requires_grad for p in model.audio_encoder.parameters()) and not model.audio_encoder.training
    assert info["loss_last"] < base["loss_last"]
    acc, base_acc = info["accuracy"], base["accuracy"]
    # tiny model, 60 steps (figures in docs/world.md, "Session 5"): the probe stays at "no tone" for every clip
    assert acc["pitch"] > base_acc["pitch"] + 20 and acc["timbre"] > base_acc["timbre"] + 20, (base, info)
    assert acc["first"] > base_acc["first"] + 10, (base, info)
