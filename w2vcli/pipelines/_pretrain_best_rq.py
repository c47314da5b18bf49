"""`w2v pretrain --objective best-rq`: the training loop's task for BEST-RQ (model/best_rq.py).

B batch, N samples, T frames. The same span masks as the contrastive task; no negatives, no Gumbel
temperature: the loss is the cross-entropy of the masked frames' codes, summed over masked frames and
divided by the global count like the contrastive loss.
"""

from __future__ import annotations

import math

import torch

from w2vcli.model.config import ModelConfig
from w2vcli.training.config import PretrainConfig
from w2vcli.training.masking import compute_mask_indices


class BestRQTask:
    find_unused = False

    def __init__(self, config: ModelConfig, cfg: PretrainConfig, frames) -> None:
        self.config, self.cfg, self.frames = config, cfg, frames
        self.warned: set[str] = set()

    def parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def begin_update(self, model, update: int, spent: float) -> bool:
        return False

    def prepare(self, batch, generator: torch.Generator, device: torch.device):
        from w2vcli.pipelines.pretrain import Masked

        c = self.config
        b, n = batch.waveforms.shape
        t = int(self.frames(c, torch.tensor([n]))[0])
        mask = compute_mask_indices(
            (b, t), c.mask_time_prob, c.mask_time_length, None, c.mask_time_min_masks, generator
        )
        none = torch.zeros(b, t, 0, dtype=torch.long)  # (B, T, 0): no negatives
        clean = batch.clean.to(device) if batch.clean is not None else None
        return Masked(
            batch.waveforms.to(device), mask.to(device), none, int(mask.sum()), batch.seconds, clean
        )

    def loss(self, model, p):
        out = model(p.wav, p.mask, target_wav=p.target_wav)
        n = float(out.num_masked)
        stats = {
            "loss": out.loss.detach() * n,
            "cross_entropy": out.cross_entropy.detach() * n,
            "accuracy": out.accuracy.detach() * n,
            "feature_penalty": out.feature_penalty.detach(),
            "frames": torch.tensor(n),
            "micro": torch.tensor(1.0),
        }
        return out.loss * n, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        frames, micro = max(sums["frames"], 1.0), max(sums["micro"], 1.0)
        m = {k: sums[k] / frames for k in ("loss", "cross_entropy", "accuracy")}
        m["feature_penalty"] = sums["feature_penalty"] / micro
        m["cross_entropy_bits"] = m["cross_entropy"] / math.log(2)
        m["masked_frames"] = sums["frames"]
        m.update(health(m, self.config))
        return m

    def check(self, metrics: dict, update: int) -> list[str]:
        if metrics.get("progress", 0.0) >= 0.25 and metrics["x_chance"] < 2 and "chance" not in self.warned:
            self.warned.add("chance")
            return [
                f"code accuracy {metrics['accuracy']:.4f} is still {metrics['x_chance']:.1f}x the "
                f"{1 / self.config.rpq_codebook_size:.4f} of guessing after a quarter of the budget: "
                "give it a longer --max-minutes"
            ]
        return []


def health(metrics: dict, config: ModelConfig) -> dict:
    """Accuracy as a multiple of guessing one code in V; BEST-RQ's targets cannot collapse."""
    x_chance = float(metrics.get("accuracy", 0.0)) * config.rpq_codebook_size
    verdict = "learning" if x_chance >= 2 else "starting" if x_chance >= 1.2 else "at chance"
    return {"x_chance": x_chance, "health": verdict}
