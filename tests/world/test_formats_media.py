"""Every annotation file loads with the project's readers and the eval task; media decode and show the events."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from videollama.media import load_audio, load_video, load_waveform_16k
from videollama.world import state_at_frame
from videollama.world import vocab as V

from .conftest import scenes_of


def _specs(world: Path):
    from videollama.training.recipe import DatasetSpec

    out = []
    for d in yaml.safe_load((world / "datasets.yaml").read_text())["datasets"]:
        d = {**d, "annotations": str(world / d["annotations"]), "media_root": str(world / d["media_root"])}
        out.append(DatasetSpec(**d))
    return out


def test_readers_and_build_training_data(world, tiny_model):
    from videollama.checkpoint.folder import read_config
    from videollama.text import load_tokenizer
    from videollama.training.data import build_training_data, read_records
    from videollama.training.recipe import OptimConfig, TrainRecipe

    specs = _specs(world)
    assert {s.format for s in specs} == {"webvid", "videochat_instruct", "llava_instruct", "cc_sbu_align", "jsonl"}
    for spec in specs:
        records, issues = read_records(spec)
        assert not issues and len(records) == 84, (spec.name, issues[:3])
        assert all(Path(r.media).is_file() for r in records), spec.name
    tok, cfg = load_tokenizer(tiny_model / "llm"), read_config(tiny_model)
    videos = tuple(s for s in specs if s.format in ("webvid", "videochat_instruct"))
    for branch, chosen in (("vl", tuple(specs)), ("al", videos)):  # the audio branch: the videos' AAC tracks
        recipe = TrainRecipe(name="w", model="unused", branch=branch, datasets=chosen, seed=0, num_workers=0,
                             optim=replace(OptimConfig(), batch_size=2))
        data = build_training_data(recipe, tok, cfg)
        for name, ds in data.datasets.items():
            sample = ds[0]
            assert isinstance(sample, dict), (branch, name, sample)
            batch = data.collate([sample, ds[1]])
            assert batch["size"] == 2 and not batch["skipped"], (branch, name)


def test_eval_world_task_loads_every_question_file(world):
    from videollama.evaluation.tasks.world import WorldTask

    for f in ["questions.jsonl", *(f"questions_{k}.jsonl" for k in ("static", "temporal", "audio", "audiovisual"))]:
        n = len((world / f).read_text().splitlines())
        loaded = WorldTask().load(world / f, None)
        assert len(loaded.items) == n > 0 and not loaded.missing, f
        assert all(Path(i.media).is_file() for i in loaded.items)


def _nearest(rgb) -> str:
    names = list(V.COLOURS) + ["background"]
    refs = np.array(list(V.COLOURS.values()) + [(24, 24, 24)], dtype=float)
    return names[int(np.argmin(((refs - np.asarray(rgb, float)) ** 2).sum(1)))]


def test_sampled_frames_show_the_timeline(world):
    checked = 0
    for sc in scenes_of(world):
        clip = load_video(world / "videos" / sc["video"])
        assert clip.indices == sc["slot_frames"] and clip.vlen == sc["n_frames"]
        sx, sy = 224 / sc["width"], 224 / sc["height"]
        for k, (idx, frame) in enumerate(zip(clip.indices, clip.frames)):
            objs = state_at_frame(sc, idx)
            for o in objs:
                x, y = int(o["centre"][0] * sx), int(o["centre"][1] * sy)
                patch = frame[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(-1, 3).mean(0)
                assert _nearest(patch) == o["colour"], (sc["id"], k, o)
                checked += 1
            bg = frame[1:4, 1:4].reshape(-1, 3).mean(0)  # corners stay background
            assert _nearest(bg) == "background", (sc["id"], k)
        # every visual change is visible: the sampled frame of its slot differs from the one before
        for ch in sc["visual_changes"]:
            before, after = state_at_frame(sc, sc["slot_frames"][ch["slot"] - 1]), state_at_frame(sc, ch["frame"])
            assert before != after
    assert checked > 100


def _dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 16000)[int(np.argmax(spec))])


def test_audio_clips_contain_the_sounds(world):
    n_events = 0
    for sc in scenes_of(world):
        path = world / "videos" / sc["video"]
        clips = load_audio(path)
        wave = load_waveform_16k(path)[0].numpy()
        assert clips.n_samples_16k == sc["audio_samples"]
        assert np.allclose([[float(a), float(b)] for a, b in clips.clip_times], sc["audio_clips"], atol=1e-5)
        fb = clips.tensor[0, :, 0].numpy()  # (8, 128 mel, 204 frames), normalised log-mel
        real = fb.std(axis=1) > 0  # frames padded up to 204 are constant across mel bins
        energy = np.array([fb[k][:, real[k]].max() for k in range(len(fb))])  # loudest log-mel value per clip
        quiet = [k for k, (a, b) in enumerate(sc["audio_clips"])
                 if all(e["end"] < a or e["start"] > b for e in sc["audio_events"])]
        if not sc["audio_events"]:
            assert np.abs(wave).max() < 0.01
            assert np.ptp(energy) < 1e-3  # all eight clips equally silent
            continue
        for e in sc["audio_events"]:
            inside = [k for k, (a, b) in enumerate(sc["audio_clips"]) if a <= e["start"] and e["end"] <= b]
            assert inside, (sc["id"], e)  # at least one of the 8 clips holds the whole sound
            if quiet:
                assert energy[inside].max() > energy[quiet].max() + 0.25, (sc["id"], e)  # >= 10x the mel energy
            s, t = int(e["start"] * 16000), int(e["end"] * 16000)
            seg = wave[s:t]
            assert np.sqrt(np.mean(seg ** 2)) > 0.1
            if e["type"] == "tone":
                hz = _dominant_hz(seg)
                assert abs(hz - V.TONE_HZ[e["pitch"]]) < 40, (sc["id"], e, hz)
            if e["type"] == "beeps":
                env = np.convolve(np.abs(seg), np.ones(80) / 80, mode="same") > 0.1
                onsets = int(np.sum(env[1:] & ~env[:-1]) + env[0])
                assert onsets == e["count"], (sc["id"], e, onsets)
                assert abs(_dominant_hz(seg) - V.BEEP_HZ) < 40
            n_events += 1
        # outside every sound, the track is silent
        mask = np.ones(len(wave), bool)
        for e in sc["audio_events"]:
            mask[max(int(e["start"] * 16000) - 1600, 0):int(e["end"] * 16000) + 1600] = False
        assert np.abs(wave[mask]).max() < 0.01, sc["id"]
    assert n_events > 40


def test_sidecar_and_annotations_agree(world):
    scenes = {sc["id"]: sc for sc in scenes_of(world)}
    qs = [json.loads(x) for x in (world / "questions.jsonl").read_text().splitlines()]
    for q in qs:
        sc = scenes[q["id"].rsplit("-", 1)[0]]
        assert q["media"] == f"videos/{sc['video']}"
        if q["type"] == "beeps":
            assert q["answer"] == str(next(e["count"] for e in sc["audio_events"] if e["type"] == "beeps"))
        if q["type"] == "direction":
            assert q["answer"] == sc["objects"][0]["motion"]["direction"]
        if q["type"] == "silence":
            assert (q["answer"] == "no") == (not sc["audio_events"])
    vc = json.loads((world / "videochat/videochat_instruct.json").read_text())
    assert [v["QA"][0]["a"] for v in vc] == [sc["caption"] for sc in scenes.values()]
