"""The synthetic world's question sets: a simple JSONL format any generator can emit.

One JSON object per line:
    {"id": "q0001", "media": "clips/0001.mp4", "question": "What colour is the square?", "answer": "red",
     "kind": "colour", "choices": ["red", "green", "blue"], "match": "contains"}
- `id` (unique), `media` (path relative to --media-root, default: the JSONL's folder; video, image or audio),
  `question`, `answer` and `kind` (the breakdown: accuracy is reported per kind) are required.
- `type` (optional): a finer breakdown (the world generator's question type: "shape", "beeps", ...); accuracy is
  reported per type too when the records carry one.
- `choices` (optional): makes it a multiple-choice question, asked with the lettered prompt and parsed like
  MVBench; `answer` is then the correct choice's text, its letter ("B") or its index (1).
- `match` (optional, open questions): "contains" (default: the normalised answer occurs in the normalised
  prediction as whole words) or "exact" (normalised equality). Normalisation: lower case, punctuation and
  articles dropped, number words 0-20 as digits.
Scoring is always offline (no judge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videollama.errors import ConfigError
from videollama.evaluation.matching import LETTERS, contains_match, exact_match
from videollama.evaluation.tasks.base import EvalItem, LoadedData, MediaResolver, Task, media_roots, read_records, resolve_items
from videollama.evaluation.tasks.mcq import mc_item, score_mc

REQUIRED = ("id", "media", "question", "answer", "kind")


def _choice_index(answer: Any, choices: list[str]) -> int | None:
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < len(choices) else None
    text = str(answer).strip()
    if text in choices:
        return choices.index(text)
    letter = text.strip("() .").upper()
    if len(letter) == 1 and letter in LETTERS[:len(choices)]:
        return LETTERS.index(letter)
    return None


class WorldTask(Task):
    name = "world"
    description = "synthetic-world question sets (JSONL), exact/contains or multiple-choice, accuracy per kind and type"
    scorer_kind = "offline"
    breakdowns = ("kind", "type")

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        data = Path(data)
        raw = []
        for n, rec in enumerate(read_records(data)):
            absent = [k for k in REQUIRED if rec.get(k) in (None, "")]
            if absent:
                raise ConfigError(f"{data}: record {n + 1} lacks {', '.join(absent)}")
            match = str(rec.get("match", "contains"))
            if match not in ("contains", "exact"):
                raise ConfigError(f"{data}: record {n + 1}: match must be 'contains' or 'exact', not {match!r}")
            cats = {"kind": str(rec["kind"])}
            if rec.get("type") not in (None, ""):
                cats["type"] = str(rec["type"])
            choices = rec.get("choices")
            if choices:
                choices = [str(c) for c in choices]
                index = _choice_index(rec["answer"], choices)
                if index is None:
                    raise ConfigError(f"{data}: record {n + 1}: answer {rec['answer']!r} is not one of the choices")
                item = mc_item(str(rec["id"]), str(rec["question"]), choices, index, cats)
            else:
                item = EvalItem(id=str(rec["id"]), media="", prompts=[str(rec["question"])], answer=str(rec["answer"]),
                                question=str(rec["question"]), categories=cats, meta={"match": match})
            raw.append((item, str(rec["media"])))
        resolver = MediaResolver(media_roots(data, media_root), extensions=("",))
        return resolve_items(raw, resolver, [data])

    def score_offline(self, item: EvalItem, predictions: list[str]) -> dict[str, Any]:
        if "options" in item.meta:
            return score_mc(item, predictions[0])
        exact = exact_match(predictions[0], item.answer)
        correct = exact if item.meta.get("match") == "exact" else exact or contains_match(predictions[0], item.answer)
        return {"correct": correct, "exact": exact, "score": None}


TASKS = [WorldTask()]
