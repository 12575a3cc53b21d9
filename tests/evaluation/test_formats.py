"""Annotation loaders: every supported layout, media lookup by extension/prefix/nesting, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videollama.errors import ConfigError
from videollama.evaluation.tasks import get_task


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj))
    return path


def test_openqa_single_list(tmp_path, media_root):
    data = dump(tmp_path / "msvd.json", [
        {"video_name": "vidA", "question": "what is shown?", "answer": "light", "question_id": "q1"},
        {"video": "clipB", "question": "who is there?", "answer": "nobody", "id": "q2"},          # .avi found
        {"video_name": "vidC", "question": "how many?", "answer": "one", "question_id": "q3"},    # nested
        {"video_name": "gone", "question": "what?", "answer": "x", "question_id": "q4"},          # missing
    ])
    loaded = get_task("msvd_qa").load(data, media_root)
    assert [i.id for i in loaded.items] == ["q1", "q2", "q3"]
    assert Path(loaded.items[1].media).name == "clipB.avi"
    assert Path(loaded.items[2].media).parent.name == "0001"
    assert loaded.missing == [{"id": "q4", "media": "gone"}]
    assert [i.categories["type"] for i in loaded.items] == ["what", "who", "how"]


def test_openqa_separate_q_a_files_activitynet(tmp_path, media_root):
    q = dump(tmp_path / "anet" / "test_q.json", [
        {"video_name": "act1", "question": "is it dark", "question_id": "v_act1_0"},
        {"video_name": "act1", "question": "what colour", "question_id": "v_act1_1"},
    ])
    a = dump(tmp_path / "anet" / "test_a.json", [
        {"answer": "yes", "type": 3, "question_id": "v_act1_0"},
        {"answer": "grey", "type": 4, "question_id": "v_act1_1"},
    ])
    task = get_task("activitynet_qa")
    for loaded in (task.load(q, media_root, a), task.load(q.parent, media_root)):  # files, or the folder
        assert [i.answer for i in loaded.items] == ["yes", "grey"]
        assert Path(loaded.items[0].media).name == "v_act1.mp4"  # v_ prefix
        assert [i.categories["type"] for i in loaded.items] == ["yes_no", "color"]
        assert len(loaded.files) == 2
    dump(a, [{"answer": "yes", "question_id": "v_act1_0"}])
    with pytest.raises(ConfigError, match="no answer for question_id 'v_act1_1'"):
        task.load(q, media_root, a)


def test_openqa_bad_records(tmp_path, media_root):
    with pytest.raises(ConfigError, match="needs video_name/video, question and answer"):
        get_task("msrvtt_qa").load(dump(tmp_path / "x.json", [{"video": "vidA", "question": "q"}]), media_root)
    with pytest.raises(ConfigError, match="annotation file not found"):
        get_task("msrvtt_qa").load(tmp_path / "nope.json", media_root)
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        get_task("msrvtt_qa").load(tmp_path / "bad.json", media_root)


def test_generative_folder(tmp_path, media_root):
    folder = tmp_path / "gen"
    dump(folder / "generic_qa.json", [{"video_name": "vidA", "Q": "Describe it.", "A": "A grey screen."}])
    dump(folder / "temporal_qa.json", [{"video_name": "vidA", "Q": "What happens first?", "A": "It brightens."}])
    dump(folder / "consistency_qa.json", [{"video_name": "clipB", "Q1": "What is it?", "Q2": "Tell me what it is.",
                                            "A": "A screen."}])
    loaded = get_task("videochatgpt_generative").load(folder, media_root)
    sets = {i.id: (i.categories["set"], i.meta["criteria"], len(i.prompts)) for i in loaded.items}
    assert sets == {"generic/0": ("generic", ["correctness", "detail", "context"], 1),
                    "temporal/0": ("temporal", ["temporal"], 1),
                    "consistency/0": ("consistency", ["consistency"], 2)}
    # a single consistency file is recognised by its Q1/Q2 records
    one = get_task("videochatgpt_generative").load(folder / "consistency_qa.json", media_root)
    assert one.items[0].categories["set"] == "consistency"


def test_mvbench_folder(tmp_path, media_root):
    folder = tmp_path / "mvbench"
    dump(folder / "action_sequence.json", [
        {"video": "vidA.mp4", "question": "What did he do first?", "candidates": ["sat", "stood", "ran"], "answer": "stood"}])
    dump(folder / "object_shuffle.json", [
        {"video": "nested/0001/vidC.mp4", "question": "Where is it?", "candidates": ["left", "right"], "answer": "left"}])
    loaded = get_task("mvbench").load(folder, media_root)
    a, b = loaded.items
    assert (a.id, a.meta["answer_index"], a.categories["task"]) == ("action_sequence/0", 1, "action_sequence")
    assert a.prompts[0].startswith("Question: What did he do first?\nOptions:\n(A) sat\n(B) stood\n(C) ran\n")
    assert b.categories["task"] == "object_shuffle" and Path(b.media).name == "vidC.mp4"
    dump(folder / "object_shuffle.json", [{"video": "vidA.mp4", "question": "Q", "candidates": ["x"], "answer": "y"}])
    with pytest.raises(ConfigError, match="is not one of the candidates"):
        get_task("mvbench").load(folder, media_root)


def test_nextqa_csv(tmp_path, media_root):
    csv = tmp_path / "val.csv"
    csv.write_text("video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
                   "vidC,30,64,48,why did the screen brighten,2,4,CW,no reason,it is night,time passes,a dog,a cat\n"
                   "vidA,30,64,48,what happens after it starts,0,7,TN,it brightens,it stops,it ends,nothing,both\n")
    loaded = get_task("nextqa").load(csv, media_root)
    a, b = loaded.items
    assert a.id == "vidC_4" and a.meta["answer_index"] == 2 and a.answer == "(C) time passes"
    assert a.categories == {"type": "CW", "group": "causal"} and b.categories == {"type": "TN", "group": "temporal"}
    assert a.question == "why did the screen brighten?"
    # the official id -> folder map is used when present
    (media_root / "map_vid_vidorID.json").write_text(json.dumps({"vidA": "nested/0001/vidC"}))
    try:
        assert Path(get_task("nextqa").load(csv, media_root).items[1].media).name == "vidC.mp4"
    finally:
        (media_root / "map_vid_vidorID.json").unlink()
    csv.write_text("video,question,answer,a0\nvidA,q,9,x\n")
    with pytest.raises(ConfigError, match="needs video, question, a0..a4"):
        get_task("nextqa").load(csv, media_root)


def test_world_jsonl(tmp_path, media_root):
    data = dump(tmp_path / "world.jsonl", [
        {"id": "w1", "media": "vidA.mp4", "question": "What colour?", "answer": "grey", "kind": "colour", "type": "hue"},
        {"id": "w2", "media": "clipB.avi", "question": "Shape?", "answer": "B", "kind": "shape",
         "choices": ["circle", "square"]},
        {"id": "w3", "media": "vidA.mp4", "question": "Count?", "answer": "2", "kind": "count", "match": "exact"},
    ])
    loaded = get_task("world").load(data, media_root)
    w1, w2, w3 = loaded.items
    assert w1.categories == {"kind": "colour", "type": "hue"} and w2.categories == {"kind": "shape"}  # type: optional
    assert w2.meta["answer_index"] == 1 and w2.prompts[0].endswith("directly.")
    task = get_task("world")
    assert task.score_offline(w1, ["It is grey."])["correct"]
    assert task.score_offline(w2, ["(B)"])["correct"] and not task.score_offline(w2, ["A or B"])["correct"]
    assert task.score_offline(w3, ["two"])["correct"] and not task.score_offline(w3, ["there are 2"])["correct"]
    dump(data, [{"id": "w1", "media": "vidA.mp4", "question": "q"}])
    with pytest.raises(ConfigError, match="lacks answer, kind"):
        task.load(data, media_root)


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'nope'; choose one of: msvd_qa"):
        get_task("nope")
