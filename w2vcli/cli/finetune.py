"""`w2v finetune`: CTC fine-tuning on transcribed speech; re-running resumes."""

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


def finetune(
    data: Annotated[
        Path,
        typer.Argument(
            help="A `w2v prep` output directory with transcripts (train.jsonl, valid.jsonl, vocabulary)."
        ),
    ],
    init: Annotated[
        str,
        typer.Option(
            "--init", help="Run directory, checkpoint, Hugging Face model dir, or none (from scratch)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory: checkpoints, best/, metrics.jsonl.")
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Recipe (and, with --init none, model size): tiny, base or large. Default: tiny from scratch, else the recipe of the model's size (another size is refused).",
            show_default=False,
        ),
    ] = None,
    max_updates: Annotated[
        int | None,
        typer.Option(
            "--max-updates",
            help="Update budget (recipe: tiny 2,000, base 13,000). With --max-minutes the schedule ends with whichever budget is spent first.",
            show_default=False,
        ),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            help="Time budget of the run (resumes included): the tri-stage schedule, freezing and validation follow the fraction spent.",
            show_default=False,
        ),
    ] = None,
    batch_seconds: Annotated[
        float | None,
        typer.Option(
            "--batch-seconds",
            help="Padded audio seconds per batch and device (recipe: tiny 10, base 60).",
            show_default=False,
        ),
    ] = None,
    accumulate: Annotated[
        int, typer.Option("--accumulate", help="Batches per update (gradient accumulation).")
    ] = 1,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help="Peak learning rate, tri-stage schedule (recipe: tiny 2e-3, base 5e-5).",
            show_default=False,
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            "--warmup",
            help="Warm-up: below 1 a fraction of the budget, else updates (recipe: 0.1).",
            show_default=False,
        ),
    ] = None,
    hold: Annotated[
        float | None,
        typer.Option(
            "--hold",
            help="Time at the peak lr: below 1 a fraction of the budget, else updates (recipe: 0.4).",
            show_default=False,
        ),
    ] = None,
    best_by: Annotated[
        str | None,
        typer.Option(
            "--best-by",
            help="RUN/best keeps the lowest validation wer or cer, ties broken by the other (recipe: tiny cer, base wer).",
            show_default=False,
        ),
    ] = None,
    train_feature_encoder: Annotated[
        bool | None,
        typer.Option(
            "--train-feature-encoder/--freeze-feature-encoder",
            help="Whether the CNN feature encoder learns; recipe: tiny yes, base and large only from scratch (--init none).",
            show_default=False,
        ),
    ] = None,
    freeze_updates: Annotated[
        float,
        typer.Option(
            "--freeze-updates",
            help="Train only the CTC head at first: N updates, or below 1 a fraction of the budget.",
        ),
    ] = 0,
    reinit_layers: Annotated[
        int,
        typer.Option(
            "--reinit-layers",
            min=0,
            help="Re-initialise the top N transformer layers of the pretrained model first (small models' top layers serve the pretraining task).",
        ),
    ] = 0,
    layer_decay: Annotated[
        float | None,
        typer.Option(
            "--layer-decay",
            help="Layer-wise lr decay: the CTC head learns at --lr, transformer layer i of L at lr x decay^(L-i), the layers below lower still (1: off; recipe: 1).",
            show_default=False,
        ),
    ] = None,
    valid_every: Annotated[
        float | None,
        typer.Option(
            "--valid-every",
            help="Validate (WER/CER) every N updates, or below 1 each time this fraction of the budget passes (recipe: tiny 0.05, base 0.02).",
            show_default=False,
        ),
    ] = None,
    mask_prob: Annotated[
        float | None,
        typer.Option(
            "--mask-prob",
            help="Time-mask probability x length (recipe: tiny 0.1, base 0.65).",
            show_default=False,
        ),
    ] = None,
    mask_length: Annotated[
        int | None,
        typer.Option(
            "--mask-length", help="Time-mask span in frames (recipe: tiny 5, base 10).", show_default=False
        ),
    ] = None,
    mask_channel_prob: Annotated[
        float | None,
        typer.Option(
            "--mask-channel-prob",
            help="Channel-mask probability x length (recipe: tiny 0.05, base 0.25).",
            show_default=False,
        ),
    ] = None,
    mask_channel_length: Annotated[
        int | None,
        typer.Option(
            "--mask-channel-length", help="Channel-mask span (recipe: tiny 16, base 64).", show_default=False
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(
            "--dropout",
            help="Transformer dropout (hidden, attention, feature projection); default: the model's.",
            show_default=False,
        ),
    ] = None,
    layerdrop: Annotated[
        float | None,
        typer.Option(
            "--layerdrop",
            help="Probability of skipping each transformer layer in training; default: the model's.",
            show_default=False,
        ),
    ] = None,
    speed_perturb: SpeedPerturb = None,
    augment: Augment = None,
    augment_prob: AugmentProb = 0.2,
    clip_norm: ClipNorm = 10.0,
    amp: Amp = None,
    grad_checkpointing: GradCheckpointing = False,
    save_every: SaveEvery = 200,
    log_every: LogEvery = 10,
    keep: Annotated[int, typer.Option("--keep", help="Checkpoints to keep (besides best/).")] = 2,
    fresh: Fresh = False,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
) -> None:
    """Fine-tune with CTC; RUN/best is the best checkpoint, vocabulary included, ready for `w2v transcribe`.

    Each --preset carries the fine-tuning recipe of its scale; flags override it, and RUN/train.json
    records the values in force. Example:

        w2v finetune data/lab --init runs/pre --out runs/ft --max-minutes 15

    Ctrl-C saves a checkpoint (exit 130); run again to resume. Under `torchrun` this trains with DDP.
    """
    from w2vcli.cli._train_display import TrainDisplay, finish
    from w2vcli.errors import UsageError
    from w2vcli.model.config import preset as get_preset
    from w2vcli.pipelines.finetune import finetune as run_finetune
    from w2vcli.training.recipes import finetune_settings, recipe_with_init

    model_flags = {
        "mask_time_prob": mask_prob,
        "mask_time_length": mask_length,
        "mask_feature_prob": mask_channel_prob,
        "mask_feature_length": mask_channel_length,
    }
    if dropout is not None:
        model_flags.update(hidden_dropout=dropout, attention_dropout=dropout, feat_proj_dropout=dropout)
    if layerdrop is not None:
        model_flags["layerdrop"] = layerdrop
    if reinit_layers and init == "none":
        raise UsageError("--reinit-layers needs a pretrained --init: from scratch every layer is new")
    name = preset or "tiny"
    if init != "none":  # a --preset of another size than the model's contradicts it
        from w2vcli.checkpoints.huggingface import load_any
        from w2vcli.pipelines._training import init_source

        name = recipe_with_init(init, preset, load_any(init_source(init)).config)
    train_flags = {
        "max_updates": max_updates,
        "max_minutes": max_minutes,
        "batch_seconds": batch_seconds,
        "accumulate": accumulate,
        "lr": lr,
        "warmup": warmup,
        "hold": hold,
        "best_by": best_by,
        "train_feature_encoder": train_feature_encoder,
        "freeze_updates": freeze_updates,
        "reinit_layers": reinit_layers,
        "layer_decay": layer_decay,
        "valid_every": valid_every,
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
        "augment": augment,
        "augment_prob": augment_prob,
    }
    with flag_names():
        cfg, overrides = finetune_settings(name, train_flags, model_flags)
    model = get_preset(name)
    model.replace(**overrides)  # a bad rate is refused here, before RUN is touched
    with TrainDisplay("fine-tuning") as display:
        result = run_finetune(data, out, cfg, init, model, overrides, on_event=display)
    finish(result, out)
