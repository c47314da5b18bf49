"""Learning-rate schedules as pure functions of the update number (0 = the first update).

A schedule is a function of the update count alone, so resuming needs no scheduler state
beyond the count. Both follow fairseq: `linear` is `polynomial_decay` with power 1 and end lr 0
(the pretraining recipe), `tri_stage` is fine-tuning's warmup / hold / exponential decay.
"""

from __future__ import annotations

import math

from w2vcli.config import TrainConfig


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


def lr_at(cfg: TrainConfig, update: int) -> float:
    """The learning rate for update number `update` under `cfg`."""
    warmup = cfg.updates(cfg.warmup)
    if cfg.schedule == "tri_stage":
        hold = cfg.updates(cfg.hold)
        return cfg.lr * tri_stage(update, warmup, hold, cfg.max_updates, cfg.init_lr_scale, cfg.final_lr_scale)
    return cfg.lr * linear_warmup_decay(update, warmup, cfg.max_updates)
