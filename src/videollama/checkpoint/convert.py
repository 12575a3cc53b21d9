"""Convert the official Video-LLaMA files into one of our model folders, and export back.

Official files (SPEC §2.1), loaded in the official order, the later file winning on overlap:
eva_vit_g.pth, blip2_pretrained_flant5xxl.pth, the HF LLM folder, imagebind_huge.pth, VL, AL.
Every key of every file is mapped or listed as intentionally ignored (mappings.py); anything else,
a missing weight, or a shape that disagrees with the config is a one-line error naming the file.
Files are memory-mapped and written one at a time, so two full copies of the weights never coexist.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from videollama.checkpoint.files import atomic_dir, atomic_torch_save, load_torch_file
from videollama.checkpoint.folder import (
    CONFIG_NAME, LLM_DIR, check_state, copy_llm_folder, write_index, write_shards,
)
from videollama.checkpoint.keymap import KeyMap
from videollama.checkpoint.mappings import SLOTS, Slot
from videollama.config import LLMConfig, VideoLLaMAConfig
from videollama.errors import CheckpointError

log = logging.getLogger(__name__)

SLOT_ORDER = ("eva", "blip2", "imagebind", "vl", "al")  # official load order (llm sits between blip2 and imagebind)


@dataclass
class SlotReport:
    path: str
    mapped: int = 0
    ignored: list[str] = field(default_factory=list)


def expected_shapes(config: VideoLLaMAConfig) -> dict[str, torch.Size]:
    """Names and shapes of every media weight the config implies (built on the meta device: no memory)."""
    from videollama.model.videollama import VideoLLaMA

    with torch.device("meta"):
        model = VideoLLaMA(config, llm=torch.nn.Module())  # the LLM is not needed for the media shapes
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("llm.")}


def _state_dict_of(obj: object, path: Path, slot: Slot) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict for {slot.description}, found {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        if slot.container == "raw":
            raise CheckpointError(
                f"{path}: is a training-runner container ({{'model': ...}}), not {slot.description}; wrong file for {slot.flag}?"
            )
        obj = obj["model"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors; not {slot.description}")
    return tensors


def _guess_slot(keys: list[str], config: VideoLLaMAConfig) -> str:
    """Name the slot whose table maps most of `keys` (for 'wrong file' messages)."""
    best, best_hits = "", 0
    for name, slot in SLOTS.items():
        km = KeyMap(slot.rows)
        hits = sum(1 for k in keys if km.to_ours(k, allow_catch_all=False)[1] is not None)
        if name == "eva":  # EVA's table keeps names verbatim: recognise it by its own key shapes instead
            hits = sum(1 for k in keys if k in ("cls_token", "pos_embed") or k.startswith(("blocks.", "patch_embed.")))
        if hits > best_hits:
            best, best_hits = name, hits
    return best


def map_slot(
    slot: Slot, path: Path, config: VideoLLaMAConfig, expected: dict[str, torch.Size]
) -> tuple[dict[str, torch.Tensor], SlotReport]:
    """Load one official file and return its tensors under our names, validated against `expected`."""
    tensors = _state_dict_of(load_torch_file(path, slot.description), path, slot)
    keymap = KeyMap(slot.rows)
    report = SlotReport(str(path))
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    depth = config.vision.depth
    for key, value in tensors.items():
        block = re.match(r"blocks\.(\d+)\.", key) if slot.name == "eva" else None
        if block and int(block.group(1)) >= depth:
            report.ignored.append(key)  # EVA-CLIP's last block(s): the model keeps `depth` of them (quirk 5)
            continue
        matched, ours = keymap.to_ours(key)
        if not matched:
            unknown.append(key)
        elif ours is None or (ours not in expected and ours.startswith("imagebind_vision.")):
            report.ignored.append(key)  # intentionally unused (or the optional ImageBind vision encoder is off)
        else:
            mapped[ours] = value
    wanted = {k: s for k, s in expected.items() if k.startswith(slot.provides)}
    if unknown:
        guess = _guess_slot(unknown, config)
        hint = f"; it looks like the {SLOTS[guess].description}, give it to {SLOTS[guess].flag}" if guess and guess != slot.name else ""
        raise CheckpointError(
            f"{path}: {len(unknown)} keys not expected in {slot.description}, e.g. {', '.join(unknown[:3])}{hint}"
        )
    stray = sorted(set(mapped) - set(wanted))
    if stray:
        raise CheckpointError(f"{path}: keys for modules this config does not have, e.g. {', '.join(stray[:3])}")
    missing = sorted(set(wanted) - set(mapped))
    if missing and len(missing) == len(wanted):
        guess = _guess_slot(list(tensors), config)
        hint = f" (it looks like the {SLOTS[guess].description}; give it to {SLOTS[guess].flag})" if guess and guess != slot.name else ""
        raise CheckpointError(f"{path}: contains none of the weights of {slot.description}{hint}")
    check_state(mapped, wanted, str(path))
    report.mapped = len(mapped)
    return mapped, report


def read_llm_config(llm_dir: Path) -> dict:
    if not llm_dir.is_dir():
        raise CheckpointError(f"{llm_dir}: LLM folder not found (--llm)")
    path = llm_dir / "config.json"
    if not path.exists():
        raise CheckpointError(f"{llm_dir}: not a Hugging Face model folder (no config.json) (--llm)")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc.msg})") from exc
    if "model_type" not in hf or "hidden_size" not in hf:
        raise CheckpointError(f"{path}: missing 'model_type' or 'hidden_size'; not a causal LM config")
    if not any(p.suffix in (".safetensors", ".bin") for p in llm_dir.iterdir()):
        raise CheckpointError(f"{llm_dir}: no weight files (*.safetensors / *.bin) in the LLM folder")
    keep = {k: v for k, v in hf.items() if not k.startswith("_") and k not in ("transformers_version",)}
    return keep


def convert_official(
    out: str | Path,
    config: VideoLLaMAConfig,
    sources: Mapping[str, str | Path],
    llm_dir: str | Path,
    overwrite: bool = False,
) -> Path:
    """Write a model folder from official files.

    Args:
        out: the model folder to create (written atomically).
        config: the architecture (a preset, or dims read from a fixture manifest); `llm.hf_config` is
            replaced by the LLM folder's own config.json.
        sources: slot name ('eva', 'blip2', 'imagebind', 'vl', 'al') -> official file.
        llm_dir: Hugging Face folder of the LLM (LLaMA-2-chat, Vicuna, ...), with its tokenizer.
    """
    llm_dir = Path(llm_dir)
    unknown = sorted(set(sources) - set(SLOTS))
    if unknown:
        raise CheckpointError(f"unknown checkpoint slot(s) {unknown}; known: {list(SLOTS)}")
    needed = ["eva", "blip2", "vl"] + (["imagebind", "al"] if config.has_audio else [])
    missing = [SLOTS[s].flag for s in needed if s not in sources]
    if missing:
        raise CheckpointError(f"missing official file(s) for {', '.join(missing)}")
    if not config.has_audio and any(s in sources for s in ("imagebind", "al")):
        raise CheckpointError("audio files given, but the config has no audio branch (audio_encoder is null)")
    hf = read_llm_config(llm_dir)
    if config.llm.hf_config and int(hf["hidden_size"]) != config.llm.hidden_size:
        log.info("LLM hidden size %s from %s replaces the preset's %s", hf["hidden_size"], llm_dir, config.llm.hidden_size)
    config = config.replace(llm=LLMConfig(hf_config=hf, dtype=config.llm.dtype, load_in=config.llm.load_in,
                                          tokenizer=config.llm.tokenizer))
    expected = expected_shapes(config)
    reports: dict[str, SlotReport] = {}
    weight_map: dict[str, str] = {}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name in SLOT_ORDER:
            if name not in sources:
                continue
            mapped, reports[name] = map_slot(SLOTS[name], Path(sources[name]), config, expected)
            write_shards(tmp, name, mapped, weight_map)
            del mapped
        covered = set(weight_map)
        absent = sorted(set(expected) - covered)
        if absent:
            raise CheckpointError(f"no source provided {len(absent)} weights, e.g. {', '.join(absent[:3])}")
        write_index(tmp, weight_map)
        copy_llm_folder(llm_dir, tmp / LLM_DIR)
        config.to_json(tmp / CONFIG_NAME)
        report = {name: {"path": r.path, "mapped": r.mapped, "ignored": len(r.ignored),
                         "ignored_examples": r.ignored[:5]} for name, r in reports.items()}
        report["llm"] = {"path": str(llm_dir)}
        (tmp / "conversion_report.json").write_text(json.dumps(report, indent=1))
    return Path(out)


def export_official(model: torch.nn.Module, path: str | Path, branch: str) -> Path:
    """Write the trainable parts of one branch ('vl' or 'al') in the official `{"model": ...}` .pth layout."""
    if branch not in ("vl", "al"):
        raise ValueError(f"branch must be 'vl' or 'al', got {branch!r}")
    slot = SLOTS[branch]
    keymap = KeyMap(slot.rows)
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith(slot.provides):
            official = keymap.to_official(key)
            if official is None:
                raise CheckpointError(f"no official name for '{key}' in the {branch.upper()} table")
            out[official] = value.detach().to("cpu").clone()
    if not out:
        raise CheckpointError(f"the model has no {slot.description} weights to export")
    atomic_torch_save({"model": out}, path)
    return Path(path)
