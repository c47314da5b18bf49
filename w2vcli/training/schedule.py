"""Learning-rate and temperature schedules as pure functions of the progress through the budget.

Progress is the fraction of the run's budget spent: `update / max_updates`, `seconds / max_minutes`
when a time budget is given, the larger of the two when both are. So the same recipe ends with its
schedule complete whether the machine makes 40 updates a minute or 4,000: warm-up, hold, decay and
the Gumbel annealing are all fractions of the budget. With an update budget alone, progress depends
on the update count only, and resuming needs no scheduler state; with a time budget the run's
training seconds are saved in each checkpoint, so a resumed run continues the same clock.

Both schedules follow fairseq: `linear` is `polynomial_decay` with power 1 and end lr 0 (the
pretraining recipe), `tri_stage` is fine-tuning's warmup / hold / exponential decay. A warm-up or
hold given in updates (a value of 1 or more) stays in updates.

A run resumed with another budget (a longer --max-minutes, say) would find itself at another point
of its schedule: a fine-tuning run 90% through, resumed with twice the minutes, is at 45%, in the
hold, back at the peak lr. `Stretch` keeps the schedule monotone instead: it continues from the
progress the checkpoint was saved at and reaches the end with the new budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from w2vcli.model.quantizer import gumbel_temperature
from w2vcli.training.config import PretrainConfig, TrainConfig


def progress(cfg: TrainConfig, update: int, seconds: float = 0.0) -> float:
    """The fraction of the budget spent after `update` updates and `seconds` of training (capped at 1)."""
    spent = 0.0
    if cfg.max_updates:
        spent = update / cfg.max_updates
    if cfg.max_minutes:
        spent = max(spent, seconds / (60.0 * cfg.max_minutes))
    return min(spent, 1.0)


def linear_warmup_decay(update: int, warmup: int, total: int) -> float:
    """Multiplier of the peak lr: rises linearly over `warmup` updates, then falls linearly to 0 at `total`."""
    if update < warmup:
        return (update + 1) / warmup
    if total <= warmup:
        return 1.0
    return max(0.0, 1.0 - (update - warmup) / (total - warmup))


def tri_stage(
    update: int, warmup: int, hold: int, total: int, init_scale: float = 0.01, final_scale: float = 0.05
) -> float:
    """Multiplier of the peak lr: linear from init_scale to 1 over `warmup` updates, 1 for `hold`
    updates, then exponential decay reaching final_scale at `total` (and staying there)."""
    if update < warmup:
        return init_scale + (1.0 - init_scale) * (update + 1) / warmup
    update -= warmup
    if update < hold:
        return 1.0
    decay = max(total - warmup - hold, 1)
    return math.exp(math.log(final_scale) * min(update - hold, decay) / decay)


def _fraction(value: float, cfg: TrainConfig) -> float | None:
    """A warm-up/hold value as a fraction of the budget: below 1 it is one; in updates, only when the
    budget is in updates too."""
    if value < 1:
        return value
    return value / cfg.max_updates if cfg.max_updates else None


@dataclass(frozen=True)
class Stretch:
    """The schedule of a run resumed under another budget: at the resume (progress `at` of the new
    budget) it is where the checkpoint left it (`was`), and it reaches its end with the new budget,
    linearly in between. `was` 1 (a finished schedule) stays at the end: the final lr."""

    at: float  # the new budget's progress when the run resumed
    was: float  # the schedule's progress saved in the checkpoint

    def __call__(self, p: float) -> float:
        return min(1.0, self.was + max(p - self.at, 0.0) * (1.0 - self.was) / max(1.0 - self.at, 1e-9))

    def notice(self, lr: float) -> str:
        """What a resumed run says about its schedule; `lr`: the rate it continues at."""
        if self.was >= 1.0:
            return (
                f"this run had finished its schedule: the new budget trains at its final lr ({lr:.3g}), "
                "which does not rise again; for a new schedule start a new run with --init from this one"
            )
        return (
            f"the budget differs from the one the checkpoint was saved under: the lr schedule continues "
            f"from where it was ({lr:.3g}, {self.was:.0%} through) to its end with the new budget"
        )


def stretch(at: float, was: float | None) -> Stretch | None:
    """A Stretch when the budget moved the run to another point of its schedule, else None."""
    return None if was is None or abs(at - was) < 1e-9 else Stretch(at, was)


def lr_at(
    cfg: TrainConfig, update: float, spent: float | None = None, resumed: Stretch | None = None
) -> float:
    """The learning rate of update number `update` (0 = the first) at progress `spent` (None: the
    update budget's own, update / max_updates); `resumed`: the schedule continued under a new budget."""
    if resumed is not None:
        p = resumed(progress(cfg, update) if spent is None else spent)
        if cfg.max_minutes:
            return cfg.lr * _by_progress(cfg, update, p)
        update, spent = p * cfg.max_updates, None  # the (fractional) update the schedule is at
    if spent is None or not cfg.max_minutes:
        warmup = cfg.updates(cfg.warmup)
        if cfg.schedule == "tri_stage":
            hold = cfg.updates(cfg.hold)
            return cfg.lr * tri_stage(
                update, warmup, hold, cfg.max_updates, cfg.init_lr_scale, cfg.final_lr_scale
            )
        return cfg.lr * linear_warmup_decay(update, warmup, cfg.max_updates)
    return cfg.lr * _by_progress(cfg, update, spent)


def _by_progress(cfg: TrainConfig, update: int, p: float) -> float:
    warm = _fraction(cfg.warmup, cfg)
    if warm is None:  # warm-up in updates under a time budget: a ramp by updates, the rest by the clock
        ramp = min(1.0, (update + 1) / cfg.warmup)
        start, warm = (cfg.init_lr_scale if cfg.schedule == "tri_stage" else 0.0), 0.0
        rising = start + (1.0 - start) * ramp
    else:
        start = cfg.init_lr_scale if cfg.schedule == "tri_stage" else 0.0
        rising = start + (1.0 - start) * min(1.0, max(p, 1e-3 * warm) / warm) if warm > 0 else 1.0
    if p < warm:
        return rising
    if cfg.schedule == "tri_stage":
        hold = _fraction(cfg.hold, cfg) or 0.0
        if p < warm + hold:
            return rising
        rest = max(1.0 - warm - hold, 1e-9)
        return rising * math.exp(math.log(cfg.final_lr_scale) * min((p - warm - hold) / rest, 1.0))
    return rising * max(0.0, 1.0 - (p - warm) / max(1.0 - warm, 1e-9))


def gumbel_at(cfg: PretrainConfig, update: int, spent: float | None = None) -> float:
    """The Gumbel softmax temperature: gumbel_start falling geometrically to gumbel_end over the first
    `gumbel_anneal` of the budget (then held), or by `gumbel_decay` per update when no annealing is set."""
    if cfg.gumbel_anneal is None:
        return gumbel_temperature(update, cfg.gumbel_start, cfg.gumbel_end, cfg.gumbel_decay)
    if spent is None:
        spent = update / cfg.max_updates
    ratio = cfg.gumbel_end / cfg.gumbel_start
    return max(cfg.gumbel_start * ratio ** (spent / cfg.gumbel_anneal), cfg.gumbel_end)
