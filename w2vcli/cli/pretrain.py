"""`w2v pretrain`: self-supervised pretraining; re-running resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import Amp, ClipNorm, Device, Fresh, LogEvery, SaveEvery, Seed, SpeedPerturb, Workers


def pretrain(
    data: Annotated[Path, typer.Argument(help="A `w2v prep` output directory, or a folder of audio (prepared into RUN/data).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, metrics.jsonl, train.json.")],
    preset: Annotated[str, typer.Option("--preset", help="Model size: tiny, base or large.")] = "tiny",
    max_updates: Annotated[int, typer.Option("--max-updates", help="Total updates (the lr schedule spans them).")] = 10_000,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop with a checkpoint after this many minutes.")] = None,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", help="Audio seconds per batch and device.")] = 60.0,
    accumulate: Annotated[int, typer.Option("--accumulate", help="Batches per update (gradient accumulation).")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 5e-4,
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up updates (below 1: fraction of --max-updates).")] = 0.08,
    crop_seconds: Annotated[float, typer.Option("--crop-seconds", help="Longest crop per utterance.")] = 5.0,
    num_negatives: Annotated[int | None, typer.Option("--num-negatives", help="Distractors per masked frame (K).")] = None,
    codebook_size: Annotated[int | None, typer.Option("--codebook-size", help="Entries per codebook group (V).")] = None,
    mask_prob: Annotated[float | None, typer.Option("--mask-prob", help="Span-mask probability x length (0.65: about half masked).")] = None,
    mask_length: Annotated[int | None, typer.Option("--mask-length", help="Masked span length in frames.")] = None,
    diversity_weight: Annotated[float | None, typer.Option("--diversity-weight", help="Weight of the codebook diversity loss (0.1 in the paper).")] = None,
    gumbel_decay: Annotated[float | None, typer.Option("--gumbel-decay", help="Gumbel temperature start -> end as max(start x decay^update, end). Default 0.999995 (the paper's), which suits 400k updates.", show_default=False)] = None,
    gumbel_anneal: Annotated[float | None, typer.Option("--gumbel-anneal", help="Instead of --gumbel-decay: reach --gumbel-end after this fraction of --max-updates (the paper's schedule is ~0.7).")] = None,
    gumbel_start: Annotated[float, typer.Option("--gumbel-start", help="Initial Gumbel softmax temperature (higher: softer straight-through gradient into the quantizer).")] = 2.0,
    gumbel_end: Annotated[float, typer.Option("--gumbel-end", help="Final Gumbel softmax temperature.")] = 0.5,
    speed_perturb: SpeedPerturb = None,
    clip_norm: ClipNorm = 10.0,
    amp: Amp = None,
    save_every: SaveEvery = 500,
    log_every: LogEvery = 10,
    keep: Annotated[int, typer.Option("--keep", help="Checkpoints to keep.")] = 2,
    fresh: Fresh = False,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
) -> None:
    """Pretrain wav2vec 2.0 on unlabelled audio. Ctrl-C saves a checkpoint (exit 130); run again to resume.

    Under `torchrun --nproc_per_node N` the same command trains with DDP (nccl on GPUs, gloo on CPU).
    """
    from w2vcli.cli._train_display import TrainDisplay, finish
    from w2vcli.config import TrainConfig
    from w2vcli.config import preset as get_preset
    from w2vcli.errors import UsageError
    from w2vcli.pipelines.pretrain import pretrain as run_pretrain

    if gumbel_decay is not None and gumbel_anneal is not None:
        raise UsageError("give --gumbel-decay or --gumbel-anneal, not both")
    model = get_preset(preset)
    changes = {"num_negatives": num_negatives, "num_codevectors_per_group": codebook_size,
               "mask_time_prob": mask_prob, "mask_time_length": mask_length,
               "diversity_loss_weight": diversity_weight}
    model = model.replace(**{k: v for k, v in changes.items() if v is not None})
    cfg = TrainConfig(max_updates=max_updates, max_minutes=max_minutes, batch_seconds=batch_seconds,
                      accumulate=accumulate, lr=lr, warmup=warmup, crop_seconds=crop_seconds,
                      gumbel_anneal=gumbel_anneal, **({} if gumbel_decay is None else {"gumbel_decay": gumbel_decay}),
                      gumbel_start=gumbel_start, gumbel_end=gumbel_end,
                      clip_norm=clip_norm,
                      amp=amp, save_every=save_every, log_every=log_every, keep=keep, fresh=fresh, device=device,
                      seed=seed, workers=workers, speed_perturb=speed_perturb)
    with TrainDisplay("pretraining") as display:
        result = run_pretrain(data, out, cfg, model, on_event=display, on_prep_progress=display.prep)
    finish(result, out)
