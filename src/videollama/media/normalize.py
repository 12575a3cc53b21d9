"""CLIP pixel normalisation shared by the video and image paths."""

from __future__ import annotations

import numpy as np
import torch

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def normalize_frames(frames_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, H, W)``: ``x / 255``, minus CLIP mean, divided by CLIP std.

    Same float32 operation order as the official ToTensorVideo + NormalizeVideo (bit-identical on equal input).
    """
    t = torch.as_tensor(frames_u8)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {tuple(t.shape)} {t.dtype}")
    x = t.permute(3, 0, 1, 2).float()  # a fresh float32 tensor: the three steps below edit it in place
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None, None]
    std = torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None, None]
    return x.div_(255.0).sub_(mean).div_(std)  # same float32 ops as (x / 255 - mean) / std, no temporaries
