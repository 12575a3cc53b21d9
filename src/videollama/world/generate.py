"""`generate_world(out, n, seed, ...)`: scenes -> media (in parallel) -> annotations in every format -> stats.

Deterministic per (seed, split, n, options): scenes and every text file are pure functions of them; media are
rendered with fixed encoder settings (see render.py). Workers only change the speed, never the output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import multiprocessing as mp
import os
import platform
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videollama.errors import ConfigError
from videollama.world import vocab as V
from videollama.world.questions import KINDS, caption, frame_caption, frame_questions, video_questions
from videollama.world.scene import rng_for, sample_scene, state_at_frame

FORMAT_VERSION = 1
#: Written when a generation starts and removed when its manifest.json is written: a folder holding it is a world
#: whose generation was interrupted, which --overwrite may replace.
GENERATING_MARKER = ".generating"
GENERATED = ("videos", "images", "webvid", "videochat", "llava", "cc_sbu", "jsonl", "manifest.json", "stats.json",
             "datasets.yaml", "questions.jsonl", *(f"questions_{k}.jsonl" for k in KINDS), GENERATING_MARKER)


@dataclass(frozen=True)
class WorldOptions:
    n: int = 100
    seed: int = 0
    split: str = "train"  # "train" | "heldout"
    speech: bool = False
    min_seconds: float = 2.0
    max_seconds: float = 8.0
    #: How often each visual story appears per block of the schedule, e.g. (("move", 3),); unnamed stories once,
    #: 0 leaves a story out. Empty: every story once (the held-out worlds' mix).
    visual_weights: tuple[tuple[str, int], ...] = ()

    def check(self) -> None:
        if self.n < 1:
            raise ConfigError("--n must be >= 1")
        if self.split not in ("train", "heldout"):
            raise ConfigError(f"--split must be train or heldout, not {self.split!r}")
        if not 2.0 <= self.min_seconds <= self.max_seconds <= 60:
            raise ConfigError("need 2 <= --min-seconds <= --max-seconds <= 60")
        if self.speech and shutil.which("espeak-ng") is None:
            raise ConfigError("--speech needs espeak-ng (apt-get install espeak-ng); or use --no-speech")
        for story, weight in self.visual_weights:
            if story not in V.VISUAL_STORIES:
                raise ConfigError(f"--visual-weight {story}={weight}: unknown visual story {story!r}; known: "
                                  f"{', '.join(V.VISUAL_STORIES)}")
            if not isinstance(weight, int) or not 0 <= weight <= 100:
                raise ConfigError(f"--visual-weight {story}={weight}: the weight must be a whole number in 0..100")
        if not any(visual_counts(self).values()):
            raise ConfigError("--visual-weight: every visual story has weight 0")


def visual_counts(opts: WorldOptions) -> dict[str, int]:
    """Times each visual story appears per schedule block (1 unless `visual_weights` says otherwise)."""
    return {story: dict(opts.visual_weights).get(story, 1) for story in V.VISUAL_STORIES}


def video_id(opts: WorldOptions, i: int) -> str:
    return f"{opts.split}{opts.seed}_{i:05d}"


def page_dir(i: int) -> str:
    lo = i // 50 * 50
    return f"{lo:06d}_{lo + 49:06d}"


def schedule(opts: WorldOptions) -> list[tuple[str, str]]:
    """(visual story, audio story) per video: every combination once per block (a visual story as often as its
    weight), blocks shuffled by the seed."""
    audio = [a for a in V.AUDIO_STORIES if opts.speech or a != "speech"]
    visual = [story for story, k in visual_counts(opts).items() for _ in range(k)]
    combos = list(itertools.product(visual, audio))
    rng = np.random.default_rng(np.random.SeedSequence([opts.seed, 0 if opts.split == "train" else 1, 999]))
    out: list[tuple[str, str]] = []
    while len(out) < opts.n:
        out += [combos[i] for i in rng.permutation(len(combos))]
    return out[:opts.n]


def make_scenes(opts: WorldOptions, speech_lengths: dict[str, float] | None = None) -> list[dict[str, Any]]:
    scenes = []
    for i, (vis, aud) in enumerate(schedule(opts)):
        sc = sample_scene(opts.seed, opts.split, i, vis, aud, min_s=opts.min_seconds, max_s=opts.max_seconds,
                          video_id=video_id(opts, i))
        for e in sc["audio_events"]:
            if e["type"] == "speech" and speech_lengths:
                e["length"] = round(min(e["length"], speech_lengths[e["word"]]), 4)
                e["end"] = round(e["start"] + e["length"], 4)
        sc["video"] = f"{page_dir(i)}/{sc['id']}.mp4"
        still_slot = int(rng_for(opts.seed, opts.split, i, 1).integers(V.N_SLOTS))
        sc["still_frame"] = {"slot": still_slot, "frame": sc["slot_frames"][still_slot], "image": f"{sc['id']}.jpg"}
        sc["caption"] = caption(sc)
        scenes.append(sc)
    return scenes


# ------------------------------------------------------------------------------------------------ media workers
_SPEECH: dict[str, np.ndarray] = {}


def _init_worker(speech: dict[str, np.ndarray]) -> None:
    _SPEECH.clear()
    _SPEECH.update(speech)


def _render_one(job: tuple[dict[str, Any], str]) -> str:
    from PIL import Image

    from videollama.world.render import render_audio, render_frame, write_mp4

    scene, out = job
    out_p = Path(out)
    write_mp4(out_p / "videos" / scene["video"], scene, render_audio(scene, _SPEECH))
    img = render_frame(scene, scene["still_frame"]["frame"])
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    (out_p / "images" / scene["still_frame"]["image"]).write_bytes(buf.getvalue())
    return scene["id"]


def _render_all(scenes, out: Path, workers: int, speech: dict[str, np.ndarray], progress) -> None:
    jobs = [(sc, str(out)) for sc in scenes]
    if workers <= 1:
        _init_worker(speech)
        for k, job in enumerate(jobs):
            _render_one(job)
            progress(k + 1, len(jobs))
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(speech,)) as pool:
        for k, _ in enumerate(pool.imap_unordered(_render_one, jobs, chunksize=4)):
            progress(k + 1, len(jobs))


# ------------------------------------------------------------------------------------------------ writers
def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _pick_per_type(cands: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cands:
        by_type[c["type"]].append(c)
    return [v[int(rng.integers(len(v)))] for v in by_type.values()]


def balance(questions: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Per question type: the same number of questions for every answer (the rarest answer's count); a type with
    a single answer seen is dropped. Order: as generated."""
    keep: set[int] = set()
    by_type: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for k, q in enumerate(questions):
        by_type[q["type"]][q["answer"]].append(k)
    for typ in sorted(by_type):
        groups = by_type[typ]
        if len(groups) < 2:
            continue
        cap = min(len(v) for v in groups.values())
        for ans in sorted(groups):
            idx = groups[ans]
            keep.update(idx[i] for i in sorted(rng.permutation(len(idx))[:cap].tolist()))
    return [q for k, q in enumerate(questions) if k in keep]


def question_stats(questions: list[dict[str, Any]]) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for typ in sorted({q["type"] for q in questions}):
        qs = [q for q in questions if q["type"] == typ]
        counts = Counter(q["answer"] for q in qs)
        mc = all("choices" in q for q in qs)
        types[typ] = {"kind": qs[0]["kind"], "n": len(qs), "multiple_choice": mc, "answers": dict(sorted(counts.items())),
                      "chance_majority": round(max(counts.values()) / len(qs), 4),
                      "chance_random": round(float(np.mean([1 / len(q["choices"]) if "choices" in q else 1 / len(counts)
                                                            for q in qs])), 4)}
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        ts = {t: s for t, s in types.items() if s["kind"] == kind}
        n = sum(s["n"] for s in ts.values())
        if not n:
            kinds[kind] = {"n": 0}
            continue
        kinds[kind] = {"n": n, "types": {t: s["n"] for t, s in ts.items()},
                       "chance_random": round(sum(s["chance_random"] * s["n"] for s in ts.values()) / n, 4),
                       "chance_majority": round(sum(s["chance_majority"] * s["n"] for s in ts.values()) / n, 4)}
    return {"n": len(questions), "kinds": kinds, "types": types}


def versions() -> dict[str, str]:
    import av
    import PIL

    import videollama

    libs = {k: ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
            for k, v in sorted(getattr(av, "library_versions", {}).items())}
    return {"world_format": str(FORMAT_VERSION), "videollama": getattr(videollama, "__version__", "unknown"),
            "python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
            "av": av.__version__, **{f"ffmpeg_{k}": v for k, v in libs.items()}}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out}: folder is not empty (use --overwrite to replace a generated world)")
        if not ((out / "manifest.json").is_file() or (out / GENERATING_MARKER).is_file()):
            raise ConfigError(f"{out}: not a generated world (no manifest.json); refusing to overwrite")
        for name in GENERATED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / GENERATING_MARKER).write_text("generation started; replaced by manifest.json when it completes\n")


def generate_world(out: str | os.PathLike[str], opts: WorldOptions, *, workers: int = 1, overwrite: bool = False,
                   progress=None) -> dict[str, Any]:
    """Generate the world into `out`; returns {"stats", "manifest", "seconds", "render_seconds"}."""
    opts.check()
    out = Path(out)
    prepare_out(out, overwrite)
    t0 = time.perf_counter()
    speech: dict[str, np.ndarray] = {}
    if opts.speech:
        from videollama.world.render import synth_speech

        speech = {w: synth_speech(w) for w in V.WORDS}
    scenes = make_scenes(opts, {w: len(x) / V.SAMPLE_RATE for w, x in speech.items()})
    (out / "images").mkdir(parents=True, exist_ok=True)
    for sc in scenes:
        (out / "videos" / sc["video"]).parent.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    _render_all(scenes, out, max(1, int(workers)), speech, progress or (lambda k, n: None))
    render_s = time.perf_counter() - t1
    write_annotations(out, opts, scenes)
    return {"seconds": time.perf_counter() - t0, "render_seconds": render_s,
            "stats": json.loads((out / "stats.json").read_text()),
            "manifest": json.loads((out / "manifest.json").read_text())}


def write_annotations(out: Path, opts: WorldOptions, scenes: list[dict[str, Any]]) -> None:
    # Sidecar timelines.
    for sc in scenes:
        _dump(out / "videos" / sc["video"].replace(".mp4", ".json"), sc)

    # WebVid-style captions (videoid,page_dir,name) + videos/{page_dir}/{videoid}.mp4
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["videoid", "page_dir", "name", "duration"])
    for i, sc in enumerate(scenes):
        w.writerow([sc["id"], page_dir(i), sc["caption"], f"PT00H00M{int(round(sc['duration'])):02d}S"])
    (out / "webvid").mkdir(parents=True, exist_ok=True)
    (out / "webvid" / f"world_{opts.split}.csv").write_text(buf.getvalue(), encoding="utf-8")

    # Per-video questions (all valid ones; QA rng per video).
    per_video: list[list[dict[str, Any]]] = []
    for sc in scenes:
        rng = rng_for(opts.seed, opts.split, sc["index"], 2)
        per_video.append(video_questions(sc, rng, opts.speech))

    # VideoChat-style instruction data: a description turn then up to 4 short QA turns.
    vc, vconv = [], []
    for sc, qs in zip(scenes, per_video):
        rng = rng_for(opts.seed, opts.split, sc["index"], 3)
        chosen = [qs[k] for k in sorted(rng.permutation(len(qs))[:4].tolist())]
        qa = [{"q": "Describe what you see and hear in the video.", "a": sc["caption"]}]
        qa += [{"q": q["question"], "a": q["answer"]} for q in chosen]
        vc.append({"video": sc["video"], "QA": qa})
        conv = []
        for pair in qa:
            conv += [{"from": "human", "value": pair["q"]}, {"from": "gpt", "value": pair["a"]}]
        vconv.append({"media": f"videos/{sc['video']}", "conversations": conv})
    _dump(out / "videochat" / "videochat_instruct.json", vc)

    # Still frames: LLaVA-style instructions and cc_sbu_align-style captions.
    llava, cc, iconv, icap = [], [], [], []
    for sc in scenes:
        rng = rng_for(opts.seed, opts.split, sc["index"], 4)
        objs = state_at_frame(sc, sc["still_frame"]["frame"])
        fcap = frame_caption(objs, sc["background"])
        img = sc["still_frame"]["image"]
        fq = frame_questions(objs)
        fq = [fq[k] for k in sorted(rng.permutation(len(fq))[:3].tolist())]
        turns = [("Describe this image.", fcap)] + [(q["question"], q["answer"]) for q in fq]
        order = [int(i) for i in rng.permutation(len(turns))]
        conv = []
        for j, k in enumerate(order):
            q, a = turns[k]
            conv += [{"from": "human", "value": ("<image>\n" + q) if j == 0 else q}, {"from": "gpt", "value": a}]
        llava.append({"id": sc["id"], "image": img, "conversations": conv})
        cc.append({"image_id": sc["id"], "caption": fcap})
        iconv.append({"media": f"images/{img}", "conversations": conv})
        icap.append({"media": f"images/{img}", "caption": fcap})
    _dump(out / "llava" / "llava_instruct.json", llava)
    _dump(out / "cc_sbu" / "filter_cap.json", {"annotations": cc})

    # Generic JSONL (one task and one media kind per file, as the jsonl reader wants).
    _jsonl(out / "jsonl" / "video_captions.jsonl",
           [{"media": f"videos/{sc['video']}", "caption": sc["caption"]} for sc in scenes])
    _jsonl(out / "jsonl" / "video_conversations.jsonl", vconv)
    _jsonl(out / "jsonl" / "image_captions.jsonl", icap)
    _jsonl(out / "jsonl" / "image_conversations.jsonl", iconv)

    # Question sets (eval `world` format), balanced per type.
    cands = []
    for sc, qs in zip(scenes, per_video):
        rng = rng_for(opts.seed, opts.split, sc["index"], 5)
        for q in _pick_per_type(qs, rng):
            rec = {"id": f"{sc['id']}-{q['type']}", "media": f"videos/{sc['video']}", "question": q["question"],
                   "answer": q["answer"], "kind": q["kind"]}
            if "choices" in q:
                rec["choices"] = q["choices"]
            rec["type"] = q["type"]
            cands.append(rec)
    bal_rng = np.random.default_rng(np.random.SeedSequence([opts.seed, 0 if opts.split == "train" else 1, 77]))
    questions = balance(cands, bal_rng)
    _jsonl(out / "questions.jsonl", questions)
    for kind in KINDS:
        _jsonl(out / f"questions_{kind}.jsonl", [q for q in questions if q["kind"] == kind])

    datasets = [
        {"name": "world_webvid", "format": "webvid", "annotations": "webvid", "media_root": "videos"},
        {"name": "world_videochat", "format": "videochat_instruct", "annotations": "videochat/videochat_instruct.json",
         "media_root": "videos"},
        {"name": "world_llava", "format": "llava_instruct", "annotations": "llava/llava_instruct.json",
         "media_root": "images", "image_path_prefix": ""},
        {"name": "world_cc_sbu", "format": "cc_sbu_align", "annotations": "cc_sbu/filter_cap.json", "media_root": "images"},
        *({"name": f"world_jsonl_{stem}", "format": "jsonl", "annotations": f"jsonl/{stem}.jsonl", "media_root": "."}
          for stem in ("video_captions", "video_conversations", "image_captions", "image_conversations")),
    ]
    import yaml

    (out / "datasets.yaml").write_text(
        "# DatasetSpec entries for a training recipe's `datasets:` (paths relative to this folder)\n"
        + yaml.safe_dump({"datasets": datasets}, sort_keys=False), encoding="utf-8")

    def dist(key) -> dict[str, int]:
        return dict(sorted(Counter(str(key(sc)) for sc in scenes).items()))

    stats = {
        "videos": len(scenes), "split": opts.split, "seed": opts.seed,
        "questions": question_stats(questions),
        "candidate_questions": len(cands),
        "factors": {
            "visual_story": dist(lambda s: s["visual_story"]), "audio_story": dist(lambda s: s["audio_story"]),
            "fps": dist(lambda s: s["fps"]), "size": dist(lambda s: f"{s['width']}x{s['height']}"),
            "duration_s": {"min": round(min(s["duration"] for s in scenes), 3),
                           "mean": round(float(np.mean([s["duration"] for s in scenes])), 3),
                           "max": round(max(s["duration"] for s in scenes), 3)},
            "objects_per_video": dist(lambda s: len(s["objects"])),
            "heldout_pairs_used": sum(any(V.heldout_pair(o["shape"], c["colour"]) for o in s["objects"]
                                          for c in o["colours"]) for s in scenes),
        },
        "training_records": {"webvid": len(scenes), "videochat_instruct": len(vc), "llava_instruct": len(llava),
                             "cc_sbu_align": len(cc)},
    }
    _dump(out / "stats.json", stats)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".csv", ".yaml")
                   and p.parent.parent.name != "videos" and p.name != "manifest.json")
    manifest = {
        "generator": "videollama world generate", "format_version": FORMAT_VERSION, "options": asdict(opts),
        "versions": versions(),
        "vocabulary": {"shapes": list(V.SHAPES), "colours": {k: list(v) for k, v in V.COLOURS.items()},
                       "backgrounds": list(V.BACKGROUNDS), "sizes_px": list(V.SIZES_PX), "fps": list(V.FPS_CHOICES),
                       "visual_stories": list(V.VISUAL_STORIES), "audio_stories": list(V.AUDIO_STORIES),
                       "tone_hz": V.TONE_HZ, "timbres": V.TIMBRES, "beep_hz": V.BEEP_HZ, "words": list(V.WORDS),
                       "heldout_pairs": [list(p) for p in V.HELDOUT_PAIRS]},
        "layout": {"videos": "videos/{page_dir}/{videoid}.mp4 (+ .json timeline)", "images": "images/{videoid}.jpg",
                   "questions": "questions.jsonl (+ questions_{kind}.jsonl), media relative to this folder"},
        "annotation_sha256": {f: _sha(out / f) for f in files},
    }
    _dump(out / "manifest.json", manifest)
    (out / GENERATING_MARKER).unlink(missing_ok=True)
