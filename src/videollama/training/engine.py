"""The training engine: official recipes (SPEC §5) on `accelerate`.

`accelerate.Accelerator` does the process group (torchrun / `accelerate launch` env), DDP, mixed precision
(bf16 / fp16 autocast + GradScaler) and gradient accumulation; this module adds what is Video-LLaMA specific:

* official freezing (`objective.set_trainable`), trainable count printed at start;
* AdamW with the official weight-decay groups and the official warmup + cosine LR per *global* step
  (quirk 31 FIX; `schedule.py`);
* optional LoRA / QLoRA adapters on the LLM through peft (they train and are checkpointed too);
* `strategy: fsdp` (several processes): FSDP2 `fully_shard` of the frozen LLM and frozen encoders, each rank
  holding 1/world of those weights, while the small trainable modules stay replicated plain tensors whose
  gradients are averaged like DDP (`distributed.shard_frozen_fsdp2`); checkpoints / resume are unchanged;
* mixed precision: `precision: bf16` runs the forward under autocast (CPU and GPU), trainable master weights and
  optimizer state stay fp32; `fp16` (autocast + GradScaler) is GPU-only: a clear ConfigError on CPU;
* trainable-only checkpoints + a resume file, atomic, keep-last-k (`checkpointing.py`), exact resume
  (model, optimizer, scheduler, step, every rank's RNG and data-iterator state);
* the final export: `<output_dir>/final/` (a complete model folder, `VideoLLaMA.from_pretrained` loads it;
  LoRA is merged into the LLM first) and the official `.pth` of the branch (`export_official`).

Batches come from a *batch source*: an iterator of collated batches (format in `objective.py`) with
`state_dict()` / `load_state_dict()`. By default it is made by the data layer
(`videollama.training.data.build_training_data`); tests pass `data_factory`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from videollama.errors import ConfigError
from videollama.training import checkpointing as ckpt
from videollama.training import distributed as D
from videollama.training.objective import TRAINABLE_MODULES, Branch, TokenIds, batch_loss, set_train_mode, set_trainable
from videollama.training.recipe import TrainRecipe
from videollama.training.schedule import OfficialLRScheduler, build_optimizer

KILL_ENV = "VIDEOLLAMA_TRAIN_KILL_AFTER_STEP"  # test hook: SIGKILL this process right after that global step
FINAL_DIR = "final"


class BatchSource(Protocol):
    """A resumable, rank-sharded iterator of collated batches (one dataset per step)."""

    def __next__(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# (recipe, tokenizer, model config, rank, world_size) -> BatchSource
DataFactory = Callable[[TrainRecipe, Any, Any, int, int], BatchSource]


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # this run's per-step losses (mean over ranks)
    trainable_params: int = 0
    lora_params: int = 0
    resumed_from: str | None = None
    final_dir: str | None = None
    official_path: str | None = None
    seconds: float = 0.0
    train_seconds: float = 0.0  # the step loop only (no loading, no export)
    model: Any = field(default=None, repr=False)  # the trained (unwrapped) model; LoRA merged if exported


class BranchLoss(nn.Module):
    """The module DDP wraps: forward(batch) -> the official loss (so gradient sync happens in DDP.forward)."""

    def __init__(self, model: nn.Module, branch: Branch, ids: TokenIds) -> None:
        super().__init__()
        self.model = model
        self.branch = branch
        self.ids = ids

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch_loss(self.model, batch, self.branch, self.ids)


# ---- model -------------------------------------------------------------------------------------
def load_model(recipe: TrainRecipe) -> nn.Module:
    """The model folder of the recipe; QLoRA loads the LLM in 4 bit (bitsandbytes, GPU)."""
    from videollama.model.videollama import VideoLLaMA

    folder = Path(recipe.model)
    if not folder.is_dir():
        raise ConfigError(f"recipe model '{recipe.model}' is not a model folder (make one with `videollama convert`)")
    if recipe.lora is None or not recipe.lora.quantize_4bit:
        model = VideoLLaMA.from_pretrained(folder)
    else:
        model = _load_4bit(folder)
    if recipe.branch == "al" and getattr(model, "audio_qformer", None) is None:
        raise ConfigError(f"{folder}: the AL branch needs a model with the audio branch (convert without --no-audio)")
    return model


def _load_4bit(folder: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from videollama.checkpoint.folder import LLM_DIR, read_config, read_media_state
    from videollama.model.videollama import VideoLLaMA

    if not torch.cuda.is_available():
        raise ConfigError("QLoRA (lora.quantize_4bit) needs a CUDA GPU (bitsandbytes 4-bit)")
    config = read_config(folder)
    dtype = getattr(torch, config.llm.dtype)
    llm = AutoModelForCausalLM.from_pretrained(folder / LLM_DIR, dtype=dtype, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype))
    with torch.device("meta"):
        model = VideoLLaMA(config, llm=llm)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("llm.")}
    model.load_state_dict(read_media_state(folder, expected), strict=False, assign=True)
    model.llm_source = folder / LLM_DIR
    for module in model.media_modules().values():
        module.to(dtype=dtype)
    return model.eval()


def prepare_trainable(model: nn.Module, recipe: TrainRecipe) -> tuple[int, int]:
    """The recipe branch's trainable modules unfrozen and in fp32 (official: autocast does the rest), then the
    recipe's LoRA adapters if any -> (trainable parameters, LoRA parameters)."""
    count = set_trainable(model, recipe.branch)
    for name in TRAINABLE_MODULES[recipe.branch]:
        getattr(model, name).float()
    return count, apply_lora(model, recipe) if recipe.lora is not None else 0


def apply_lora(model: nn.Module, recipe: TrainRecipe) -> int:
    """Wrap `model.llm` with peft LoRA adapters (after official freezing); returns the adapter parameter count."""
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError as exc:
        raise ConfigError("LoRA needs peft: pip install 'videollama[train]'") from exc
    spec = recipe.lora
    assert spec is not None
    if spec.quantize_4bit:
        model.llm = prepare_model_for_kbit_training(model.llm, use_gradient_checkpointing=recipe.gradient_checkpointing)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                     target_modules=list(spec.target_modules), bias="none", task_type="CAUSAL_LM")
    model.llm = get_peft_model(model.llm, cfg)
    return sum(p.numel() for n, p in model.llm.named_parameters() if p.requires_grad and "lora_" in n)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """EVA blocks (`.gradient_checkpointing`), the HF Q-Formers and the LLM recompute activations in backward.

    HF layers checkpoint only while `layer.training` is set; frozen modules run in eval mode (and everything does
    with `no_dropout`), so `checkpointing_layers_on` (called by `train`) sets that flag on the checkpointing layers
    alone (their submodules keep their mode: no dropout is switched on)."""
    for module in model.modules():
        if hasattr(module, "gradient_checkpointing_enable") and module is not model:
            try:
                if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.2x name
                    module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
                else:
                    module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            except (ValueError, TypeError):
                pass
        elif isinstance(getattr(module, "gradient_checkpointing", None), bool):
            module.gradient_checkpointing = True
    llm = getattr(model, "llm", None)
    if llm is not None and hasattr(llm, "enable_input_require_grads"):
        llm.enable_input_require_grads()


def check_compile(recipe: TrainRecipe, device: torch.device, fsdp: bool) -> None:
    """Recipe key `compile`, before anything is loaded: refused with FSDP sharding, and on CPU without the C++
    compiler that torch's inductor will call ($CXX, else g++; found by inductor's own search)."""
    if fsdp:
        raise ConfigError(f"recipe '{recipe.name}': compile: true is not supported with strategy fsdp (use ddp)")
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except Exception as exc:  # inductor's InvalidCxxCompiler (a multi-line message)
            raise ConfigError(f"recipe '{recipe.name}': compile: true needs a C++ compiler on CPU, and "
                              f"{os.environ.get('CXX') or 'g++'} was not found (install g++, set $CXX, or set "
                              f"compile: false)") from exc


def compile_llm_decoder(model: nn.Module, recipe: TrainRecipe) -> None:
    """Recipe key `compile`: the loss's LLM decoder through torch.compile (`VideoLLaMA.compile_decoder`)."""
    if not model.compile_decoder():
        raise ConfigError(f"recipe '{recipe.name}': compile: true needs an LLM whose logits are its output head over "
                          f"its decoder; {type(model.llm).__name__} is not (sharded, or it scales or caps its logits)")


def _train_mode(model: nn.Module, branch: Branch) -> None:
    set_train_mode(model, branch)
    for name, module in model.named_modules():
        if "lora_dropout" in name:
            module.train()


def checkpointing_layers_on(model: nn.Module) -> int:
    """Set `training` (non-recursively) on every HF layer with gradient checkpointing enabled, so it recomputes
    in backward even inside an eval-mode (frozen) module; returns how many layers checkpoint."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    n = 0
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
            module.training = True
            n += 1
    return n


def init_llama_proj(model: nn.Module, path: str) -> None:
    """VL stage 1 init: the MiniGPT-4 projection (`llama_proj.*`) goes into `video_proj`."""
    from videollama.checkpoint.files import load_torch_file

    state = load_torch_file(path, "MiniGPT-4 llama_proj")
    state = state.get("model", state) if isinstance(state, dict) else state
    sub = {k.split("llama_proj.", 1)[1]: v for k, v in state.items() if "llama_proj." in k and "audio" not in k}
    if set(sub) != {"weight", "bias"}:
        raise ConfigError(f"{path}: no llama_proj.weight/bias in this file")
    with torch.no_grad():
        model.video_proj.weight.copy_(sub["weight"])
        model.video_proj.bias.copy_(sub["bias"])


# ---- data --------------------------------------------------------------------------------------
def default_data_factory(recipe: TrainRecipe, tokenizer: Any, model_config: Any, rank: int, world: int) -> BatchSource:
    """Batches from the data layer (`videollama.training.data`): the seeded, rank-sharded mixture stream."""
    try:
        from videollama.training.data import build_training_data
    except ImportError as exc:
        raise ConfigError("the training data layer (videollama.training.data) is not available") from exc
    data = build_training_data(recipe, tokenizer, model_config)  # feature cache: recipe.feature_cache when set
    return DataLayerSource(data.batches(rank=rank, world_size=world))


class DataLayerSource:
    """`next()` over a data-layer `BatchIterator` (an iterable whose state must be loaded before iterating).

    Batches whose samples were all skipped (`size == 0`) are passed over here, so every rank still makes the
    same number of optimizer steps (DDP needs that); the iterator's own step counter keeps resume exact.
    """

    def __init__(self, batch_iterator: Any) -> None:
        self.source = batch_iterator
        self._it = None

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._it = iter(self.source)
        while True:
            batch = next(self._it)
            if batch.get("size", 1):
                return batch

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._it is not None:
            raise RuntimeError("load the data state before the first batch")
        self.source.load_state_dict(state)


# ---- the run -----------------------------------------------------------------------------------
def _accelerator(recipe: TrainRecipe, out: Path):
    from accelerate import Accelerator, DistributedDataParallelKwargs

    trackers = []
    for name in recipe.log_with:
        try:
            __import__({"tensorboard": "torch.utils.tensorboard"}.get(name, name))
            trackers.append(name)
        except ImportError:
            print(f"[train] logger '{name}' is not installed; skipped", file=sys.stderr)
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[recipe.precision]
    if precision == "fp16" and not torch.cuda.is_available():  # an error, not a silent fp32 run
        raise ConfigError("precision fp16 (GradScaler) needs a GPU; use bf16 or fp32 on CPU")
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state  # a process-wide singleton: a later in-process train() (tests, notebooks)
    if state and str(state.get("_mixed_precision", precision)) != precision:  # with another precision must reset it
        AcceleratorState._reset_state()  # (the process group, kept in PartialState, stays)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision,
                       gradient_accumulation_steps=recipe.optim.grad_accum, log_with=trackers or None,
                       project_dir=str(out), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])


def train(recipe: TrainRecipe, *, data_factory: DataFactory | None = None, resume: str | bool = True,
          kill_after_step: int | None = None, max_steps: int | None = None, export: bool = True,
          progress: bool = True, no_dropout: bool = False, overwrite: bool = False) -> TrainResult:
    """Run (or resume) one recipe. `resume`: True = newest checkpoint in output_dir if any, False = never,
    or a checkpoint folder. Checkpoints in output_dir past the step the run starts from (an earlier run's) are
    refused, or dropped with `overwrite` (`clear_later_checkpoints`).
    `max_steps` stops early (still checkpoints; for smoke runs and benchmarks).
    `no_dropout` keeps the trained modules in eval mode (no dropout; for equivalence checks: 1 vs N processes)."""
    from tqdm.auto import tqdm

    from videollama.text import load_tokenizer

    t0 = time.perf_counter()
    out = Path(recipe.output_dir).resolve()
    accelerator = _accelerator(recipe, out)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    if kill_after_step is None and os.environ.get(KILL_ENV):
        kill_after_step = int(os.environ[KILL_ENV])
    D.seed_everything(recipe.seed + rank)  # official: 42 + rank
    fsdp = recipe.strategy == "fsdp" and world > 1
    if recipe.compile:
        check_compile(recipe, accelerator.device, fsdp)

    checkpoint = None
    if resume is True:
        checkpoint = ckpt.latest_checkpoint(out)
    elif resume:
        checkpoint = Path(resume)
    clear_later_checkpoints(out, ckpt.checkpoint_step(checkpoint) if checkpoint else 0, overwrite, main)

    model = load_model(recipe)
    tokenizer = load_tokenizer(Path(recipe.model) / "llm")
    ids = TokenIds.from_tokenizer(tokenizer)  # official pad: unk
    branch: Branch = recipe.branch
    count, lora_count = prepare_trainable(model, recipe)
    if main:
        print(f"[train] {recipe.name}: branch {branch.upper()}, trainable parameters: {count:,}"
              + (f" + LoRA {lora_count:,}" if lora_count else ""), flush=True)
    if recipe.gradient_checkpointing:
        enable_gradient_checkpointing(model)

    if checkpoint is None and recipe.init_llama_proj and branch == "vl":
        init_llama_proj(model, recipe.init_llama_proj)
    if checkpoint is not None:
        ckpt.load_trainable(model, checkpoint / ckpt.TRAINABLE_FILE)

    if no_dropout:  # eval mode everywhere: no dropout (also none inside HF attention kernels)
        model.eval()
    else:
        _train_mode(model, branch)
    if recipe.gradient_checkpointing:
        checkpointing_layers_on(model)
    optim = recipe.optim
    if recipe.strategy == "fsdp" and world == 1 and main:
        print("[train] strategy fsdp with one process: nothing to shard, training unsharded", file=sys.stderr)
    if fsdp:
        if recipe.lora is not None and recipe.lora.quantize_4bit:
            raise ConfigError("strategy fsdp does not support QLoRA (4-bit LLM); use strategy ddp")
        loss_module = BranchLoss(model, branch, ids)
        sharded = D.shard_frozen_fsdp2(loss_module, model, accelerator.device)
        D.broadcast_params([p for p in model.parameters() if p.requires_grad])  # what DDP does at construction
        if main:
            local, full = D.sharded_numel(model)
            print(f"[train] FSDP2 over {world} ranks: sharded {', '.join(sharded)} (this rank holds {local:,} of "
                  f"{full:,} frozen weights); trainable modules replicated", flush=True)
        optimizer = build_optimizer(model, optim)
        scheduler = OfficialLRScheduler(optimizer, optim)
        optimizer_p = accelerator.prepare(optimizer)  # the model is not prepared: no DDP; autocast in the loop
    else:
        optimizer = build_optimizer(model, optim)
        scheduler = OfficialLRScheduler(optimizer, optim)
        loss_module, optimizer_p = accelerator.prepare(BranchLoss(model, branch, ids), optimizer)
    if recipe.compile:
        compile_llm_decoder(model, recipe)
    batches = (data_factory or default_data_factory)(recipe, tokenizer, model.config, rank, world)

    step = 0
    if checkpoint is not None:
        state = ckpt.load_resume(checkpoint)
        optimizer_p.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if state.get("world_size") == world:
            batches.load_state_dict(state["data"][rank])
            D.set_rng_state(state["rng"][rank])
        else:  # elastic resume: weights/optimizer exact, data order and RNG restart from a new seed
            print(f"[train] resuming with world size {world} (saved {state.get('world_size')}): "
                  "data order and RNG are reseeded", file=sys.stderr)
            D.seed_everything(recipe.seed + rank + 1000 * step)
        if main:
            print(f"[train] resumed from {checkpoint} at step {step}", flush=True)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1, default=str))
    if recipe.log_with and getattr(accelerator, "log_with", None):
        accelerator.init_trackers("tensorboard", config={"name": recipe.name, "branch": branch})

    total = optim.max_epoch * optim.iters_per_epoch
    stop = min(total, max_steps) if max_steps is not None else total
    save_every = recipe.save_every_steps or optim.iters_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    result = TrainResult(steps=step, trainable_params=count, lora_params=lora_count,
                         resumed_from=str(checkpoint) if checkpoint else None)
    t_loop = time.perf_counter()
    bar = tqdm(total=stop, initial=step, disable=not (main and progress), desc=recipe.name, dynamic_ncols=True)
    while step < stop:
        lr = scheduler.get_last_lr()[0]
        step_loss = 0.0
        for _ in range(optim.grad_accum):
            batch = next(batches)
            with accelerator.accumulate(loss_module):
                if fsdp:  # not prepared by accelerate: autocast here, DDP-style gradient averaging below
                    with accelerator.autocast():
                        loss = loss_module(batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        D.all_reduce_grads(params)
                else:
                    loss = loss_module(batch)
                    accelerator.backward(loss)
                if accelerator.sync_gradients and optim.max_grad_norm:
                    accelerator.clip_grad_norm_(params, optim.max_grad_norm)
                optimizer_p.step()
                optimizer_p.zero_grad(set_to_none=True)
            step_loss += loss.detach().float() / optim.grad_accum
        scheduler.step()
        step += 1
        mean_loss = float(accelerator.reduce(step_loss, reduction="mean")) if world > 1 else float(step_loss)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"step {step}: loss is {mean_loss}")
        result.losses.append(mean_loss)
        if accelerator.trackers:
            accelerator.log({"train/loss": mean_loss, "train/lr": lr,
                             "train/epoch": (step - 1) // optim.iters_per_epoch}, step=step)
        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
        bar.update(1)
        if step % save_every == 0 or step == stop:
            save(out, step, model, optimizer_p, scheduler, batches, recipe, world, main, checkpoint_base=recipe.model)
        if kill_after_step is not None and step == kill_after_step:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    result.train_seconds = time.perf_counter() - t_loop
    if recipe.compile:
        model.compile_decoder(False)  # the export merges LoRA into the LLM: leave no stale compiled graph behind
    result.steps = step

    if export and step >= total:
        accelerator.wait_for_everyone()
        if fsdp and main:  # the frozen weights are sharded (and unchanged): a plain copy carries the trained ones
            model = unsharded_copy(recipe, model)
        if main:
            result.final_dir, result.official_path = (str(p) for p in export_final(model, out, branch))
            print(f"[train] wrote {result.final_dir} and {result.official_path}", flush=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result.seconds = time.perf_counter() - t0
    result.model = model
    return result


def unsharded_copy(recipe: TrainRecipe, model: nn.Module) -> nn.Module:
    """A plain (unsharded) model for the final export of an FSDP run, without collectives: the recipe's model
    folder again (frozen weights never change; the frozen-but-sharded ones would need an all-gather), same freezing
    and LoRA structure, then the trained (replicated, so complete on every rank) parameters copied in."""
    fresh = load_model(recipe)
    prepare_trainable(fresh, recipe)
    trained = ckpt.trainable_state(model)
    params = {n: p for n, p in fresh.named_parameters() if p.requires_grad}
    if params.keys() != trained.keys():
        raise RuntimeError(f"FSDP export: trainable parameter names differ ({sorted(params.keys() ^ trained.keys())[:5]})")
    with torch.no_grad():
        for name, value in trained.items():
            params[name].copy_(value)
    return fresh.eval()


def clear_later_checkpoints(out: Path, start_step: int, overwrite: bool, main: bool) -> None:
    """Checkpoints in `out` past `start_step` are an earlier run's (a start afresh, or a resume from an older or
    another folder's checkpoint). Keep-last pruning ranks by step, so they would outlive this run's own and a later
    `--resume auto` would pick them: refuse to start, or with `overwrite` drop them first."""
    later = [p for p in ckpt.list_checkpoints(out) if ckpt.checkpoint_step(p) > start_step]
    if not later:
        return
    if not overwrite:
        raise ConfigError(f"{out / ckpt.CKPT_DIR}: holds {len(later)} checkpoint(s) of an earlier run past step "
                          f"{start_step} (newest {later[-1].name}); resume it (--resume auto), choose another "
                          "output_dir, or pass --overwrite to drop them")
    if main:
        for folder in later:
            shutil.rmtree(folder)
        print(f"[train] dropped {len(later)} earlier checkpoint(s) past step {start_step} in {out / ckpt.CKPT_DIR}",
              file=sys.stderr, flush=True)
    D.barrier()


def save(out: Path, step: int, model: nn.Module, optimizer, scheduler, batches: BatchSource, recipe: TrainRecipe,
         world: int, main: bool, checkpoint_base: str) -> None:
    """Gather every rank's RNG and data state, rank 0 writes the checkpoint, everyone waits for it."""
    rng = D.gather_objects(D.rng_state())
    data = D.gather_objects(batches.state_dict())
    if main:
        resume = {"step": step, "epoch": step // recipe.optim.iters_per_epoch, "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "rng": rng, "data": data, "world_size": world}
        meta = {"recipe": recipe.name, "branch": recipe.branch, "base_model": str(Path(checkpoint_base).resolve()),
                "lora": dataclasses.asdict(recipe.lora) if recipe.lora else None}
        ckpt.save_checkpoint(out, step, model, resume, meta, keep_last=recipe.keep_last)
    D.barrier()


def export_final(model: nn.Module, out: Path, branch: Branch) -> tuple[Path, Path]:
    """`<out>/final/` full model folder (LoRA merged) + `<out>/final/videollama_<branch>.pth` (official layout).

    With LoRA the adapters are merged into `model.llm` (in place: the model's LLM is the merged one afterwards).
    Branch "av" writes both official files (`videollama_vl.pth`, `videollama_al.pth`); the VL one is returned.
    """
    from videollama.checkpoint.convert import export_official

    llm = model.llm
    if hasattr(llm, "merge_and_unload"):
        model.llm = llm.merge_and_unload()
    folder = model.save_pretrained(out / FINAL_DIR, overwrite=True)
    paths = [export_official(model, folder / f"videollama_{b}.pth", b) for b in (("vl", "al") if branch == "av" else (branch,))]
    return folder, paths[0]

