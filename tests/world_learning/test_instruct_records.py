"""Stage-2 records (recipes/world/prepare_instruct.py): no turn gives a later turn's answer away."""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest

from .conftest import RECIPES

sys.path.insert(0, str(RECIPES))
from prepare_instruct import group_without_leaks, leaks, parse_repeats, parse_types, prepare  # noqa: E402

COLOUR = {"q": "What colour is the star?", "a": "blue"}
SHAPE = {"q": "What shape is the blue object?", "a": "star"}
DESCRIBE = {"q": "Describe what you see and hear in the video.", "a": "A blue star is on a black background."}
SOUND = {"q": "Which sound can be heard?", "a": "silence"}
SOUND_MC = {"q": "Question: Which sound can be heard?\nOptions:\n(A) tone\n(B) silence\nAnswer with the option's "
            "letter from the given choices directly.", "a": "silence", "stem": "Which sound can be heard?"}


def _stem(question: str) -> str:
    """The plain question: a multiple-choice prompt's first line is "Question: {the plain question}"."""
    return question.split("\n")[0].removeprefix("Question: ")


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

    def with_stems(records):
        return [[t | {"stem": _stem(t["q"])} for t in r["QA"]] for r in records]

    assert all(_leak_free(r) for r in with_stems(new))
    assert not all(_leak_free(r) for r in with_stems(old))  # the old grouping did leak on this world
    assert len(new) <= 1.2 * len(old)  # it still packs about 3 turns per record


def test_repeated_types_are_asked_that_many_times_in_different_records(world_dir):
    base = json.loads(prepare(world_dir, per_record=3, out_name="lf.json", leak_free=True).read_text())
    more = json.loads(prepare(world_dir, per_record=3, out_name="lf_rep.json", leak_free=True,
                              repeats={"shape": 3, "beeps": 2}).read_text())

    def kind_of(stem):  # the two repeated types, by their question wording (world.questions)
        return "shape" if stem.startswith("What shape is the") else "beeps" if stem.startswith("How many beeps") else None

    def count(records):
        return Counter((r["video"], _stem(t["q"]), t["a"]) for r in records for t in r["QA"])

    before, after = count(base), count(more)
    assert set(before) == set(after)
    for key, n in before.items():
        assert after[key] == {"shape": 3, "beeps": 2}.get(kind_of(key[1]), 1) * n, key
    kinds = Counter(kind_of(key[1]) for key in before)
    assert kinds["shape"] > 0 and kinds["beeps"] > 0  # both types occur in this world
    for r in more:  # a copy of a turn gives its own answer away: never two in one record
        stems = [_stem(t["q"]) for t in r["QA"]]
        assert len(stems) == len(set(stems))


def test_repeat_option_is_checked():
    assert parse_repeats(" shape=3, beeps=2") == {"shape": 3, "beeps": 2} and parse_repeats("") == {}
    for bad, why in (("shape=x", "whole numbers"), ("shape=0", "whole numbers"), ("shape", "whole numbers"),
                     ("shpae=2", "unknown question type")):
        with pytest.raises(SystemExit, match=why):
            parse_repeats(bad)


def test_mc_only_types_lose_their_plain_form_and_nothing_else(world_dir):
    base = json.loads(prepare(world_dir, per_record=3, out_name="lf.json", leak_free=True).read_text())
    mc = json.loads(prepare(world_dir, per_record=3, out_name="lf_mc.json", leak_free=True,
                            mc_only={"sound", "silence"}).read_text())

    def turns(records):
        return Counter((r["video"], t["q"], t["a"]) for r in records for t in r["QA"])

    plain = {"Which sound can be heard?", "Is there any sound?"}
    before, after = turns(base), turns(mc)
    dropped = before - after
    assert dropped and {q for _, q, _ in dropped} == plain  # exactly the plain forms of the two types
    assert not after - before and not any(q in plain for _, q, _ in after)
    for video, q, a in dropped:  # their multiple-choice form stays
        assert any(v == video and _stem(q2) == q and a2 == a for v, q2, a2 in after)


def test_mc_only_option_is_checked():
    assert parse_types(" sound, silence") == {"sound", "silence"} and parse_types("") == set()
    for bad in ("shape", "sonud"):  # asked without choices; unknown
        with pytest.raises(SystemExit, match="not question types with choices"):
            parse_types(bad)


def test_benchmark_refuses_a_bad_mc_only_before_generating_anything(tmp_path):
    from .conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import world_learning

    with pytest.raises(SystemExit, match="--mc-only 'shape': \\['shape'\\] are not question types with choices"):
        world_learning.main(["--train", "--work", str(tmp_path / "w"), "--mc-only", "shape"])
    assert not (tmp_path / "w").exists()
