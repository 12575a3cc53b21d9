"""End to end: batched predictions, judge and offline scoring, resume after interruption/truncation, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evaluation.conftest import FakePipe
from tests.evaluation.test_formats import dump
from videollama.errors import ConfigError
from videollama.evaluation import EvalConfig, Evaluation, run_eval
from videollama.evaluation.records import read_jsonl


@pytest.fixture
def qa_data(tmp_path, media_root):
    return dump(tmp_path / "qa.json", [
        {"video_name": "vidA", "question": f"what is item {i}?", "answer": f"thing{i}", "question_id": f"q{i}"}
        for i in range(7)
    ] + [{"video_name": "clipB", "question": "who is it?", "answer": "nobody", "question_id": "q7"},
         {"video_name": "missing", "question": "what?", "answer": "x", "question_id": "q8"}])


def cfg(task, data, out, media_root, **kw):
    return EvalConfig(task=task, data=data, out=out, model=Path("fake-model"), media_root=media_root,
                      progress=False, **kw)


RIGHT = {f"item {i}": f"thing{i}" for i in range(0, 7, 2)}  # q0, q2, q4, q6 answered right


def test_offline_run_summary_and_resume(tmp_path, qa_data, media_root):
    out = tmp_path / "run"
    pipe = FakePipe(RIGHT)
    summary = run_eval(cfg("msvd_qa", qa_data, out, media_root, batch_size=3), pipe=pipe)
    assert pipe.calls == 3  # 8 items with media, batches of 3
    assert pipe.kwargs[0]["do_sample"] is False and pipe.kwargs[0]["batch_size"] == 3  # greedy by default
    assert summary["counts"] == {"in_data": 8, "missing_media": 1, "selected": 8, "limit": None, "predicted": 8,
                                 "errors": 0, "scored": 8}
    assert summary["metrics"]["accuracy"] == 50.0 and summary["metrics"]["mean_score"] is None
    assert summary["scorer"]["kind"] == "offline"
    assert summary["breakdown"]["type"]["what"]["accuracy"] == pytest.approx(100 * 4 / 7, abs=0.01)
    for key in ("model", "data_sha256", "generation", "videollama_version", "task"):
        assert summary[key]
    assert summary["generation"]["do_sample"] is False
    assert json.loads((out / "summary.json").read_text())["metrics"] == summary["metrics"]
    md = (out / "summary.md").read_text()
    assert "| overall | 8 | 50.0 |" in md and "type=who" in md
    assert len(read_jsonl(out / "predictions.jsonl")) == 8 and len(read_jsonl(out / "verdicts_offline.jsonl")) == 8
    # a rerun does nothing new
    pipe2 = FakePipe(RIGHT)
    assert run_eval(cfg("msvd_qa", qa_data, out, media_root), pipe=pipe2)["metrics"]["accuracy"] == 50.0
    assert pipe2.calls == 0


def test_resume_after_interruption_and_truncation(tmp_path, qa_data, media_root):
    out = tmp_path / "run"
    pipe = FakePipe(RIGHT, fail_after=2)  # "killed" during the third batch
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg("msvd_qa", qa_data, out, media_root, batch_size=2), pipe=pipe)
    done = read_jsonl(out / "predictions.jsonl")
    assert [r["id"] for r in done] == ["q0", "q1", "q2", "q3"]
    # now a crash mid-write: cut the file in the middle of the last record
    raw = (out / "predictions.jsonl").read_bytes()
    (out / "predictions.jsonl").write_bytes(raw[: len(raw) - 25])
    pipe = FakePipe(RIGHT)
    summary = run_eval(cfg("msvd_qa", qa_data, out, media_root, batch_size=2), pipe=pipe)
    asked = [q for _, q in pipe.asked]
    assert asked[0] == "what is item 3?" and len(asked) == 5  # q3 (torn) .. q7
    records = read_jsonl(out / "predictions.jsonl")
    assert sorted(r["id"] for r in records) == [f"q{i}" for i in range(8)]
    assert summary["metrics"]["accuracy"] == 50.0 and summary["counts"]["scored"] == 8


def test_limit_then_full(tmp_path, qa_data, media_root):
    out = tmp_path / "run"
    s = run_eval(cfg("msvd_qa", qa_data, out, media_root, limit=3), pipe=FakePipe(RIGHT))
    assert s["counts"]["selected"] == 3 and s["metrics"]["n"] == 3
    pipe = FakePipe(RIGHT)
    s = run_eval(cfg("msvd_qa", qa_data, out, media_root), pipe=pipe)
    assert len(pipe.asked) == 5 and s["metrics"]["n"] == 8


def test_changed_settings_refuse_to_mix(tmp_path, qa_data, media_root):
    out = tmp_path / "run"
    run_eval(cfg("msvd_qa", qa_data, out, media_root, limit=1), pipe=FakePipe())
    with pytest.raises(ConfigError, match="differs in: generation"):
        run_eval(cfg("msvd_qa", qa_data, out, media_root, limit=1, generation={"max_new_tokens": 5}), pipe=FakePipe())
    s = run_eval(cfg("msvd_qa", qa_data, out, media_root, limit=1, generation={"max_new_tokens": 5}, overwrite=True),
                 pipe=FakePipe())
    assert s["generation"]["max_new_tokens"] == 5


def test_media_error_is_isolated(tmp_path, qa_data, media_root):
    out = tmp_path / "run"
    pipe = FakePipe(RIGHT)
    ev = Evaluation(cfg("msvd_qa", qa_data, out, media_root, batch_size=4), pipe=pipe)
    real_load = ev.task.load

    def load_with_a_vanished_file(*a, **k):
        loaded = real_load(*a, **k)
        loaded.items[1].media = str(media_root / "vanished.mp4")
        return loaded

    ev.task.load = load_with_a_vanished_file
    try:
        s = ev.run()
    finally:
        del ev.task.load
    assert s["counts"]["errors"] == 1 and s["metrics"]["errors"] == 1 and s["metrics"]["n"] == 8
    bad = [r for r in read_jsonl(out / "predictions.jsonl") if r["id"] == "q1"][0]
    assert bad["predictions"] is None and "file not found" in bad["error"]


def test_judge_run_and_cache(tmp_path, qa_data, media_root, stub_judge):
    out = tmp_path / "run"
    kw = dict(judge_url=stub_judge.url, judge_model="stub-judge", judge_cache=tmp_path / "jc", judge_workers=3)
    s = run_eval(cfg("msrvtt_qa", qa_data, out, media_root, **kw), pipe=FakePipe(RIGHT))
    assert stub_judge.calls == 8
    assert s["scorer"]["kind"] == "judge" and s["scorer"]["model"] == "stub-judge"
    assert s["metrics"]["accuracy"] == 50.0 and s["metrics"]["mean_score"] == 2.5  # (4*4 + 4*1) / 8
    assert (out / "verdicts_judge-stub-judge.jsonl").exists()
    # scoring again into a fresh folder with the same predictions costs no judge call (disk cache)
    out2 = tmp_path / "run2"
    s2 = run_eval(cfg("msrvtt_qa", qa_data, out2, media_root, **kw), pipe=FakePipe(RIGHT))
    assert stub_judge.calls == 8 and s2["judge_stats"] == {"calls": 0, "cache_hits": 8}
    assert s2["metrics"] == s["metrics"]
    # the offline verdicts of the same predictions live beside the judge's
    s3 = run_eval(cfg("msrvtt_qa", qa_data, out, media_root), pipe=FakePipe())
    assert s3["scorer"]["kind"] == "offline" and (out / "verdicts_offline.jsonl").exists()


def test_generative_needs_judge(tmp_path, media_root, stub_judge):
    folder = tmp_path / "gen"
    dump(folder / "generic_qa.json", [{"video_name": "vidA", "Q": "Describe it.", "A": "A grey screen."}])
    dump(folder / "consistency_qa.json", [{"video_name": "clipB", "Q1": "What?", "Q2": "Say what.", "A": "A screen."}])
    out = tmp_path / "run"
    pipe = FakePipe(default="A grey screen.")
    s = run_eval(cfg("videochatgpt_generative", folder, out, media_root), pipe=pipe)
    assert s["scorer"]["kind"] == "none" and s["counts"]["predicted"] == 2 and len(pipe.asked) == 3
    assert "needs an LLM judge" in (out / "summary.md").read_text()
    s = run_eval(cfg("videochatgpt_generative", folder, out, media_root, judge_url=stub_judge.url,
                     judge_model="stub", judge_cache=tmp_path / "jc"), pipe=FakePipe())
    assert stub_judge.calls == 4  # 3 criteria for the generic item + consistency
    assert s["metrics"]["criteria"] == {"correctness": 3.0, "detail": 3.0, "context": 3.0, "consistency": 3.0}
    assert s["breakdown"]["set"]["consistency"]["n"] == 1
    assert "consistency" in stub_judge.requests[-1]["messages"][0]["content"] or any(
        "Question 2: Say what." in r["messages"][1]["content"] for r in stub_judge.requests)


def test_multiple_choice_tasks(tmp_path, media_root):
    mv = dump(tmp_path / "mvbench" / "action_sequence.json", [
        {"video": "vidA.mp4", "question": "First?", "candidates": ["sat", "stood"], "answer": "stood"},
        {"video": "vidA.mp4", "question": "Then?", "candidates": ["sat", "stood"], "answer": "sat"},
        {"video": "clipB.avi", "question": "Last?", "candidates": ["sat", "stood", "ran"], "answer": "ran"}])
    pipe = FakePipe({"First?": "(B) stood", "Then?": "The answer is B", "Last?": "A or C"})
    s = run_eval(cfg("mvbench", mv.parent, tmp_path / "mv", media_root), pipe=pipe)
    assert s["metrics"]["accuracy"] == pytest.approx(33.33, abs=0.01) and s["metrics"]["invalid"] == 1
    assert s["breakdown"]["task"]["action_sequence"]["n"] == 3
    v = {r["id"]: r for r in read_jsonl(tmp_path / "mv" / "verdicts_offline.jsonl")}
    assert v["action_sequence/0"]["parsed"] == "B" and v["action_sequence/2"]["parsed"] is None


def test_real_tiny_model_and_cli(tmp_path, media_root, tiny_model_dir, tiny_pipe):
    """The real pipeline (tiny random model, noise answers) through `videollama eval`, then the Python API."""
    from videollama.cli.main import main

    data = dump(tmp_path / "world.jsonl", [
        {"id": "w1", "media": "vidA.mp4", "question": "What colour?", "answer": "grey", "kind": "colour", "type": "hue"},
        {"id": "w2", "media": "clipB.avi", "question": "Shape?", "answer": "square", "kind": "shape",
         "choices": ["circle", "square"], "type": "shape"},
        {"id": "w3", "media": "vidA.mp4", "question": "How many?", "answer": "1", "kind": "count"}])
    out = tmp_path / "cli"
    rc = main(["eval", "world", "--model", str(tiny_model_dir), "--data", str(data), "--media-root", str(media_root),
               "--out", str(out), "--max-new-tokens", "4", "--batch-size", "2", "--device", "cpu", "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["predicted"] == 3 and summary["generation"]["max_new_tokens"] == 4
    assert set(summary["breakdown"]["kind"]) == {"colour", "shape", "count"}
    assert {t: m["n"] for t, m in summary["breakdown"]["type"].items()} == {"hue": 1, "shape": 1, "?": 1}
    assert "| type=hue | 1 |" in (out / "summary.md").read_text()
    preds = read_jsonl(out / "predictions.jsonl")
    assert all(isinstance(p["predictions"][0], str) for p in preds)
    # the same through the Python API with the shared pipeline: greedy answers are reproducible
    s = run_eval(EvalConfig(task="world", data=data, out=tmp_path / "api", model=tiny_model_dir, media_root=media_root,
                            generation={"max_new_tokens": 4}, batch_size=3, progress=False), pipe=tiny_pipe)
    assert [p["predictions"] for p in read_jsonl(tmp_path / "api" / "predictions.jsonl")] == [p["predictions"] for p in preds]
    assert s["metrics"]["n"] == 3
    # bad input is one clear error line, exit code 2
    assert main(["eval", "world", "--model", str(tmp_path / "nope"), "--data", str(data), "--out", str(out)]) == 2


def test_a_breakdown_no_item_has_is_left_out():
    from videollama.evaluation.summary import breakdowns

    verdicts = [({"kind": "colour"}, {"correct": True, "score": None}), ({"kind": "shape"}, {"correct": False, "score": None})]
    out = breakdowns(("kind", "type"), verdicts)
    assert set(out) == {"kind"} and out["kind"]["colour"]["accuracy"] == 100.0
    verdicts[0][0]["type"] = "hue"
    assert set(breakdowns(("kind", "type"), verdicts)["type"]) == {"hue", "?"}
