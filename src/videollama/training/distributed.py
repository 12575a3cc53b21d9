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
  CPU, 2 processes (what the tests do):
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


def shard_frozen_llm_fsdp2(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 (`fully_shard`) over the LLM decoder layers and the LLM, on a 1-D mesh of all ranks.

    Shards the big frozen LLM (the memory that matters) while the small trainable modules stay replicated
    (their gradients are all-reduced by the caller). Works on CPU with gloo (FSDP1 does not).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mesh = init_device_mesh(device, (world_size(),))
    llm = model.llm
    layers = getattr(getattr(llm, "model", llm), "layers", [])
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(llm, mesh=mesh)
    return model


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of replicated parameters across ranks (used with FSDP2 of the frozen LLM)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    n = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(n)
