"""Offline matching: normalisation, exact/contains, and multiple-choice option parsing edge cases."""

from __future__ import annotations

import pytest

from videollama.evaluation.matching import contains_match, exact_match, format_mc_prompt, normalize, open_match, parse_choice

OPTIONS = ["a dog", "a cat", "red", "red car"]

CASES = [
    # (answer text, expected index or None)
    ("B", 1), ("b", 1), ("(B)", 1), ("(b)", 1), ("B.", 1), ("B)", 1), ("[B]", 1), (" B ", 1),
    ("Answer: B", 1), ("answer: b", 1), ("The answer is B.", 1), ("the answer is b", 1),
    ("The answer is (C).", 2), ("Best option: (D)", 3), ("The correct answer is D because it is red", 3),
    ("option c", 2), ("Option (A)", 0), ("Final answer: A", 0),
    ("B. a cat", 1), ("(b) a cat", 1), ("C: red", 2), ("D) red car", 3),
    ("I think B", 1), ("It must be (C), the red one", 2),
    ("a cat", 1), ("It is a cat.", 1), ("red car", 3), ("red", 2), ("The dog", 0),
    ("the answer is a cat", 1),       # lower-case 'a' as an article, then the option text
    ("A man walks a dog", 0),         # the article 'A' is not a letter; the option text decides
    ("A", 0), ("(A)", 0),
    # ties and nothing -> invalid
    ("A or B", None), ("B and C", None), ("(A) or (C)", None), ("Answer: A. Answer: B", None),
    ("a dog and a cat", None), ("", None), ("   ", None), ("I don't know", None), ("none of them", None),
    # letters outside the options
    ("E", None), ("(F)", None), ("The answer is E", None),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_parse_choice(text, expected):
    assert parse_choice(text, OPTIONS) == expected


def test_parse_choice_two_options_and_empty():
    assert parse_choice("C", ["yes", "no"]) is None
    assert parse_choice("no", ["yes", "no"]) == 1
    assert parse_choice("B", []) is None


def test_mc_prompt_format():
    assert format_mc_prompt("What is it?", ["x", "y"]) == (
        "Question: What is it?\nOptions:\n(A) x\n(B) y\nAnswer with the option's letter from the given choices directly.")


@pytest.mark.parametrize("pred,ref,exact,contains", [
    ("A dog.", "dog", True, True),
    ("The dog is running", "dog", False, True),
    ("dogs", "dog", False, False),
    ("There are two cats", "2", False, True),
    ("Yes, it is.", "yes", False, True),
    ("", "yes", False, False),
])
def test_open_match(pred, ref, exact, contains):
    assert exact_match(pred, ref) is exact
    assert contains_match(pred, ref) is contains
    assert open_match(pred, ref) is (exact or contains)


def test_normalize():
    assert normalize("The  Red-Car, an apple!") == "red car apple"
    assert normalize("Three") == "3"
