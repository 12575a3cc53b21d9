"""Open-ended video QA: MSVD-QA, MSRVTT-QA, ActivityNet-QA in the Video-ChatGPT / zero-shot QA layouts.

Accepted annotation layouts (`--data`):
- one JSON/JSONL list of {video_name | video | video_id, question, answer, question_id | id} records;
- separate question and answer files as in Video-ChatGPT's release (`test_q.json` with {video_name, question,
  question_id} and `test_a.json` with {answer, type?, question_id}): pass the questions file as `--data` and the
  answers file as `--answers`, or pass the folder holding both (`*_q.json` + `*_a.json`) as `--data`.
Videos are looked up under `--media-root` as `NAME`, `v_NAME` (ActivityNet) and with the usual extensions.
Scoring: the Video-ChatGPT judge protocol (yes/no + 0-5) when a judge is given, else normalised exact match or
answer contained in the prediction (accuracy only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videollama.errors import ConfigError
from videollama.evaluation import judge as J
from videollama.evaluation.matching import exact_match, open_match
from videollama.evaluation.tasks.base import (
    EvalItem, LoadedData, MediaResolver, Task, media_roots, pick, read_records, resolve_items,
)

#: ActivityNet-QA answer types (the `type` field of its answer files).
ACTIVITYNET_TYPES = {0: "motion", 1: "spatial", 2: "temporal", 3: "yes_no", 4: "color", 5: "object", 6: "location",
                     7: "number", 8: "other"}
_QUESTION_WORDS = ("what", "who", "how", "when", "where", "why", "which", "is", "are", "does", "do", "can")


def question_type(question: str) -> str:
    """MSVD/MSRVTT-QA's usual breakdown: the question word."""
    words = question.strip().lower().split()
    for w in words[:3]:
        w = w.strip("?,.'\"")
        if w in _QUESTION_WORDS:
            return w
    return "other"


def _find_qa_pair(folder: Path) -> tuple[Path, Path]:
    qs = sorted(folder.glob("*_q.json")) + sorted(folder.glob("*_q.jsonl"))
    if len(qs) != 1:
        raise ConfigError(f"{folder}: expected one *_q.json question file (found {len(qs)}); pass --data FILE")
    q = qs[0]
    a = q.with_name(q.name.replace("_q.", "_a."))
    if not a.is_file():
        raise ConfigError(f"{folder}: {q.name} has no matching answer file {a.name}")
    return q, a


def _type_name(value: Any, task: str) -> str:
    if value is None or value == "":
        return ""
    if task == "activitynet_qa":
        try:
            return ACTIVITYNET_TYPES.get(int(value), str(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class OpenQATask(Task):
    scorer_kind = "judge_optional"
    breakdowns = ("type",)
    prefixes: tuple[str, ...] = ("",)

    def __init__(self, name: str, description: str, prefixes: tuple[str, ...] = ("",)) -> None:
        self.name, self.description, self.prefixes = name, description, prefixes

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        data = Path(data)
        if data.is_dir():
            data, answers = _find_qa_pair(data)
        files = [data] + ([Path(answers)] if answers else [])
        questions = read_records(data)
        by_id: dict[str, dict[str, Any]] = {}
        if answers:
            for rec in read_records(answers):
                qid = pick(rec, "question_id", "id", "qid")
                if qid is None:
                    raise ConfigError(f"{answers}: an answer record has no question_id")
                by_id[str(qid)] = rec
        raw = []
        for n, rec in enumerate(questions):
            qid = str(pick(rec, "question_id", "id", "qid", default=n))
            extra = by_id.get(qid, {}) if answers else {}
            if answers and not extra:
                raise ConfigError(f"{answers}: no answer for question_id {qid!r}")
            merged = {**rec, **{k: v for k, v in extra.items() if k not in rec or rec[k] in (None, "")}}
            video = pick(merged, "video_name", "video", "video_id", "vid", "video_path")
            question = pick(merged, "question", "Q", "q")
            answer = pick(merged, "answer", "A", "a")
            if video is None or question is None or answer is None:
                raise ConfigError(f"{data}: record {n} needs video_name/video, question and answer "
                                  f"(keys found: {sorted(merged)})")
            kind = _type_name(pick(merged, "type", "question_type", "answer_type"), self.name) or question_type(str(question))
            item = EvalItem(id=qid, media="", prompts=[str(question)], answer=str(answer), question=str(question),
                            categories={"type": kind})
            raw.append((item, str(video)))
        resolver = MediaResolver(media_roots(data, media_root), prefixes=self.prefixes)
        return resolve_items(raw, resolver, files)

    def score_offline(self, item: EvalItem, predictions: list[str]) -> dict[str, Any]:
        pred = predictions[0]
        return {"correct": open_match(pred, item.answer), "exact": exact_match(pred, item.answer), "score": None}

    def judge_requests(self, item: EvalItem, predictions: list[str]) -> dict[str, list[dict[str, str]]]:
        return {"qa": J.qa_messages(item.question, item.answer, predictions[0])}

    def score_judged(self, item: EvalItem, predictions: list[str], replies: dict[str, str]) -> dict[str, Any]:
        parsed = J.parse_qa_verdict(replies["qa"])
        if parsed is None:
            return {"correct": False, "score": 0.0, "invalid": True}
        return {"correct": parsed[0], "score": parsed[1]}


TASKS = [
    OpenQATask("msvd_qa", "MSVD-QA open-ended video QA (Video-ChatGPT judge protocol)"),
    OpenQATask("msrvtt_qa", "MSRVTT-QA open-ended video QA (Video-ChatGPT judge protocol)"),
    OpenQATask("activitynet_qa", "ActivityNet-QA open-ended video QA (Video-ChatGPT judge protocol)", prefixes=("", "v_")),
]
