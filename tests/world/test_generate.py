"""Determinism, held-out split, question balance and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from videollama.media import load_audio, load_video
from videollama.world import WorldOptions, generate_world
from videollama.world import vocab as V
from videollama.world.questions import CHOICE_TYPES, KINDS, QUESTION_TYPES

from .conftest import scenes_of

TEXT = (".json", ".jsonl", ".csv", ".yaml")


def _texts(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in TEXT}


def test_same_seed_identical_different_seed_differs(tmp_path):
    opts = WorldOptions(n=6, seed=11, max_seconds=4)
    generate_world(tmp_path / "a", opts, workers=1)
    generate_world(tmp_path / "b", opts, workers=2)  # workers change the speed, never the output
    generate_world(tmp_path / "c", WorldOptions(n=6, seed=12, max_seconds=4), workers=1)
    a, b, c = _texts(tmp_path / "a"), _texts(tmp_path / "b"), _texts(tmp_path / "c")
    assert a.keys() == b.keys() and len(a) > 15
    assert a == b
    assert a["webvid/world_train.csv"] != c["webvid/world_train.csv"]
    assert a["questions.jsonl"] != c["questions.jsonl"]
    for p in sorted((tmp_path / "a/videos").rglob("*.mp4")):
        q = tmp_path / "b" / p.relative_to(tmp_path / "a")
        assert np.array_equal(load_video(p).frames, load_video(q).frames)
        assert np.array_equal(load_audio(p).tensor.numpy(), load_audio(q).tensor.numpy())
        assert (p.with_suffix(".jpg").exists() is False) and (tmp_path / "a/images" / (p.stem + ".jpg")).is_file()
    man = json.loads((tmp_path / "a/manifest.json").read_text())
    assert {"av", "numpy", "pillow", "python"} <= set(man["versions"]) and man["annotation_sha256"]


def test_heldout_split_uses_new_pairs(world, tmp_path):
    generate_world(tmp_path / "h", WorldOptions(n=14, seed=99, split="heldout", max_seconds=3), workers=2)
    for sc in scenes_of(world):  # train never shows a held-out (shape, colour) pair
        assert not any(V.heldout_pair(o["shape"], c["colour"]) for o in sc["objects"] for c in o["colours"])
    held = scenes_of(tmp_path / "h")
    assert len(held) == 14
    for sc in held:  # every held-out video with objects shows at least one
        if sc["objects"]:
            assert any(V.heldout_pair(o["shape"], c["colour"]) for o in sc["objects"] for c in o["colours"])
    assert (tmp_path / "h/webvid/world_heldout.csv").is_file()


def test_questions_balanced_and_canonical(world):
    qs = [json.loads(line) for line in (world / "questions.jsonl").read_text().splitlines()]
    assert {q["kind"] for q in qs} == set(KINDS)
    assert len({q["id"] for q in qs}) == len(qs)
    by_type: dict[str, Counter] = {}
    for q in qs:
        by_type.setdefault(q["type"], Counter())[q["answer"]] += 1
        assert q["type"] in QUESTION_TYPES[q["kind"]]
        assert 1 <= len(q["answer"].split()) <= 2
        assert ("choices" in q) == (q["type"] in CHOICE_TYPES), q  # the types that trained records ask in MC form
        if "choices" in q:
            assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"])
    for typ, counts in by_type.items():
        assert len(counts) >= 2 and len(set(counts.values())) == 1, (typ, counts)  # every answer equally often
    stats = json.loads((world / "stats.json").read_text())
    for kind in KINDS:
        k = stats["questions"]["kinds"][kind]
        assert k["n"] > 0 and 0 < k["chance_random"] <= 0.5 and k["chance_majority"] <= 0.5
        per_kind = [q for q in qs if q["kind"] == kind]
        assert [json.loads(x) for x in (world / f"questions_{kind}.jsonl").read_text().splitlines()] == per_kind
    # MC answer positions are not a giveaway either
    pos = Counter(q["choices"].index(q["answer"]) for q in qs if "choices" in q and len(q["choices"]) == 2)
    assert min(pos.values()) / max(pos.values()) > 0.5


def test_cli_end_to_end(tmp_path, capsys):
    from videollama.cli.main import main

    out = tmp_path / "w"
    assert main(["world", "generate", str(out), "--n", "3", "--seed", "5", "--max-seconds", "3", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "3 videos (train, seed 5)" in text and "questions.jsonl" in text and (out / "manifest.json").is_file()
    assert len(list((out / "videos").rglob("*.mp4"))) == 3
    assert main(["world", "generate", str(out), "--n", "3", "--seed", "5"]) == 2  # not empty, no --overwrite
    assert main(["world", "generate", str(out), "--n", "2", "--seed", "6", "--overwrite", "--max-seconds", "3"]) == 0
    assert len(list((out / "videos").rglob("*.mp4"))) == 2 and not (out / ".generating").exists()
    assert main(["world", "generate", str(tmp_path / "x"), "--n", "2", "--min-seconds", "1"]) == 2


def test_overwrite_replaces_an_interrupted_generation_but_not_other_folders(tmp_path):
    from videollama.errors import ConfigError
    from videollama.world.generate import prepare_out

    partial = tmp_path / "partial"
    prepare_out(partial, overwrite=False)  # what a killed `world generate` leaves: the marker, some videos
    (partial / "videos").mkdir()
    (partial / "videos" / "a.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not empty"):
        prepare_out(partial, overwrite=False)
    prepare_out(partial, overwrite=True)
    assert not (partial / "videos").exists() and (partial / ".generating").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a generated world"):
        prepare_out(other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng not installed")
def test_speech_word_is_audible(tmp_path):
    from videollama.media import load_waveform_16k
    from videollama.world.render import render_audio, synth_speech, write_mp4
    from videollama.world.scene import sample_scene

    sc = sample_scene(1, "train", 0, "still", "speech", min_s=3, max_s=3, video_id="sp")
    e = sc["audio_events"][0]
    write_mp4(tmp_path / "sp.mp4", sc, render_audio(sc, {e["word"]: synth_speech(e["word"])}))
    w = load_waveform_16k(tmp_path / "sp.mp4")[0].numpy()
    s, t = int(e["start"] * 16000), int(e["end"] * 16000)
    assert np.sqrt(np.mean(w[s:t] ** 2)) > 0.03 and np.abs(w[:max(s - 800, 1)]).max() < 0.01


def test_visual_weights_change_the_story_mix_and_default_to_the_plain_schedule():
    from videollama.world.generate import schedule

    plain = WorldOptions(n=70, seed=3)
    assert schedule(plain) == schedule(WorldOptions(n=70, seed=3, visual_weights=(("move", 1),)))
    weighted = schedule(WorldOptions(n=80, seed=3, visual_weights=(("move", 3), ("empty", 0))))
    counts = Counter(vis for vis, _ in weighted)
    # a block is (5 stories once + move 3 times) x 5 sounds = 40 videos; two whole blocks here
    assert counts["move"] == 30 and counts["empty"] == 0 and counts["still"] == 10
    assert Counter(aud for _, aud in weighted) == Counter({a: 16 for a in V.AUDIO_STORIES if a != "speech"})


@pytest.mark.parametrize("item, message", [("move=x", "expected STORY=K"), ("jump=2", "unknown visual story 'jump'"),
                                           ("move=101", "whole number in 0..100")])
def test_cli_refuses_bad_visual_weights(tmp_path, capsys, item, message):
    from videollama.cli.main import main

    assert main(["world", "generate", str(tmp_path / "w"), "--n", "2", "--visual-weight", item]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "--visual-weight" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w" / "videos").exists()


def test_all_zero_visual_weights_are_refused():
    from videollama.errors import ConfigError

    zero = tuple((story, 0) for story in V.VISUAL_STORIES)
    with pytest.raises(ConfigError, match="every visual story has weight 0"):
        WorldOptions(n=2, visual_weights=zero).check()
