"""`w2v pretrain`: self-supervised wav2vec 2.0 pretraining on unlabelled audio.

    result = pretrain("data/", "runs/pt", TrainConfig(max_updates=2000), preset("tiny"))

B batch, N samples, T frames, K negatives, G codebook groups. Each micro-batch draws span masks
and negatives from its own seeded generator (see train.py); the loss is the sum over masked
frames of contrastive + weighted diversity + feature penalty, divided by the global count.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from w2vcli import distributed
from w2vcli.config import ModelConfig, TrainConfig
from w2vcli.data import make_loader
from w2vcli.masking import compute_mask_indices, sample_negative_indices
from w2vcli.model import Wav2Vec2ForPreTraining
from w2vcli.model.quantizer import gumbel_temperature
from w2vcli.pipelines._training import load_split, open_run, resolve_data, resume_config, setup
from w2vcli.rundir import RunDir
from w2vcli.train import Trainer, TrainResult


def frame_lengths(config: ModelConfig, samples: torch.Tensor) -> torch.Tensor:
    """Frames the feature encoder makes from `samples` (B,): floor((L - k) / s) + 1 per conv."""
    for k, s in zip(config.conv_kernel, config.conv_stride):
        samples = torch.div(samples - k, s, rounding_mode="floor") + 1
    return samples.clamp(min=0)


@dataclass
class Masked:
    wav: torch.Tensor  # (B, N) equal-length crops
    mask: torch.Tensor  # (B, T) bool
    negatives: torch.Tensor  # (B, T, K)
    count: int  # masked frames: the loss's unit
    seconds: float


class PretrainTask:
    find_unused = False

    def __init__(self, config: ModelConfig, cfg: TrainConfig) -> None:
        self.config, self.cfg = config, cfg
        self.temperature = cfg.gumbel_start
        self.warned: set[str] = set()

    def parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def begin_update(self, model, update: int) -> bool:
        self.temperature = gumbel_temperature(update, self.cfg.gumbel_start, self.cfg.gumbel_end,
                                              self.cfg.gumbel_decay_rate())
        model.quantizer.temperature = self.temperature
        return False

    def prepare(self, batch, generator: torch.Generator, device: torch.device) -> Masked:
        c = self.config
        b, n = batch.waveforms.shape
        t = int(frame_lengths(c, torch.tensor([n]))[0])
        mask = compute_mask_indices((b, t), c.mask_time_prob, c.mask_time_length, None,
                                    c.mask_time_min_masks, generator)
        negatives = sample_negative_indices(mask, c.num_negatives, generator)
        return Masked(batch.waveforms.to(device), mask.to(device), negatives.to(device), int(mask.sum()),
                      batch.seconds)

    def loss(self, model, p: Masked):
        out = model(p.wav, p.mask, p.negatives)
        n = float(out.num_masked)
        stats = {
            "loss": out.loss.detach() * n, "contrastive": out.contrastive_loss.detach() * n,
            "accuracy": out.accuracy.detach() * n, "diversity": out.diversity_loss.detach(),
            "prob_perplexity": out.prob_perplexity.detach(), "code_perplexity": out.code_perplexity.detach(),
            "feature_penalty": out.feature_penalty.detach(), "frames": torch.tensor(n), "micro": torch.tensor(1.0),
        }
        return out.loss * n, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        frames, micro = max(sums["frames"], 1.0), max(sums["micro"], 1.0)
        m = {k: sums[k] / frames for k in ("loss", "contrastive", "accuracy")}
        m.update({k: sums[k] / micro for k in ("diversity", "prob_perplexity", "code_perplexity", "feature_penalty")})
        m["contrastive_bits"] = m["contrastive"] / math.log(2)
        m["temperature"] = self.temperature
        m["masked_frames"] = sums["frames"]
        return m

    def check(self, metrics: dict, update: int) -> list[str]:
        """Health warnings, once each: a temperature schedule that does not fit the run, codebook
        collapse, loss stuck at chance after warm-up."""
        c, out = self.config, []
        cfg = self.cfg
        last = gumbel_temperature(cfg.max_updates, cfg.gumbel_start, cfg.gumbel_end, cfg.gumbel_decay_rate())
        if last > 1.05 * cfg.gumbel_end and "schedule" not in self.warned:
            self.warned.add("schedule")
            out.append(f"the Gumbel temperature only falls to {last:.2f} (not {cfg.gumbel_end:g}) by update "
                       f"{cfg.max_updates}: --gumbel-decay {cfg.gumbel_decay:g} suits a longer run; "
                       f"--gumbel-anneal 0.7 fits the schedule to this one")
        groups, k = c.num_codevector_groups, c.num_negatives
        if metrics["code_perplexity"] < 1.5 * groups and "collapse" not in self.warned:
            self.warned.add("collapse")
            out.append(f"codebook collapse: code perplexity {metrics['code_perplexity']:.2f} is near the "
                       f"{groups} groups' minimum; try a lower --lr or a higher diversity weight")
        chance = math.log(k + 1)
        settled = update >= max(2 * self.cfg.updates(self.cfg.warmup), 200)
        if settled and metrics["contrastive"] > 0.98 * chance and "chance" not in self.warned:
            self.warned.add("chance")
            out.append(f"contrastive loss {metrics['contrastive_bits']:.2f} bits is at chance "
                       f"(log2({k + 1}) = {chance / math.log(2):.2f}); accuracy {metrics['accuracy']:.3f} vs "
                       f"{1 / (k + 1):.3f} by guessing")
        return out


def pretrain(data: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig, model_config: ModelConfig,
             on_event=None, on_prep_progress=None) -> TrainResult:
    """Pretrain on DATA (a prep output, or a folder of audio prepared into RUN/data) into the run `out`;
    re-running resumes from the run's last checkpoint unless cfg.fresh."""
    dist, device = setup(cfg)
    run = RunDir(out)
    try:
        open_run(run, cfg, dist, device, on_event if dist.main else None)
        data_dir = resolve_data(data, run, dist, on_prep_progress)
        config = resume_config(run, model_config, cfg.fresh, on_event if dist.main else None)
        min_seconds = (config.receptive_field + config.frame_stride * (config.mask_time_length + 1)) / 16000
        utts, skipped = load_split(data_dir, "train", min_seconds)
        loader = make_loader(utts, cfg.batch_seconds, crop_seconds=cfg.crop_seconds,
                             max_batch_size=cfg.max_batch_size, seed=cfg.seed, rank=dist.rank,
                             world_size=dist.world_size, num_workers=cfg.workers, pin_memory=device.type == "cuda",
                             speed_perturb=cfg.speed_perturb)
        model = Wav2Vec2ForPreTraining(config)
        trainer = Trainer(model, PretrainTask(config, cfg), loader, cfg, run, device, dist, on_event,
                          info={"task": "pretrain"})
        if not cfg.fresh:
            trainer.resume()
        if dist.main:
            run.write_settings({"command": "pretrain", "data": str(data_dir), "train": cfg.to_dict(),
                                "model": config.to_dict(), "utterances": len(utts), "skipped": skipped,
                                "seconds": round(sum(u.duration for u in utts), 2),
                                "world_size": dist.world_size, "device": str(device)})
        return trainer.train()
    finally:
        run.unlock()
        distributed.shutdown(dist)
