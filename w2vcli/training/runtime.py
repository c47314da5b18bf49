"""Where training runs: device selection and DDP through torchrun's or Slurm's environment variables.

`torchrun --nproc_per_node N -m w2vcli pretrain ...` sets RANK, WORLD_SIZE and LOCAL_RANK (and
MASTER_ADDR/PORT). Without torchrun, a job step started by Slurm's `srun` (one task per GPU or CPU
share, `srun -N 2 --ntasks-per-node 4 w2v pretrain ...`) is read from Slurm's own variables:
SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, and the master is the first host of
SLURM_STEP_NODELIST with MASTER_PORT, else a port drawn from the job id (so two jobs sharing a node
do not collide). torchrun's variables win when both are present; a batch script's own shell (no
step) is one process. Without either, everything here is a no-op for a single process.
Backend: nccl on CUDA, gloo elsewhere.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from w2vcli.errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master: str | None = None  # "host:port" to rendezvous at, when it is not in MASTER_ADDR/PORT (Slurm)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Only the main process writes files and reports progress."""
        return self.rank == 0


def from_env(env=os.environ) -> Dist:
    """This process's place in the job: torchrun's variables, else a Slurm job step's, else alone."""
    try:
        if "RANK" in env or "WORLD_SIZE" in env:
            return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
            return _from_slurm(env)
    except ValueError as e:
        raise UsageError(f"the distributed environment is malformed ({e})") from None
    return Dist()


def _from_slurm(env) -> Dist:
    world = int(env["SLURM_STEP_NUM_TASKS"])
    if world <= 1:
        return Dist()
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    host = env.get("MASTER_ADDR") or first_host(nodes)
    if not host:
        raise UsageError(
            "a Slurm step of several tasks without SLURM_STEP_NODELIST or MASTER_ADDR: cannot rendezvous"
        )
    port = env.get("MASTER_PORT") or str(20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000)
    return Dist(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), f"{host}:{int(port)}")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: "gpu[07-09,12],cpu3" -> "gpu07" (zero padding kept).
    Written here rather than calling `scontrol show hostnames`, which a compute node may not have."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    name = nodelist[:end].strip()
    if "[" not in name or "]" not in name:
        return name
    prefix, rest = name.split("[", 1)
    inside, suffix = rest.split("]", 1)
    return first_host(prefix + inside.split(",")[0].split("-")[0] + suffix)


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


def collective_timeout(env=os.environ) -> timedelta:
    """How long a rank waits for the others, in connecting and in every collective: W2V_DIST_TIMEOUT
    seconds, else 30 minutes (rank 0 may keep the others waiting while it validates or writes a
    checkpoint). Under torchrun's --max-restarts a shorter one turns a restart whose gloo mesh never
    connects (seen on a loaded machine) into an error, and so into the next restart, instead of a hang."""
    value = env.get("W2V_DIST_TIMEOUT", "")
    try:
        seconds = float(value) if value else 1800.0
    except ValueError:
        raise UsageError(f"W2V_DIST_TIMEOUT={value!r}: give seconds, e.g. 300") from None
    if seconds <= 0:
        raise UsageError(f"W2V_DIST_TIMEOUT={value!r}: give a positive number of seconds")
    return timedelta(seconds=seconds)


def init(dist: Dist, device: torch.device, env=os.environ) -> None:
    if dist.enabled and not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = collective_timeout(env)
        store = restart_store(env, dist.world_size, timeout)
        if store is not None:
            torch_dist.init_process_group(
                backend, store=store, rank=dist.rank, world_size=dist.world_size, timeout=timeout
            )
            return
        method = f"tcp://{dist.master}" if dist.master else None  # None: MASTER_ADDR/PORT (env://)
        torch_dist.init_process_group(
            backend, init_method=method, rank=dist.rank, world_size=dist.world_size, timeout=timeout
        )


def restart_store(env, world_size: int, timeout: timedelta):
    """Under torchrun the ranks meet in the agent's key-value store, which outlives a restart: the
    gloo addresses the previous attempt's workers left there would send a restarted worker to a port
    nobody listens on any more (seen: `Connection refused`, then a hang). So each attempt gets its own
    key space (TORCHELASTIC_RESTART_COUNT). None outside torchrun's agent store."""
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in env:
        return None
    client = torch_dist.TCPStore(
        env["MASTER_ADDR"], int(env["MASTER_PORT"]), world_size, is_master=False, timeout=timeout
    )
    return torch_dist.PrefixStore(f"w2v/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}/", client)


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
