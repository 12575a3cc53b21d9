"""Video-ChatGPT's video-based text generation benchmark: five criteria, each scored 0-5 by the judge.

Annotation layout (`--data`): the folder of Video-ChatGPT's benchmark files, or one of them:
- `generic_qa.json`: [{video_name, Q, A}] -> scored for correctness of information, detail orientation and
  contextual understanding;
- `temporal_qa.json`: [{video_name, Q, A}] -> temporal understanding;
- `consistency_qa.json`: [{video_name, Q1, Q2, A}] -> consistency (both questions are asked, independently).
A single file is classified by its records (Q1/Q2 -> consistency) or by its name (`temporal*` -> temporal);
a record may also name its set explicitly with "set": "generic" | "temporal" | "consistency".
There is no offline scorer: without `--judge-url` only the predictions are produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videollama.errors import ConfigError
from videollama.evaluation import judge as J
from videollama.evaluation.tasks.base import (
    EvalItem, LoadedData, MediaResolver, Task, media_roots, pick, read_records, resolve_items,
)

SET_CRITERIA = {"generic": ("correctness", "detail", "context"), "temporal": ("temporal",),
                "consistency": ("consistency",)}
SET_FILES = {"generic": "generic_qa.json", "temporal": "temporal_qa.json", "consistency": "consistency_qa.json"}


def _file_set(path: Path, records: list[dict[str, Any]]) -> str:
    if records and all(pick(r, "Q1", "question1") is not None for r in records):
        return "consistency"
    return "temporal" if path.stem.lower().startswith("temporal") else "generic"


class GenerativeTask(Task):
    name = "videochatgpt_generative"
    description = "Video-ChatGPT generative benchmark: 5 criteria scored 0-5 by an LLM judge"
    scorer_kind = "judge_required"
    breakdowns = ("set",)

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        data = Path(data)
        if data.is_dir():
            files = [data / f for f in SET_FILES.values() if (data / f).is_file()]
            if not files:
                raise ConfigError(f"{data}: none of {', '.join(SET_FILES.values())} found")
        else:
            files = [data]
        raw = []
        for path in files:
            records = read_records(path)
            default_set = _file_set(path, records)
            for n, rec in enumerate(records):
                set_name = str(rec.get("set") or default_set)
                if set_name not in SET_CRITERIA:
                    raise ConfigError(f"{path}: record {n}: unknown set {set_name!r} (use one of {sorted(SET_CRITERIA)})")
                video = pick(rec, "video_name", "video", "video_id")
                answer = pick(rec, "A", "answer")
                if set_name == "consistency":
                    prompts = [pick(rec, "Q1", "question1"), pick(rec, "Q2", "question2")]
                else:
                    prompts = [pick(rec, "Q", "question")]
                if video is None or answer is None or any(p is None for p in prompts):
                    raise ConfigError(f"{path}: record {n} needs video_name, the question(s) and A "
                                      f"(keys found: {sorted(rec)})")
                qid = str(pick(rec, "question_id", "id", default=f"{set_name}/{n}"))
                item = EvalItem(id=qid, media="", prompts=[str(p) for p in prompts], answer=str(answer),
                                question=str(prompts[0]), categories={"set": set_name},
                                meta={"criteria": list(SET_CRITERIA[set_name])})
                raw.append((item, str(video)))
        resolver = MediaResolver(media_roots(data, media_root), prefixes=("", "v_"))
        return resolve_items(raw, resolver, files)

    def judge_requests(self, item: EvalItem, predictions: list[str]) -> dict[str, list[dict[str, str]]]:
        out = {}
        for criterion in item.meta["criteria"]:
            if criterion == "consistency":
                out[criterion] = J.criterion_messages(criterion, item.prompts[0], item.answer, predictions[0],
                                                      item.prompts[1], predictions[1])
            else:
                out[criterion] = J.criterion_messages(criterion, item.question, item.answer, predictions[0])
        return out

    def score_judged(self, item: EvalItem, predictions: list[str], replies: dict[str, str]) -> dict[str, Any]:
        scores: dict[str, float] = {}
        invalid = []
        for criterion, reply in replies.items():
            s = J.parse_score(reply)
            if s is None:
                invalid.append(criterion)
                s = 0.0
            scores[criterion] = s
        verdict: dict[str, Any] = {"correct": None, "score": None, "scores": scores}
        if invalid:
            verdict["invalid"] = True
            verdict["invalid_criteria"] = invalid
        return verdict


TASKS = [GenerativeTask()]
