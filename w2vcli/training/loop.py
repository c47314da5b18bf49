"""The one training loop behind `w2v pretrain` and `w2v finetune`.

A task (pipelines/pretrain.py, pipelines/finetune.py) says what one micro-batch costs; this loop
does the rest: AdamW, gradient accumulation, clipping, mixed precision on GPUs (bf16 where
supported, else fp16 with loss scaling; fp32 on CPU/MPS), skipping non-finite steps, DDP,
logging, validation, checkpoints, resume and clean stops. RUN's layout is in `w2vcli.training.rundir`.

Reproducibility: the randomness of a micro-batch (masks, negatives, dropout, Gumbel noise) comes
from a seed of (seed, epoch, global batch index), so a resumed run or a DDP run over the same
global batch makes the same draws as one uninterrupted process. Losses are sums divided by the
global count of their units (masked frames, utterances), all-reduced before the backward pass.

Stopping: SIGINT/SIGTERM (or `Trainer.request_stop()`) finish the current update, save a
checkpoint and return with `stop_reason` "SIGINT"/"SIGTERM"/"requested"; a second SIGINT aborts.
All DDP ranks agree on stopping through one small all-reduce per update.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from w2vcli.training import runtime as distributed
from w2vcli.training.config import TrainConfig
from w2vcli.training.metrics import MetricsLog, Window
from w2vcli.training.rundir import RunDir, load_trainer_state, load_weights, rng_state, set_rng_state
from w2vcli.training.runtime import Dist
from w2vcli.training.schedule import Stretch, lr_at, progress, stretch
from w2vcli.training.task import Event, Task, TrainResult, amp_dtype, micro_seed, rank, stop_signals


class Trainer:
    def __init__(
        self,
        model,
        task: Task,
        loader,
        cfg: TrainConfig,
        run: RunDir,
        device: torch.device,
        dist: Dist = Dist(),
        on_event: Callable[[Event], None] | None = None,
        validate: Callable[[torch.nn.Module], dict] | None = None,
        vocab=None,
        info: dict | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.model, self.task, self.loader, self.cfg, self.run = model.to(device), task, loader, cfg, run
        if cfg.grad_checkpointing:
            for m in model.modules():
                if hasattr(m, "grad_checkpointing"):
                    m.grad_checkpointing = True
        self.device, self.dist, self.validate, self.vocab = device, dist, validate, vocab
        self.info = info or {}
        self.clock = clock  # seconds, for the time budget: tests pass a fake one to count exactly
        self.on_event = on_event if dist.main else None
        # The fused AdamW: one kernel for all parameters, 3 ms a step for `tiny` on a CPU core against 11-18
        self.optimizer = torch.optim.AdamW(
            task.parameters(self.model),
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )
        self.dtype = amp_dtype(device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.log = MetricsLog(run.metrics, dist.main)
        self.update, self.skipped, self.best = 0, 0, {}
        self.seconds = 0.0  # training seconds of this run, earlier invocations included (time budgets)
        self.spent = 0.0  # fraction of the budget spent: what the schedules follow (schedule.progress)
        self.stretch: Stretch | None = None  # resumed under another budget: the schedule continues
        self.resumed_from: Path | None = None
        self._signal: str | None = None
        self._requested = False
        self._wrapped = None
        self._window = Window()
        self._last_metrics: dict = {}
        self._lr = cfg.lr

    @property
    def position(self) -> float:
        """Where the lr and temperature schedules are: the budget's progress, stretched on a resume
        under another budget so that they continue from where the checkpoint left them."""
        return self.stretch(self.spent) if self.stretch else self.spent

    def emit(self, kind: str, metrics: dict | None = None, message: str = "") -> None:
        if self.on_event:
            self.on_event(Event(kind, self.update, self.cfg.max_updates, metrics or {}, message, self.spent))

    def _on_signal(self, name: str) -> None:
        if self._signal == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt  # second Ctrl-C: the user really wants out
        self._signal = name

    def request_stop(self) -> None:
        """Stop after the current update with a checkpoint (what SIGINT/SIGTERM do)."""
        self._requested = True

    def resume(self) -> bool:
        """Load the run's latest checkpoint, if any: weights, optimizer, scaler, data position, RNGs."""
        ckpt = self.run.latest()
        if ckpt is None:
            self.log.rewind(0)  # a run killed before its first checkpoint starts over: so does its log
            return False
        state = load_trainer_state(ckpt)
        load_weights(self.model, ckpt)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.update, self.skipped, self.best = state["update"], state["skipped"], state.get("best", {})
        self.seconds = float(state.get("seconds", 0.0))
        self.spent = progress(self.cfg, self.update, self.seconds)
        self.stretch = stretch(self.spent, state.get("schedule"))
        self.log.rewind(self.update)
        self.resumed_from = ckpt
        return True

    def save(self) -> Path | None:
        if not self.dist.main:
            return None
        trainer = {
            "update": self.update,
            "skipped": self.skipped,
            "best": self.best,
            "seconds": self.seconds,
            "schedule": self.position,  # a resume under another budget continues from here
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "data": self.loader.state_dict(),
            "rng": rng_state(),
        }
        path = self.run.save(
            distributed.unwrap(self.model), trainer, self.update, self.cfg.keep, self.vocab, **self.info
        )
        self.emit("checkpoint", message=str(path))
        return path

    def _stream(self) -> Iterator[tuple[int, object]]:
        """Batches forever, each with its micro-batch seed; epochs roll over."""
        ws, rank = self.dist.world_size, self.dist.rank
        while True:
            epoch = self.loader.epoch
            for batch in self.loader:
                yield micro_seed(self.cfg.seed, epoch, (self.loader.position - 1) * ws + rank), batch

    def _budget_left(self) -> str | None:
        """None while the budget lasts, else why it ended ("max_updates" or "max_minutes")."""
        if self.cfg.max_updates is not None and self.update >= self.cfg.max_updates:
            return "max_updates"
        if self.cfg.max_minutes is not None and self.seconds >= 60 * self.cfg.max_minutes:
            return "max_minutes"
        return None

    def _valid_due(self, before: float) -> bool:
        """`valid_every` of 1 or more: every that many updates; below 1: each time progress crosses a
        multiple of it (so a time budget gets the same number of validations on any machine)."""
        every = self.cfg.valid_every
        if every >= 1:
            return self.update % int(every) == 0
        return math.floor(self.spent / every + 1e-9) > math.floor(before / every + 1e-9)

    def train(self) -> TrainResult:
        cfg = self.cfg
        self.model.train()
        start = (self.clock(), self.seconds)
        self.emit("start", {"update": self.update, "resumed_from": str(self.resumed_from or "")})
        if self.stretch and self.spent < 1.0:
            lr = lr_at(cfg, self.update, self.spent, self.stretch)
            self.emit("warning", message=self.stretch.notice(lr))
        stream = self._stream()
        reason, saved_at = self._budget_left() or "max_updates", (self.update if self.resumed_from else -1)
        validated_at = self.update if self.resumed_from else -1
        with stop_signals(self._on_signal):
            while self._budget_left() is None:
                before = self.spent
                flags = self._step(stream, start)
                ended = flags or self._budget_left()
                if self.update % cfg.log_every == 0:
                    self._log()  # every rank: the metrics are all-reduced
                if self.validate and (self._valid_due(before) or ended in ("max_updates", "max_minutes")):
                    self._validate()
                    validated_at = self.update
                if self.update % cfg.save_every == 0:
                    self.save()
                    saved_at = self.update
                if ended is not None:
                    reason = ended
                    break
        if self.update % cfg.log_every and self._window.updates:
            self._log()
        if self.validate and validated_at != self.update and reason in ("max_updates", "max_minutes"):
            self._validate()  # the model the run ends with is always scored
        path = self.run.latest() if saved_at == self.update else self.save()
        self.emit("done", self._last_metrics, reason)
        return TrainResult(self.update, reason, path or self.run.latest(), self._last_metrics, self.best)

    def _wrap(self) -> torch.nn.Module:
        changed = self.task.begin_update(distributed.unwrap(self.model), self.update, self.position)
        if self._wrapped is None or changed:
            self._wrapped = distributed.wrap(
                distributed.unwrap(self.model), self.dist, self.device, self.task.find_unused
            )
        return self._wrapped

    def _step(self, stream, start: tuple[float, float]) -> str | None:
        """One update over `accumulate` micro-batches; returns a stop reason agreed by all ranks, or None.
        `start` is (the clock when this invocation started, the run's training seconds then)."""
        cfg, dist = self.cfg, self.dist
        model = self._wrap()
        self._lr = lr_at(cfg, self.update, self.spent, self.stretch)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr * group.get("lr_scale", 1.0)
        micro = []
        for _ in range(cfg.accumulate):
            seed, batch = next(stream)
            gen = torch.Generator().manual_seed(seed)
            micro.append((seed, self.task.prepare(batch, gen, self.device)))
        count = torch.tensor([float(sum(p.count for _, p in micro))], dtype=torch.float64, device=self.device)
        total = float(distributed.all_reduce(count, dist)[0])
        scale = dist.world_size / max(
            total, 1.0
        )  # DDP averages over ranks; undo that, divide by the global count
        loss_total = 0.0
        for i, (seed, prepared) in enumerate(micro):
            sync = i == len(micro) - 1 or not dist.enabled
            with contextlib.nullcontext() if sync else model.no_sync():
                torch.manual_seed(seed)  # dropout, layerdrop and Gumbel noise of this micro-batch
                with torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
                    loss_sum, stats = self.task.loss(model, prepared)
                self.scaler.scale(loss_sum * scale).backward()
            loss_total = loss_total + loss_sum.detach().float()
            self._window.add(stats, prepared.seconds)
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm if cfg.clip_norm > 0 else float("inf"))
        seconds = start[1] + self.clock() - start[0]
        flags = torch.tensor(
            [
                float(not torch.isfinite(torch.as_tensor(loss_total))),
                float(self._signal == "SIGINT"),
                float(self._signal == "SIGTERM"),
                seconds,
                float(self._requested),
            ],
            dtype=torch.float64,
            device=self.device,
        )
        flags = distributed.all_reduce(flags, dist, op="max").tolist()  # every rank: the slowest one's clock
        self.seconds = flags[3]
        finite = flags[0] == 0 and bool(torch.isfinite(norm))
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # with a loss scaler, an overflow skips the step by itself
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.update += 1
        self.spent = progress(cfg, self.update, self.seconds)
        self._window.updates += 1
        if finite:
            self._window.grad_norm += float(norm)
        else:
            self.skipped += 1
            self._window.skipped += 1
            if not self.scaler.is_enabled() or flags[0]:
                self.emit(
                    "warning",
                    message=f"non-finite loss or gradient at update {self.update}: "
                    f"step skipped ({self.skipped} so far)",
                )
        for name, flag in zip(("SIGINT", "SIGTERM", "requested"), (flags[1], flags[2], flags[4])):
            if flag:
                return name
        return None

    def _log(self) -> None:
        w, self._window = self._window, Window()
        keys = sorted(w.sums)
        vec = torch.stack(
            [torch.as_tensor(w.sums[k], dtype=torch.float32, device=self.device).reshape(()) for k in keys]
            + [torch.tensor(w.seconds, device=self.device)]
        )
        vec = distributed.all_reduce(vec.float(), self.dist).tolist()
        metrics = self.task.summarize(dict(zip(keys, vec[:-1])))
        elapsed = max(time.monotonic() - w.start, 1e-9)
        good = w.updates - w.skipped
        metrics.update(
            {
                "update": self.update,
                "epoch": self.loader.epoch,
                "lr": self._lr,
                "progress": round(self.spent, 4),
                "grad_norm": w.grad_norm / good if good else float("nan"),
                "skipped": self.skipped,
                "audio_seconds_per_s": vec[-1] / elapsed,
                "updates_per_s": w.updates / elapsed,
            }
        )
        if self.scaler.is_enabled():
            metrics["loss_scale"] = float(self.scaler.get_scale())
        self._last_metrics = metrics
        self.log.write({k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()})
        self.emit("log", metrics)
        for message in self.task.check(metrics, self.update):
            self.emit("warning", message=message)

    def _validate(self) -> None:
        """Every rank validates its share (the validator sums over ranks); the main one records it."""
        model = distributed.unwrap(self.model)
        model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
            result = self.validate(model)
        model.train()
        if not self.dist.main:
            return
        record = {"update": self.update, **{f"valid_{k}": v for k, v in result.items()}}
        self.log.write(record)
        self.emit("valid", record)
        if "wer" in result and (
            not self.best or rank(result, self.cfg.best_by) < rank(self.best, self.cfg.best_by)
        ):
            self.best = {"update": self.update, **result}
            self.run.save_best(
                model, self.vocab, **{f"valid_{k}": v for k, v in self.best.items()}, **self.info
            )
            self.emit("best", record)
