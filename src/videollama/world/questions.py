"""Language about a scene: captions, candidate questions (with canonical short answers) and conversations.

Every question comes from the ground-truth timeline only. A candidate is
``{"kind", "type", "question", "answer", "choices"?}``; ``kind`` is one of KINDS (the eval breakdown),
``type`` the finer question family (balanced separately).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from videollama.world import vocab as V
from videollama.world.scene import clean_slot, colour_at, visible_at

KINDS = ("static", "temporal", "audio", "audiovisual")
#: Every question ``type`` (`frame_questions`, `video_questions`), by kind.
QUESTION_TYPES = {"static": ("colour", "shape", "count"), "temporal": ("order", "direction", "change", "new_colour"),
                  "audio": ("sound", "silence", "beeps", "pitch", "timbre", "word", "sound_order"),
                  "audiovisual": ("on_screen", "colour_then", "sound_vs_change")}
#: the types asked with choices (multiple choice in the eval); the others are answered with a word
CHOICE_TYPES = frozenset({"order", "direction", "change", "sound", "silence", "pitch", "timbre", "sound_order",
                          "sound_vs_change"})
CHANGE_ANSWERS = {"move": "position", "recolour": "colour", "appear": "shape appeared", "disappear": "shape disappeared"}


def _num(n: int) -> str:
    return ["no", "one", "two", "three", "four", "five"][n]


def _obj_phrase(shape: str, colour: str) -> str:
    return f"a {colour} {shape}"


def sound_phrase(e: dict[str, Any]) -> str:
    if e["type"] == "tone":
        return f"a {e['pitch']} {V.TIMBRES[e['timbre']]} tone"
    if e["type"] == "noise":
        return "a burst of noise"
    if e["type"] == "beeps":
        return f"{_num(e['count'])} beep" + ("s" if e["count"] > 1 else "")
    return f"a voice saying \"{e['word']}\""


def describe_visual(scene: dict[str, Any]) -> str:
    bg = scene["background"]
    objs = scene["objects"]
    story = scene["visual_story"]
    if story == "empty":
        return f"An empty {bg} background; nothing is on screen."
    if story == "still":
        parts = [_obj_phrase(o["shape"], o["colours"][0]["colour"]) for o in objs]
        lst = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{lst[0].upper()}{lst[1:]} {'stays' if len(parts) == 1 else 'stay'} still on a {bg} background."
    if story == "move":
        o = objs[0]
        d = o["motion"]["direction"]
        way = {"left": "from right to left", "right": "from left to right", "up": "upwards", "down": "downwards"}[d]
        return f"A {o['colours'][0]['colour']} {o['shape']} moves {way} across a {bg} background."
    if story == "recolour":
        o = objs[0]
        return (f"A {o['colours'][0]['colour']} {o['shape']} on a {bg} background turns "
                f"{o['colours'][1]['colour']} part-way through.")
    a, b = objs[0], objs[1]
    ca, cb = a["colours"][0]["colour"], b["colours"][0]["colour"]
    if story == "sequence":
        gap = b["visible_slots"][0] > a["visible_slots"][1]
        return (f"A {ca} {a['shape']} is shown on a {bg} background, then it disappears"
                + (" and the screen stays empty for a moment; then " if gap else " and ")
                + f"a {cb} {b['shape']} appears.")
    if story == "appear":
        return f"A {ca} {a['shape']} is on a {bg} background; later a {cb} {b['shape']} appears next to it."
    if story == "disappear":
        return f"A {ca} {a['shape']} and a {cb} {b['shape']} are on a {bg} background; then the {b['shape']} disappears."
    raise ValueError(story)


def describe_audio(scene: dict[str, Any]) -> str:
    ev = scene["audio_events"]
    if not ev:
        return "There is no sound."
    if len(ev) == 1:
        return f"You can hear {sound_phrase(ev[0])}."
    return f"You can hear {sound_phrase(ev[0])}, then {sound_phrase(ev[1])}."


def caption(scene: dict[str, Any]) -> str:
    return f"{describe_visual(scene)} {describe_audio(scene)}"


def frame_caption(objs: list[dict[str, Any]], bg: str) -> str:
    if not objs:
        return f"An empty {bg} background."
    parts = [_obj_phrase(o["shape"], o["colour"]) for o in objs]
    lst = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{lst[0].upper()}{lst[1:]} on a {bg} background."


def _mc(rng: np.random.Generator, options: list[str]) -> list[str]:
    return [options[i] for i in rng.permutation(len(options))]


def frame_questions(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Static questions about one still frame (objects visible in it)."""
    out = [{"kind": "static", "type": "count", "question": "How many shapes are there?", "answer": str(len(objs))}]
    for o in objs:
        out.append({"kind": "static", "type": "colour", "question": f"What colour is the {o['shape']}?",
                    "answer": o["colour"]})
        out.append({"kind": "static", "type": "shape", "question": f"What shape is the {o['colour']} object?",
                    "answer": o["shape"]})
    return out


def video_questions(scene: dict[str, Any], rng: np.random.Generator, speech: bool) -> list[dict[str, Any]]:
    """Every valid question about a video (one draw of choice order)."""
    q: list[dict[str, Any]] = []
    objs, story, ev = scene["objects"], scene["visual_story"], scene["audio_events"]

    def add(kind, typ, question, answer, choices=None):
        item = {"kind": kind, "type": typ, "question": question, "answer": answer}
        if choices:
            item["choices"] = _mc(rng, choices)
        q.append(item)

    # static: colours/shapes of objects whose colour never changes; count only when it never changes.
    for o in objs:
        if len(o["colours"]) == 1:
            add("static", "colour", f"What colour is the {o['shape']}?", o["colours"][0]["colour"])
            add("static", "shape", f"What shape is the {o['colours'][0]['colour']} object?", o["shape"])
    if story == "still":
        add("static", "count", "How many shapes are there?", str(len(objs)))

    # temporal
    if story == "sequence":
        a, b = objs
        add("temporal", "order", "Which shape appeared first?", a["shape"], [a["shape"], b["shape"]])
    if story == "move":
        add("temporal", "direction", f"Which way does the {objs[0]['shape']} move?", objs[0]["motion"]["direction"],
            list(V.DIRECTIONS))
    if story in CHANGE_ANSWERS:
        add("temporal", "change", "What changed during the video?", CHANGE_ANSWERS[story], list(CHANGE_ANSWERS.values()))
    if story == "recolour":
        o = objs[0]
        add("temporal", "new_colour", f"What colour did the {o['shape']} turn into?", o["colours"][1]["colour"])

    # audio
    sounds = ["tone", "noise", "beeps"] + (["speech"] if speech else [])
    if len(ev) <= 1:
        add("audio", "sound", "Which sound can be heard?", ev[0]["type"] if ev else "silence", sounds + ["silence"])
    add("audio", "silence", "Is there any sound?", "yes" if ev else "no", ["yes", "no"])
    for e in ev:
        if e["type"] == "beeps":
            add("audio", "beeps", "How many beeps are there?", str(e["count"]))
        if e["type"] == "tone":
            add("audio", "pitch", "Is the tone high or low?", e["pitch"], ["high", "low"])
            add("audio", "timbre", "Is the tone smooth or buzzy?", V.TIMBRES[e["timbre"]], ["smooth", "buzzy"])
        if e["type"] == "speech":
            add("audio", "word", "Which word is spoken?", e["word"])
    if len(ev) == 2:
        add("audio", "sound_order", "Which sound came first?", ev[0]["type"], [ev[0]["type"], ev[1]["type"]])

    # audio-visual: the visual state while a sound plays (only when it is constant during the sound)
    for e in ev if len(ev) == 1 or len({x["type"] for x in ev}) == len(ev) else []:
        name, verb = V.SOUND_PHRASE[e["type"]]
        slot = clean_slot(scene, e["start"], e["end"])
        if slot is None:
            continue
        on = [o for o in objs if visible_at(o, slot)]
        if len(on) <= 1 and story != "still":
            add("audiovisual", "on_screen", f"Which shape is on screen when {name} {verb}?",
                on[0]["shape"] if on else "nothing")
        if story == "recolour":
            o = objs[0]
            add("audiovisual", "colour_then", f"What colour is the {o['shape']} when {name} {verb}?", colour_at(o, slot))
        for ch in scene["visual_changes"]:
            o = objs[ch["object"]]
            what = {"appear": "appears", "disappear": "disappears", "recolour": "changes colour"}[ch["what"]]
            add("audiovisual", "sound_vs_change", f"Do you hear {name} before or after the {o['shape']} {what}?",
                "before" if e["end"] < ch["t"] else "after", ["before", "after"])
    return q
