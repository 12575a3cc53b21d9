"""videollama: a faithful, fast, modern implementation of Video-LLaMA (arXiv 2306.02858)."""

__version__ = "0.1.0"
