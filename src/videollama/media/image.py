"""Images as the official ``Chat.upload_img(path)`` prepares them (Blip2ImageEvalProcessor).

``PIL.Image.open(path).convert('RGB')`` (16-bit grey is clipped, CMYK uses PIL's naive conversion, alpha is dropped
without compositing), Pillow's antialiased BICUBIC resize straight to 224x224 (what torchvision's Resize does on
a PIL image), ``/ 255``, CLIP normalisation, reshaped to a one-frame video ``(1, 3, 1, 224, 224)``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from videollama.errors import CorruptMediaError, UnsupportedMediaError
from videollama.media._container import check_path
from videollama.media.normalize import normalize_frames

IMAGE_SIZE = (224, 224)  # (height, width)


@dataclass
class ImageInput:
    """A loaded image: its 224x224 RGB pixels and the normalised tensor."""

    path: str
    resized: np.ndarray  # uint8 (224, 224, 3), after the bicubic resize
    tensor: torch.Tensor  # float32 (1, 3, 1, 224, 224)
    original_size: tuple[int, int]  # (width, height) as stored in the file
    mode: str  # PIL mode of the file (before convert)


def open_rgb(path: str | os.PathLike[str], exif_transpose: bool = False) -> Image.Image:
    """PIL open + ``convert('RGB')``; with ``exif_transpose`` the EXIF orientation is applied first.

    ``exif_transpose=False`` is what ``upload_img(path)`` does (orientation ignored); ``True`` reproduces the
    gradio upload path of the demo (transpose when the tag is not 1, then RGB).
    """
    p = check_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-with-transparency notices etc.
            img = Image.open(p)
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(f"{p}: not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptMediaError(f"{p}: truncated or corrupt image ({' '.join(str(exc).split())[:200]})") from exc


def load_image(
    path: str | os.PathLike[str], *, exif_transpose: bool = False, size: tuple[int, int] = IMAGE_SIZE
) -> ImageInput:
    """Load an image (jpg, png, webp, bmp, ...; any PIL mode) as the official image path: ``(1, 3, 1, H, W)``."""
    p = check_path(path)
    try:
        with Image.open(p) as raw:
            original_size, mode = raw.size, raw.mode
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaError(f"{p}: not a recognised image format") from exc
    except OSError as exc:
        raise CorruptMediaError(f"{p}: truncated or corrupt image ({exc})") from exc
    rgb = open_rgb(p, exif_transpose=exif_transpose)
    resized = np.array(bicubic_resize(rgb, (size[1], size[0])), dtype=np.uint8)
    tensor = normalize_frames(resized[None]).unsqueeze(0)  # (1, 3, 1, H, W)
    return ImageInput(str(p), resized, tensor, original_size, mode)


def is_image(path: str | os.PathLike[str]) -> bool:
    """True when Pillow recognises the file as an image."""
    try:
        with Image.open(path) as img:
            return bool(img.format)
    except Exception:
        return False


def bicubic_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Pillow's antialiased BICUBIC resize to (width, height), identical on every Pillow version.

    Pillow resizes in two one-axis passes through a uint8 intermediate. Pillow 13 (which made the
    reference tensors) runs the vertical pass first when the height shrinks by more than twice as
    many pixels as the width; Pillow <= 12 always ran the horizontal pass first (max diff 12 on
    Statue_of_Liberty.jpg). Running the two passes ourselves in Pillow 13's order gives the same
    pixels whatever Pillow is installed (gradio still pins Pillow < 13).
    """
    w, h = image.size
    new_w, new_h = size
    vertical_first = (h - new_h) > 0 and (h - new_h) > (w - new_w) * 2
    bicubic = Image.Resampling.BICUBIC
    if vertical_first:
        return image.resize((w, new_h), bicubic).resize((new_w, new_h), bicubic)
    return image.resize((new_w, h), bicubic).resize((new_w, new_h), bicubic)
