"""Pretraining of the world models' frozen ViT, the analogue of EVA-CLIP's pretraining (not part of Video-LLaMA).

Video-LLaMA can keep its image encoder frozen because EVA-CLIP was *pretrained*: its patch tokens already say
what is in a frame. A seeded random ViT does not. On the synthetic world, a video Q-Former trained with direct
labels on a random encoder's features reached 80 % on an object's colour, 71 % on the count, 36 % on its shape
and ~30 % on the visual story of unseen videos; the same probe on features of a ViT pretrained here for 200
steps reached 100 / 100 / 46 / 34-44 % (docs/world.md, "Session 3").

Objective (dense, per patch): a linear head on every patch token of ``ln_vision`` predicts the colour ("none"
for background) and the shape of the object under the patch centre; foreground patches weigh 5x. Written by
hand because no library has a task for this synthetic world. Colour is learned within ~50 steps (99 % of
patches); shape, which needs context beyond a patch, rises slowly (~45 % of foreground patches after 200-600
steps, chance 20 %).

Data: an endless, seeded stream of frames rendered from fresh *training-split* scene timelines
(`world.scene.sample_scene`, seeds from 10 000 on, so never a world's own videos and never a held-out
(shape, colour) pair), scaled to the encoder's input size bilinearly from the clean RGB render (training and
inference read H.264 frames: a small gap at colour edges). Only `model.vision` is trained; it is left frozen
(requires_grad False, eval mode). The image Q-Former stays as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from videollama.media.normalize import normalize_frames
from videollama.world import vocab as V
from videollama.world.generate import WorldOptions, make_scenes
from videollama.world.render import object_masks, render_frame

log = logging.getLogger(__name__)

COLOURS = tuple(V.COLOURS)
FIRST_SEED = 10_000  # rendered scenes use world seeds from here on; worlds trained or evaluated on stay below


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
    train_vit: bool = True  # False: only the heads learn (a linear probe of the ViT as it is: the baseline)


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


def rendered_frames(seed: int, grid: int, size: int = 224, scenes_per_block: int = 256
                    ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Endless seeded (uint8 (size, size, 3) frame, (2, grid*grid) patch labels) pairs, 8 frames per timeline
    (the uniformly sampled ones), shuffled within blocks of `scenes_per_block` timelines."""
    masks: dict = {}
    for block in range(1 << 30):
        scenes = make_scenes(WorldOptions(n=scenes_per_block, seed=FIRST_SEED + 1_000 * seed + block, split="train"))
        for j in np.random.default_rng([seed, block]).permutation(len(scenes) * V.N_SLOTS):
            scene = scenes[j // V.N_SLOTS]
            frame = scene["slot_frames"][int(j % V.N_SLOTS)]
            img = torch.from_numpy(render_frame(scene, frame, masks)).permute(2, 0, 1)[None].float()
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
            yield img.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8), patch_labels(label_maps(scene, frame, masks), grid)


def _batch(stream: Iterator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [next(stream) for _ in range(n)]
    return torch.stack([x[0] for x in items]), torch.from_numpy(np.stack([x[1] for x in items]))


class PatchHeads(nn.Module):
    """Per-patch colour and shape read-outs (discarded after pretraining)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.colour = nn.Linear(width, len(COLOURS) + 1)
        self.shape = nn.Linear(width, len(V.SHAPES) + 1)

    def forward(self, vision: nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ref = next(vision.parameters())
        x = normalize_frames(frames).permute(1, 0, 2, 3).to(device=ref.device, dtype=ref.dtype)  # (N, 3, H, W)
        _, ln = vision(x, return_vit=True)
        patches = ln[:, 1:].to(self.colour.weight.dtype)  # CLS first; patches in row-major order
        return self.colour(patches), self.shape(patches)


def patch_accuracy(vision: nn.Module, heads: PatchHeads, frames: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """% of patches with the right colour (all patches), and right colour / shape on object patches."""
    with torch.no_grad():
        colour, shape = heads(vision, frames)
    labels = labels.to(colour.device)
    c_hit, s_hit = colour.argmax(-1) == labels[:, 0], shape.argmax(-1) == labels[:, 1]
    fg = labels[:, 0] > 0
    return {"colour_all": round(100 * c_hit.float().mean().item(), 1),
            "colour_objects": round(100 * c_hit[fg].float().mean().item(), 1),
            "shape_objects": round(100 * s_hit[fg].float().mean().item(), 1)}


def pretrain_vision(model, opts: VisionPretrainOptions = VisionPretrainOptions(), progress: bool = True,
                    eval_frames: int = 128) -> dict[str, Any]:
    """Train `model.vision` in place on rendered world frames, then freeze it. Returns options, losses, seconds and
    the heads' patch accuracy on `eval_frames` frames of a separate rendered validation stream. The global RNG is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _pretrain(model, opts, progress, eval_frames)


def _pretrain(model, opts: VisionPretrainOptions, progress: bool, eval_frames: int) -> dict[str, Any]:
    from tqdm.auto import tqdm

    vision = model.vision
    vcfg = model.config.vision
    grid = vcfg.image_size // vcfg.patch_size
    torch.manual_seed(opts.seed)
    heads = PatchHeads(vcfg.width).to(device=model.device)  # fp32 heads (and optimizer state)
    val = _batch(rendered_frames(opts.seed + 1, grid, vcfg.image_size, 32), eval_frames)
    params = list(vision.parameters()) if opts.train_vit else []
    for p in params:
        p.requires_grad_(True)
    vision.train(opts.train_vit)
    opt = torch.optim.AdamW(params + list(heads.parameters()), lr=opts.lr, weight_decay=opts.weight_decay)
    steps = max(opts.steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / opts.warmup_steps) * 0.5 * (1 + np.cos(np.pi * min(s / steps, 1.0))))
    stream = rendered_frames(opts.seed, grid, vcfg.image_size, opts.scenes_per_block)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(opts.steps), desc="pretrain world ViT", disable=not progress)
    for _ in bar:
        frames, labels = _batch(stream, opts.batch_size)
        colour, shape = heads(vision, frames)
        labels = labels.to(colour.device)
        weight = 1.0 + (opts.foreground_weight - 1.0) * (labels[:, 0] > 0).float()
        per_patch = (F.cross_entropy(colour.flatten(0, 1).float(), labels[:, 0].flatten(), reduction="none")
                     + F.cross_entropy(shape.flatten(0, 1).float(), labels[:, 1].flatten(), reduction="none"))
        loss = (per_patch * weight.flatten()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    vision.eval()
    for p in vision.parameters():
        p.requires_grad_(False)
    k = max(1, min(20, len(losses) // 5))
    out = {"options": asdict(opts), "seconds": round(time.perf_counter() - t0, 1),
           "loss_first": round(float(np.mean(losses[:k])), 4) if losses else None,
           "loss_last": round(float(np.mean(losses[-k:])), 4) if losses else None,
           "patch_accuracy": patch_accuracy(vision, heads, *val)}
    log.info("world ViT pretraining: %s", out)
    return out
