"""LR schedules: shapes at their corners, and the fraction-or-updates reading of warmup."""

import math

import pytest

from w2vcli.errors import UsageError
from w2vcli.training.config import TrainConfig
from w2vcli.training.schedule import linear_warmup_decay, lr_at, tri_stage


def test_linear_warmup_then_decay_to_zero():
    f = [linear_warmup_decay(u, 4, 12) for u in range(12)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0 and f[8] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(f[4:], f[5:]))
    assert linear_warmup_decay(12, 4, 12) == 0.0 and linear_warmup_decay(50, 4, 12) == 0.0


def test_tri_stage_phases():
    f = [tri_stage(u, 10, 40, 100, 0.01, 0.05) for u in range(120)]
    assert f[0] == pytest.approx(0.01 + 0.99 / 10)
    assert f[9] == 1.0 and f[10] == 1.0 and f[49] == 1.0
    assert f[50] == 1.0 and f[75] == pytest.approx(math.sqrt(0.05))
    assert f[100] == pytest.approx(0.05) and f[119] == pytest.approx(0.05)


def test_lr_at_reads_fractions_and_counts():
    cfg = TrainConfig(max_updates=100, lr=1e-3, warmup=0.1)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(TrainConfig(max_updates=100, lr=1e-3, warmup=20), 9) == pytest.approx(5e-4)
    tri = TrainConfig(max_updates=100, lr=1e-3, schedule="tri_stage", warmup=0.1, hold=0.4)
    assert lr_at(tri, 0) == pytest.approx(1e-3 * (0.01 + 0.099))
    assert lr_at(tri, 99) == pytest.approx(1e-3 * 0.05 ** (49 / 50))


def test_bad_settings_are_usage_errors():
    with pytest.raises(UsageError, match="accumulate must"):
        TrainConfig(accumulate=0)
    with pytest.raises(UsageError, match="schedule"):
        TrainConfig(schedule="cosine")
