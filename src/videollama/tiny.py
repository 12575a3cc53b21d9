"""Tiny random models for tests and the smoke run: a preset, seeded weights and a small tokenizer we train.

Nothing here is downloaded: the SentencePiece tokenizer is trained on a built-in corpus in about a second.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from videollama.config import VideoLLaMAConfig, load_preset

_CORPUS = """\
The video shows a red square moving from left to right across a dark blue background.
A green square appears in the second half of the clip while a short beep plays every second.
What is happening in the video? Describe the colours, the shapes and the sounds you hear.
The man is playing the guitar in a park, and a dog runs past the bench near the lake.
Close your eyes, open your ears and imagine only based on the sound. Close your ears, open your eyes.
Now answer my question based on what you have just seen and heard. Which animal is in the picture?
There is a boat on the water, people are clapping, a girl is smiling in silence at the camera.
0 1 2 3 4 5 6 7 8 9 seconds frames sampled at . , ? ! : ; ' " ( ) [ ] < > / # - _ = + *
"""


def train_tiny_tokenizer(folder: str | Path, vocab_size: int = 512) -> Path:
    """Train a LLaMA-style SentencePiece BPE tokenizer (unk/bos/eos = 0/1/2, byte fallback) into `folder`."""
    import sentencepiece as spm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS.splitlines() * 20), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True,
        character_coverage=1.0, add_dummy_prefix=True, normalization_rule_name="identity",
        minloglevel=2, num_threads=1, hard_vocab_limit=False,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True, "model_max_length": 2048,
    }, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=1))
    return folder / "tokenizer.model"


def make_tiny_model(folder: str | Path, preset: str | VideoLLaMAConfig = "tiny", seed: int = 0) -> Path:
    """Write a complete model folder with seeded random weights and a trained tiny tokenizer."""
    from videollama.checkpoint.folder import LLM_DIR
    from videollama.model.videollama import VideoLLaMA

    config = load_preset(preset) if isinstance(preset, str) else preset
    torch.manual_seed(seed)
    model = VideoLLaMA(config).eval()
    model.save_pretrained(folder)
    train_tiny_tokenizer(Path(folder) / LLM_DIR)
    return Path(folder)
