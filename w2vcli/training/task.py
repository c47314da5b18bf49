"""What the training loop (training/loop.py) runs and reports: the task protocol, events, the result,
and the per-run choices it makes (micro-batch seeds, the autocast dtype, stop signals, the best
checkpoint's order)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from w2vcli.errors import UsageError
from w2vcli.training import runtime as distributed


class Task(Protocol):
    find_unused: bool  # DDP: some parameters may get no gradient in a step

    def parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]: ...
    def begin_update(
        self, model: torch.nn.Module, update: int, spent: float
    ) -> bool: ...  # True: trainable set changed
    def prepare(self, batch, generator: torch.Generator, device: torch.device): ...  # has .count, .seconds
    def loss(self, model: torch.nn.Module, prepared) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
    def summarize(self, sums: dict[str, float]) -> dict[str, float]: ...
    def check(self, metrics: dict, update: int) -> list[str]: ...


@dataclass
class Event:
    kind: str  # start, log, valid, best, checkpoint, warning, done
    update: int
    max_updates: int | None  # None: the budget is in minutes only
    metrics: dict = field(default_factory=dict)
    message: str = ""
    progress: float = 0.0  # fraction of the budget spent (updates or minutes, whichever is further)


@dataclass
class TrainResult:
    update: int
    stop_reason: str  # max_updates, max_minutes, SIGINT, SIGTERM, requested
    checkpoint: Path | None
    metrics: dict
    best: dict


def micro_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index, 0x7261]).generate_state(1)[0])


def amp_dtype(device: torch.device, enabled: bool | None) -> torch.dtype | None:
    """The autocast dtype, None for fp32. GPUs: on unless disabled, bf16 where supported, else fp16.
    CPUs: only when asked (enabled=True), bf16, and only on AMX-BF16 hardware, the one kind of CPU
    where bf16 matmuls beat fp32. MPS: fp32."""
    if device.type == "cuda":
        if enabled is False:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and enabled:
        if not distributed.cpu_has_amx():
            raise UsageError(
                "--amp on a CPU needs AMX-BF16 (without it bf16 is far slower than fp32); drop --amp"
            )
        return torch.bfloat16
    return None


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[str], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `on_signal(name)` (which may raise) instead of killing the process,
    inside the block, on the main thread (elsewhere signals cannot be handled: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {
        s: signal.signal(s, lambda signum, frame: on_signal(signal.Signals(signum).name))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def rank(result: dict, best_by: str) -> tuple[float, float]:
    """Order of validation results: the chosen error rate, ties broken by the other one (a run whose
    WER is still 100% keeps improving in CER)."""
    other = "cer" if best_by == "wer" else "wer"
    return result[best_by], result[other]
