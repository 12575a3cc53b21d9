"""Learning proof on the synthetic world: train (optional) and evaluate a Video-LLaMA "av" model with ablations.

    python benchmarks/world_learning.py --train --work runs/world          # generate + stage 1 + stage 2 + table
    python benchmarks/world_learning.py --model runs/world/stage2/final --heldout runs/world/heldout

--train: `world generate` a training world (--n, --seed) and a held-out world (--heldout-n, --heldout-seed,
--split heldout: another seed and (shape, colour) pairs never seen in training; --heldout-split train: a fresh
seed of the training distribution), the model (recipes/world/make_model.py), the stage-2 instruction file
(recipes/world/prepare_instruct.py), the model's frozen encoders: the shipped pretrained ones (tiny:
recipes/world/world_encoders.safetensors; smol: those inside the default model's adapters; as Video-LLaMA downloads
EVA-CLIP, BLIP-2 and ImageBind), or with --encoders pretrain pretrained in the run: the image stack on rendered
world frames (--vision-steps; world.vision_pretraining: ViT + image Q-Former) and the audio encoder on rendered
world sounds (--audio-steps; world.audio_pretraining); --save-encoders FILE writes them as the shipped file was
made. Then the "av" frozen-feature cache (training.data.av_cache; one cache for both stages) and the two recipes
of recipes/world/ through the training engine (`videollama.training.engine.train`, what `videollama train` runs).
WORK/progress.json records each finished step; `--train --resume` continues an interrupted run: finished steps are
kept when the options are the same, and the stage that was running goes on from its newest checkpoint (the world
recipes write one every 500 steps).

Evaluation: the `world` eval task (`videollama eval world`) on the held-out questions.jsonl, per kind, under
(a) the model as trained; (b) frame position embeddings zeroed; (c) the 8 sampled frames shuffled (a fixed
derangement) before encoding; (d) no audio branch (use_audio=False: the video-only prompt, no audio tokens).
Also reports how far the trained model's image and video Q-Former tokens are one token repeated
(`model.diagnostics.qformer_token_sharing` on 40 held-out videos: 1.0 = collapsed; docs/world.md "Session 12"), and
where the video Q-Former's cross-attention reads from (`video_qformer_reads`: peakedness, distinct keys, attention
per frame; "Session 15"), and where the LLM looks when it starts an answer (`answer_attention`: its attention on the
video and audio tokens per layer; "Session 17").
Prints markdown tables (accuracy per kind, per question type, and by video length: per kind and audio-visual type,
videos shorter than SHORT_VIDEO_S and the rest, "Session 24") and writes WORK/ablations.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from videollama.default_model import ADAPTERS_FILE, ASSETS_DIR, read_provenance

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "world"
KINDS = ("static", "temporal", "audio", "audiovisual")
ABLATIONS = {"a": "as trained", "b": "no frame position embeddings", "c": "frames shuffled", "d": "no audio branch"}
#: Per preset: the two stage recipes in recipes/world/.
STAGE_RECIPES = {"tiny": ("stage1_caption.yaml", "stage2_instruct.yaml"),
                 "smol": ("smol_stage1_caption.yaml", "smol_stage2_instruct.yaml")}
#: Per preset: pretraining steps of the world image stack (ViT + image Q-Former, world.vision_pretraining).
VISION_STEPS = {"tiny": 2000, "smol": 2000}
#: Per preset: strength of the mimetic init of the ViT's attention before its pretraining (0: none).
MIMETIC_ATTENTION = {"tiny": 3.0, "smol": 3.0}
#: Per preset: pretraining steps of the world audio encoder (world.audio_pretraining).
AUDIO_STEPS = {"tiny": 1000, "smol": 1000}
#: Per preset: how the stage-2 records are made (recipes/world/prepare_instruct.py): leak-free grouping, and the
#: question types asked several times (the types the tiny proof answered worst, docs/world.md "Session 9"). Both
#: presets use them since session 18 (the smol preset's run s10 = the shipped default model; s8 had neither). The
#: tiny preset also asks "Do you hear X before or after Y?" 3 times since session 20 (run t20: that type 34 -> 84 %;
#: over three fresh worlds audio-visual answers +12 points, overall unchanged, docs/world.md "Session 20"); the smol
#: preset keeps what trained the shipped model.
_REPEAT = "shape=3,colour=3,count=3,direction=3,new_colour=3,beeps=2,on_screen=2,order=2,colour_then=2"
RECORDS = {"tiny": {"leak_free": True, "repeat": _REPEAT + ",sound_vs_change=3", "mc_only": ""},
           "smol": {"leak_free": True, "repeat": _REPEAT, "mc_only": ""}}
#: Per preset: shipped pretrained frozen encoders (None: pretrain them in every run). The tiny preset's ViT, image
#: Q-Former and audio encoder pretrained once (run t18, docs/world.md "Session 11") and continued twice (`--encoders
#: continue`, runs t21 and t21b, "Session 21"; the provenance of all three is in the file): the stand-in for the
#: EVA-CLIP, BLIP-2 and ImageBind weights that Video-LLaMA downloads rather than trains. The smol preset's are the
#: fitted encoders inside the shipped default model's adapters (pretrained in run s8 with this script's VISION_STEPS /
#: AUDIO_STEPS, seed 0; `--ship` writes them back unchanged). `--encoders pretrain` redoes either; with --ship the
#: newly pretrained smol encoders then replace the shipped ones, and later runs start from them.
SHIPPED_ENCODERS = {"tiny": RECIPES / "world_encoders.safetensors", "smol": ASSETS_DIR / ADAPTERS_FILE}
#: `--encoders continue`: the frozen encoders go on pretraining from encoders already pretrained (the shipped ones,
#: or --encoders-base), on frames and sounds of seed model_seed + 1, with fresh read-out heads (the image stack's
#: learn alone first) and a lower learning rate. The image stack keeps its own objectives (per-patch colour and
#: shape, the colour-slot attention read-out, count); `token_slot_weight` > 0 adds session 13's per-token read-out,
#: which makes the image Q-Former's tokens one token; `token_slot_mean_only` reads it from the tokens' mean only. The
#: shipped tiny encoders are t18's continued with these defaults (run t21: object-patch shape 89.3 -> 99.4 %, beep
#: count 81.7 -> 89.1 %), then 1,500 steps with the mean-only read-out (run t21b; docs/world.md, "Session 21"), then
#: 2,000 steps with the centre objective at weight 3, which puts where each shape is into the tokens (run ce3:
#: mean-token centre error 20.2 -> 11.9 % of the frame; docs/world.md, "Session 23" and "Session 31").
VISION_CONTINUE = {"steps": 3500, "lr": 5e-4, "token_slot_weight": 0.0, "heads_only_steps": 150}
AUDIO_CONTINUE = {"steps": 2000, "lr": 5e-4}
sys.path.insert(0, str(RECIPES))  # recipes/world/make_model.py, prepare_instruct.py
from make_model import FROZEN_ENCODERS as ENCODER_MODULES  # noqa: E402  (what world.*_pretraining trains)
#: Per preset: augmented views per video in the av feature cache besides the eval one (training.data.av_cache).
CACHE_VIEWS = {"tiny": 0, "smol": 0}
#: Per preset: videos in the training world. Tiny: 1,000 since session 20 (with the 2,000-step caption stage 1:
#: 84.3-84.5 % against 300 videos' 81.1, in 16 min on an AVX-512 build machine; 2,000 videos under-fit, 72.7 %;
#: docs/world.md "Session 17" and "Session 20"), 1,150 since session 31 (the 150 more are moving shapes: below).
#: Smol: 1,000 (run s10, the shipped default model).
TRAIN_VIDEOS = {"tiny": 1150, "smol": 1000}
#: Per preset: `--visual-weight` of the training world. Tiny since session 31: moving shapes twice as often (about 290
#: of 1,150 videos against 143 of 1,000), so that, with the position-aware image stack, stage 2 learns the direction
#: of motion from enough videos to carry it to new ones (run cm2: direction 25 -> 96 % over three fresh worlds,
#: overall 91.5 -> 93.6; docs/world.md "Session 31"). The held-out worlds keep the plain mix.
TRAIN_VISUAL_WEIGHTS = {"tiny": ["move=2"], "smol": []}
#: Per preset: storage dtype of the av feature cache. float16 halves it (the smol run s10 carried it to a GPU
#: machine); features are read back as float32 and the media standardiser is fitted on what training reads.
CACHE_DTYPE = {"tiny": "float32", "smol": "float16"}
SHUFFLE = [3, 6, 0, 7, 1, 5, 2, 4]  # fixed permutation of the 8 sampled frames (only frame 5 keeps its place)


def _log(msg: str) -> None:
    print(f"[world_learning] {msg}", file=sys.stderr, flush=True)


#: `--train` options that do not change what the run trains (evaluation, parallelism, this flag): left out of the
#: options a `--resume` must match.
NOT_TRAINING_OPTIONS = ("train", "work", "model", "heldout", "ablations", "limit", "motion_probe", "max_new_tokens",
                        "workers", "threads", "resume", "ship")
#: Options added after runs were made: left empty they are not recorded, so such a run still resumes.
ADDED_OPTIONS = ("visual_weight",)


class Progress:
    """WORK/progress.json: a `--train` run's options and the steps it finished, rewritten atomically after each,
    so that `--resume` continues an interrupted run (the default command takes 20-55 min on 2 cores) from the
    first step not finished. Once a step runs again, every later step does too (each reads its predecessors)."""

    STEPS = ("generate", "model", "cache", "stage1", "stage2")

    def __init__(self, work: Path, options: dict, resume: bool):
        self.path, self.options, self.done = work / "progress.json", options, {}
        self._keeping = resume
        self.resuming: str | None = None  # the first step run again: only it may go on from its own checkpoints
        if resume and self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                old, done = saved["options"], saved["done"]
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"--resume: {self.path} is not a progress file of this script ({e}); "
                                 "drop --resume to start over") from None
            if old != options:
                diff = sorted(k for k in set(old) | set(options) if old.get(k) != options.get(k))
                raise SystemExit(f"--resume: {work} holds a run with other options (differs: {', '.join(diff)}); "
                                 "drop --resume to start over there, or give another --work")
            self.done = {k: v for k, v in done.items() if k in self.STEPS}
        elif resume:
            _log(f"--resume: nothing to resume in {work}; starting from the beginning")

    def finished(self, step: str) -> dict | None:
        """What `step` recorded when it finished, if this run keeps it; None: run it (and every later step)."""
        if self._keeping and step in self.done:
            _log(f"--resume: kept step '{step}' of the earlier run")
            return self.done[step]
        if self._keeping:
            self.resuming = step
        self._keeping = False
        return None

    def record(self, step: str, info: dict) -> None:
        later = self.STEPS[self.STEPS.index(step):]
        self.done = {k: v for k, v in self.done.items() if k not in later} | {step: info}
        from videollama.fileio import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"options": self.options, "done": self.done}, indent=1,
                                                default=str) + "\n")


def training_options(a: argparse.Namespace) -> dict:
    """The parsed `--train` options that decide what is trained, as JSON values (what `--resume` compares)."""
    return json.loads(json.dumps({k: v for k, v in sorted(vars(a).items()) if k not in NOT_TRAINING_OPTIONS
                                  and not (k in ADDED_OPTIONS and not v)}, default=str))


def apply_preset_defaults(a: argparse.Namespace) -> argparse.Namespace:
    """Give the `--train` options left unset (None) the preset's value (TRAIN_VIDEOS, CACHE_*, visual weights,
    RECORDS); returns `a`."""
    preset_defaults = {"n": TRAIN_VIDEOS[a.preset], "cache_dtype": CACHE_DTYPE[a.preset],
                       "cache_views": CACHE_VIEWS[a.preset], "visual_weight": TRAIN_VISUAL_WEIGHTS[a.preset],
                       **RECORDS[a.preset]}
    for key, value in preset_defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    return a


def recipe_overrides(world: Path, model: Path, out: Path, cache: Path | None, stage: int, extra=()) -> list[str]:
    ann = world / "webvid" if stage == 1 else world / "videochat" / "videochat_instruct_all.json"
    ov = [f"model={model}", f"output_dir={out}", f"datasets.0.annotations={ann}", f"datasets.0.media_root={world / 'videos'}"]
    if cache is not None:  # its storage dtype, as the cache's index says, is recorded in the recipe (provenance)
        from videollama.training.feature_cache import FeatureCache

        ov += [f"feature_cache={cache}", f"feature_cache_dtype={FeatureCache(cache).dtype}"]
    return ov + list(extra)


def train_stage(recipe_path: Path, overrides: list[str], adapters: dict | None = None,
                resume: bool = False) -> tuple[Path, dict]:
    """One recipe through the engine; the final model folder (LoRA merged) is written here (see docs/world.md:
    the engine's export of the official .pth has no "av" layout yet, so export=False + save_pretrained).
    `adapters`: {"out": folder, "seed": .., "data_hash": .., "recipes": [..]} writes the default model's
    adapters (media adapters + LoRA, `default_model.save_adapters`) before LoRA is merged. `resume`: go on from
    the newest checkpoint in the recipe's output_dir, if any (the world recipes write one every 500 steps);
    otherwise an earlier run's checkpoints there are dropped (the benchmark owns its work folder)."""
    from videollama.training.engine import FINAL_DIR, train
    from videollama.training.recipe import TrainRecipe

    recipe = TrainRecipe.from_yaml(recipe_path, overrides)
    res = train(recipe, resume=resume, overwrite=True, export=False, progress=False)
    model = res.model
    if adapters is not None:
        from videollama.default_model import save_adapters

        save_adapters(model, adapters["out"], seed=adapters["seed"], data_hash=adapters["data_hash"],
                      recipe=adapters["recipes"] + [recipe.to_dict()], extra=adapters.get("extra"))
        _log(f"default-model adapters written to {adapters['out']}")
    if hasattr(model.llm, "merge_and_unload"):
        model.llm = model.llm.merge_and_unload()
    final = model.save_pretrained(Path(recipe.output_dir) / FINAL_DIR, overwrite=True)
    losses = res.losses
    k = max(1, len(losses) // 10)
    info = {"steps": res.steps, "train_s": round(res.train_seconds, 1), "total_s": round(res.seconds, 1),
            "loss_first": round(sum(losses[:k]) / k, 4) if losses else None,
            "loss_last": round(sum(losses[-k:]) / k, 4) if losses else None}
    if res.resumed_from:
        info["resumed_from"] = res.resumed_from
    _log(f"{recipe.name}: {info}")
    info["losses"] = [round(x, 4) for x in losses]
    info["recipe"] = recipe.to_dict()
    return Path(final), info


def run_training(a) -> dict:
    from videollama.cli.world import parse_visual_weights
    from videollama.errors import ConfigError
    from videollama.training.data.av_cache import build_av_feature_cache
    from videollama.training.recipe import TrainRecipe
    from videollama.world.generate import WorldOptions, generate_world

    from make_model import make_world_model
    from prepare_instruct import parse_repeats, parse_types, prepare

    from videollama.world.pretraining import FIRST_SEED

    if max(a.seed, a.heldout_seed) >= FIRST_SEED:
        raise SystemExit(f"--seed and --heldout-seed must be below {FIRST_SEED} (the image-stack pretraining renders scenes "
                         "from those seeds on)")
    apply_preset_defaults(a)
    repeats = parse_repeats(a.repeat)  # checked before anything is generated
    try:
        visual_weights = parse_visual_weights(a.visual_weight)
        WorldOptions(n=1, visual_weights=visual_weights).check()
    except ConfigError as exc:
        raise SystemExit(f"world_learning.py: {exc}") from None
    mc_only = parse_types(a.mc_only)
    work = Path(a.work).resolve()  # recipes resolve relative paths against their own folder
    progress = Progress(work, training_options(a), a.resume)
    times: dict[str, Any] = {}
    train_w, held_w, model0, cache = work / "train", work / "heldout", work / "model", work / "av_cache"
    if (kept := progress.finished("generate")) is None:
        t = time.perf_counter()
        generate_world(train_w, WorldOptions(n=a.n, seed=a.seed, visual_weights=visual_weights), workers=a.workers,
                       overwrite=True, progress=None)
        generate_world(held_w, WorldOptions(n=a.heldout_n, seed=a.heldout_seed, split=a.heldout_split),
                       workers=a.workers, overwrite=True, progress=None)
        prepare(train_w, per_record=a.per_record, leak_free=a.leak_free, repeats=repeats, mc_only=mc_only)
        progress.record("generate", kept := {"generate_s": round(time.perf_counter() - t, 1)})
    times.update(kept)
    if (kept := progress.finished("model")) is None:
        kept = {}
        make_world_model(model0, seed=a.model_seed) if a.preset == "tiny" else make_smol_model(model0, a.model_seed)
        if a.encoders in ("shipped", "continue"):
            kept["encoders"] = load_world_encoders(model0, Path(a.encoders_base) if a.encoders_base
                                                   else SHIPPED_ENCODERS[a.preset])
        if a.encoders != "shipped":
            cont = a.encoders == "continue"
            vision_steps = a.vision_steps if a.vision_steps is not None else (
                VISION_CONTINUE["steps"] if cont else VISION_STEPS[a.preset])
            audio_steps = a.audio_steps if a.audio_steps is not None else (
                AUDIO_CONTINUE["steps"] if cont else AUDIO_STEPS[a.preset])
            kept.update(pretrain_world_encoders(model0, vision_steps, audio_steps, a.model_seed, a.threads,
                                                MIMETIC_ATTENTION[a.preset], continue_training=cont,
                                                vision_continue=a.vision_continue))
            if a.save_encoders:
                save_world_encoders(model0, Path(a.save_encoders), {
                    "command": "python benchmarks/world_learning.py " + " ".join(sys.argv[1:]), "preset": a.preset,
                    "model_seed": a.model_seed, **({"base": kept["encoders"]} if cont else {}),
                    **{k: kept[k] for k in ("vision_pretraining", "audio_pretraining") if k in kept}})
        progress.record("model", kept)
    times.update(kept)
    if (kept := progress.finished("cache")) is None:
        t = time.perf_counter()
        shutil.rmtree(cache, ignore_errors=True)
        from videollama.model.videollama import VideoLLaMA

        enc = VideoLLaMA.from_pretrained(model0)
        with _threads(a.threads):
            for stage, rp in ((1, STAGE_RECIPES[a.preset][0]), (2, STAGE_RECIPES[a.preset][1])):
                r = TrainRecipe.from_yaml(RECIPES / rp, recipe_overrides(train_w, model0, work / "x", None, stage))
                build_av_feature_cache(r, enc, cache, dtype=a.cache_dtype, views=a.cache_views)
        if enc.config.standardize_media_features:
            fit_standardizer(enc, cache)
            enc.save_pretrained(model0, overwrite=True)
        del enc
        progress.record("cache", kept := {"cache_s": round(time.perf_counter() - t, 1)})
    times.update(kept)
    stage_runs = {}
    for stage in (1, 2):
        name = f"stage{stage}"
        if (info := progress.finished(name)) is None:
            adapters = None
            if a.preset == "smol" and stage == 2:  # the default model's adapters, with what made them
                adapters = {"out": work / "adapters", "seed": a.model_seed, "data_hash": world_data_hash(train_w),
                            "recipes": [stage_runs[1]["recipe"]],
                            "extra": {"command": "python benchmarks/world_learning.py " + " ".join(sys.argv[1:]),
                                      "world": {"n": a.n, "seed": a.seed, "per_record": a.per_record,
                                                "leak_free": a.leak_free, "repeat": a.repeat, "mc_only": a.mc_only},
                                      **{k: times.get(k) or (times.get("encoders") or {}).get(k)
                                         for k in ("vision_pretraining", "audio_pretraining")}}}
            base = model0 if stage == 1 else Path(stage_runs[1]["model"])
            final, info = train_stage(RECIPES / STAGE_RECIPES[a.preset][stage - 1],
                                      recipe_overrides(train_w, base, work / name, cache, stage,
                                                       a.stage1 if stage == 1 else a.stage2),
                                      adapters, resume=progress.resuming == name)
            info["model"] = str(final)
            progress.record(name, info)
        stage_runs[stage] = info
        times[name] = info
    return {"model": stage_runs[2]["model"], "heldout": str(held_w), "times": times}


def fit_standardizer(model, cache: Path) -> None:
    """Fit `model`'s media standardiser on the training world's cached frozen features (frames + audio)."""
    from videollama.training.feature_cache import FeatureCache

    fc = FeatureCache(cache)
    frames, audio = [], []
    for key, e in fc.entries.items():
        entry = fc.lookup(key, (int(e["size"]), float(e["mtime"])))
        (audio if key.endswith("#audio") else frames).append(fc.load(entry))
    model.media_standardizer.fit(torch.stack(frames), torch.stack(audio) if audio else None)
    _log(f"media standardiser fitted on {len(frames)} videos' cached features")


def parse_vision_continue(items: list[str]) -> dict:
    """`--vision-continue` KEY=VALUE items to VisionPretrainOptions overrides, read and type-checked as recipe
    overrides are (`training.recipe.apply_override`, `config._from_dict`: YAML values, unknown keys named); a
    ConfigError (a ValueError) gives the reason. `steps` and `continue_training` are not options here."""
    from videollama.config import _from_dict
    from videollama.errors import ConfigError
    from videollama.training.recipe import apply_override
    from videollama.world.vision_pretraining import VisionPretrainOptions

    data: dict = {}
    for item in items:
        apply_override(data, item, "--vision-continue")
    if fixed := sorted({"steps", "continue_training"} & set(data)):
        raise ConfigError(f"--vision-continue: {', '.join(fixed)} cannot be set here (steps: --vision-steps)")
    checked = _from_dict(VisionPretrainOptions, data, "--vision-continue")
    return {key: getattr(checked, key) for key in data}


def pretrain_world_encoders(model_dir: Path, vision_steps: int, audio_steps: int, seed: int,
                            threads: int | None, mimetic_attention: float = 0.0, continue_training: bool = False,
                            vision_continue: dict | None = None) -> dict:
    """Pretrain the model folder's ViT and image Q-Former on rendered world frames (world.vision_pretraining) and
    its audio encoder on rendered world sounds (world.audio_pretraining), and save them back. 0 steps keeps that
    part as it is (seeded-random in a fresh model folder). `continue_training`: the folder's encoders are already
    pretrained; they go on from there (`VISION_CONTINUE`, `AUDIO_CONTINUE`) on frames and sounds of seed `seed + 1`;
    `vision_continue` overrides `VISION_CONTINUE`'s image-stack options (seed included). Returns
    {"vision_pretraining": info, "audio_pretraining": info} for the parts trained."""
    from videollama.model.videollama import VideoLLaMA
    from videollama.world.audio_pretraining import AudioPretrainOptions, pretrain_audio
    from videollama.world.vision_pretraining import VisionPretrainOptions, pretrain_vision

    if vision_steps <= 0 and audio_steps <= 0:
        return {}
    model = VideoLLaMA.from_pretrained(model_dir)
    out = {}
    with _threads(threads):
        if vision_steps > 0:
            if continue_training:
                opts = VisionPretrainOptions(**{**VISION_CONTINUE, "seed": seed + 1, **(vision_continue or {}),
                                                "steps": vision_steps, "continue_training": True})
            else:
                opts = VisionPretrainOptions(steps=vision_steps, seed=seed, mimetic_attention=mimetic_attention)
            out["vision_pretraining"] = pretrain_vision(model, opts, progress=False)
            _log(f"world image stack pretrained: {out['vision_pretraining']['seconds']} s, "
                 f"accuracy {out['vision_pretraining']['accuracy']}")
        if audio_steps > 0:
            if continue_training:
                audio_opts = AudioPretrainOptions(**{**AUDIO_CONTINUE, "seed": seed + 1, "steps": audio_steps})
            else:
                audio_opts = AudioPretrainOptions(steps=audio_steps, seed=seed)
            out["audio_pretraining"] = pretrain_audio(model, audio_opts, progress=False)
            _log(f"world audio encoder pretrained: {out['audio_pretraining']['seconds']} s, "
                 f"accuracy {out['audio_pretraining']['accuracy']}")
    model.save_pretrained(model_dir, overwrite=True)
    return out


def save_world_encoders(model_dir: Path, out: Path, provenance: dict) -> None:
    """Write the model folder's pretrained frozen encoders (`ENCODER_MODULES`) to one safetensors file, with the
    provenance (command, options, read-out accuracy, machine) in its metadata; atomically."""
    import os
    import platform

    from safetensors.torch import save_file

    from videollama.model.videollama import VideoLLaMA

    state = VideoLLaMA.from_pretrained(model_dir).state_dict()
    tensors = {k: v.contiguous() for k, v in state.items() if k.split(".")[0] in ENCODER_MODULES}
    prov = {**provenance, "modules": list(ENCODER_MODULES), "torch": torch.__version__,
            "machine": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
            "date": time.strftime("%Y-%m-%d")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp), metadata={"provenance": json.dumps(prov, default=str)})
    os.replace(tmp, out)
    _log(f"saved the pretrained encoders to {out}")


def load_world_encoders(model_dir: Path, path: Path) -> dict:
    """Replace the model folder's frozen encoders (`ENCODER_MODULES`) by the shipped pretrained ones; returns the
    file's provenance. A file that does not fit the model (another architecture) is a one-line error."""
    from safetensors import safe_open

    from videollama.model.videollama import VideoLLaMA

    if not path.is_file():
        raise SystemExit(f"{path}: shipped encoders not found (use --encoders pretrain)")
    with safe_open(str(path), framework="pt") as f:  # only the encoders: the smol file holds all the adapters
        tensors = {k: f.get_tensor(k) for k in f.keys() if k.split(".")[0] in ENCODER_MODULES}
        prov = json.loads((f.metadata() or {}).get("provenance", "{}"))
    if not prov and path.name == ADAPTERS_FILE:  # the default model's adapters: how their encoders were pretrained
        prov = {k: v for k, v in (read_provenance(path.parent) or {}).items() if k.endswith("_pretraining")}
    model = VideoLLaMA.from_pretrained(model_dir)
    state = model.state_dict()
    want = {k for k in state if k.split(".")[0] in ENCODER_MODULES}
    bad = sorted(want ^ set(tensors)) + sorted(k for k in want & set(tensors) if tensors[k].shape != state[k].shape)
    if bad:
        raise SystemExit(f"{path}: the shipped encoders do not fit {model_dir} ({len(bad)} keys differ, e.g. {bad[0]}); "
                         "use --encoders pretrain")
    model.load_state_dict(tensors, strict=False)
    model.save_pretrained(model_dir, overwrite=True)
    _log(f"loaded the shipped encoders from {path}")
    return prov


def world_data_hash(world: Path) -> str:
    """sha256 over a generated world's annotation hashes (manifest) and the stage-2 instruction file."""
    import hashlib

    manifest = json.loads((world / "manifest.json").read_text())
    h = hashlib.sha256(json.dumps(manifest["annotation_sha256"], sort_keys=True).encode())
    h.update((world / "videochat" / "videochat_instruct_all.json").read_bytes())
    return h.hexdigest()


def make_smol_model(out: Path, seed: int = 0) -> Path:
    """The default model's architecture (preset smol, SmolLM2-135M-Instruct) with its seeded media init."""
    from videollama.default_model import build_default_videollama

    return build_default_videollama(seed).save_pretrained(out, overwrite=True)  # tokenizer files come along


@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def evaluate(model_dir: Path, heldout: Path, out: Path, ablation: str, max_new_tokens: int = 24,
             limit: int | None = None) -> dict:
    """Per-kind accuracy of one ablation on the held-out world's questions.jsonl."""
    from videollama.evaluation.runner import EvalConfig, Evaluation
    from videollama.inference.pipeline import VideoLLaMAPipeline

    pipe = VideoLLaMAPipeline.from_pretrained(model_dir)
    model = pipe.model
    if ablation == "b":
        with torch.no_grad():
            model.frame_position_embedding.weight.zero_()
    if ablation == "c":
        inner = model.frame_features

        def shuffled(video, *args, **kw):
            if video.dim() == 5 and video.shape[2] == len(SHUFFLE):
                video = video[:, :, SHUFFLE]
            return inner(video, *args, **kw)

        model.frame_features = shuffled
    cfg = EvalConfig(task="world", data=heldout / "questions.jsonl", media_root=heldout, out=out / ablation,
                     model=model_dir, generation={"max_new_tokens": max_new_tokens}, use_audio=ablation != "d",
                     overwrite=True, progress=False, limit=limit, batch_size=16)
    summary = Evaluation(cfg, pipe=pipe).run()
    return {"overall": summary["metrics"], "kind": summary["breakdown"].get("kind"),
            "type": summary["breakdown"].get("type"), "elapsed_s": summary["elapsed_s"]}


#: Videos shorter than this are "short" in `length_table`: their 8 two-second audio clips start at most 0.25 s apart
#: (`media.audio.clip_timepoints`: k * (duration - 2) / 8), so the clips' order says little about when a sound
#: plays (docs/world.md, "Session 24").
SHORT_VIDEO_S = 4.0


def accuracy_by_length(eval_dir: Path, short_s: float = SHORT_VIDEO_S) -> dict[str, dict[str, dict]]:
    """{kind or type: {"short" | "long": {"n", "accuracy"}}} of one evaluation (`eval_dir`: the predictions and
    verdicts files its summary.json names), split by the length of each question's video (the generated world's
    timeline beside it, `duration`); questions whose video has no timeline are left out."""
    from videollama.evaluation.records import read_jsonl

    files = json.loads((eval_dir / "summary.json").read_text())["files"]
    verdicts = {v["id"]: v["correct"] for v in read_jsonl(eval_dir / files["verdicts"])}
    lengths: dict[str, float | None] = {}
    groups: dict[str, dict[str, list[bool]]] = {}
    for pred in read_jsonl(eval_dir / files["predictions"]):
        media = pred["media"]
        if media not in lengths:
            timeline = Path(media).with_suffix(".json")
            lengths[media] = json.loads(timeline.read_text())["duration"] if timeline.is_file() else None
        if lengths[media] is None or pred["id"] not in verdicts:
            continue
        band = "short" if lengths[media] < short_s else "long"
        for key in (pred["categories"].get("kind"), pred["categories"].get("type")):
            if key:
                groups.setdefault(key, {}).setdefault(band, []).append(bool(verdicts[pred["id"]]))
    return {key: {band: {"n": len(v), "accuracy": round(100 * sum(v) / len(v), 1)} for band, v in sorted(bands.items())}
            for key, bands in sorted(groups.items())}


def length_table(by_length: dict[str, dict], short_s: float = SHORT_VIDEO_S) -> str:
    """Accuracy per kind, and per type of the audio-visual kind, by video length (`accuracy_by_length` of each
    ablation), one column per ablation."""
    from videollama.world.questions import QUESTION_TYPES

    rows = [*KINDS, *QUESTION_TYPES["audiovisual"]]
    lines = ["| kind or type | video | n | " + " | ".join(f"({ab})" for ab in by_length) + " |",
             "|---|---|---|" + "---|" * len(by_length)]
    for key in rows:
        for band, label in (("short", f"< {short_s:g} s"), ("long", f">= {short_s:g} s")):
            cells = [r.get(key, {}).get(band) for r in by_length.values()]
            n = next((c["n"] for c in cells if c), 0)
            if n:
                lines.append(f"| {key} | {label} | {n} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


#: Held-out videos for the Q-Former diagnostics: token sharing, and where the video Q-Former reads.
SHARING_VIDEOS, READ_VIDEOS = 40, 12


def qformer_diagnostics(model_dir: Path, heldout: Path, n_videos: int = SHARING_VIDEOS,
                        n_read: int = READ_VIDEOS) -> tuple[dict, list]:
    """The trained model's Q-Former diagnostics (`model.diagnostics`) on the held-out videos: how far its tokens
    are one token repeated (first `n_videos`; 1.0 = collapsed, about 1/32 = independent tokens), and where the video
    Q-Former's cross-attention reads from (first `n_read`)."""
    from videollama.evaluation.tasks.base import read_records  # the world eval task's reader of questions.jsonl
    from videollama.model.diagnostics import qformer_token_sharing, video_qformer_reads
    from videollama.model.videollama import VideoLLaMA

    media = sorted({q["media"] for q in read_records(heldout / "questions.jsonl")})
    model = VideoLLaMA.from_pretrained(model_dir).eval()
    return (qformer_token_sharing(model, [heldout / m for m in media[:n_videos]]),
            video_qformer_reads(model, [heldout / m for m in media[:n_read]]))


def motion_probe(model_dir: Path, world: Path) -> dict:
    """How far the direction of motion in `world`'s videos where a shape moves can be read linearly along the
    trained model's video path (`model.diagnostics.motion_direction_probe`; docs/world.md, "Session 23")."""
    from videollama.model.diagnostics import motion_direction_probe
    from videollama.model.videollama import VideoLLaMA

    scenes = [json.loads(p.read_text()) for p in sorted((world / "videos").glob("*/*.json"))]
    moves = [s for s in scenes if s.get("visual_story") == "move"]
    if len(moves) < 10:
        raise SystemExit(f"{world}: --motion-probe needs a generated world with at least 10 videos where a shape "
                         f"moves, found {len(moves)}")
    model = VideoLLaMA.from_pretrained(model_dir).eval()
    return motion_direction_probe(model, [world / "videos" / s["video"] for s in moves],
                                  [s["objects"][0]["motion"]["direction"] for s in moves])


def answer_reads(model_dir: Path, heldout: Path, n_per_kind: int = READ_VIDEOS) -> dict[str, list]:
    """Where the trained model's LLM looks from the position that writes the first answer token
    (`model.diagnostics.answer_attention`), over the first `n_per_kind` held-out questions of each kind."""
    from videollama.evaluation.tasks.base import read_records
    from videollama.inference.pipeline import VideoLLaMAPipeline
    from videollama.model.diagnostics import answer_attention

    pipe = VideoLLaMAPipeline.from_pretrained(model_dir)
    by_kind: dict[str, list] = {}
    for q in read_records(heldout / "questions.jsonl"):
        by_kind.setdefault(q["kind"], []).append((heldout / q["media"], q["question"]))
    return {kind: answer_attention(pipe, qs[:n_per_kind]) for kind, qs in sorted(by_kind.items())}


def answer_reads_summary(reads: dict[str, list]) -> str:
    """Per kind and LLM layer: the mean share of the heads' attention on the video and audio tokens, and the head
    that looks at the video most (its share and its entropy over the video tokens)."""
    parts = []
    for kind, layers in reads.items():
        cells = []
        for i, heads in enumerate(layers):
            mean = {k: sum(h["share"].get(k, 0.0) for h in heads) / len(heads) for k in ("video", "audio")}
            top = max(heads, key=lambda h: h["share"].get("video", 0.0))
            cells.append(f"layer {i} video {mean['video']:.2f} audio {mean['audio']:.2f} (top head video "
                         f"{top['share'].get('video', 0.0):.2f}, entropy {top.get('video_entropy', float('nan')):.2f})")
        parts.append(f"{kind}: " + ", ".join(cells))
    return "; ".join(parts)


def reads_summary(reads: list) -> str:
    """One line per cross-attention layer: mean distinct keys over the heads, and the frame mass averaged over them."""
    lines = []
    for i, heads in enumerate(reads):
        mass = [sum(h["frame_mass"][f] for h in heads) / len(heads) for f in range(len(heads[0]["frame_mass"]))]
        keys = sum(h["distinct_keys"] for h in heads) / len(heads)
        lines.append(f"layer {i}: distinct keys per head {keys:.1f}, frame mass " + " ".join(f"{m:.2f}" for m in mass))
    return "; ".join(lines)


def _acc(m) -> float | None:
    if isinstance(m, dict):
        for k in ("accuracy", "acc"):
            if k in m:
                return float(m[k])
    return None


def _cell(m) -> str:
    """A metrics dict as a table cell: accuracy to one decimal, "-" when there is none."""
    from videollama.evaluation.summary import _fmt

    return _fmt(_acc(m), 1)


def table(results: dict) -> str:
    lines = ["| ablation | overall | " + " | ".join(KINDS) + " |", "|---|---|" + "---|" * len(KINDS)]
    for ab, r in results.items():
        kinds = r["kind"] or {}
        lines.append(f"| ({ab}) {ABLATIONS[ab]} | {_cell(r['overall'])} | " + " | ".join(_cell(kinds.get(k)) for k in KINDS)
                     + " |")
    return "\n".join(lines)


def type_table(results: dict) -> str:
    """Accuracy per question type (the world's `type`: shape, beeps, ...), one column per ablation."""
    types = sorted({t for r in results.values() for t in (r.get("type") or {})})
    lines = ["| type | n | " + " | ".join(f"({ab})" for ab in results) + " |", "|---|---|" + "---|" * len(results)]
    for t in types:
        cells = [(r.get("type") or {}).get(t) for r in results.values()]
        n = next((c["n"] for c in cells if c), 0)
        lines.append(f"| {t} | {n} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def ship_adapters(folder: Path, results: dict, heldout: Path) -> None:
    """Record the held-out accuracy in the adapters' provenance and copy them into the package's assets."""
    import os

    from videollama.fileio import atomic_write_text
    from videollama.default_model import PROVENANCE_FILE

    prov = json.loads((folder / PROVENANCE_FILE).read_text())
    held = json.loads((heldout / "manifest.json").read_text())["options"]
    prov["heldout"] = {"world": held, "accuracy": {ab: {"overall": _acc(r["overall"]),
                                                        **{k: _acc((r["kind"] or {}).get(k)) for k in KINDS}}
                                                   for ab, r in results.items()}}
    ASSETS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = ASSETS_DIR / f".{ADAPTERS_FILE}.tmp"  # each file replaced atomically; provenance last
    shutil.copy2(folder / ADAPTERS_FILE, tmp)
    os.replace(tmp, ASSETS_DIR / ADAPTERS_FILE)
    atomic_write_text(ASSETS_DIR / PROVENANCE_FILE, json.dumps(prov, indent=1, default=str) + "\n")
    _log(f"shipped the default model's adapters to {ASSETS_DIR}")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked (argparse's usage error for a bad combination)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", action="store_true", help="generate the worlds and train both stages first")
    ap.add_argument("--work", default="runs/world", help="working folder (--train)")
    ap.add_argument("--resume", action="store_true", help="--train: continue the run in --work where it stopped "
                    "(WORK/progress.json): finished steps are kept if its options were the same, a stage goes on "
                    "from its newest checkpoint")
    ap.add_argument("--model", help="trained model folder (without --train)")
    ap.add_argument("--heldout", help="held-out world folder (without --train)")
    ap.add_argument("--preset", choices=sorted(STAGE_RECIPES), default="tiny", help="model: tiny (random LLM) "
                    "or smol (SmolLM2-135M-Instruct, the default model's architecture)")
    ap.add_argument("--n", type=int, default=None, help="training videos (default: "
                    + ", ".join(f"{k} {v}" for k, v in TRAIN_VIDEOS.items()) + ")")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--visual-weight", action="append", default=None, metavar="STORY=K", help="training world "
                    "only: visual story STORY K times as frequent as the others (`world generate --visual-weight`; "
                    "default: " + "; ".join(f"{k} {' '.join(v) or 'none'}" for k, v in TRAIN_VISUAL_WEIGHTS.items())
                    + "); the held-out world keeps the plain mix")
    ap.add_argument("--heldout-n", type=int, default=100)
    ap.add_argument("--heldout-seed", type=int, default=7)
    ap.add_argument("--heldout-split", choices=("heldout", "train"), default="heldout", help="heldout: (shape, colour) "
                    "pairs never seen in training; train: the training distribution (a fresh seed only)")
    ap.add_argument("--per-record", type=int, default=3)
    ap.add_argument("--leak-free", action=argparse.BooleanOptionalAction, default=None, help="stage-2 records "
                    "where no turn gives a later turn's answer away (recipes/world/prepare_instruct.py; default: "
                    + ", ".join(f"{k} {v['leak_free']}" for k, v in RECORDS.items()) + ")")
    ap.add_argument("--repeat", default=None, help="TYPE=K,...: stage-2 records ask every question of these types K "
                    "times (recipes/world/prepare_instruct.py; default: "
                    + "; ".join(f"{k} {v['repeat'] or 'none'}" for k, v in RECORDS.items()) + ")")
    ap.add_argument("--mc-only", default=None, help="TYPE,...: stage-2 records ask these types (types with choices) "
                    "in the multiple-choice form only (recipes/world/prepare_instruct.py; default: "
                    + "; ".join(f"{k} {v['mc_only'] or 'none'}" for k, v in RECORDS.items()) + ")")
    ap.add_argument("--model-seed", type=int, default=0)
    ap.add_argument("--vision-steps", type=int, default=None, help="pretraining steps of the world ViT and image "
                    "Q-Former before the feature cache (world.vision_pretraining; 0: keep the seeded random ones; default: "
                    + ", ".join(f"{k} {v}" for k, v in VISION_STEPS.items()) + ")")
    ap.add_argument("--audio-steps", type=int, default=None, help="pretraining steps of the world audio encoder "
                    "before the feature cache (world.audio_pretraining; 0: keep the seeded random one; default: "
                    + ", ".join(f"{k} {v}" for k, v in AUDIO_STEPS.items()) + ")")
    ap.add_argument("--encoders", choices=("shipped", "pretrain", "continue"), default=None, help="the frozen "
                    "encoders: shipped (pretrained once, " + ", ".join(f"{k}: {v.relative_to(ROOT)}" for k, v in
                                                                    SHIPPED_ENCODERS.items() if v)
                    + "), pretrain them in this run (--vision-steps, --audio-steps), or continue: pretrain the shipped "
                    f"ones (or --encoders-base) further (default --vision-steps {VISION_CONTINUE['steps']}, "
                    f"--audio-steps {AUDIO_CONTINUE['steps']}); default: shipped where the preset has them, unless a step "
                    "count is given")
    ap.add_argument("--encoders-base", metavar="FILE", help="with --encoders continue (or shipped): start from these "
                    "encoders (a file written by --save-encoders) instead of the shipped ones")
    ap.add_argument("--vision-continue", nargs="*", default=[], metavar="KEY=VALUE", help="with --encoders continue: "
                    "override VISION_CONTINUE's image-stack options (world.vision_pretraining.VisionPretrainOptions "
                    "fields, e.g. token_slot_weight=1 token_slot_mean_only=true seed=2)")
    ap.add_argument("--save-encoders", metavar="FILE", help="with --encoders pretrain or continue: write the pretrained "
                    "encoders and their provenance to FILE (how the shipped ones were made)")
    ap.add_argument("--cache-views", type=int, default=None, help="augmented views per video in the av feature cache "
                    "(train-transform crops; each training sample gets one of them or the eval view; default: "
                    + ", ".join(f"{k} {v}" for k, v in CACHE_VIEWS.items()) + ")")
    ap.add_argument("--cache-dtype", choices=("float32", "float16"), default=None, help="storage dtype of the av "
                    "feature cache (default: " + ", ".join(f"{k} {v}" for k, v in CACHE_DTYPE.items()) + ")")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--stage1", nargs="*", default=[], help="key=value overrides of stage 1")
    ap.add_argument("--stage2", nargs="*", default=[], help="key=value overrides of stage 2")
    ap.add_argument("--ablations", default="abcd")
    ap.add_argument("--ship", action="store_true", help="--preset smol: copy the trained adapters (with provenance "
                    "and held-out accuracy) into src/videollama/assets/default_model/")
    ap.add_argument("--limit", type=int, default=None, help="evaluate the first N questions only")
    ap.add_argument("--motion-probe", metavar="WORLD", help="also report how far the direction of motion in WORLD's "
                    "videos (a generated world: the training world has about 140 where a shape moves) can be read "
                    "linearly from the image Q-Former's tokens, the video Q-Former's outputs and the LLM embeddings")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    a = ap.parse_args(argv)
    if a.cache_views is not None and a.cache_views < 0:
        ap.error(f"--cache-views must be >= 0, got {a.cache_views}")
    pretraining_options = a.vision_steps is not None or a.audio_steps is not None or bool(a.save_encoders)
    if a.encoders is None:
        a.encoders = "shipped" if SHIPPED_ENCODERS[a.preset] and not pretraining_options else "pretrain"
    if a.encoders in ("shipped", "continue") and not (SHIPPED_ENCODERS[a.preset] or a.encoders_base):
        ap.error(f"--preset {a.preset} has no shipped encoders: use --encoders pretrain (or --encoders-base FILE)")
    if a.encoders == "shipped" and pretraining_options:
        ap.error("--vision-steps, --audio-steps and --save-encoders need --encoders pretrain or continue")
    try:
        a.vision_continue = parse_vision_continue(a.vision_continue)
    except ValueError as e:
        ap.error(str(e))
    if a.vision_continue and a.encoders != "continue":
        ap.error("--vision-continue needs --encoders continue")
    if a.encoders_base and a.encoders == "pretrain":
        ap.error("--encoders-base needs --encoders continue or shipped")
    if a.motion_probe and not a.train and not (Path(a.motion_probe) / "videos").is_dir():
        ap.error(f"--motion-probe {a.motion_probe}: not a generated world (no videos/ folder)")
    if a.resume and not a.train:
        ap.error("--resume needs --train")
    if a.ship and not (a.train and a.preset == "smol"):
        ap.error("--ship needs --train --preset smol")
    if a.ship and a.heldout_split != "heldout":
        ap.error("--ship records held-out accuracy: it needs --heldout-split heldout (unseen (shape, colour) pairs)")
    if not a.train and not (a.model and a.heldout):
        ap.error("give --train, or --model and --heldout")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    info: dict = {}
    if a.train:
        info = run_training(a)
        model_dir, heldout = Path(info["model"]), Path(info["heldout"])
    else:
        model_dir, heldout = Path(a.model), Path(a.heldout)
    info["train_total_s"] = round(time.perf_counter() - t0, 1)
    work = Path(a.work)
    results = {}
    for ab in a.ablations:
        t = time.perf_counter()
        results[ab] = evaluate(model_dir, heldout, work / "eval", ab, a.max_new_tokens, a.limit)
        results[ab]["by_length"] = accuracy_by_length(work / "eval" / ab)
        _log(f"({ab}) {ABLATIONS[ab]}: {round(time.perf_counter() - t, 1)} s")
    info["token_sharing"], info["video_qformer_reads"] = qformer_diagnostics(model_dir, heldout)
    _log(f"share of the Q-Former tokens' variance common to all tokens: {info['token_sharing']}")
    _log(f"where the video Q-Former reads ({READ_VIDEOS} held-out videos): {reads_summary(info['video_qformer_reads'])}")
    info["answer_attention"] = answer_reads(model_dir, heldout)
    _log(f"where the LLM looks when it starts an answer ({READ_VIDEOS} held-out questions per kind; uniform entropy "
         f"over the video tokens: log of their number): {answer_reads_summary(info['answer_attention'])}")
    if a.motion_probe:
        info["motion_probe"] = motion_probe(model_dir, Path(a.motion_probe))
        _log(f"direction of motion read linearly (% of {a.motion_probe}'s moving-shape videos; chance about 25): "
             f"{info['motion_probe']}")
    info["total_s"] = round(time.perf_counter() - t0, 1)
    info["results"] = results
    work.mkdir(parents=True, exist_ok=True)
    (work / "ablations.json").write_text(json.dumps(info, indent=1, default=str))
    if a.ship:
        ship_adapters(work / "adapters", results, heldout)
    print(table(results))
    print()
    print(type_table(results))
    print()
    print(length_table({ab: r["by_length"] for ab, r in results.items()}))
    print(json.dumps({k: v for k, v in info.items() if k != "results"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
