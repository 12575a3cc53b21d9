"""Pretraining of the world models' frozen image stack (ViT + image Q-Former), the analogue of EVA-CLIP's and
BLIP-2's pretraining (not part of Video-LLaMA).

Video-LLaMA can keep its image encoder and image Q-Former frozen because they were *pretrained*: EVA-CLIP's patch
tokens say what is in a frame, and BLIP-2's 32 query tokens summarise it. Seeded random ones do not. A probe that trains the
model's video path (video Q-Former + projection) with direct labels on 400 training-world videos reached, on 100
fresh videos, 77 % on the visual story (7 kinds) and 64 % on the object count over a pretrained ViT under the
random image Q-Former, and 89 % / 100 % once the image Q-Former is pretrained too (docs/world.md, "Session 4").

Objectives (written by hand: no library has a task for this synthetic world):
- per patch (ViT, after ``ln_vision``): a linear head predicts the colour ("none" for background) and the shape
  of the object under the patch centre; object patches weigh 5x;
- per frame (image Q-Former's query tokens): one attention read-out per colour predicts whether an object of
  that colour is on screen and its shape (6 classes: absent + 5 shapes; a frame never shows a colour twice),
  and a linear head on the mean token predicts how many objects are on screen.
On the smol preset (batch 16), patch colour is learned within ~50 steps and presence and count within
~100-250; shape stays weak (~40 % of object patches and ~29 % of colour slots after 800 steps, chance 20 %).
Object positions were tried as a target too (regression, and 3x3 / 4x4 cells) and were not learned within the
budget (docs/world.md, "Session 4").

The image Q-Former's query tokens are re-drawn N(0, 1) before training: with the 0.02 of the random init all 32
queries start (and stay) nearly equal, so the 32 output tokens carry about one token's worth of information.
The ViT's position embedding is re-set to MAE's fixed 2-D sin-cos table (then trained): the seeded N(0, 1)
table has no spatial structure (no notion of "next to") and is 94 % of a patch token's variance. On the smol
preset, the colour slots' shape rose 14.7 -> 18.2 % after 200 steps and 22.4 -> 28.7 % after 400 (lr 3e-3)
with it (docs/world.md, "Session 5").
With ``mimetic_attention`` the ViT's query / key weights start as in mimetic initialisation, so its attention
starts out following token similarity (content and position) instead of being about uniform. On the
learning-proof model (a 4-block, 128-wide ViT) object-patch shape reaches 82 % after 1,000 steps and 93 % after
2,000 with it, against 35-41 % without it at any size and step count tried (docs/world.md, "Session 6").

Data: an endless, seeded stream of frames rendered from fresh *training-split* scene timelines
(`world.scene.sample_scene`, seeds from 10 000 on, so never a world's own videos and never a held-out
(shape, colour) pair), scaled to the encoder's input size bilinearly from the clean RGB render (training and
inference read H.264 frames: a small gap at colour edges). Only `model.vision` and `model.image_qformer` are
trained; both are left frozen (requires_grad False, eval mode).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videollama.media.normalize import normalize_frames
from videollama.model.diagnostics import shared_token_fraction
from videollama.world import vocab as V
from videollama.world.pretraining import next_batch, train_then_freeze, training_scene_blocks
from videollama.world.render import object_masks, render_frame
from videollama.world.scene import state_at_frame

log = logging.getLogger(__name__)

COLOURS = tuple(V.COLOURS)
MAX_OBJECTS = 4  # a world frame shows 0..4 objects
QUERY_STD = 1.0  # the image Q-Former's query tokens are re-drawn with this std before its pretraining


@dataclass(frozen=True)
class VisionPretrainOptions:
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    foreground_weight: float = 5.0
    seed: int = 0
    scenes_per_block: int = 256
    train_vit: bool = True  # False (with train_image_qformer False): only the heads learn, a probe of the stack as is
    train_image_qformer: bool = True
    sincos_positions: bool = True  # re-set the ViT's position embedding to 2-D sin-cos first (with train_vit)
    mimetic_attention: float = 0.0  # > 0: mimetic init of the ViT's query/key weights with this strength first
    token_slot_weight: float = 0.0  # > 0: also the per-token slot read-out (`StackHeads`), with this loss weight
    token_centre_weight: float = 4.0  # in that read-out's loss: weight of its centres' squared error (0: shape only)
    token_slot_mean_only: bool = False  # that read-out reads the mean of the tokens only, not each token
    continue_training: bool = False  # go on from the model's (pretrained) stack: no query re-draw, sin-cos or mimetic init
    heads_only_steps: int = 0  # the first steps train only the fresh read-out heads (the stack is kept as it is)


@dataclass
class FrameBatch:
    """Rendered frames and their targets: uint8 (N, S, S, 3) frames, (N, 2, P) patch labels, (N, 5) colour slots,
    (N, 5, 2) colour centres."""

    frames: torch.Tensor
    patches: torch.Tensor
    slots: torch.Tensor
    centres: torch.Tensor


def label_maps(scene: dict[str, Any], frame: int, masks: dict | None = None) -> np.ndarray:
    """(2, H, W) int64 maps of one frame: colour id and shape id (1-based; 0 = background), as `render_frame` draws."""
    maps = np.zeros((2, scene["height"], scene["width"]), np.int64)
    for o, box, sub in object_masks(scene, frame, masks):
        maps[0][box][sub] = 1 + COLOURS.index(o["colour"])
        maps[1][box][sub] = 1 + V.SHAPES.index(o["shape"])
    return maps


def patch_labels(maps: np.ndarray, grid: int) -> np.ndarray:
    """(2, grid*grid): the labels under each patch centre of a grid x grid patching of the (resized) frame."""
    h, w = maps.shape[1:]
    ys = ((np.arange(grid) + 0.5) * h / grid).astype(int)
    xs = ((np.arange(grid) + 0.5) * w / grid).astype(int)
    return maps[:, ys][:, :, xs].reshape(2, -1)


def colour_slots(scene: dict[str, Any], frame: int) -> np.ndarray:
    """(5,) int64, one entry per colour of `vocab.COLOURS`: 0 when no object of that colour is on screen in
    `frame`, else 1 + the object's shape id. The number of objects on screen is ``(slots > 0).sum()``."""
    slots = np.zeros(len(COLOURS), np.int64)
    for o in state_at_frame(scene, frame):
        slots[COLOURS.index(o["colour"])] = 1 + V.SHAPES.index(o["shape"])
    return slots


def colour_centres(scene: dict[str, Any], frame: int) -> np.ndarray:
    """(5, 2) float32, one row per colour of `vocab.COLOURS`: the centre (x / width, y / height) of the object of
    that colour in `frame` (the same fractions in the encoder's square input), zeros when there is none."""
    centres = np.zeros((len(COLOURS), 2), np.float32)
    for o in state_at_frame(scene, frame):
        centres[COLOURS.index(o["colour"])] = (o["centre"][0] / scene["width"], o["centre"][1] / scene["height"])
    return centres


def rendered_frames(seed: int, grid: int, size: int = 224, scenes_per_block: int = 256
                    ) -> Iterator[tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]]:
    """Endless seeded (uint8 (size, size, 3) frame, (2, grid*grid) patch labels, (5,) colour slots, (5, 2) colour
    centres), 8 frames per timeline (the uniformly sampled ones), shuffled within blocks of `scenes_per_block`
    timelines."""
    masks: dict = {}
    for block, scenes in training_scene_blocks(seed, scenes_per_block):
        for j in np.random.default_rng([seed, block]).permutation(len(scenes) * V.N_SLOTS):
            scene = scenes[j // V.N_SLOTS]
            frame = scene["slot_frames"][int(j % V.N_SLOTS)]
            img = torch.from_numpy(render_frame(scene, frame, masks)).permute(2, 0, 1)[None].float()
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
            yield (img.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8),
                   patch_labels(label_maps(scene, frame, masks), grid), colour_slots(scene, frame),
                   colour_centres(scene, frame))


def _batch(stream: Iterator, n: int) -> FrameBatch:
    return FrameBatch(*next_batch(stream, n))


class StackHeads(nn.Module):
    """Read-outs used only during pretraining (discarded after): per patch (colour, shape), per colour (absent or
    shape) from the Q-Former tokens through one attention query each, and the object count from their mean.

    With `token_slots`, also one linear head shared by all query tokens that names, from each token alone, every
    colour's slot (absent or shape) and its object's centre. The trained video Q-Former passes on about the mean of
    the frame tokens (its 32 outputs collapse to one; docs/world.md, "Session 12"), and an attention read-out over
    distinct tokens finds what the mean does not carry; this objective puts every object's shape (and, weighted
    by `token_centre_weight`, its place) into every token, so into the mean (docs/world.md, "Session 13"). With
    `mean_only` the head reads the tokens' mean alone: the mean must carry the slots, the single tokens need not
    (they stay more distinct; docs/world.md, "Session 14").
    """

    def __init__(self, vit_width: int, qformer_hidden: int, heads: int, token_slots: bool = False,
                 mean_only: bool = False) -> None:
        super().__init__()
        n = len(COLOURS)
        self.patch_colour = nn.Linear(vit_width, n + 1)
        self.patch_shape = nn.Linear(vit_width, len(V.SHAPES) + 1)
        self.slot_queries = nn.Parameter(torch.randn(n, qformer_hidden) * 0.02)
        self.slot_attention = nn.MultiheadAttention(qformer_hidden, heads, batch_first=True)
        self.slot_norm = nn.LayerNorm(qformer_hidden)
        # One weight matrix per colour: the queries start nearly equal, a shared head would keep the slots alike.
        self.slot_weight = nn.Parameter(torch.randn(n, qformer_hidden, len(V.SHAPES) + 1) * 0.02)
        self.slot_bias = nn.Parameter(torch.zeros(n, len(V.SHAPES) + 1))
        self.count = nn.Linear(qformer_hidden, MAX_OBJECTS + 1)
        # created last and only when asked: the other heads' init (and the RNG stream after it) stay as they were
        self.token_slots = nn.Linear(qformer_hidden, n * (len(V.SHAPES) + 3)) if token_slots else None
        self.mean_only = mean_only  # the per-token head reads only the tokens' mean: they may stay distinct

    def forward(self, model: nn.Module, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        ref = next(model.vision.parameters())
        x = normalize_frames(frames).permute(1, 0, 2, 3).to(device=ref.device, dtype=ref.dtype)  # (N, 3, H, W)
        _, ln = model.vision(x, return_vit=True)
        tokens = model.image_qformer(ln).to(self.count.weight.dtype)  # (N, Q, Hq)
        patches = ln[:, 1:].to(self.patch_colour.weight.dtype)  # CLS first; patches in row-major order
        pooled, _ = self.slot_attention(self.slot_queries[None].expand(len(tokens), -1, -1), tokens, tokens)
        slots = torch.einsum("nch,cho->nco", self.slot_norm(pooled), self.slot_weight) + self.slot_bias
        out = {"patch_colour": self.patch_colour(patches), "patch_shape": self.patch_shape(patches),
               "slots": slots, "count": self.count(tokens.mean(1)), "tokens": tokens}
        if self.token_slots is not None:  # (N, Q or 1, colours, 1 + shapes) logits and (N, Q or 1, colours, 2) centres
            read = tokens.mean(1, keepdim=True) if self.mean_only else tokens
            per_token = self.token_slots(read).unflatten(-1, (len(COLOURS), len(V.SHAPES) + 3))
            out["token_slots"], out["token_centres"] = per_token[..., :-2], per_token[..., -2:]
        return out


def _loss(out: dict[str, torch.Tensor], batch: FrameBatch, foreground_weight: float,
          token_slot_weight: float = 0.0, token_centre_weight: float = 0.0) -> torch.Tensor:
    labels = batch.patches.to(out["patch_colour"].device)
    weight = 1.0 + (foreground_weight - 1.0) * (labels[:, 0] > 0).float()
    per_patch = (F.cross_entropy(out["patch_colour"].flatten(0, 1).float(), labels[:, 0].flatten(), reduction="none")
                 + F.cross_entropy(out["patch_shape"].flatten(0, 1).float(), labels[:, 1].flatten(), reduction="none"))
    slots = batch.slots.to(labels.device)
    loss = ((per_patch * weight.flatten()).mean()
            + F.cross_entropy(out["slots"].flatten(0, 1).float(), slots.flatten())
            + F.cross_entropy(out["count"].float(), (slots > 0).sum(1)))
    if token_slot_weight and "token_slots" in out:
        per_token = out["token_slots"]
        target = slots[:, None].expand(-1, per_token.shape[1], -1)
        present = (target > 0).float()[..., None]  # centres count where the colour is on screen
        centres = batch.centres.to(labels.device)[:, None].expand_as(out["token_centres"])
        squared = ((out["token_centres"].float() - centres) ** 2 * present).sum() / present.sum().clamp(min=1) / 2
        loss = loss + token_slot_weight * (F.cross_entropy(per_token.flatten(0, 2).float(), target.flatten())
                                           + token_centre_weight * squared)
    return loss


def stack_accuracy(model: nn.Module, heads: StackHeads, batch: FrameBatch) -> dict[str, float]:
    """% right: patch colour (all patches; object patches), patch shape (object patches), per colour slot
    present-or-not (all slots), slot shape (present slots) and object count (frames); with the per-token slot
    head also the present slots' shape named by each token alone and by the mean token (the head is linear, so
    that is the mean of the tokens' logits; with `mean_only` both read the mean), and the mean token's centre
    error (% of the frame side). Also `token_sharing`: `shared_token_fraction` of the image Q-Former's tokens."""
    with torch.no_grad():
        out = heads(model, batch.frames)
    labels, slots = batch.patches.to(out["patch_colour"].device), batch.slots.to(out["slots"].device)
    c_hit, s_hit = out["patch_colour"].argmax(-1) == labels[:, 0], out["patch_shape"].argmax(-1) == labels[:, 1]
    fg, present = labels[:, 0] > 0, slots > 0
    pred = out["slots"].argmax(-1)

    def pct(hits: torch.Tensor) -> float:
        return round(100 * hits.float().mean().item(), 1)

    acc = {"colour_all": pct(c_hit), "colour_objects": pct(c_hit[fg]), "shape_objects": pct(s_hit[fg]),
           "slot_presence": pct((pred > 0) == present), "slot_shape": pct((pred == slots)[present]),
           "count": pct(out["count"].argmax(-1) == present.sum(1))}
    if "token_slots" in out:
        per_token = out["token_slots"].argmax(-1)  # (N, Q, colours)
        acc["token_shape"] = pct((per_token == slots[:, None])[present[:, None].expand_as(per_token)])
        acc["mean_token_shape"] = pct((out["token_slots"].mean(1).argmax(-1) == slots)[present])
        error = (out["token_centres"].mean(1) - batch.centres.to(slots.device)).abs()[present]
        acc["mean_token_centre_error"] = round(100 * error.mean().item(), 1) if len(error) else None
    if len(out["tokens"]) > 1:  # how far the image Q-Former's tokens of a frame are one token (docs/world.md)
        acc["token_sharing"] = round(shared_token_fraction(out["tokens"]), 3)
    return acc


def pretrain_vision(model, opts: VisionPretrainOptions = VisionPretrainOptions(), progress: bool = True,
                    eval_frames: int = 128) -> dict[str, Any]:
    """Train `model.vision` and `model.image_qformer` in place on rendered world frames, then freeze them.
    Returns options, losses, seconds and the heads' accuracy (`stack_accuracy`) on `eval_frames` frames of a
    separate rendered validation stream. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _pretrain(model, opts, progress, eval_frames)


def mimetic_attention_init(vit: nn.Module, strength: float) -> None:
    """Mimetic initialisation of self-attention (Trockman & Kolter, "Mimetic Initialization of Self-Attention
    Layers", ICML 2023): each block's query and key weights are set to the same scaled random orthogonal matrix, so
    that W_q W_k^T = `strength` * I and a patch's attention starts out favouring patches like itself (same content,
    nearby sin-cos position) instead of being about uniform. On rendered world frames, at strength 3, the first
    block of the learning-proof ViT puts 11 % of its attention on a patch and its 8 neighbours (seeded init: 3 %).
    A ViT trained from scratch on little data then learns local structure (here: shapes) it otherwise does not
    find. Written by hand: no library ships it. The qkv layout is EVA's fused ``qkv`` linear (rows: q, k, v);
    the matrices come from the global RNG."""
    for block in vit.blocks:
        weight = block.attn.qkv.weight
        width = weight.shape[1]
        rotation = torch.linalg.qr(torch.randn(width, width))[0] * strength ** 0.5
        with torch.no_grad():
            weight[:width].copy_(rotation)
            weight[width:2 * width].copy_(rotation)


def _trained_modules(model, opts: VisionPretrainOptions) -> list[nn.Module]:
    return [m for m, on in ((model.vision, opts.train_vit), (model.image_qformer, opts.train_image_qformer)) if on]


def _pretrain(model, opts: VisionPretrainOptions, progress: bool, eval_frames: int) -> dict[str, Any]:
    vcfg, qcfg = model.config.vision, model.config.image_qformer
    grid = vcfg.image_size // vcfg.patch_size
    torch.manual_seed(opts.seed)
    heads = StackHeads(vcfg.width, qcfg.hidden, qcfg.heads, token_slots=opts.token_slot_weight > 0,
                       mean_only=opts.token_slot_mean_only).to(device=model.device)  # fp32 heads and optimizer state
    val = _batch(rendered_frames(opts.seed + 1, grid, vcfg.image_size, 32), eval_frames)
    for m in (model.vision, model.image_qformer):  # a probe (nothing trained) still must not build their grads
        m.eval()
        m.requires_grad_(False)
    trained = _trained_modules(model, opts)
    fresh = not opts.continue_training  # a continued stack keeps its queries, positions and attention
    if opts.train_image_qformer and fresh:
        with torch.no_grad():
            queries = model.image_qformer.query_tokens
            queries.copy_(torch.randn(queries.shape) * QUERY_STD)
    if opts.train_vit and opts.sincos_positions and fresh:
        from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

        with torch.no_grad():
            table = model.vision.encoder.pos_embed
            table.copy_(build_2d_sinusoidal_position_embedding(grid, grid, table.shape[-1], cls_token=True)[None])
    if opts.train_vit and opts.mimetic_attention > 0 and fresh:
        mimetic_attention_init(model.vision.encoder, opts.mimetic_attention)
    stream = rendered_frames(opts.seed, grid, vcfg.image_size, opts.scenes_per_block)

    def step_loss() -> torch.Tensor:
        batch = _batch(stream, opts.batch_size)
        return _loss(heads(model, batch.frames), batch, opts.foreground_weight, opts.token_slot_weight,
                     opts.token_centre_weight)

    out = {"options": asdict(opts),
           **train_then_freeze(trained, heads, step_loss, opts.steps, opts.lr, opts.weight_decay, opts.warmup_steps,
                               "pretrain world image stack", progress, frozen_steps=opts.heads_only_steps),
           "accuracy": stack_accuracy(model, heads, val)}
    log.info("world image-stack pretraining: %s", out)
    return out
