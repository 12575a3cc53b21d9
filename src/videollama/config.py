"""One typed config tree for the whole model (no torch import here).

`VideoLLaMAConfig` nests one dataclass per component. It round-trips through
plain dicts, JSON (inside model folders) and YAML (presets and recipes).
Unknown keys are rejected with the nearest valid name; nothing mutates a config
after it is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from videollama.errors import ConfigError

FORMAT_VERSION = 1

T = TypeVar("T")


@dataclass(frozen=True)
class VisionEncoderConfig:
    """EVA ViT-g/14 (official: 1408 wide, 39 of the file's 40 blocks, 16 heads, MLP 6144)."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1408
    depth: int = 39
    heads: int = 16
    mlp_hidden: int = 6144  # int(1408 * 4.3637)
    norm_eps: float = 1e-6
    ln_vision_eps: float = 1e-5  # ln_vision uses torch's default eps, not EVA's (quirk 6)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class QFormerConfig:
    """A BERT-style Q-Former hosted by transformers' `Blip2QFormerModel`."""

    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    layers: int = 12
    cross_attention_freq: int = 2
    encoder_width: int = 1408
    num_query_tokens: int = 32
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512  # only sizes the (ignored) position_ids buffer of official files
    attention_dropout: float = 0.1  # dropout on the attention probabilities in training (BERT's, as official)
    hidden_dropout: float = 0.1  # dropout on each attention / FFN output before its residual add (BERT's too)


@dataclass(frozen=True)
class ImageBindModalityConfig:
    """One ImageBind trunk (transformer) with its stem and head."""

    width: int
    depth: int
    heads: int
    mlp_hidden: int


@dataclass(frozen=True)
class AudioEncoderConfig:
    """ImageBind-Huge audio modality (+ the vision modality used by the official AL training path)."""

    audio: ImageBindModalityConfig = field(
        default_factory=lambda: ImageBindModalityConfig(width=768, depth=12, heads=12, mlp_hidden=3072)
    )
    vision: ImageBindModalityConfig | None = field(
        default_factory=lambda: ImageBindModalityConfig(width=1280, depth=32, heads=16, mlp_hidden=5120)
    )
    out_dim: int = 1024
    num_mel_bins: int = 128
    target_length: int = 204
    kernel_size: int = 16
    stride: int = 10
    image_size: int = 224
    patch_size: int = 14
    tubelet: int = 2
    stem_norm_eps: float = 1e-5
    norm_eps: float = 1e-6

    @property
    def audio_grid(self) -> tuple[int, int]:
        f = (self.num_mel_bins - self.kernel_size) // self.stride + 1
        t = (self.target_length - self.kernel_size) // self.stride + 1
        return f, t


@dataclass(frozen=True)
class LLMConfig:
    """The frozen causal LM: any `transformers` AutoModelForCausalLM.

    `hf_config` is the LLM's own config.json as a dict (its `model_type` picks the class);
    model folders keep the LLM in an `llm/` subfolder in plain Hugging Face format.
    """

    hf_config: dict[str, Any] = field(default_factory=dict)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    load_in: Literal["none", "8bit", "4bit"] = "none"
    tokenizer: Literal["legacy_llama", "hf"] = "legacy_llama"

    @property
    def hidden_size(self) -> int:
        try:
            return int(self.hf_config["hidden_size"])
        except KeyError as exc:
            raise ConfigError("llm.hf_config has no 'hidden_size'") from exc


@dataclass(frozen=True)
class TemplateConfig:
    """Conversation template: `vicuna` ('###'), `llama_2` ('[INST]') or the LLM's own `chat_template`."""

    name: Literal["vicuna", "llama_2", "chat_template"] = "llama_2"
    system: str | None = None  # None: the template's official default


@dataclass(frozen=True)
class VideoLLaMAConfig:
    """The whole Video-LLaMA model (vision-language branch + optional audio-language branch)."""

    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    image_qformer: QFormerConfig = field(default_factory=QFormerConfig)
    video_qformer: QFormerConfig = field(
        default_factory=lambda: QFormerConfig(layers=2, cross_attention_freq=1, encoder_width=768, num_query_tokens=32)
    )
    audio_encoder: AudioEncoderConfig | None = field(default_factory=AudioEncoderConfig)
    audio_qformer: QFormerConfig | None = field(
        default_factory=lambda: QFormerConfig(layers=2, cross_attention_freq=1, encoder_width=1024, num_query_tokens=8)
    )
    llm: LLMConfig = field(default_factory=LLMConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    max_frame_pos: int = 32
    num_audio_positions: int = 8  # hard-coded 8 in the official code (quirk 15)
    #: Not official: a frozen per-channel standardiser, (x - mean) / std with statistics fitted on training data,
    #: between the frozen encoders and the trainable Q-Formers. For models whose frozen encoders are random
    #: (the world / default models): their outputs share a large common component (~90 % of their size).
    standardize_media_features: bool = False
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.video_qformer.encoder_width != self.image_qformer.hidden:
            raise ConfigError(
                f"video_qformer.encoder_width={self.video_qformer.encoder_width} must equal "
                f"image_qformer.hidden={self.image_qformer.hidden}"
            )
        if self.image_qformer.encoder_width != self.vision.width:
            raise ConfigError(
                f"image_qformer.encoder_width={self.image_qformer.encoder_width} must equal vision.width={self.vision.width}"
            )
        for name in ("image_qformer", "video_qformer", "audio_qformer"):
            qformer = getattr(self, name)
            for rate in ("attention_dropout", "hidden_dropout"):
                value = None if qformer is None else getattr(qformer, rate)
                if value is not None and not 0.0 <= value < 1.0:
                    raise ConfigError(f"{name}.{rate}={value} must be in [0, 1)")
        if (self.audio_encoder is None) != (self.audio_qformer is None):
            raise ConfigError("audio_encoder and audio_qformer must both be set (audio branch) or both be null")
        if self.audio_encoder is not None and self.audio_qformer is not None:
            if self.audio_qformer.encoder_width != self.audio_encoder.out_dim:
                raise ConfigError(
                    f"audio_qformer.encoder_width={self.audio_qformer.encoder_width} must equal "
                    f"audio_encoder.out_dim={self.audio_encoder.out_dim}"
                )

    @property
    def has_audio(self) -> bool:
        return self.audio_encoder is not None

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> VideoLLaMAConfig:
        return _from_dict(cls, data, where)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> VideoLLaMAConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
        return _from_dict(cls, data, str(path))

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> VideoLLaMAConfig:
        return _from_dict(cls, read_yaml_mapping(path, "config file"), str(path))

    def replace(self, **changes: Any) -> VideoLLaMAConfig:
        return dataclasses.replace(self, **changes)


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; every problem is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclasses; reject unknown keys."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f" (valid: {', '.join(fields)})"
            raise ConfigError(f"{where}: unknown key '{key}' in {cls.__name__}{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (tuple, list) and args:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads '3e-3' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


# ---- presets -------------------------------------------------------------------------------

PRESET_DIR = Path(__file__).parent / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> VideoLLaMAConfig:
    """Load a named preset from `videollama/presets/NAME.yaml`."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(list_presets())})")
    return VideoLLaMAConfig.from_yaml(path)
