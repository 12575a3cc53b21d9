"""Stage-2 instruction file of a generated world: `python recipes/world/prepare_instruct.py WORLD`.

Writes WORLD/videochat/videochat_instruct_all.json (VideoChat format: [{"video", "QA": [{"q", "a"}]}]): the
world's own videochat_instruct.json asks the description and up to 4 of the valid questions per video; this
file asks, per training video, the description and *every* valid question (from the video's ground-truth
timeline, `world.questions.video_questions`), each question that has choices also in the multiple-choice form
the `world` eval uses (`evaluation.matching.format_mc_prompt`, answer = the option's text), spread over records
of at most `--per-record` QA turns in a seeded random order. With `--leak-free`, no turn of a record gives a
later one's answer away (`leaks`): "What colour is the star?" -> "blue" is never followed by "What shape is the
blue object?", nor the description by anything it names, nor a question by its multiple-choice form; such a turn
is answered from the text instead of the video (docs/world.md, "Session 8"). Without it (the recipes' default,
which trained the shipped model) consecutive turns of the shuffled order form a record. `--repeat TYPE=K,...`
asks every question of those types (`world.questions` types: shape, colour, beeps, ...) K times, in its plain and
multiple-choice forms, so stage 2 spends more of its answers on them (with `--leak-free` the copies of a
question land in different records, since a copy gives its own answer away). `--mc-only TYPE,...` asks the
questions of those types in the multiple-choice form only (the form the eval asks): for types the model answers
anyway (sound, silence, ...) the plain form spends records that the hard types can use (docs/world.md, "Session 24").
Only the training world is read: nothing of the held-out world (another seed, held-out (shape, colour) pairs) is
used.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from videollama.evaluation.matching import format_mc_prompt
from videollama.world.questions import CHOICE_TYPES, QUESTION_TYPES, video_questions
from videollama.world.scene import rng_for

DESCRIBE = "Describe what you see and hear in the video."


def leaks(earlier: dict, later: dict) -> bool:
    """Whether the earlier turn's question stem or answer names the later turn's answer (as whole words)."""
    text = f"{earlier.get('stem', earlier['q'])} {earlier['a']}".lower()
    return re.search(rf"\b{re.escape(later['a'].lower())}\b", text) is not None


def group_without_leaks(pairs: list[dict], per_record: int) -> list[list[dict]]:
    """Records of at most `per_record` turns, in the given order, where no turn leaks a later one's answer: each
    turn joins the first record it can end (nothing there leaks it) or start (it leaks nothing there)."""
    records: list[list[dict]] = []
    for pair in pairs:
        for rec in records:
            if len(rec) >= per_record:
                continue
            if not any(leaks(turn, pair) for turn in rec):
                rec.append(pair)
                break
            if not any(leaks(pair, turn) for turn in rec):
                rec.insert(0, pair)
                break
        else:
            records.append([pair])
    return records


def parse_repeats(text: str) -> dict[str, int]:
    """`--repeat` text to a dict: "shape=3,beeps=2" -> {"shape": 3, "beeps": 2}; SystemExit with the reason if bad."""
    try:
        reps = {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}
    except ValueError:
        reps = None
    if reps is None or any(k < 1 for k in reps.values()):
        raise SystemExit(f"--repeat {text!r}: expected TYPE=K,... with whole numbers K >= 1")
    known = [t for types in QUESTION_TYPES.values() for t in types]
    if unknown := sorted(set(reps) - set(known)):
        raise SystemExit(f"--repeat {text!r}: unknown question type(s) {unknown}; known: {', '.join(known)}")
    return reps


def parse_types(text: str, flag: str = "--mc-only") -> set[str]:
    """"sound,silence" -> {"sound", "silence"}; SystemExit naming unknown types or types asked without choices."""
    types = {t.strip() for t in text.split(",") if t.strip()}
    if bad := sorted(types - CHOICE_TYPES):
        raise SystemExit(f"{flag} {text!r}: {bad} are not question types with choices; those are: "
                         f"{', '.join(sorted(CHOICE_TYPES))}")
    return types


def prepare(world: str | Path, per_record: int = 3, seed: int = 0, out_name: str = "videochat_instruct_all.json",
            leak_free: bool = False, repeats: dict[str, int] | None = None, mc_only: set[str] | frozenset = frozenset()
            ) -> Path:
    world = Path(world)
    opts = json.loads((world / "manifest.json").read_text())["options"]
    base = json.loads((world / "videochat" / "videochat_instruct.json").read_text())
    records = []
    for k, rec in enumerate(base):
        scene = json.loads((world / "videos" / rec["video"].replace(".mp4", ".json")).read_text())
        rng = np.random.default_rng([seed, k])
        qs = video_questions(scene, rng_for(opts["seed"], opts["split"], scene["index"], 2), opts["speech"])
        pairs = [{"q": DESCRIBE, "a": scene["caption"]}]
        for q in qs:
            for _ in range((repeats or {}).get(q["type"], 1)):
                if not (q.get("choices") and q["type"] in mc_only):
                    pairs.append({"q": q["question"], "a": q["answer"]})
                if q.get("choices"):
                    options = [q["choices"][i] for i in rng.permutation(len(q["choices"]))]
                    pairs.append({"q": format_mc_prompt(q["question"], options), "a": q["answer"], "stem": q["question"]})
        shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
        if leak_free:
            groups = group_without_leaks(shuffled, per_record)
        else:
            groups = [shuffled[s:s + per_record] for s in range(0, len(shuffled), per_record)]
        for group in groups:
            records.append({"video": rec["video"], "QA": [{"q": p["q"], "a": p["a"]} for p in group]})
    out = world / "videochat" / out_name
    out.write_text(json.dumps(records, indent=0))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("world")
    ap.add_argument("--per-record", type=int, default=3)
    ap.add_argument("--leak-free", action="store_true", help="no turn of a record gives a later turn's answer away")
    ap.add_argument("--out-name", default="videochat_instruct_all.json")
    ap.add_argument("--repeat", default="", help="TYPE=K,...: ask each question of these types K times")
    ap.add_argument("--mc-only", default="", help="TYPE,...: ask these types in the multiple-choice form only")
    a = ap.parse_args()
    p = prepare(a.world, a.per_record, out_name=a.out_name, leak_free=a.leak_free, repeats=parse_repeats(a.repeat),
                mc_only=parse_types(a.mc_only))
    print(f"{p}: {len(json.loads(p.read_text()))} records")
