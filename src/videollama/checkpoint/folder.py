"""Our model folder: `config.json` + sharded `model-*.safetensors` (media modules) + `llm/` (plain HF folder).

```
MODEL_DIR/
  config.json                     VideoLLaMAConfig
  model.safetensors.index.json    {"weight_map": {key: shard}}
  model-<part>.safetensors        media modules (vision, Q-Formers, ImageBind, projections)
  llm/                            the causal LM + tokenizer, loadable by transformers on its own
```
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videollama.config import VideoLLaMAConfig
from videollama.errors import CheckpointError, ConfigError

INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
LLM_DIR = "llm"
TOKENIZER_FILES = (
    "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "chat_template.jinja",
)
MAX_SHARD_BYTES = 512 * 2**20  # bounds the in-memory copy safetensors makes while writing


def write_shards(tmp: Path, part: str, tensors: dict[str, torch.Tensor], weight_map: dict[str, str]) -> None:
    """Write `tensors` as one or more `model-<part>-NNN.safetensors` files, recording them in `weight_map`."""
    batch: dict[str, torch.Tensor] = {}
    size = 0
    index = 0

    def flush() -> None:
        nonlocal batch, size, index
        if not batch:
            return
        name = f"model-{part}-{index:03d}.safetensors"
        save_file({k: v.contiguous() for k, v in batch.items()}, tmp / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in batch})
        batch, size, index = {}, 0, index + 1

    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if batch and size + nbytes > MAX_SHARD_BYTES:
            flush()
        batch[key] = tensor
        size += nbytes
    flush()


def write_index(tmp: Path, weight_map: dict[str, str]) -> None:
    (tmp / INDEX_NAME).write_text(json.dumps({"metadata": {"format": "videollama"}, "weight_map": weight_map}, indent=1))


def read_config(folder: Path) -> VideoLLaMAConfig:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: model folder not found")
    path = folder / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(f"{folder}: not a videollama model folder (no {CONFIG_NAME})")
    try:
        return VideoLLaMAConfig.from_json(path)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def read_media_state(folder: Path, expected: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Read every media tensor of a folder and check it against `expected` shapes (strict: names and shapes)."""
    index_path = folder / INDEX_NAME
    if not index_path.exists():
        raise CheckpointError(f"{folder}: missing {INDEX_NAME}")
    try:
        weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{index_path}: corrupt index ({exc})") from exc
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        path = folder / shard
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    state[key] = f.get_tensor(key)
        except FileNotFoundError as exc:
            raise CheckpointError(f"{path}: shard listed in {INDEX_NAME} is missing") from exc
        except Exception as exc:  # safetensors raises its own error types for corrupt headers/data
            raise CheckpointError(f"{path}: corrupt safetensors file ({str(exc).splitlines()[0]})") from exc
    check_state(state, expected, str(folder))
    return state


def check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Size], where: str) -> None:
    """Raise a one-line CheckpointError on missing keys, unexpected keys or shape mismatches."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{where}: {len(missing)} missing weights, e.g. {_few(missing)}")
    if unexpected:
        raise CheckpointError(f"{where}: {len(unexpected)} unexpected weights, e.g. {_few(unexpected)}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise CheckpointError(
                f"{where}: '{key}' has shape {tuple(state[key].shape)} but the config expects {tuple(shape)}"
            )


def copy_llm_folder(src: Path, dst: Path, files: Iterable[Path] | None = None) -> None:
    """Copy an HF LLM folder's config, weights and tokenizer files (file copies; nothing held in memory)."""
    dst.mkdir(parents=True, exist_ok=True)
    wanted = files if files is not None else sorted(src.iterdir())
    for path in wanted:
        name = path.name
        if path.is_file() and (
            name.endswith((".safetensors", ".json", ".bin", ".model", ".jinja", ".txt")) or name in TOKENIZER_FILES
        ):
            shutil.copy2(path, dst / name)


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")
