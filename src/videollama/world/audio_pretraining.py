"""Pretraining of the world models' frozen audio encoder (the ImageBind-style audio trunk), the analogue of
ImageBind's pretraining (not part of Video-LLaMA).

Video-LLaMA keeps ImageBind's audio encoder frozen because it was *pretrained*: its clip embedding says what
sound a 2-second clip holds. A seeded random trunk does not say it well: the default model s5, trained on top of
one, answered "is the tone high or low?" at chance (54 %) and "how many beeps?" at 21 % on held-out videos
(docs/world.md, "Session 5").

Objectives (written by hand: no library has a task for this synthetic world), one linear head each on the clip
embedding (what the audio Q-Former reads), per 2-second clip:
- which sound types are heard in it (multi-label: tone, noise, beeps, speech);
- the tone's pitch and timbre (or no tone); the number of beeps (0-4); the spoken word (or none);
- the type of the clip's first sound (or silence), so the order of two sounds inside one clip is kept.
A sound counts for a clip when at least `MIN_OVERLAP_S` of it (of one beep, for beeps) lies inside the clip.

Data: an endless, seeded stream of clips from fresh *training-split* scene timelines (seeds from
`pretraining.FIRST_SEED` on, as the image-stack pretraining), rendered by `world.render.render_audio` and
cut into the 8 ImageBind clips exactly as the inference loader does (`media.audio.clips_from_waveform`;
training and inference read the AAC-decoded track: a small gap). Only `model.audio_encoder` is trained; it is
left frozen (requires_grad False, eval mode).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videollama.media.audio import clip_sample_bounds, clip_timepoints, clips_from_waveform
from videollama.world import vocab as V
from videollama.world.pretraining import next_batch, train_then_freeze, training_scene_blocks
from videollama.world.render import render_audio, synth_speech

log = logging.getLogger(__name__)

SOUND_TYPES = ("tone", "noise", "beeps", "speech")
PITCHES = tuple(sorted(V.TONE_HZ))
WAVEFORMS = tuple(sorted(V.TIMBRES))
MAX_BEEPS = 4
MIN_OVERLAP_S = 0.05
#: target name -> number of classes (0 = none / silence for every single-label target)
TARGETS = {"pitch": 1 + len(PITCHES), "timbre": 1 + len(WAVEFORMS), "beeps": 1 + MAX_BEEPS,
           "word": 1 + len(V.WORDS), "first": 1 + len(SOUND_TYPES)}


@dataclass(frozen=True)
class AudioPretrainOptions:
    steps: int = 200
    batch_size: int = 32  # clips per step
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    scenes_per_block: int = 64
    speech: bool = False  # as the world's WorldOptions.speech (needs espeak-ng)
    train_encoder: bool = True  # False: only the heads learn, a probe of the encoder as is


@dataclass
class ClipBatch:
    """(N, 1, 128, 204) fbank clips, (N, 4) sound presence (0/1) and (N, len(TARGETS)) single-label targets."""

    clips: torch.Tensor
    present: torch.Tensor
    labels: torch.Tensor


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _beep_spans(e: dict[str, Any]) -> list[tuple[float, float]]:
    period = V.BEEP_ON_S + V.BEEP_OFF_S
    return [(e["start"] + k * period, e["start"] + k * period + V.BEEP_ON_S) for k in range(e["count"])]


def clip_labels(events: list[dict[str, Any]], start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets of the clip [start, end) s: (4,) presence per `SOUND_TYPES` and (len(TARGETS),) class ids."""
    present = np.zeros(len(SOUND_TYPES), np.float32)
    labels = dict.fromkeys(TARGETS, 0)
    heard = []
    for e in events:
        if e["type"] == "beeps":
            spans = [s for s in _beep_spans(e) if _overlap(*s, start, end) >= min(MIN_OVERLAP_S, V.BEEP_ON_S / 2)]
            if not spans:
                continue
            labels["beeps"] = min(len(spans), MAX_BEEPS)
        elif _overlap(e["start"], e["end"], start, end) < MIN_OVERLAP_S:
            continue
        heard.append(e)
        present[SOUND_TYPES.index(e["type"])] = 1
        if e["type"] == "tone":
            labels["pitch"] = 1 + PITCHES.index(e["pitch"])
            labels["timbre"] = 1 + WAVEFORMS.index(e["timbre"])
        elif e["type"] == "speech":
            labels["word"] = 1 + V.WORDS.index(e["word"])
    if heard:
        labels["first"] = 1 + SOUND_TYPES.index(min(heard, key=lambda e: e["start"])["type"])
    return present, np.array([labels[k] for k in TARGETS], np.int64)


def scene_clips(scene: dict[str, Any], speech: dict[str, np.ndarray]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The scene's 8 ImageBind clips (8, 1, 128, 204) as the inference loader cuts them, with their targets."""
    wave = torch.from_numpy(render_audio(scene, speech))[None].clone()
    n = wave.shape[1]
    times = clip_timepoints(n)
    clips = clips_from_waveform([(0, wave)], clip_sample_bounds(times), n, scene["id"])
    labels = [clip_labels(scene["audio_events"], float(s), float(e)) for s, e in times]
    return clips, np.stack([p for p, _ in labels]), np.stack([t for _, t in labels])


def rendered_clips(seed: int, speech: bool = False, scenes_per_block: int = 64
                   ) -> Iterator[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
    """Endless seeded (clip (1, 128, 204), presence (4,), targets) triples, 8 clips per timeline, shuffled within
    blocks of `scenes_per_block` timelines."""
    words = {w: synth_speech(w) for w in V.WORDS} if speech else {}
    lengths = {w: len(x) / V.SAMPLE_RATE for w, x in words.items()}
    for block, scenes in training_scene_blocks(seed, scenes_per_block, speech, lengths):
        parts = [scene_clips(sc, words) for sc in scenes]
        clips = torch.cat([c for c, _, _ in parts])
        present = np.concatenate([p for _, p, _ in parts])
        labels = np.concatenate([t for _, _, t in parts])
        for j in np.random.default_rng([seed, block]).permutation(len(clips)):
            yield clips[j], present[j], labels[j]


def _batch(stream: Iterator, n: int) -> ClipBatch:
    return ClipBatch(*next_batch(stream, n))


class AudioHeads(nn.Module):
    """Read-outs used only during pretraining (discarded after): linear heads on the normalised clip embedding."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.present = nn.Linear(embed_dim, len(SOUND_TYPES))
        self.targets = nn.ModuleDict({k: nn.Linear(embed_dim, n) for k, n in TARGETS.items()})

    def forward(self, encoder: nn.Module, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        ref = next(encoder.parameters())
        x = self.norm(encoder(clips.to(device=ref.device, dtype=ref.dtype)).to(self.present.weight.dtype))
        return {"present": self.present(x), **{k: head(x) for k, head in self.targets.items()}}


def _loss(out: dict[str, torch.Tensor], batch: ClipBatch) -> torch.Tensor:
    labels = batch.labels.to(out["present"].device)
    loss = F.binary_cross_entropy_with_logits(out["present"].float(), batch.present.to(labels.device))
    for i, k in enumerate(TARGETS):
        loss = loss + F.cross_entropy(out[k].float(), labels[:, i])
    return loss


def audio_accuracy(encoder: nn.Module, heads: AudioHeads, batch: ClipBatch) -> dict[str, float]:
    """% right: sound presence (all clip x type pairs), and each target over the clips where it applies (pitch and
    timbre: clips with a tone; beeps: clips with beeps; word: clips with speech; first: all clips)."""
    with torch.no_grad():
        out = heads(encoder, batch.clips)
    labels, present = batch.labels.to(out["present"].device), batch.present.to(out["present"].device)

    def pct(hits: torch.Tensor) -> float | None:
        return round(100 * hits.float().mean().item(), 1) if hits.numel() else None

    first = labels[:, list(TARGETS).index("first")]
    res = {"present": pct((out["present"] > 0).float() == present), "first": pct(out["first"].argmax(-1) == first)}
    for k, kind in (("pitch", "tone"), ("timbre", "tone"), ("beeps", "beeps"), ("word", "speech")):
        i = list(TARGETS).index(k)
        has = present[:, SOUND_TYPES.index(kind)] > 0
        res[k] = pct((out[k].argmax(-1) == labels[:, i])[has])
    return res


def pretrain_audio(model, opts: AudioPretrainOptions = AudioPretrainOptions(), progress: bool = True,
                   eval_clips: int = 256) -> dict[str, Any]:
    """Train `model.audio_encoder` in place on rendered world audio clips, then freeze it. Returns options, losses,
    seconds and the heads' accuracy (`audio_accuracy`) on `eval_clips` clips of a separate validation stream. The
    global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _pretrain(model, opts, progress, eval_clips)


def _pretrain(model, opts: AudioPretrainOptions, progress: bool, eval_clips: int) -> dict[str, Any]:
    encoder = model.audio_encoder
    torch.manual_seed(opts.seed)
    heads = AudioHeads(model.config.audio_encoder.out_dim).to(device=model.device)  # fp32 heads and optimizer state
    val = _batch(rendered_clips(opts.seed + 1, opts.speech, 16), eval_clips)
    encoder.eval()  # a probe (train_encoder False) must not build its grads
    encoder.requires_grad_(False)
    stream = rendered_clips(opts.seed, opts.speech, opts.scenes_per_block)

    def step_loss() -> torch.Tensor:
        batch = _batch(stream, opts.batch_size)
        return _loss(heads(encoder, batch.clips), batch)

    out = {"options": asdict(opts),
           **train_then_freeze([encoder] if opts.train_encoder else [], heads, step_loss, opts.steps, opts.lr,
                               opts.weight_decay, opts.warmup_steps, "pretrain world audio encoder", progress),
           "accuracy": audio_accuracy(encoder, heads, val)}
    log.info("world audio-encoder pretraining: %s", out)
    return out
