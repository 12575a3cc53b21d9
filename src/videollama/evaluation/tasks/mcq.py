"""Multiple-choice video QA: MVBench and NExT-QA (multiple-choice split).

Prompt (both): "Question: ...\\nOptions:\\n(A) ...\\n(B) ...\\nAnswer with the option's letter from the given choices
directly." The answer is parsed by `matching.parse_choice` ("B", "(B)", "B.", "Answer: B", "the answer is b", the
option text...); no option, or several, is counted as wrong and reported as invalid.

MVBench (`--data` one task JSON file, or the folder of its 20 task files): [{video, question, candidates, answer}]
where `answer` is the text of the correct candidate; the breakdown is by task (file name). Videos are looked up
under `--media-root` as given, under a folder named like the task, and by file name anywhere below the root.
`start`/`end` fields (segments of longer videos) are not applied: the whole video is sampled.

NExT-QA (`--data` its MC CSV, e.g. `val.csv`): video, frame_count, width, height, question, answer (0-4), qid, type,
a0..a4; the breakdown is by question type (CW, CH, TN, TC, TP, DL, DC, DO) and group (causal, temporal,
descriptive). Videos: `map_vid_vidorID.json` (next to the CSV or in the media root) is used when present,
otherwise `VIDEO.mp4` is searched for below the media root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videollama.errors import ConfigError
from videollama.evaluation.matching import LETTERS, format_mc_prompt, parse_choice
from videollama.evaluation.tasks.base import (
    EvalItem, LoadedData, MediaResolver, Task, media_roots, pick, read_records, resolve_items,
)

NEXTQA_GROUPS = {"C": "causal", "T": "temporal", "D": "descriptive"}


def mc_item(qid: str, question: str, options: list[str], answer_index: int, categories: dict[str, str]) -> EvalItem:
    return EvalItem(id=qid, media="", prompts=[format_mc_prompt(question, options)],
                    answer=f"({LETTERS[answer_index]}) {options[answer_index]}", question=question,
                    categories=categories, meta={"options": options, "answer_index": answer_index})


def score_mc(item: EvalItem, prediction: str) -> dict[str, Any]:
    choice = parse_choice(prediction, item.meta["options"])
    verdict: dict[str, Any] = {"correct": choice == item.meta["answer_index"], "score": None,
                               "parsed": None if choice is None else LETTERS[choice]}
    if choice is None:
        verdict["invalid"] = True
    return verdict


class MCTask(Task):
    scorer_kind = "offline"

    def score_offline(self, item: EvalItem, predictions: list[str]) -> dict[str, Any]:
        return score_mc(item, predictions[0])


class MVBenchTask(MCTask):
    name = "mvbench"
    description = "MVBench multiple-choice (20 temporal tasks), accuracy per task"
    breakdowns = ("task",)

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        data = Path(data)
        files = sorted([*data.glob("*.json"), *data.glob("*.jsonl")]) if data.is_dir() else [data]
        if not files:
            raise ConfigError(f"{data}: no MVBench task .json files found")
        raw = []
        for path in files:
            for n, rec in enumerate(read_records(path)):
                video, question = pick(rec, "video", "video_name"), pick(rec, "question")
                candidates, answer = rec.get("candidates") or rec.get("options"), pick(rec, "answer")
                if video is None or question is None or not isinstance(candidates, list) or answer is None:
                    raise ConfigError(f"{path}: record {n} needs video, question, candidates (a list) and answer")
                options = [str(c) for c in candidates]
                if str(answer) in options:
                    index = options.index(str(answer))
                elif isinstance(answer, int) and 0 <= answer < len(options):
                    index = answer
                else:
                    raise ConfigError(f"{path}: record {n}: answer {answer!r} is not one of the candidates")
                task = str(pick(rec, "task_type", "task", default=path.stem))
                qid = str(pick(rec, "question_id", "id", default=f"{path.stem}/{n}"))
                raw.append((mc_item(qid, str(question), options, index, {"task": task}), str(video)))
        resolver = MediaResolver(media_roots(data, media_root))
        return resolve_items(raw, resolver, files, subdirs_of=lambda item: (item.categories["task"],))


class NextQATask(MCTask):
    name = "nextqa"
    description = "NExT-QA multiple-choice (5 options), accuracy per question type"
    breakdowns = ("group", "type")

    def load(self, data: Path, media_root: Path | None, answers: Path | None = None) -> LoadedData:
        data = Path(data)
        rows = read_records(data)
        roots = media_roots(data, media_root)
        mapping: dict[str, str] = {}
        for folder in (*roots, data.parent):
            f = folder / "map_vid_vidorID.json"
            if f.is_file():
                mapping = {str(k): str(v) for k, v in json.loads(f.read_text()).items()}
                break
        raw = []
        for n, row in enumerate(rows):
            options = [row.get(f"a{i}") for i in range(5)]
            if any(o is None for o in options) or pick(row, "video") is None or pick(row, "question") is None:
                raise ConfigError(f"{data}: row {n + 1} needs video, question, a0..a4 and answer "
                                  f"(columns found: {sorted(row)})")
            try:
                index = int(row["answer"])
                if not 0 <= index < 5:
                    raise ValueError
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{data}: row {n + 1}: answer must be an option index 0-4") from exc
            video = str(row["video"]).strip()
            qtype = str(row.get("type") or "").strip()
            question = str(row["question"]).strip()
            if question and question[-1] not in "?.":
                question += "?"
            cats = {"type": qtype or "other", "group": NEXTQA_GROUPS.get(qtype[:1].upper(), "other")}
            qid = f"{video}_{row.get('qid', n)}"
            raw.append((mc_item(qid, question, [str(o).strip() for o in options], index, cats), mapping.get(video, video)))
        return resolve_items(raw, MediaResolver(roots), [data])


TASKS = [MVBenchTask(), NextQATask()]
