"""`w2v finetune`: CTC fine-tuning on transcribed speech; re-running resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import Amp, ClipNorm, Device, Fresh, LogEvery, SaveEvery, Seed, SpeedPerturb, Workers


def finetune(
    data: Annotated[Path, typer.Argument(help="A `w2v prep` output directory with transcripts (train.jsonl, valid.jsonl, vocabulary).")],
    init: Annotated[str, typer.Option("--init", help="Run directory, checkpoint, Hugging Face model dir, or none (from scratch).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, best/, metrics.jsonl.")],
    preset: Annotated[str, typer.Option("--preset", help="Model size for --init none: tiny, base or large.")] = "tiny",
    max_updates: Annotated[int, typer.Option("--max-updates", help="Total updates (the lr schedule spans them).")] = 2_000,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Stop with a checkpoint after this many minutes.")] = None,
    batch_seconds: Annotated[float, typer.Option("--batch-seconds", help="Padded audio seconds per batch and device.")] = 60.0,
    accumulate: Annotated[int, typer.Option("--accumulate", help="Batches per update (gradient accumulation).")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (tri-stage schedule).")] = 5e-5,
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up (below 1: fraction of --max-updates).")] = 0.1,
    hold: Annotated[float, typer.Option("--hold", help="Updates at the peak lr (below 1: fraction).")] = 0.4,
    best_by: Annotated[str, typer.Option("--best-by", help="RUN/best keeps the lowest validation wer or cer (ties broken by the other).")] = "wer",
    train_feature_encoder: Annotated[bool | None, typer.Option("--train-feature-encoder/--freeze-feature-encoder", help="Whether the CNN feature encoder learns; default: it does from scratch (--init none), it stays frozen on a pretrained model.", show_default=False)] = None,
    freeze_updates: Annotated[int, typer.Option("--freeze-updates", help="Train only the CTC head for the first N updates.")] = 0,
    reinit_layers: Annotated[int, typer.Option("--reinit-layers", min=0, help="Re-initialise the top N transformer layers of the pretrained model first (small models' top layers serve the pretraining task).")] = 0,
    valid_every: Annotated[int, typer.Option("--valid-every", help="Validate (WER/CER) every N updates.")] = 200,
    mask_prob: Annotated[float, typer.Option("--mask-prob", help="Time-mask probability x length.")] = 0.65,
    mask_length: Annotated[int, typer.Option("--mask-length", help="Time-mask span in frames.")] = 10,
    mask_channel_prob: Annotated[float, typer.Option("--mask-channel-prob", help="Channel-mask probability x length.")] = 0.25,
    mask_channel_length: Annotated[int, typer.Option("--mask-channel-length", help="Channel-mask span.")] = 64,
    dropout: Annotated[float | None, typer.Option("--dropout", help="Transformer dropout (hidden, attention, feature projection); default: the model's.", show_default=False)] = None,
    layerdrop: Annotated[float | None, typer.Option("--layerdrop", help="Probability of skipping each transformer layer in training; default: the model's.", show_default=False)] = None,
    speed_perturb: SpeedPerturb = None,
    clip_norm: ClipNorm = 10.0,
    amp: Amp = None,
    save_every: SaveEvery = 200,
    log_every: LogEvery = 10,
    keep: Annotated[int, typer.Option("--keep", help="Checkpoints to keep (besides best/).")] = 2,
    fresh: Fresh = False,
    device: Device = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
) -> None:
    """Fine-tune with CTC; RUN/best is the lowest-WER checkpoint, vocabulary included, ready for `w2v transcribe`.

    Ctrl-C saves a checkpoint (exit 130); run again to resume. Under `torchrun` this trains with DDP.
    """
    from w2vcli.cli._train_display import TrainDisplay, finish
    from w2vcli.config import TrainConfig
    from w2vcli.config import preset as get_preset
    from w2vcli.errors import UsageError
    from w2vcli.pipelines.finetune import finetune as run_finetune

    model = get_preset(preset)
    overrides = {"mask_time_prob": mask_prob, "mask_time_length": mask_length,
                 "mask_feature_prob": mask_channel_prob, "mask_feature_length": mask_channel_length}
    if dropout is not None:
        overrides.update(hidden_dropout=dropout, attention_dropout=dropout, feat_proj_dropout=dropout)
    if layerdrop is not None:
        overrides["layerdrop"] = layerdrop
    model.replace(**overrides)  # a bad rate is refused here, before RUN is touched
    if reinit_layers and init == "none":
        raise UsageError("--reinit-layers needs a pretrained --init: from scratch every layer is new")
    cfg = TrainConfig(max_updates=max_updates, max_minutes=max_minutes, batch_seconds=batch_seconds,
                      accumulate=accumulate, lr=lr, schedule="tri_stage", warmup=warmup, hold=hold, eps=1e-8,
                      weight_decay=0.0, train_feature_encoder=train_feature_encoder, best_by=best_by, freeze_updates=freeze_updates, reinit_layers=reinit_layers, valid_every=valid_every, clip_norm=clip_norm,
                      amp=amp, save_every=save_every, log_every=log_every, keep=keep, fresh=fresh, device=device,
                      seed=seed, workers=workers, speed_perturb=speed_perturb)
    with TrainDisplay("fine-tuning") as display:
        result = run_finetune(data, out, cfg, init, model, overrides, on_event=display)
    finish(result, out)
