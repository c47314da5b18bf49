"""Where training runs: device selection and DDP through torchrun's environment variables.

`torchrun --nproc_per_node N -m w2vcli pretrain ...` sets RANK, WORLD_SIZE and LOCAL_RANK; without
them everything here is a no-op for a single process. Backend: nccl on CUDA, gloo elsewhere.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from w2vcli.errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Only the main process writes files and reports progress."""
        return self.rank == 0


def from_env(env=os.environ) -> Dist:
    return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def select_device(name: str, dist: Dist) -> torch.device:
    """`auto`: CUDA (this process's LOCAL_RANK GPU), then MPS, then CPU. Others are checked, not trusted."""
    name = name.lower()
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name.startswith("cuda"):
        if not cuda:
            raise UsageError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if name == "cuda":
            name = f"cuda:{dist.local_rank}"
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        torch.cuda.set_device(index)
        return torch.device(name)
    if name == "mps":
        if not mps:
            raise UsageError("--device mps: Apple MPS is not available here; use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {name!r}")


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bfloat16 and int8 tiles (read on Linux; elsewhere we do not guess)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags and "amx_int8" in flags


def init(dist: Dist, device: torch.device) -> None:
    if dist.enabled and not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend, rank=dist.rank, world_size=dist.world_size)


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        # Tear down together: a rank that destroys its gloo pairs while a peer is still writing its
        # final checkpoint can make that peer abort at exit. Not while an error propagates: the
        # peers may never arrive.
        if sys.exc_info()[0] is None:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def all_reduce(t: torch.Tensor, dist: Dist, op: str = "sum") -> torch.Tensor:
    """In place over all processes (sum or max); returns `t` for chaining."""
    if dist.enabled:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM if op == "sum" else torch_dist.ReduceOp.MAX)
    return t


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device, find_unused: bool) -> torch.nn.Module:
    """DDP over the parameters that currently require gradients (re-wrap when that set changes)."""
    if not dist.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused, broadcast_buffers=False
    )


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
