"""Scene sampling: one video's full ground-truth timeline as plain JSON-able data (no rendering here).

Visual state is piecewise constant between the 8 "slot" frames that the official uniform sampler takes
(index ``floor(k * vlen / 8)``): an object appears, disappears or changes colour exactly at such an index, so
sampled frame ``k`` shows slot ``k``'s state. Motion is continuous (linear across the whole video), so the
sampled frames show monotonic positions. Sounds are placed inside the span covered by the 8 ImageBind clips
(clip ``k`` starts at ``k * max(D - 2, 0) / 8`` and lasts 2 s) and, where possible, away from visual changes,
so "what was on screen when the sound played" has one answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from videollama.world import vocab as V

MARGIN_S = 0.08  # a sound keeps this far from any visual change and from the covered span's ends


def rng_for(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0 if split == "train" else 1, int(index), stream]))


def slot_indices(vlen: int) -> list[int]:
    """The official uniform sampler's 8 frame indices (np.arange(0, vlen, vlen / 8).astype(int))."""
    return [int(i) for i in np.arange(0, vlen, vlen / V.N_SLOTS).astype(int)]


def audio_cover(duration: float) -> tuple[float, float]:
    """[start, end] seconds covered by the 8 two-second ImageBind clips."""
    step = max(duration - 2.0, 0.0) / V.N_SLOTS
    return 0.0, min(duration, step * (V.N_SLOTS - 1) + 2.0)


def clip_spans(duration: float) -> list[tuple[float, float]]:
    step = max(duration - 2.0, 0.0) / V.N_SLOTS
    return [(k * step, k * step + 2.0) for k in range(V.N_SLOTS)]


def _pick(rng: np.random.Generator, seq):
    seq = list(seq)
    return seq[int(rng.integers(len(seq)))]


def _pairs_ok(split: str, shape: str, colour: str) -> bool:
    return split != "train" or not V.heldout_pair(shape, colour)


def _objects(rng: np.random.Generator, split: str, n: int, need_heldout: bool) -> list[tuple[str, str]]:
    """n (shape, colour) pairs with distinct shapes and distinct colours. Train never uses a held-out pair;
    a held-out video always has at least one (its first object)."""
    for _ in range(1000):
        shapes = [V.SHAPES[i] for i in rng.permutation(len(V.SHAPES))[:n]]
        colours = [list(V.COLOURS)[i] for i in rng.permutation(len(V.COLOURS))[:n]]
        pairs = list(zip(shapes, colours))
        if split == "train" and any(V.heldout_pair(s, c) for s, c in pairs):
            continue
        if need_heldout and not any(V.heldout_pair(s, c) for s, c in pairs):
            s, c = V.HELDOUT_PAIRS[int(rng.integers(len(V.HELDOUT_PAIRS)))]
            if s in shapes[1:] or c in colours[1:]:
                continue
            pairs[0] = (s, c)
        return pairs
    raise RuntimeError("could not draw distinct objects")  # pragma: no cover


def _other_colour(rng, split, shape, used) -> str:
    options = [c for c in V.COLOURS if c not in used and _pairs_ok(split, shape, c)]
    return _pick(rng, options)


def sample_scene(seed: int, split: str, index: int, visual: str, audio: str, *, min_s: float, max_s: float,
                 video_id: str) -> dict[str, Any]:
    """The timeline of one video (visual and audio stories are given by the balanced schedule)."""
    rng = rng_for(seed, split, index)
    fps = int(_pick(rng, V.FPS_CHOICES))
    while True:
        w, h = int(_pick(rng, V.SIZES_PX)), int(_pick(rng, V.SIZES_PX))
        if max(w, h) <= 2 * min(w, h):
            break
    duration = float(rng.uniform(min_s, max_s))
    vlen = max(int(round(duration * fps)), 16)
    duration = vlen / fps
    # AAC frames hold 1024 samples and the decoder returns whole frames: the track is padded to that length,
    # and the clip times are those of the decoded track.
    audio_n = int(math.ceil(duration * V.SAMPLE_RATE / 1024) * 1024)
    audio_duration = audio_n / V.SAMPLE_RATE
    slots = slot_indices(vlen)
    slot_t = [i / fps for i in slots]
    bg = _pick(rng, sorted(V.BACKGROUNDS))
    r = max(int(round(min(w, h) * 0.14)), 7)
    heldout = split != "train"

    # Grid cells (centre fractions) for static objects; motion uses the mid lines.
    cells = [(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)]
    order = [int(i) for i in rng.permutation(4)]

    def place(k: int) -> list[float]:
        fx, fy = cells[order[k]]
        jx, jy = rng.uniform(-0.04, 0.04, 2)
        return [round((fx + jx) * w, 2), round((fy + jy) * h, 2)]

    def obj(k: int, shape: str, colour: str, vis=(0, V.N_SLOTS)) -> dict[str, Any]:
        return {"id": k, "shape": shape, "colours": [{"from_slot": 0, "colour": colour}],
                "visible_slots": list(vis), "radius_px": r, "position": place(k), "motion": None}

    objects: list[dict[str, Any]] = []
    if visual == "still":
        n = int(rng.integers(1, 5))
        objects = [obj(k, s, c) for k, (s, c) in enumerate(_objects(rng, split, n, heldout))]
    elif visual == "sequence":
        (s0, c0), (s1, c1) = _objects(rng, split, 2, heldout)
        gap = int(rng.integers(0, 3))
        a_end = 3
        objects = [obj(0, s0, c0, (0, a_end)), obj(1, s1, c1, (a_end + gap, V.N_SLOTS))]
        objects[1]["position"] = objects[0]["position"] if rng.random() < 0.5 else objects[1]["position"]
    elif visual == "move":
        (s0, c0), = _objects(rng, split, 1, heldout)
        o = obj(0, s0, c0)
        d = _pick(rng, V.DIRECTIONS)
        m = r + 3
        lane = float(rng.uniform(0.35, 0.65))
        if d in ("left", "right"):
            y = round(lane * h, 2)
            a, b = [m, y], [w - m, y]
        else:
            x = round(lane * w, 2)
            a, b = [x, m], [x, h - m]
        if d in ("left", "up"):
            a, b = b, a
        o["position"], o["motion"] = a, {"direction": d, "from": a, "to": b}
        objects = [o]
    elif visual == "recolour":
        (s0, c0), = _objects(rng, split, 1, heldout)
        o = obj(0, s0, c0)
        c = int(rng.integers(3, 6))
        o["colours"].append({"from_slot": c, "colour": _other_colour(rng, split, s0, {c0})})
        objects = [o]
    elif visual == "appear":
        (s0, c0), (s1, c1) = _objects(rng, split, 2, heldout)
        c = int(rng.integers(3, 6))
        objects = [obj(0, s0, c0), obj(1, s1, c1, (c, V.N_SLOTS))]
    elif visual == "disappear":
        (s0, c0), (s1, c1) = _objects(rng, split, 2, heldout)
        c = int(rng.integers(3, 6))
        objects = [obj(0, s0, c0), obj(1, s1, c1, (0, c))]
    elif visual != "empty":
        raise ValueError(f"unknown visual story {visual!r}")

    # Visual change times (seconds) -> clean segments for the sounds.
    changes: list[dict[str, Any]] = []
    for o in objects:
        a, b = o["visible_slots"]
        if a > 0:
            changes.append({"slot": a, "what": "appear", "object": o["id"]})
        if b < V.N_SLOTS:
            changes.append({"slot": b, "what": "disappear", "object": o["id"]})
        for col in o["colours"][1:]:
            changes.append({"slot": col["from_slot"], "what": "recolour", "object": o["id"], "colour": col["colour"]})
    for ch in changes:
        ch["frame"] = slots[ch["slot"]]
        ch["t"] = round(slot_t[ch["slot"]], 4)
    change_t = sorted({ch["t"] for ch in changes})

    audio_events = _audio_events(rng, audio, duration, audio_duration, change_t, index)
    return {
        "id": video_id, "split": split, "seed": int(seed), "index": int(index),
        "visual_story": visual, "audio_story": audio,
        "width": w, "height": h, "fps": fps, "n_frames": vlen, "duration": round(duration, 6),
        "background": bg, "slot_frames": slots, "slot_times": [round(t, 6) for t in slot_t],
        "audio_samples": audio_n, "audio_duration": audio_duration,
        "audio_clips": [[round(a, 6), round(b, 6)] for a, b in clip_spans(audio_duration)],
        "objects": objects, "visual_changes": sorted(changes, key=lambda c: (c["slot"], c["object"])),
        "audio_events": audio_events, "sample_rate": V.SAMPLE_RATE,
    }


def _sound(rng: np.random.Generator, kind: str, index: int) -> dict[str, Any]:
    if kind == "tone":
        return {"type": "tone", "pitch": _pick(rng, sorted(V.TONE_HZ)), "timbre": _pick(rng, sorted(V.TIMBRES)),
                "length": V.TONE_S}
    if kind == "noise":
        return {"type": "noise", "length": V.NOISE_S}
    if kind == "beeps":
        n = int(rng.integers(1, 5))
        return {"type": "beeps", "count": n, "length": round(n * V.BEEP_ON_S + (n - 1) * V.BEEP_OFF_S, 4)}
    if kind == "speech":
        return {"type": "speech", "word": _pick(rng, V.WORDS), "length": 0.7}  # length fixed after synthesis
    raise ValueError(kind)


def _free_segments(lo: float, hi: float, change_t: list[float]) -> list[tuple[float, float]]:
    edges = [lo] + [t for t in change_t if lo < t < hi] + [hi]
    return [(a + (MARGIN_S if a > lo else 0.0), b - (MARGIN_S if b < hi else 0.0)) for a, b in zip(edges, edges[1:])]


def _place(rng, length: float, lo: float, hi: float, change_t: list[float]) -> float:
    """Start time: inside one change-free segment when one is long enough, else anywhere in [lo, hi]."""
    fits = [(a, b) for a, b in _free_segments(lo, hi, change_t) if b - a >= length]
    a, b = _pick(rng, fits) if fits else (lo, hi)
    return float(rng.uniform(a, max(a, b - length)))


def _audio_events(rng, audio: str, duration: float, audio_duration: float, change_t: list[float],
                  index: int) -> list[dict[str, Any]]:
    lo, hi = audio_cover(audio_duration)
    hi = min(hi, duration)
    lo, hi = lo + MARGIN_S, hi - MARGIN_S
    if audio == "silence":
        return []
    if audio == "pair":
        kinds = [str(k) for k in rng.permutation(["tone", "noise", "beeps"])[:2]]
        mid = (lo + hi) / 2
        ev = [_sound(rng, kinds[0], index), _sound(rng, kinds[1], index)]
        ev[0]["start"] = _place(rng, ev[0]["length"], lo, mid - 0.1, change_t)
        ev[1]["start"] = _place(rng, ev[1]["length"], mid + 0.1, hi, change_t)
    else:
        ev = [_sound(rng, audio, index)]
        ev[0]["start"] = _place(rng, ev[0]["length"], lo, hi, change_t)
    for e in ev:
        e["start"] = round(e["start"], 4)
        e["end"] = round(e["start"] + e["length"], 4)
        e["seed"] = int(rng.integers(2**31))
    return ev


# ------------------------------------------------------------------------------------------------ queries
def slot_of_frame(scene: dict[str, Any], frame: int) -> int:
    return max(k for k, i in enumerate(scene["slot_frames"]) if i <= frame)


def slot_of_time(scene: dict[str, Any], t: float) -> int:
    return slot_of_frame(scene, min(int(math.floor(t * scene["fps"] + 1e-9)), scene["n_frames"] - 1))


def colour_at(o: dict[str, Any], slot: int) -> str:
    return [c["colour"] for c in o["colours"] if c["from_slot"] <= slot][-1]


def visible_at(o: dict[str, Any], slot: int) -> bool:
    a, b = o["visible_slots"]
    return a <= slot < b


def state_at_frame(scene: dict[str, Any], frame: int) -> list[dict[str, Any]]:
    """Objects on screen in frame `frame`: shape, colour, centre (x, y) in pixels, radius."""
    slot = slot_of_frame(scene, frame)
    out = []
    for o in scene["objects"]:
        if not visible_at(o, slot):
            continue
        if o["motion"]:
            f = frame / max(scene["n_frames"] - 1, 1)
            (x0, y0), (x1, y1) = o["motion"]["from"], o["motion"]["to"]
            pos = [x0 + (x1 - x0) * f, y0 + (y1 - y0) * f]
        else:
            pos = list(o["position"])
        out.append({"id": o["id"], "shape": o["shape"], "colour": colour_at(o, slot), "centre": pos,
                    "radius": o["radius_px"]})
    return out


def clean_slot(scene: dict[str, Any], start: float, end: float) -> int | None:
    """The slot whose (constant) visual state spans [start - margin, end + margin], or None."""
    for ch in scene["visual_changes"]:
        if start - MARGIN_S / 2 <= ch["t"] <= end + MARGIN_S / 2:
            return None
    return slot_of_time(scene, start)
