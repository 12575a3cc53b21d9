"""Answer matching without a judge: text normalisation, exact/contains match, multiple-choice option parsing."""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase
_ARTICLES = {"a", "an", "the"}
_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_PUNCT = re.compile(r"[^\w\s]")


def normalize(text: str) -> str:
    """Lower case, punctuation and articles removed, number words as digits, single spaces."""
    words = _PUNCT.sub(" ", str(text).lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words if w not in _ARTICLES)


def exact_match(prediction: str, reference: str) -> bool:
    return normalize(prediction) == normalize(reference) != ""


def contains_match(prediction: str, reference: str) -> bool:
    """The normalised reference occurs in the normalised prediction as whole words."""
    ref = normalize(reference)
    return bool(ref) and f" {ref} " in f" {normalize(prediction)} "


def open_match(prediction: str, reference: str) -> bool:
    """The offline open-ended scorer: exact match or answer contained in the prediction (after normalisation)."""
    return exact_match(prediction, reference) or contains_match(prediction, reference)


# ---- multiple choice ---------------------------------------------------------------------------------------
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def format_mc_prompt(question: str, options: list[str]) -> str:
    """'Question: ...\\nOptions:\\n(A) ...\\n(B) ...\\nAnswer with the option's letter from the given choices directly.'"""
    lines = [f"Question: {question.strip()}", "Options:"]
    lines += [f"({LETTERS[i]}) {str(opt).strip()}" for i, opt in enumerate(options)]
    lines.append(MC_INSTRUCTION)
    return "\n".join(lines)


_PHRASE = re.compile(
    r"(?i:\b(?:(?:final|correct|best)\s+)?(?:answer|option|choice)s?\b(?:\s+(?:is|would be|should be|will be))?)"
    r"\s*[:=]?\s*(?:\(\s*([A-Za-z])\s*\)|\[([A-Za-z])\]|([A-Z])(?![A-Za-z])|([a-z])(?=\s*$|[.,;:!)\]]))")


def _single(found: list[int]) -> int | None:
    distinct = set(found)
    return found[0] if len(distinct) == 1 else None


def parse_choice(text: str, options: list[str]) -> int | None:
    """The option index a free-text answer picks, or None when it picks none or several (invalid = wrong).

    Tried in order, first rule that finds something decides (several different letters there: None):
    1. the whole answer is a letter: "B", "b", "(B)", "B.", "B)", "[B]";
    2. an explicit phrase: "Answer: B", "the answer is (b)", "option B", "choice: C", "Best option: (D)";
    3. a leading letter with punctuation: "B. a dog", "(b) a dog", "B: a dog", "B) a dog";
    4. parenthesised letters anywhere: "... so (C) ...";
    5. stand-alone capital letters ("I think B"), except an article "A" followed by a lower-case word;
    6. the option text itself: options whose normalised text occurs in the answer (one that is part of another
       matched option, e.g. "red" inside "red car", does not count).
    Letters beyond the number of options are ignored.
    """
    if not options:
        return None
    n = len(options)
    valid = LETTERS[:n]
    s = str(text).strip()
    if not s:
        return None

    def idx(letter: str) -> int | None:
        letter = letter.upper()
        return valid.index(letter) if letter in valid else None

    # 1. the whole answer is one letter
    m = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[.:]?", s)
    if m:
        return idx(m.group(1))
    # 2. explicit answer phrases (a lower-case letter must not start a word: "the answer is a cat")
    found = []
    for m in _PHRASE.finditer(s):
        i = idx(next(g for g in m.groups() if g))
        if i is not None:
            found.append(i)
    if found:
        return _single(found)
    # 3. a leading letter followed by punctuation
    m = re.match(r"\s*(?:\(\s*([A-Za-z])\s*\)|([A-Z])\s*[.:)]|([a-z])\s*[.)](?=\s|$))", s)
    paren = [i for p in re.finditer(r"\(\s*([A-Za-z])\s*\)", s) if (i := idx(p.group(1))) is not None]
    if m:  # ... unless other parenthesised letters contradict it: "(A) or (C)"
        lead = idx(next(g for g in m.groups() if g))
        return _single([lead, *paren]) if lead is not None else None
    # 4. parenthesised letters anywhere
    found = paren
    if found:
        return _single(found)
    # 5. stand-alone capital letters (not the article "A" before a lower-case word, not "I")
    found = []
    for m in re.finditer(r"(?<![A-Za-z'’])([A-Z])(?![A-Za-z'’])", s):
        letter = m.group(1)
        if letter == "I" and "I" not in valid:
            continue
        if letter in ("A", "I") and re.match(r"\s+(?!(?:or|and|nor)\b)[a-z]", s[m.end():]):
            continue
        i = idx(letter)
        if i is not None:
            found.append(i)
    if found:
        return _single(found)
    # 6. the option text
    pred = f" {normalize(s)} "
    texts = [normalize(o) for o in options]
    hits = [i for i, t in enumerate(texts) if t and f" {t} " in pred]
    hits = [i for i in hits if not any(j != i and texts[i] != texts[j] and f" {texts[i]} " in f" {texts[j]} "
                                       for j in hits)]
    return hits[0] if len(hits) == 1 else None
