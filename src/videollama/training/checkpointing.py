"""Training checkpoints (quirk 32 FIX): trainable weights only, plus a separate resume file.

    <output_dir>/checkpoints/step-00001000/
        trainable.safetensors   the parameters with requires_grad (branch modules, LoRA adapters), fp32 as trained
        resume.pt               optimizer, scheduler, step, epoch, per-rank RNG + data-iterator states, world size
        meta.json               step, recipe name, branch, base model folder, trainable parameter count

Each checkpoint folder is written to a temporary sibling and renamed into place, so a folder named
`step-*` is always complete; a run killed while saving leaves only a `.step-*.tmp-*` folder, which is
ignored (and cleaned up on the next save). Only the last `keep_last` checkpoints are kept, ranked by step: so a
run must not start below an earlier run's checkpoints in the same folder (the engine refuses, or with `overwrite`
drops them), else they would outlive its own and a later resume would pick them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from videollama.checkpoint.files import atomic_dir
from videollama.errors import CheckpointError

CKPT_DIR = "checkpoints"
TRAINABLE_FILE = "trainable.safetensors"
RESUME_FILE = "resume.pt"
META_FILE = "meta.json"
_STEP_RE = re.compile(r"^step-(\d+)$")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (contiguous CPU copies)."""
    return {name: p.detach().to("cpu").contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, path: str | Path) -> int:
    """Copy a trainable-only file into `model` (names and shapes must match its trainable parameters)."""
    state = load_file(str(path))
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    missing, unexpected = trainable - set(state), set(state) - set(params)
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match the model's trainable parameters "
                              f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise CheckpointError(f"{path}: '{name}' has shape {tuple(value.shape)}, model {tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].dtype))
    return len(state)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(output_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))
             and (p / META_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def checkpoint_step(ckpt: str | Path) -> int:
    """The global step a checkpoint folder was written at: from its name `step-N` (what pruning ranks by), else
    from its meta.json."""
    if m := _STEP_RE.match(Path(ckpt).name):
        return int(m.group(1))
    path = Path(ckpt) / META_FILE
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{ckpt}: not a training checkpoint folder (cannot read the step from {path.name}: "
                              f"{exc})") from exc


def save_checkpoint(output_dir: str | Path, step: int, model: nn.Module, resume: dict[str, Any],
                    meta: dict[str, Any], keep_last: int = 3) -> Path:
    """Write `checkpoints/step-{step}` atomically, then drop all but the newest `keep_last`."""
    root = Path(output_dir) / CKPT_DIR
    final = root / f"step-{step:08d}"
    for stale in root.glob(".step-*.tmp-*") if root.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
    state = trainable_state(model)
    with atomic_dir(final, overwrite=True) as tmp:
        save_file(state, str(tmp / TRAINABLE_FILE), metadata={"step": str(step)})
        torch.save(resume, tmp / RESUME_FILE)
        (tmp / META_FILE).write_text(json.dumps({**meta, "step": step, "num_trainable": sum(v.numel() for v in state.values())},
                                                indent=1))
    prune_checkpoints(output_dir, keep_last)
    return final


def prune_checkpoints(output_dir: str | Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def load_resume(ckpt: str | Path) -> dict[str, Any]:
    path = Path(ckpt) / RESUME_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read the resume file ({exc})") from exc
