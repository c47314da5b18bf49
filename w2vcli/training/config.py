"""Training settings: one dataclass of plain values per kind of run, each with its own defaults.

`TrainConfig` holds what every run has (budget, batches, optimiser, schedule, checkpoints);
`PretrainConfig` and `FinetuneConfig` add their own fields and defaults (fairseq's: linear decay and
weight decay for pretraining, tri-stage and none for fine-tuning). The presets' recipes
(training/recipes.py) fill them per model scale. Problems are reported in field names; the CLI
shows them as its flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass
class TrainConfig:
    """What every training run has. An update sees batch_seconds x accumulate x world size seconds of
    audio (batch_seconds is per device and micro-batch). `warmup` and `hold` below 1 are fractions
    of max_updates, else updates."""

    max_updates: int | None = 10_000  # None: the budget is max_minutes alone
    max_minutes: float | None = None  # the run's wall-time budget, resumed invocations included; with it
    # the schedules follow the fraction of the budget spent (schedule.progress)
    batch_seconds: float = 60.0
    max_batch_size: int | None = None
    accumulate: int = 1
    lr: float = 5e-4
    schedule: str = "linear"  # "linear": warmup then linear decay to 0; "tri_stage": warmup, hold, exp decay
    warmup: float = 0.08
    hold: float = 0.4  # tri_stage only
    init_lr_scale: float = 0.01  # tri_stage: warmup starts at this x lr
    final_lr_scale: float = 0.05  # tri_stage: decay ends at this x lr
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 10.0  # 0: no clipping (the norm is still logged)
    amp: bool | None = None  # None: on GPUs (bf16 where supported, else fp16 + loss scaling), off on CPUs;
    # True on a CPU: bf16, which needs AMX-BF16 (without it bf16 matmuls are far slower than fp32)
    grad_checkpointing: bool = False  # recompute each transformer layer in backward instead of keeping it
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    save_every: int = 500
    log_every: int = 10
    keep: int = 2  # checkpoints kept besides best/
    fresh: bool = False
    speed_perturb: tuple[float, ...] = ()  # speed factors drawn per training utterance; () = off
    augment: tuple[str, ...] = ()  # data.augment.KINDS applied to training batches; () = off
    augment_prob: float = 0.2  # each augmentation's probability per utterance

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.speed_perturb = tuple(float(f) for f in self.speed_perturb)
        self.augment = tuple(self.augment)
        problems = [
            f"{name} must be a finite number, not {value}"
            for name, value in dataclasses.asdict(self).items()
            if isinstance(value, float) and not math.isfinite(value)
        ]
        # NaN compares false with everything: checked first, so no bound lets it through
        problems = problems or self.problems()
        if problems:
            from w2vcli.errors import UsageError

            raise UsageError("; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with these settings, in field names (empty when nothing)."""
        problems = []
        if self.max_updates is None and self.max_minutes is None:
            problems.append("give a budget: max_updates or max_minutes (or both)")
        if self.max_updates is not None and self.max_updates < 1:
            problems.append("max_updates must be at least 1")
        if self.accumulate < 1:
            problems.append("accumulate must be at least 1")
        if self.batch_seconds <= 0:
            problems.append("batch_seconds must be positive")
        if self.lr <= 0:
            problems.append("lr must be positive")
        if self.schedule not in ("linear", "tri_stage"):
            problems.append(f"schedule must be 'linear' or 'tri_stage', not {self.schedule!r}")
        if self.warmup < 0 or self.hold < 0:
            problems.append("warmup and hold must not be negative")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append("max_minutes must be positive")
        if min(self.save_every, self.log_every, self.keep) < 1:
            problems.append("save_every, log_every and keep must be at least 1")
        if any(not 0.5 <= f <= 2.0 for f in self.speed_perturb):
            problems.append("speed_perturb factors must lie between 0.5 and 2")
        from w2vcli.data.augment import KINDS

        if any(k not in KINDS for k in self.augment):
            problems.append(f"augment takes {', '.join(KINDS)}, not {', '.join(self.augment)}")
        if not 0.0 < self.augment_prob <= 1.0:
            problems.append("augment_prob must lie in (0, 1]")
        return problems

    def updates(self, value: float) -> int:
        """A `warmup`/`hold` value in updates: below 1 it is a fraction of max_updates."""
        return round(value * self.max_updates) if value < 1 else int(value)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


OBJECTIVES = ("contrastive", "best-rq")


@dataclass
class PretrainConfig(TrainConfig):
    """`w2v pretrain`: fairseq's BASE schedule (linear decay, weight decay 0.01) and the Gumbel
    temperature's."""

    crop_seconds: float = 5.0  # longest crop per utterance
    objective: str = "contrastive"  # "contrastive" (wav2vec 2.0) or "best-rq" (model/best_rq.py)
    clean_targets: bool = False  # best-rq with --augment: targets from the audio before augmentation
    gumbel_start: float = 2.0
    gumbel_end: float = 0.5
    gumbel_decay: float = 0.999995
    gumbel_anneal: float | None = None  # fraction of max_updates over which the temperature falls from
    # gumbel_start to gumbel_end (then holds); replaces gumbel_decay, which suits one run length only

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.crop_seconds <= 0:
            problems.append("crop_seconds must be positive")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.clean_targets and (self.objective != "best-rq" or not self.augment):
            problems.append(
                "clean_targets needs objective best-rq and augment (targets from the audio before augmenting)"
            )
        if not 0 < self.gumbel_decay <= 1:
            problems.append("gumbel_decay must be in (0, 1]")
        if self.gumbel_anneal is not None and not 0 < self.gumbel_anneal <= 1:
            problems.append("gumbel_anneal must be in (0, 1]: a fraction of max_updates")
        if not 0 < self.gumbel_end <= self.gumbel_start:
            problems.append("Gumbel temperatures need 0 < gumbel_end <= gumbel_start")
        return problems


@dataclass
class FinetuneConfig(TrainConfig):
    """`w2v finetune`: fairseq's fine-tuning (tri-stage schedule, Adam without weight decay), validation
    and the choice of RUN/best."""

    lr: float = 5e-5
    schedule: str = "tri_stage"
    warmup: float = 0.1
    eps: float = 1e-8
    weight_decay: float = 0.0
    save_every: int = 200
    best_by: str = "wer"  # RUN/best is the lowest validation "wer" or "cer"
    train_feature_encoder: bool | None = None  # None: only when training from scratch
    freeze_updates: float = 0  # whole transformer frozen (only the CTC head trains) for these updates
    # (below 1: this fraction of the budget)
    reinit_layers: int = 0  # top transformer layers of a pretrained init re-initialised before fine-tuning
    layer_decay: float = 1.0  # layer-wise lr decay: layer i of L learns at lr * layer_decay ** (L - i)
    valid_every: float = (
        500  # validate every N updates (below 1: each time this fraction of the budget passes)
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.valid_every <= 0:
            problems.append("valid_every must be positive")
        if self.freeze_updates < 0:
            problems.append("freeze_updates must not be negative")
        if self.reinit_layers < 0:
            problems.append("reinit_layers must not be negative")
        if not 0 < self.layer_decay <= 1:
            problems.append("layer_decay must be in (0, 1]")
        if self.best_by not in ("wer", "cer"):
            problems.append("best_by must be wer or cer")
        return problems
