"""Process-group helpers for training: rank info, seeding, RNG state, object gathering, FSDP2.

Launching (the engine itself is launcher-agnostic; `accelerate.Accelerator` reads the torchrun env):

  one process (CPU or one GPU):
      videollama train recipes/vl_stage1.yaml
  one node, 8 GPUs (DDP over NCCL; gloo on CPU):
      torchrun --standalone --nproc_per_node 8 -m videollama.cli.train recipes/vl_stage1.yaml
      accelerate launch --multi_gpu --num_processes 8 -m videollama.cli.train recipes/vl_stage1.yaml
  several nodes (N nodes x 8 GPUs, run on every node with its NODE_RANK):
      torchrun --nnodes N --nproc_per_node 8 --node_rank $NODE_RANK \
               --rdzv_backend c10d --rdzv_endpoint $MASTER_ADDR:29500 -m videollama.cli.train RECIPE.yaml
      accelerate launch --multi_gpu --num_machines N --num_processes $((8*N)) --machine_rank $NODE_RANK \
               --main_process_ip $MASTER_ADDR --main_process_port 29500 -m videollama.cli.train RECIPE.yaml
  DeepSpeed ZeRO-2 / ZeRO-3 (GPU only; configs in recipes/deepspeed/):
      accelerate launch --use_deepspeed --deepspeed_config_file recipes/deepspeed/zero2.json \
               --num_processes 8 -m videollama.cli.train RECIPE.yaml
  FSDP2 (frozen LLM / encoders sharded over the ranks, trainable modules replicated; `shard_frozen_fsdp2`):
      torchrun --standalone --nproc_per_node 8 -m videollama.cli.train recipes/vl_stage1.yaml strategy=fsdp
  CPU, 2 processes (what the tests do; add strategy=fsdp for FSDP2 over gloo):
      python -m torch.distributed.run --standalone --nproc_per_node 2 -m videollama.cli.train RECIPE.yaml

`output_dir` must be on a filesystem every rank can see only for the final export; checkpoints are written
by rank 0 alone (the RNG / data-iterator states of all ranks are gathered to it first).
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (official: 42 + rank)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, and CUDA when present)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-item list without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _is_dtensor(p: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def _shard_unit(module: torch.nn.Module, mesh: Any, keep: set | None = None) -> bool:
    """`fully_shard` one frozen module: each block of its (outermost) ModuleLists, then the module itself.
    Trainable parameters inside it (LoRA adapters) are left alone (replicated, plain tensors)."""
    from torch.distributed.fsdp import fully_shard

    keep = keep or set()
    trainable = {p for p in module.parameters() if p.requires_grad} | keep
    frozen = [p for p in module.parameters() if p not in trainable and not _is_dtensor(p)]
    if not frozen:
        return False
    seen: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, torch.nn.ModuleList) and id(sub) not in seen:
            for inner in sub.modules():
                seen.add(id(inner))
            for block in sub:
                block_trainable = {p for p in block.parameters() if p in trainable}
                if any(p not in trainable for p in block.parameters()):
                    fully_shard(block, mesh=mesh, ignored_params=block_trainable or None)
    fully_shard(module, mesh=mesh, ignored_params={p for p in trainable if not _is_dtensor(p)} or None)
    return True


def shard_frozen_fsdp2(root: torch.nn.Module, model: torch.nn.Module, device: torch.device | str) -> list[str]:
    """FSDP2 (`fully_shard`) of the big frozen modules, on a 1-D mesh of all ranks; returns what was sharded.

    Sharded (each rank keeps 1/world of these weights; FSDP2 all-gathers one unit at a time in forward and
    again in backward): the LLM (every decoder layer, the input embedding as its own unit because
    `VideoLLaMA.embed_tokens` calls it outside the LLM's forward, then the rest: final norm, lm_head) and every
    *frozen* media module with transformer blocks (EVA ViT, image Q-Former, ImageBind, the other branch's
    Q-Former). Not sharded: the trainable modules and LoRA adapters (replicated plain tensors: the optimizer,
    checkpoints and resume stay exactly as without FSDP; the caller averages their gradients with
    `all_reduce_grads` and broadcasts them once with `broadcast_params`) and small frozen leftovers
    (plain Linear / Embedding modules, query tokens).

    `root` (the module whose forward runs the whole step) becomes the FSDP root with no parameters of its own,
    so every sharded unit is lazily initialised under it. Works on CPU with gloo (FSDP1 does not).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = torch.device(device)
    mesh = init_device_mesh(device.type, (world_size(),))
    sharded = []
    llm = model.llm
    embed, head = llm.get_input_embeddings(), llm.get_output_embeddings()
    keep: set = set()
    if head is not None and head.weight is embed.weight:  # tied: keep the (shared) embedding replicated
        keep = set(embed.parameters())
    elif _shard_unit(embed, mesh):
        sharded.append("llm.embed_tokens")
    if _shard_unit(llm, mesh, keep):
        sharded.append("llm")
    media = model.media_modules() if hasattr(model, "media_modules") else {}
    for name, module in media.items():
        params = list(module.parameters())
        has_blocks = any(isinstance(m, torch.nn.ModuleList) for m in module.modules())
        if params and has_blocks and not any(p.requires_grad for p in params) and _shard_unit(module, mesh):
            sharded.append(name)
    rest = {p for p in root.parameters() if not _is_dtensor(p)}
    fully_shard(root, mesh=mesh, ignored_params=rest or None)
    root.to(device)  # the replicated leftovers and buffers (the sharded units are on `device` already)
    return sharded


def sharded_numel(model: torch.nn.Module) -> tuple[int, int]:
    """(elements this rank holds, full elements) over the FSDP2-sharded parameters of `model`."""
    local = full = 0
    for p in model.parameters():
        if _is_dtensor(p):
            local += p.to_local().numel()
            full += p.numel()
    return local, full


def broadcast_params(params: list[torch.nn.Parameter], src: int = 0) -> None:
    """Make replicated parameters identical on every rank (what DDP does at construction)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=src)


def all_reduce_grads(params: list[torch.nn.Parameter], bucket_numel: int = 2**24) -> None:
    """Average the gradients of replicated parameters across ranks (DDP's rule, used with FSDP2 of the frozen
    modules): flattened into buckets of up to `bucket_numel` elements, one all-reduce per bucket."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    n = dist.get_world_size()
    grads = [p.grad for p in params if p.grad is not None]
    buckets: list[list[torch.Tensor]] = []
    size = bucket_numel + 1
    for g in grads:
        if size + g.numel() > bucket_numel or g.dtype != buckets[-1][0].dtype or g.device != buckets[-1][0].device:
            buckets.append([])
            size = 0
        buckets[-1].append(g)
        size += g.numel()
    for bucket in buckets:
        flat = torch.cat([g.reshape(-1) for g in bucket])
        flat.div_(n)
        dist.all_reduce(flat)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
