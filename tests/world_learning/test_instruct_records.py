"""Stage-2 records (recipes/world/prepare_instruct.py): no turn gives a later turn's answer away."""

from __future__ import annotations

import json
import sys
from collections import Counter

from .conftest import RECIPES

sys.path.insert(0, str(RECIPES))
from prepare_instruct import group_without_leaks, leaks, prepare  # noqa: E402

COLOUR = {"q": "What colour is the star?", "a": "blue"}
SHAPE = {"q": "What shape is the blue object?", "a": "star"}
DESCRIBE = {"q": "Describe what you see and hear in the video.", "a": "A blue star is on a black background."}
SOUND = {"q": "Which sound can be heard?", "a": "silence"}
SOUND_MC = {"q": "Question: Which sound can be heard?\nOptions:\n(A) tone\n(B) silence\nAnswer with the option's "
            "letter from the given choices directly.", "a": "silence", "stem": "Which sound can be heard?"}


def _leak_free(record: list[dict]) -> bool:
    return not any(leaks(record[i], record[j]) for j in range(len(record)) for i in range(j))


def test_leaks_reads_whole_words_of_the_stem_and_answer():
    assert leaks(COLOUR, SHAPE) and leaks(SHAPE, COLOUR)  # "star" in the question, "blue" in the question
    assert leaks(DESCRIBE, COLOUR) and not leaks(COLOUR, DESCRIBE)
    assert leaks(SOUND, SOUND_MC) and leaks(SOUND_MC, SOUND)  # same answer
    assert not leaks({"q": "Is there a tone?", "a": "yes"}, {"q": "How many beeps?", "a": "one"})  # not in "tone"
    assert not leaks(COLOUR, SOUND)


def test_grouping_orders_or_splits_leaking_turns():
    records = group_without_leaks([DESCRIBE, COLOUR, SHAPE, SOUND, SOUND_MC], per_record=3)
    assert all(_leak_free(r) and len(r) <= 3 for r in records)
    assert sorted(json.dumps(t, sort_keys=True) for r in records for t in r) == sorted(
        json.dumps(t, sort_keys=True) for t in (DESCRIBE, COLOUR, SHAPE, SOUND, SOUND_MC))
    assert [r.index(COLOUR) < r.index(DESCRIBE) for r in records if COLOUR in r and DESCRIBE in r] in ([], [True])
    assert not any(COLOUR in r and SHAPE in r for r in records)
    assert not any(SOUND in r and SOUND_MC in r for r in records)


def test_world_records_hold_every_turn_once_and_leak_nowhere(world_dir):
    new = json.loads(prepare(world_dir, per_record=3, out_name="lf.json", leak_free=True).read_text())
    old = json.loads(prepare(world_dir, per_record=3, out_name="leaky.json").read_text())

    def turns(records):
        return Counter((r["video"], t["q"], t["a"]) for r in records for t in r["QA"])

    assert turns(new) == turns(old)
    assert all(1 <= len(r["QA"]) <= 3 for r in new)

    def with_stems(records):  # a multiple-choice prompt's first line is "Question: {the plain question}"
        return [[t | {"stem": t["q"].split("\n")[0].removeprefix("Question: ")} for t in r["QA"]] for r in records]

    assert all(_leak_free(r) for r in with_stems(new))
    assert not all(_leak_free(r) for r in with_stems(old))  # the old grouping did leak on this world
    assert len(new) <= 1.2 * len(old)  # it still packs about 3 turns per record
