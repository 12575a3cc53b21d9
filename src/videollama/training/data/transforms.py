"""Training transforms (SPEC §3.1 `alpro_video_train`, §3.2 `blip2_image_train`), written by hand.

Why not torchvision: torchvision (and torchaudio/timm/decord) is not installable in a working state next to the
pinned torch of this project, and the two transforms need only `RandomResizedCrop.get_params`, a crop and a
resize, so they are reimplemented here. `random_resized_crop_params` follows torchvision's sampler exactly
(10 attempts of area-scale + log-uniform aspect ratio, then the centre-crop fallback), but draws from an
explicit `torch.Generator` so every sample is reproducible from its own seed (exact resume), instead of the
global RNG.

Video: ONE crop box for all frames, bicubic `F.interpolate(align_corners=False)` back to 224 on the
(C, T, h, w) float clip, then clamp to [0, 255] and round before the uint8 cast (quirk 22 FIX: the official code
casts without clamp/round, so bicubic overshoot wraps around), / 255, CLIP normalise.
Image: crop on the PIL image, Pillow bicubic resize to 224x224 (what torchvision does on PIL input), ToTensor,
CLIP normalise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from videollama.media.normalize import normalize_frames

SCALE = (0.5, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
SIZE = 224

__all__ = ["random_resized_crop_params", "video_train_transform", "image_train_transform", "image_eval_transform"]


def random_resized_crop_params(
    height: int, width: int, generator: torch.Generator,
    scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO,
) -> tuple[int, int, int, int]:
    """torchvision `RandomResizedCrop.get_params` -> (top, left, h, w), drawing from `generator`."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = math.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]),
                                                        generator=generator).item())
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)  # fallback: centre crop
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def video_train_transform(frames_u8: np.ndarray | torch.Tensor, generator: torch.Generator,
                          size: int = SIZE) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> float32 (3, T, size, size): one random box, bicubic, clamp+round, normalise."""
    clip = torch.as_tensor(frames_u8).permute(3, 0, 1, 2).float()  # (C, T, H, W), as the official float clip
    _, _, height, width = clip.shape
    i, j, h, w = random_resized_crop_params(height, width, generator)
    crop = clip[..., i:i + h, j:j + w]
    resized = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False)
    u8 = resized.clamp_(0, 255).round_().to(torch.uint8)  # quirk 22 FIX (official: plain cast, wraps)
    return normalize_frames(u8.permute(1, 2, 3, 0))


def image_train_transform(img: Image.Image, generator: torch.Generator, size: int = SIZE) -> torch.Tensor:
    """PIL RGB image -> float32 (3, 1, size, size): RandomResizedCrop(size, (0.5, 1), bicubic) + ToTensor + normalise."""
    width, height = img.size
    i, j, h, w = random_resized_crop_params(height, width, generator)
    out = img.crop((j, i, j + w, i + h)).resize((size, size), Image.Resampling.BICUBIC)
    return normalize_frames(np.array(out, dtype=np.uint8)[None])


def image_eval_transform(img: Image.Image, size: int = SIZE) -> torch.Tensor:
    """The inference image path (Resize((224, 224)) bicubic) -> (3, 1, size, size); used when augment=False."""
    out = img.resize((size, size), Image.Resampling.BICUBIC)
    return normalize_frames(np.array(out, dtype=np.uint8)[None])
