"""Data-parallel training helpers around ``torch.distributed`` and DDP.

Data parallelism as in PyTorch's DistributedDataParallel (Li et al., 2020, "PyTorch
Distributed: Experiences on Accelerating Data Parallel Training", arXiv:2006.15704): every
process holds a full replica, computes gradients on its shard of the batch, and the
gradients are all-reduced (averaged) during ``backward``.

Processes are started by ``torchrun`` (``python -m torch.distributed.run``), which sets the
environment variables read here: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``. Without them (or with ``WORLD_SIZE=1``) everything here is a cheap no-op, so
the same training script runs on one process unchanged.

Backend: ``nccl`` when CUDA is available (one GPU per process, chosen by ``LOCAL_RANK``),
``gloo`` on CPU. Only rank 0 writes checkpoints and logs; the trainer puts barriers around
checkpoint saves so no process runs ahead of (or exits before) a checkpoint.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedInfo",
    "init_distributed",
    "destroy_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "all_reduce_sum",
    "gather_objects",
    "wrap_model",
    "unwrap_model",
]

_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedInfo:
    rank: int                 # global rank of this process, 0 .. world_size - 1
    world_size: int           # number of processes
    local_rank: int           # rank on this machine; picks the CUDA device
    backend: str | None       # "gloo" / "nccl" while a process group is up, None for one process
    device: torch.device      # where this process should put its model and batches


def _env_int(name: str, default: int | None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ValueError(f"init_distributed: environment variable {name} is not set; "
                             f"launch with torchrun, which sets {', '.join(_ENV_VARS)}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"init_distributed: environment variable {name} must be an integer, "
                         f"got {raw!r}") from None


def is_distributed() -> bool:
    """True when a process group with more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(*, backend: str | None = None,
                     timeout: datetime.timedelta | None = None) -> DistributedInfo:
    """Join the process group described by torchrun's environment variables.

    Args:
        backend: ``"gloo"``, ``"nccl"`` or ``None`` (nccl with CUDA, else gloo).
        timeout: collective timeout (default 30 minutes).

    Returns:
        this process's :class:`DistributedInfo`. With ``WORLD_SIZE`` unset or 1 no group is
        created and the info describes a single process. Calling it again once the group is up
        returns the same description.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"init_distributed: WORLD_SIZE must be >= 1, got {world_size}")
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "nccl" if cuda else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"init_distributed: backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and not cuda:
        raise ValueError("init_distributed: backend 'nccl' needs CUDA; use 'gloo' on CPU")
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if world_size == 1 and not (dist.is_available() and dist.is_initialized()):
        if cuda and backend == "nccl":
            torch.cuda.set_device(device)
        return DistributedInfo(0, 1, local_rank, None, device)
    if not dist.is_available():
        raise RuntimeError("init_distributed: this torch build has no torch.distributed")
    if not dist.is_initialized():
        rank = _env_int("RANK", None)
        _env_int("MASTER_PORT", None)
        if "MASTER_ADDR" not in os.environ:
            raise ValueError(f"init_distributed: environment variable MASTER_ADDR is not set; "
                             f"launch with torchrun, which sets {', '.join(_ENV_VARS)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"init_distributed: RANK must be in [0, {world_size}), got {rank}")
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=timeout or datetime.timedelta(minutes=30))
    return DistributedInfo(dist.get_rank(), dist.get_world_size(), local_rank,
                           dist.get_backend(), device)


def destroy_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op for one process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` (any shape) over all processes, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable, exchanged between our own processes), by rank."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def wrap_model(model: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    """Wrap ``model`` in DistributedDataParallel when running on several processes.

    The model must already be on ``device`` (its own parameters' device when ``None``).
    Returns the model unchanged for a single process or when it is already wrapped.
    """
    if not is_distributed() or isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device_ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return model
