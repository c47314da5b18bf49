"""Speed perturbation for training batches (Ko et al. 2015), applied to items before collation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr
import torch

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.loader import Batch, Item


def perturb_speed(
    items: Sequence[Item], factors: Sequence[float], generator: torch.Generator | None = None
) -> list[Item]:
    """Each item played f times faster, f drawn uniformly from `factors` (speed perturbation, Ko et
    al. 2015): resampling from f x 16 kHz to 16 kHz shifts tempo, pitch and formants together, so
    a few voices sound like more. Labels are unchanged."""
    out = []
    for it in items:
        f = float(factors[int(torch.randint(len(factors), (1,), generator=generator))])
        if f == 1.0:
            out.append(it)
            continue
        wav = soxr.resample(it.wav.numpy(), SAMPLE_RATE * f, SAMPLE_RATE, quality="HQ")
        wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        out.append(Item(it.id, wav, wav.shape[0], it.labels))
    return out


def perturbed_collate(items: Sequence[Item], generator=None, *, collate, factors: Sequence[float]) -> Batch:
    return collate(perturb_speed(items, factors, generator), generator=generator)
