"""videollama: a faithful, fast, modern implementation of Video-LLaMA (arXiv 2306.02858).

`videollama.load(model_dir)` returns a pipeline with `ask`, `stream`, `chat` and `ask_batch`;
`videollama.VideoLLaMA` is the model itself. Heavy imports happen on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load": "videollama.inference.pipeline",
    "VideoLLaMAPipeline": "videollama.inference.pipeline",
    "ChatSession": "videollama.inference.pipeline",
    "GenerationSettings": "videollama.inference.pipeline",
    "VideoLLaMA": "videollama.model.videollama",
    "VideoLLaMAConfig": "videollama.config",
    "load_preset": "videollama.config",
    "convert_official": "videollama.checkpoint.convert",
    "export_official": "videollama.checkpoint.convert",
}

if TYPE_CHECKING:  # pragma: no cover
    from videollama.checkpoint.convert import convert_official, export_official
    from videollama.config import VideoLLaMAConfig, load_preset
    from videollama.inference.pipeline import ChatSession, GenerationSettings, VideoLLaMAPipeline, load
    from videollama.model.videollama import VideoLLaMA


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'videollama' has no attribute {name!r}")


__all__ = list(_LAZY)
