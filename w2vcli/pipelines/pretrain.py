"""`w2v pretrain`: self-supervised wav2vec 2.0 pretraining on unlabelled audio.

    result = pretrain("data/", "runs/pt")                                    # the tiny preset's recipe
    cfg, config = pretrain_settings("base", {"max_minutes": 60})
    result = pretrain("data/", "runs/pt", cfg, config)
    result = pretrain("my_audio/", "runs/dapt", cfg, init="facebook-wav2vec2-base/")  # continued pretraining

B batch, N samples, T frames, K negatives, G codebook groups. Each micro-batch draws span masks
and negatives from its own seeded generator (see training/loop.py); the loss is the sum over masked
frames of contrastive + weighted diversity + feature penalty, divided by the global count.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from w2vcli.checkpoints.huggingface import RPQ_FIELDS, load_any
from w2vcli.checkpoints.native import HEADS, load_backbone, read_info
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.errors import UsageError
from w2vcli.model.config import ModelConfig
from w2vcli.pipelines._pretrain_best_rq import BestRQTask
from w2vcli.pipelines._training import (
    init_source,
    load_split,
    open_run,
    resolve_data,
    resume_config,
    resumed_init,
    setup,
    training_loader,
)
from w2vcli.training import runtime as distributed
from w2vcli.training.config import PretrainConfig
from w2vcli.training.loop import Trainer
from w2vcli.training.masking import compute_mask_indices, sample_negative_indices
from w2vcli.training.recipes import OBJECTIVE_FIELDS, QUANTIZER_FIELDS, pretrain_settings
from w2vcli.training.rundir import RunDir
from w2vcli.training.schedule import gumbel_at
from w2vcli.training.task import Event, TrainResult


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
    target_wav: torch.Tensor | None = None  # (B, N) BEST-RQ: the targets' audio when not the input's


class PretrainTask:
    find_unused = False

    def __init__(self, config: ModelConfig, cfg: PretrainConfig) -> None:
        self.config, self.cfg = config, cfg
        self.temperature = cfg.gumbel_start
        self.warned: set[str] = set()

    def parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def begin_update(self, model, update: int, spent: float) -> bool:
        self.temperature = gumbel_at(self.cfg, update, spent)
        model.quantizer.temperature = self.temperature
        return False

    def prepare(self, batch, generator: torch.Generator, device: torch.device) -> Masked:
        c = self.config
        b, n = batch.waveforms.shape
        t = int(frame_lengths(c, torch.tensor([n]))[0])
        mask = compute_mask_indices(
            (b, t), c.mask_time_prob, c.mask_time_length, None, c.mask_time_min_masks, generator
        )
        negatives = sample_negative_indices(mask, c.num_negatives, generator)
        return Masked(
            batch.waveforms.to(device), mask.to(device), negatives.to(device), int(mask.sum()), batch.seconds
        )

    def loss(self, model, p: Masked):
        out = model(p.wav, p.mask, p.negatives)
        n = float(out.num_masked)
        stats = {
            "loss": out.loss.detach() * n,
            "contrastive": out.contrastive_loss.detach() * n,
            "accuracy": out.accuracy.detach() * n,
            "diversity": out.diversity_loss.detach(),
            "prob_perplexity": out.prob_perplexity.detach(),
            "code_perplexity": out.code_perplexity.detach(),
            "feature_penalty": out.feature_penalty.detach(),
            "frames": torch.tensor(n),
            "micro": torch.tensor(1.0),
        }
        return out.loss * n, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        frames, micro = max(sums["frames"], 1.0), max(sums["micro"], 1.0)
        m = {k: sums[k] / frames for k in ("loss", "contrastive", "accuracy")}
        m.update(
            {
                k: sums[k] / micro
                for k in ("diversity", "prob_perplexity", "code_perplexity", "feature_penalty")
            }
        )
        m["contrastive_bits"] = m["contrastive"] / math.log(2)
        m["temperature"] = self.temperature
        m["masked_frames"] = sums["frames"]
        m["x_chance"] = m["accuracy"] * (self.config.num_negatives + 1)
        m["health"] = pretraining_health(m, self.config)["verdict"]
        return m

    def check(self, metrics: dict, update: int) -> list[str]:
        """Health warnings, once each: a temperature schedule that does not fit the run, codebook
        collapse, accuracy still at chance after a quarter of the budget (with what to change)."""
        c, cfg, out = self.config, self.cfg, []
        if cfg.gumbel_anneal is None and cfg.max_updates and "schedule" not in self.warned:
            last = gumbel_at(cfg, cfg.max_updates)
            if last > 1.05 * cfg.gumbel_end:
                self.warned.add("schedule")
                out.append(
                    f"the Gumbel temperature only falls to {last:.2f} (not {cfg.gumbel_end:g}) by update "
                    f"{cfg.max_updates}: --gumbel-decay {cfg.gumbel_decay:g} suits a longer run; "
                    f"--gumbel-anneal 0.7 fits the schedule to this one"
                )
        health = pretraining_health(metrics, c)
        if health["collapsed"] and "collapse" not in self.warned:
            self.warned.add("collapse")
            out.append(
                f"codebook collapse: code perplexity {metrics['code_perplexity']:.2f} is near the "
                f"{c.num_codevector_groups} groups' minimum; lower --lr or raise --diversity-weight"
            )
        if metrics.get("progress", 0.0) >= 0.25 and health["x_chance"] < 1.2 and "chance" not in self.warned:
            self.warned.add("chance")
            paper_scale = c.num_negatives > 20 or c.mask_time_length > 5 or cfg.gumbel_start < 10
            advice = (
                "for a small model or little audio use the tiny recipe (--preset tiny, or --num-negatives 20 "
                "--codebook-size 64 --mask-length 5 --diversity-weight 0.5 --gumbel-start 20)"
                if paper_scale
                else "a small model needs ~500 updates to leave chance: give it a longer --max-minutes "
                "(or --amp on a CPU with AMX, for twice the updates a minute)"
            )
            out.append(
                f"still at chance after a quarter of the budget (accuracy {metrics['accuracy']:.3f}, "
                f"{health['x_chance']:.1f}x the {health['chance']:.3f} of guessing): {advice}"
            )
        return out


def pretraining_health(metrics: dict, config: ModelConfig) -> dict:
    """How a pretraining run is doing, in terms a user can read: masked-frame accuracy as a multiple of
    guessing (1 in K+1), and whether the codebook collapsed (code perplexity near its minimum, G)."""
    chance = 1.0 / (config.num_negatives + 1)
    accuracy = float(metrics.get("accuracy", 0.0))
    collapsed = float(metrics.get("code_perplexity", 1e9)) < 1.5 * config.num_codevector_groups
    x_chance = accuracy / chance
    verdict = (
        "collapsed"
        if collapsed
        else "learning"
        if x_chance >= 2
        else "starting"
        if x_chance >= 1.2
        else "at chance"
    )
    return {"chance": chance, "x_chance": x_chance, "collapsed": collapsed, "verdict": verdict}


HEAD_OF_OBJECTIVE = {"contrastive": "pretraining", "best-rq": "best-rq"}


def initial_model(
    init: str | None, model_config: ModelConfig, on_event=None, objective: str = "contrastive"
) -> tuple[torch.nn.Module, str]:
    """`--init`: continue from a pretrained model (ours, a run, or Hugging Face's), its architecture kept
    and the objective taken from `model_config`. A model without this objective's head (CTC, backbone
    only, or the other objective's) gets a fresh head, shaped as `model_config` says."""
    head = HEAD_OF_OBJECTIVE[objective]
    if init is None:
        return HEADS[head](model_config), "none"
    source = init_source(init)
    ckpt = load_any(source)
    kept = QUANTIZER_FIELDS | RPQ_FIELDS if ckpt.head == head else frozenset()
    changes = {
        k: v
        for k, v in model_config.to_dict().items()
        if k in OBJECTIVE_FIELDS or (k in QUANTIZER_FIELDS | RPQ_FIELDS and k not in kept)
    }
    config = ckpt.config.replace(**changes)
    model = HEADS[head](config)
    if ckpt.head == head:
        model.load_state_dict(ckpt.model.state_dict())
    else:
        load_backbone(model, ckpt.model)
        if on_event:
            what = "quantizer and its projections" if head == "pretraining" else "BEST-RQ head"
            on_event(
                Event(
                    "warning",
                    0,
                    0,
                    message=f"{source} has no {what} ({ckpt.head} model): they start fresh",
                )
            )
    return model, str(source)


def check_init_flags(init: str, given: dict) -> ModelConfig:
    """With `--init` the architecture is the model's: flags that would change it are refused up front.
    Returns the model's config (the command picks its recipe from it)."""
    source = init_source(init)
    ckpt = load_any(source)
    kept = QUANTIZER_FIELDS if ckpt.head == "pretraining" else frozenset()
    own = ckpt.config.to_dict()
    for field, value in given.items():
        if value is None or field in OBJECTIVE_FIELDS or (field in QUANTIZER_FIELDS and field not in kept):
            continue
        if own.get(field) != value:
            raise UsageError(
                f"{field} {value} contradicts --init {init} ({own.get(field)}): the architecture "
                "comes from the model; drop the flag"
            )
    return ckpt.config


def pretrain(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: PretrainConfig | None = None,
    model_config: ModelConfig | None = None,
    on_event=None,
    on_prep_progress=None,
    init: str | None = None,
    clock=None,
) -> TrainResult:
    """Pretrain on DATA (a prep output, or a folder of audio prepared into RUN/data) into the run `out`;
    re-running resumes from the run's last checkpoint unless cfg.fresh. Without `cfg`/`model_config`,
    the tiny preset's recipe (training/recipes.py), as `w2v pretrain` uses. With `init`, continue pretraining that
    model (its architecture; the objective of `model_config`); optimizer and schedule start fresh.
    `clock`: the seconds the time budget counts (default time.monotonic; tests pass a fake one)."""
    if cfg is None or model_config is None:
        default_cfg, default_config = pretrain_settings("tiny")
        cfg, model_config = cfg or default_cfg, model_config or default_config
    dist, device = setup(cfg)
    run = RunDir(out)
    try:
        open_run(run, cfg, dist, device, on_event if dist.main else None)
        started = None if cfg.fresh or run.latest() is None else resumed_init(run, init)
        data_dir = resolve_data(data, run, dist, on_prep_progress)
        latest = None if cfg.fresh else run.latest()
        head = HEAD_OF_OBJECTIVE[cfg.objective]
        if latest is None:
            model, source = initial_model(init, model_config, on_event if dist.main else None, cfg.objective)
        else:
            config = resume_config(run, model_config, cfg.fresh, on_event if dist.main else None)
            if read_info(latest).get("head", "pretraining") != head:
                raise UsageError(
                    f"{run.path} was pretrained with another objective than --objective {cfg.objective}; "
                    "give the run's own, or --fresh to start over"
                )
            model, source = HEADS[head](config), str(latest)
        config = model.config
        min_seconds = (
            config.receptive_field + config.frame_stride * (config.mask_time_length + 1)
        ) / SAMPLE_RATE
        utts, skipped = load_split(data_dir, "train", min_seconds)
        loader = training_loader(utts, cfg, dist, device, crop_seconds=cfg.crop_seconds)
        task = (
            BestRQTask(config, cfg, frame_lengths)
            if cfg.objective == "best-rq"
            else PretrainTask(config, cfg)
        )
        trainer = Trainer(
            model,
            task,
            loader,
            cfg,
            run,
            device,
            dist,
            on_event,
            info={"task": "pretrain"},
            clock=clock or time.monotonic,
        )
        if not cfg.fresh:
            trainer.resume()
        if dist.main:
            run.write_settings(
                {
                    "command": "pretrain",
                    "data": str(data_dir),
                    "init": started or init or "none",  # what the run was started from
                    "start": source,
                    "train": cfg.to_dict(),
                    "model": config.to_dict(),
                    "utterances": len(utts),
                    "skipped": skipped,
                    "seconds": round(float(utts.durations.sum()), 2),
                    "world_size": dist.world_size,
                    "device": str(device),
                }
            )
        return trainer.train()
    finally:
        run.unlock()
        distributed.shutdown(dist)
