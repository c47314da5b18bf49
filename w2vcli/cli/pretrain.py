"""`w2v pretrain`: self-supervised pretraining; re-running resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import (
    Amp,
    Augment,
    AugmentProb,
    ClipNorm,
    Device,
    Fresh,
    GradCheckpointing,
    LogEvery,
    SaveEvery,
    Seed,
    SpeedPerturb,
    Workers,
    flag_names,
)

# The model fields pretrain's flags set, where the flag has another name than the field.
MODEL_FLAGS = {
    "num_negatives": "--num-negatives",
    "num_codevectors_per_group": "--codebook-size",
    "mask_time_prob": "--mask-prob",
    "mask_time_length": "--mask-length",
    "diversity_loss_weight": "--diversity-weight",
}


def pretrain(
    data: Annotated[
        Path,
        typer.Argument(help="A `w2v prep` output directory, or a folder of audio (prepared into RUN/data)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory: checkpoints, metrics.jsonl, train.json.")
    ],
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Continue pretraining this model: a pretraining run or checkpoint of ours, a Hugging Face Wav2Vec2ForPreTraining directory, or a CTC/backbone model (its quantizer starts fresh). The architecture comes from it.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Model size and its recipe: tiny (default), base or large. With --init: the model's own size or nothing (its recipe follows the model's size).",
            show_default=False,
        ),
    ] = None,
    max_updates: Annotated[
        int | None,
        typer.Option(
            "--max-updates",
            help="Update budget (recipe: tiny 10,000, base 400,000). With --max-minutes the schedule ends with whichever budget is spent first.",
            show_default=False,
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            help="Time budget of the run (resumes included): warm-up, lr decay and the Gumbel temperature follow the fraction spent, so the schedule completes on any machine.",
            show_default=False,
        ),
    ] = None,
    batch_seconds: Annotated[
        float | None,
        typer.Option(
            "--batch-seconds",
            help="Audio seconds per batch and device (recipe: tiny 8, base 60).",
            show_default=False,
        ),
    ] = None,
    accumulate: Annotated[
        int, typer.Option("--accumulate", help="Batches per update (gradient accumulation).")
    ] = 1,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Peak learning rate (recipe: tiny 1e-3, base 5e-4, large 3e-4).", show_default=False
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            "--warmup",
            help="Warm-up: below 1 a fraction of the budget, else updates (recipe: tiny 0.05, base 0.08).",
            show_default=False,
        ),
    ] = None,
    crop_seconds: Annotated[
        float | None,
        typer.Option(
            "--crop-seconds",
            help="Longest crop per utterance (recipe: tiny 2, base 15.6).",
            show_default=False,
        ),
    ] = None,
    num_negatives: Annotated[
        int | None,
        typer.Option(
            "--num-negatives",
            help="Distractors per masked frame, K (recipe: tiny 20, base 100).",
            show_default=False,
        ),
    ] = None,
    codebook_size: Annotated[
        int | None,
        typer.Option(
            "--codebook-size",
            help="Entries per codebook group, V (recipe: tiny 64, base 320).",
            show_default=False,
        ),
    ] = None,
    mask_prob: Annotated[
        float | None,
        typer.Option(
            "--mask-prob",
            help="Span-mask probability x length (recipe: tiny 0.3, base 0.65).",
            show_default=False,
        ),
    ] = None,
    mask_length: Annotated[
        int | None,
        typer.Option(
            "--mask-length",
            help="Masked span length in frames (recipe: tiny 5, base 10).",
            show_default=False,
        ),
    ] = None,
    diversity_weight: Annotated[
        float | None,
        typer.Option(
            "--diversity-weight",
            help="Weight of the codebook diversity loss (recipe: tiny 0.5, base 0.1).",
            show_default=False,
        ),
    ] = None,
    gumbel_decay: Annotated[
        float | None,
        typer.Option(
            "--gumbel-decay",
            help="Instead of --gumbel-anneal: temperature x this per update (the paper's 0.999995 suits 400k updates).",
            show_default=False,
        ),
    ] = None,
    gumbel_anneal: Annotated[
        float | None,
        typer.Option(
            "--gumbel-anneal",
            help="Fraction of the budget over which the temperature falls from --gumbel-start to --gumbel-end (recipe: tiny 0.4, base 0.7).",
            show_default=False,
        ),
    ] = None,
    gumbel_start: Annotated[
        float | None,
        typer.Option(
            "--gumbel-start",
            help="Initial Gumbel softmax temperature (recipe: tiny 20, base 2).",
            show_default=False,
        ),
    ] = None,
    gumbel_end: Annotated[
        float | None,
        typer.Option(
            "--gumbel-end",
            help="Final Gumbel softmax temperature (recipe: 0.5; large 0.1).",
            show_default=False,
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="contrastive (wav2vec 2.0's quantizer and negatives) or best-rq (predict the codes of a frozen random projection of log-mel frames; cannot collapse).",
        ),
    ] = "contrastive",
    clean_targets: Annotated[
        bool,
        typer.Option(
            "--clean-targets/--input-targets",
            help="best-rq with --augment: predict the codes of the audio before augmentation (the model learns to hear through noise, as WavLM's denoising task) instead of the augmented input's.",
        ),
    ] = False,
    speed_perturb: SpeedPerturb = None,
    augment: Augment = None,
    augment_prob: AugmentProb = 0.2,
    clip_norm: ClipNorm = 10.0,
    amp: Amp = None,
    grad_checkpointing: GradCheckpointing = False,
    save_every: SaveEvery = 500,
    log_every: LogEvery = 10,
    keep: Annotated[int, typer.Option("--keep", help="Checkpoints to keep.")] = 2,
    fresh: Fresh = False,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
) -> None:
    """Pretrain wav2vec 2.0 on unlabelled audio. Ctrl-C saves a checkpoint (exit 130); run again to resume.

    Each --preset carries the recipe that works at its scale; flags override it, and RUN/train.json
    records the values in force. Examples:

        w2v pretrain ./audio --out runs/pre --max-minutes 60
        w2v pretrain ./my_domain --init ./wav2vec2-base --out runs/dapt --max-minutes 120

    Under `torchrun --nproc_per_node N` the same command trains with DDP (nccl on GPUs, gloo on CPU).
    """
    from w2vcli.cli._train_display import TrainDisplay, finish
    from w2vcli.errors import UsageError
    from w2vcli.pipelines.pretrain import check_init_flags
    from w2vcli.pipelines.pretrain import pretrain as run_pretrain
    from w2vcli.training.recipes import pretrain_settings, recipe_with_init

    if gumbel_decay is not None and gumbel_anneal is not None:
        raise UsageError("give --gumbel-decay or --gumbel-anneal, not both")
    model_flags = {
        "num_negatives": num_negatives,
        "num_codevectors_per_group": codebook_size,
        "mask_time_prob": mask_prob,
        "mask_time_length": mask_length,
        "diversity_loss_weight": diversity_weight,
    }
    train_flags = {
        "max_updates": max_updates,
        "max_minutes": max_minutes,
        "batch_seconds": batch_seconds,
        "accumulate": accumulate,
        "lr": lr,
        "warmup": warmup,
        "crop_seconds": crop_seconds,
        "gumbel_decay": gumbel_decay,
        "gumbel_anneal": gumbel_anneal,
        "gumbel_start": gumbel_start,
        "gumbel_end": gumbel_end,
        "clip_norm": clip_norm,
        "amp": amp,
        "grad_checkpointing": grad_checkpointing,
        "save_every": save_every,
        "log_every": log_every,
        "keep": keep,
        "fresh": fresh,
        "device": device,
        "seed": seed,
        "workers": workers,
        "speed_perturb": speed_perturb,
        "objective": objective,
        "clean_targets": clean_targets,
        "augment": augment,
        "augment_prob": augment_prob,
    }
    name = preset or "tiny"
    with flag_names(MODEL_FLAGS):
        if init is not None:
            own = check_init_flags(init, model_flags)  # before anything is written
            name = recipe_with_init(init, preset, own)
        cfg, model = pretrain_settings(name, train_flags, model_flags)
    with TrainDisplay("pretraining") as display:
        result = run_pretrain(
            data, out, cfg, model, on_event=display, on_prep_progress=display.prep, init=init
        )
    finish(result, out)
