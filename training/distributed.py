"""What a training worker needs to run on one device or many: its rank, DDP wrapping, bf16
autocast on CUDA, and collecting Python values from every rank.

All functions also work outside Ray Train and without a process group (one worker): `gather`
returns `[obj]`, `wrap_ddp` returns the model itself.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def gather(obj: Any) -> list[Any]:
    """`obj` from every rank (picklable), in rank order; `[obj]` without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def from_rank0(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (e.g. a decision every worker must share)."""
    return gather(obj)[0]


def all_mean(value: float, weight: float) -> float:
    """The `weight`-weighted mean of `value` over ranks (e.g. a loss per token, weighted by tokens)."""
    parts = gather((value * weight, weight))
    return sum(v for v, _ in parts) / max(1e-9, sum(w for _, w in parts))


def sync_buffers_from_rank0(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into this rank's model. DDP syncs
    buffers only at the start of a forward, so after the last step each rank's differ."""
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    state = from_rank0({k: v.detach().cpu() for k, v in model.named_buffers()} if rank == 0 else None)
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(state[k])


def worker_context() -> tuple[int, int, torch.device]:
    """(world rank, world size, device) of this Ray Train worker."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()


def wrap_ddp(model: torch.nn.Module, world_size: int, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DistributedDataParallel over Ray Train's process group when there are several workers
    (the model must already be on its device); the model itself otherwise."""
    if world_size <= 1:
        return model
    import ray.train.torch

    return ray.train.torch.prepare_model(model, move_to_device=False,
                                         parallel_strategy_kwargs={"find_unused_parameters": find_unused_parameters})


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA; nothing (float32) on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
