"""The benchmark's accuracy by video length (benchmarks/world_learning.py: accuracy_by_length, length_table), read
from an evaluation's predictions and verdicts and the generated videos' timelines."""

from __future__ import annotations

import json
import sys

from tests.world_learning.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import world_learning as W  # noqa: E402


def _eval_dir(tmp_path, rows):
    """rows: (question id, video name or None for a video without timeline, duration, kind, type, correct)."""
    (tmp_path / "videos").mkdir()
    (tmp_path / "eval").mkdir()
    preds, verdicts = [], []
    for qid, video, duration, kind, typ, correct in rows:
        media = tmp_path / "videos" / f"{video}.mp4"
        if duration is not None:
            media.with_suffix(".json").write_text(json.dumps({"id": video, "duration": duration}))
        preds.append({"id": qid, "media": str(media), "categories": {"kind": kind, "type": typ}})
        verdicts.append({"id": qid, "scorer": "offline", "correct": correct})
    for name, items in (("predictions", preds), ("verdicts_offline", verdicts)):
        (tmp_path / "eval" / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    (tmp_path / "eval" / "summary.json").write_text(json.dumps(  # as the eval runner names its files
        {"files": {"predictions": "predictions.jsonl", "verdicts": "verdicts_offline.jsonl"}}))
    return tmp_path / "eval"


def test_accuracy_is_split_by_video_length_per_kind_and_type(tmp_path):
    rows = [("q1", "v1", 2.5, "audiovisual", "sound_vs_change", True),
            ("q2", "v1", 2.5, "audiovisual", "sound_vs_change", False),
            ("q3", "v1", 2.5, "static", "shape", True),
            ("q4", "v2", 4.0, "audiovisual", "sound_vs_change", True),  # 4.0 s is not short
            ("q5", "v2", 4.0, "audiovisual", "on_screen", False),
            ("q6", "v3", None, "static", "shape", False)]  # no timeline: left out
    got = W.accuracy_by_length(_eval_dir(tmp_path, rows))
    assert got["sound_vs_change"] == {"short": {"n": 2, "accuracy": 50.0}, "long": {"n": 1, "accuracy": 100.0}}
    assert got["audiovisual"] == {"short": {"n": 2, "accuracy": 50.0}, "long": {"n": 2, "accuracy": 50.0}}
    assert got["static"] == {"short": {"n": 1, "accuracy": 100.0}}
    assert got["on_screen"] == {"long": {"n": 1, "accuracy": 0.0}}
    table = W.length_table({"a": got, "d": {"audiovisual": {"long": {"n": 2, "accuracy": 0.0}}}}).splitlines()
    assert table[0] == "| kind or type | video | n | (a) | (d) |"
    assert "| static | < 4 s | 1 | 100.0 | - |" in table and "| audiovisual | >= 4 s | 2 | 50.0 | 0.0 |" in table
    assert "| sound_vs_change | < 4 s | 2 | 50.0 | - |" in table
    assert not any(r.startswith("| static | >= 4 s") or r.startswith("| temporal") for r in table)  # no questions
    assert len(table) == 2 + 6
