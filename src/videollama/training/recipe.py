"""Training recipes: one typed tree, read from YAML with `key=value` overrides (no torch import here).

A recipe mirrors one official training config (SPEC §5): which branch trains, from which model folder,
on which datasets in which mix, with which optimisation schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from videollama.config import _from_dict, read_yaml_mapping
from videollama.errors import ConfigError

DatasetFormat = Literal[
    "webvid",              # anno_dir/*.csv (videoid,page_dir,name); videos at media_root/{page_dir}/{videoid}.mp4
    "cc_sbu_align",        # filter_cap.json {"annotations":[{"image_id","caption"}]}; images media_root/{image_id}.jpg
    "llava_instruct",      # [{"image","conversations":[{"from","value"}]}]; images media_root/COCO_train2014_{image}
    "videochat_instruct",  # [{"video","QA":[{"q","a"}]}]; videos media_root/{video}
    "jsonl",               # generic: {"media", "caption"} or {"media", "conversations":[...]} per line
    "webdataset",          # sharded .tar files: {key}.{mp4|jpg|png|...} + {key}.json (caption or conversations)
]


@dataclass(frozen=True)
class DatasetSpec:
    """One training dataset and how its samples are made."""

    name: str
    format: DatasetFormat
    annotations: str  # file, folder or glob (relative paths: against the recipe file's folder)
    media_root: str = "."
    sample_ratio: float = 1.0  # mixture weight (official `sample_ratio`)
    n_frames: int = 8
    sampling: Literal["headtail", "uniform", "random"] = "uniform"
    prompts: str | None = None  # caption prompt file: only lines with <ImageHere> are used (official)
    prompt_template: str = "{}"
    max_txt_len: int = 32
    end_sym: str = "\n"
    image_path_prefix: str = ""  # llava_instruct: "COCO_train2014_" officially (quirk 28)
    timestamp_message: bool = True  # videochat_instruct: prepend the frame timestamp sentence (off for "cn" data)


@dataclass(frozen=True)
class OptimConfig:
    """Official optimisation settings (SPEC §5.1, §5.5): AdamW + linear warmup then cosine, per step."""

    init_lr: float = 1e-4
    min_lr: float = 8e-5
    warmup_lr: float = 1e-6
    warmup_steps: int = 2500
    weight_decay: float = 0.05
    beta2: float = 0.999
    max_epoch: int = 5
    iters_per_epoch: int = 2500
    batch_size: int = 32  # per device
    grad_accum: int = 1
    max_grad_norm: float | None = None  # the official runs do not clip


@dataclass(frozen=True)
class LoraSpec:
    """Optional LoRA / QLoRA on the frozen LLM through peft."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    quantize_4bit: bool = False


@dataclass(frozen=True)
class TrainRecipe:
    """One training run."""

    name: str
    model: str  # a model folder (from `videollama convert`, or a previous stage) or a preset name
    branch: Literal["vl", "al", "av"]  # "av": both branches on real audio + frames (our extension)
    template: Literal["vicuna", "llama_2", "chat_template"] = "llama_2"  # chat_template: the LLM's own (not official)
    datasets: tuple[DatasetSpec, ...] = ()
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/{name}"
    seed: int = 42
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"  # multi-process: DDP, or FSDP2 sharding of the frozen LLM/encoders
    lora: LoraSpec | None = None
    feature_cache: str | None = None  # folder written by `videollama cache-features`
    feature_cache_dtype: Literal["float32", "float16"] = "float32"
    init_llama_proj: str | None = None  # official MiniGPT-4 projection file (VL stage 1)
    save_every_steps: int = 0  # 0: at the end of every epoch (official)
    keep_last: int = 3
    num_workers: int = 2
    log_with: tuple[str, ...] = ("tensorboard",)
    instruct_max_len: int = 512  # hard-coded 512 officially (quirk 27)
    group_by_length: bool = False  # batches of samples of about the same text length: less padding (not official)
    compile: bool = False  # torch.compile the LLM decoder in the loss (same numbers, faster; CPU needs a C++ compiler)

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError(f"recipe '{self.name}': no datasets")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"recipe '{self.name}': dataset names must be unique, got {names}")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRecipe:
        """Read a recipe; `overrides` are `dotted.key=value` strings (value parsed as YAML)."""
        path = Path(path)
        data = read_yaml_mapping(path, "recipe")
        for item in overrides:
            apply_override(data, item, str(path))
        recipe = _from_dict(cls, data, str(path))
        return recipe.resolve_paths(path.parent)

    def resolve_paths(self, base: Path) -> TrainRecipe:
        """Relative dataset paths are taken against the recipe's folder; output_dir against the working dir."""

        def fix(p: str) -> str:
            return p if Path(p).is_absolute() or "://" in p else str((base / p).resolve())

        datasets = tuple(dataclasses.replace(d, annotations=fix(d.annotations), media_root=fix(d.media_root),
                                             prompts=fix(d.prompts) if d.prompts else None) for d in self.datasets)
        return dataclasses.replace(self, datasets=datasets, output_dir=self.output_dir.format(name=self.name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def apply_override(data: dict[str, Any], item: str, where: str) -> None:
    """Set `a.b.c=value` in a nested dict; list items by index (`datasets.0.sample_ratio=2`)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML") from exc
    node: Any = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if not isinstance(node.get(part), (dict, list)):  # absent or null (e.g. `lora: null`)
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
