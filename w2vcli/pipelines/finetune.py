"""`w2v finetune`: CTC fine-tuning of a (pre)trained wav2vec 2.0 model on transcribed speech.

    result = finetune("data/", "runs/ft", FinetuneConfig(lr=5e-5), init="runs/pt")

B batch, N samples, T frames, D model dim, L label tokens. The feature encoder stays frozen;
the whole transformer too for the first `freeze_updates` (only the CTC head learns); the top
`reinit_layers` transformer layers of a pretrained init can start afresh. Time and
channel masking augment the input. Validation decodes valid.jsonl greedily and scores WER/CER;
RUN/best holds the lowest-WER checkpoint, with the vocabulary, ready for `transcribe`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from w2vcli.checkpoints.huggingface import load_any
from w2vcli.checkpoints.native import load_backbone
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.loader import make_loader
from w2vcli.data.text import load_vocabulary
from w2vcli.decoding.ctc import decode, to_text
from w2vcli.errors import UsageError, W2VError
from w2vcli.model import Wav2Vec2ForCTC
from w2vcli.model.config import RECEPTIVE_FIELD, ModelConfig, preset
from w2vcli.model.losses import ctc_loss
from w2vcli.model.wav2vec2 import init_weights
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
from w2vcli.pipelines.pretrain import frame_lengths
from w2vcli.scoring.error_rates import EditCounts, char_edits, error_rate, word_edits
from w2vcli.training import runtime as distributed
from w2vcli.training.config import FinetuneConfig
from w2vcli.training.loop import Trainer
from w2vcli.training.masking import compute_feature_mask, compute_mask_indices
from w2vcli.training.recipes import finetune_settings
from w2vcli.training.rundir import RunDir
from w2vcli.training.task import TrainResult


@dataclass
class Labelled:
    wav: torch.Tensor  # (B, N) zero-padded
    lengths: torch.Tensor  # (B,)
    labels: torch.Tensor  # (B, L)
    label_lengths: torch.Tensor  # (B,)
    time_mask: torch.Tensor | None  # (B, T)
    feature_mask: torch.Tensor | None  # (B, D)
    count: int  # utterances: the loss's unit (fairseq's sentence_avg)
    seconds: float


class FinetuneTask:
    find_unused = True  # masked_spec_embed gets no gradient when no span is masked

    def __init__(self, config: ModelConfig, cfg: FinetuneConfig, train_cnn: bool = False) -> None:
        self.config, self.cfg, self.train_cnn = config, cfg, train_cnn
        self.frozen: bool | None = None

    def parameters(self, model):
        """Optimizer groups: one per depth, with an `lr_scale` (layer-wise lr decay, BEiT/data2vec):
        the CTC head and the final layer norm at 1, transformer layer i of L at decay ** (L - i), what
        comes before the transformer (CNN, projection, positional conv) at decay ** (L + 1). With no
        decay, one group at 1."""
        named = [
            (n, p)
            for n, p in model.named_parameters()
            if self.train_cnn or not n.startswith("wav2vec2.feature_extractor.")
        ]
        decay, layers = self.cfg.layer_decay, self.config.num_hidden_layers
        if decay == 1:
            return [{"params": [p for _, p in named], "lr_scale": 1.0}]
        depth: dict[int, list] = {}
        for name, p in named:
            depth.setdefault(layer_depth(name, layers), []).append(p)
        return [
            {"params": params, "lr_scale": decay ** (layers + 1 - d)} for d, params in sorted(depth.items())
        ]

    def begin_update(self, model, update: int, spent: float) -> bool:
        freeze = self.cfg.freeze_updates
        frozen = update < freeze if freeze >= 1 else spent < freeze
        if frozen == self.frozen:
            return False
        for name, p in model.wav2vec2.named_parameters():
            p.requires_grad_(not frozen and (self.train_cnn or not name.startswith("feature_extractor.")))
        self.frozen = frozen
        return True

    def prepare(self, batch, generator: torch.Generator, device: torch.device) -> Labelled:
        c = self.config
        b, n = batch.waveforms.shape
        t = int(frame_lengths(c, torch.tensor([n]))[0])
        time_mask = feature_mask = None
        if c.mask_time_prob > 0:
            lengths = frame_lengths(c, batch.lengths)
            time_mask = compute_mask_indices(
                (b, t), c.mask_time_prob, c.mask_time_length, lengths, c.mask_time_min_masks, generator
            ).to(device)
        if c.mask_feature_prob > 0:
            feature_mask = compute_feature_mask(
                (b, c.hidden_size), c.mask_feature_prob, c.mask_feature_length, generator
            ).to(device)
        return Labelled(
            batch.waveforms.to(device),
            batch.lengths.to(device),
            batch.labels.to(device),
            batch.label_lengths.to(device),
            time_mask,
            feature_mask,
            b,
            batch.seconds,
        )

    def loss(self, model, p: Labelled):
        logits, frames, _ = model(p.wav, p.lengths, p.time_mask, p.feature_mask)
        loss = ctc_loss(logits, frames, p.labels, p.label_lengths, blank=self.config.pad_token_id)
        stats = {
            "loss": loss.detach(),
            "utterances": torch.tensor(float(p.count)),
            "tokens": p.label_lengths.sum().float(),
        }
        return loss, stats

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        return {
            "loss": sums["loss"] / max(sums["utterances"], 1.0),
            "loss_per_token": sums["loss"] / max(sums["tokens"], 1.0),
            "frozen": float(bool(self.frozen)),
        }

    def check(self, metrics: dict, update: int) -> list[str]:
        return []


def layer_depth(name: str, layers: int) -> int:
    """0 for what comes before the transformer, i + 1 for transformer layer i, layers + 1 for the
    rest (the final layer norm, the CTC head)."""
    prefix = "wav2vec2.encoder.layers."
    if name.startswith(prefix):
        return int(name[len(prefix) :].split(".", 1)[0]) + 1
    before = (
        "wav2vec2.feature_extractor.",
        "wav2vec2.feature_projection.",
        "wav2vec2.encoder.pos_conv_embed.",
    )
    if name.startswith(before) or name == "wav2vec2.masked_spec_embed":
        return 0
    return layers + 1


def make_validator(
    utts, vocab, cfg: FinetuneConfig, device: torch.device, dist: distributed.Dist | None = None
):
    """A function model -> {"wer", "cer", "loss"} over `utts` (greedy decoding, whole set each call).

    Under DDP each rank decodes its own share (every world_size-th utterance by duration) and the
    edit counts are summed over the ranks, so every rank gets the same rates for the whole set."""
    dist = dist or distributed.Dist()
    shard = sorted(utts, key=lambda u: u.duration)[dist.rank :: dist.world_size]
    loader = (
        make_loader(shard, cfg.batch_seconds, vocab=vocab, shuffle=False, max_batch_size=cfg.max_batch_size)
        if shard
        else []
    )
    refs = {u.id: u.text for u in shard}

    @torch.no_grad()
    def validate(model) -> dict:
        words, chars, loss = EditCounts(), EditCounts(), 0.0
        for batch in loader:
            batch = batch.to(device)
            logits, frames, _ = model(batch.waveforms, batch.lengths)
            loss += float(ctc_loss(logits, frames, batch.labels, batch.label_lengths, blank=vocab.blank_id))
            for uid, hyp in zip(batch.ids, decode(logits.float(), frames, blank_id=vocab.blank_id)):
                text = to_text(hyp, vocab)
                words += word_edits(refs[uid], text)
                chars += char_edits(refs[uid], text)
        sums = torch.tensor(
            [words.errors, words.ref_len, chars.errors, chars.ref_len, loss], dtype=torch.float64
        )
        w_err, w_ref, c_err, c_ref, loss = distributed.all_reduce(sums.to(device), dist).tolist()
        return {
            "wer": error_rate(int(w_err), int(w_ref)),
            "cer": error_rate(int(c_err), int(c_ref)),
            "loss": loss / max(len(utts), 1),
        }

    return validate


def finetune_config(config: ModelConfig, vocab, overrides: dict, train_cnn: bool = False) -> ModelConfig:
    """The initial model's architecture with a CTC head for `vocab`, the masking flags, and a CNN that is
    frozen (run under no_grad) unless `train_cnn`."""
    grad_mult = (config.feature_grad_mult or 1.0) if train_cnn else 0.0
    return config.replace(
        vocab_size=len(vocab), pad_token_id=vocab.blank_id, feature_grad_mult=grad_mult, **overrides
    )


def trains_cnn(cfg: FinetuneConfig, init: str) -> bool:
    """The CNN learns when asked to, or by default when there is no pretrained one to keep."""
    return cfg.train_feature_encoder if cfg.train_feature_encoder is not None else init == "none"


def initial_model(
    init: str, model_config: ModelConfig, vocab, overrides: dict, train_cnn: bool = False
) -> tuple[Wav2Vec2ForCTC, str]:
    if init == "none":
        return Wav2Vec2ForCTC(finetune_config(model_config, vocab, overrides, train_cnn)), "none"
    source = init_source(init)
    ckpt = load_any(source)
    model = Wav2Vec2ForCTC(finetune_config(ckpt.config, vocab, overrides, train_cnn))
    same_vocab = (
        ckpt.head == "ctc" and ckpt.vocab is not None and list(ckpt.vocab.tokens) == list(vocab.tokens)
    )
    if same_vocab:
        model.load_state_dict(ckpt.model.state_dict())
    else:
        load_backbone(model, ckpt.model)
    return model, str(source)


def reinit_top_layers(model: Wav2Vec2ForCTC, n: int) -> None:
    """Re-initialise the top n transformer layers. A small model's upper layers specialise in the
    pretraining task: in a 4-layer `tiny` model pretrained 35 minutes, a linear probe reads
    characters best from the transformer's input and worse after every layer (examples/RESULTS.md)."""
    layers = model.wav2vec2.encoder.layers
    if not 0 <= n <= len(layers):
        raise UsageError(f"--reinit-layers {n}: the model has {len(layers)} transformer layers")
    with torch.no_grad():
        for layer in layers[len(layers) - n :]:
            init_weights(layer)


def finetune(
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: FinetuneConfig | None = None,
    init: str = "none",
    model_config: ModelConfig | None = None,
    overrides: dict | None = None,
    on_event=None,
    clock=None,
) -> TrainResult:
    """Fine-tune `init` ("none": `model_config` from scratch) with CTC on DATA's train.jsonl, validating
    on its valid.jsonl; re-running resumes the run `out` unless cfg.fresh. Without `cfg` (and
    `overrides`), the tiny preset's fine-tuning recipe, as `w2v finetune` uses (training/recipes.py).
    `clock`: the seconds the time budget counts (default time.monotonic; tests pass a fake one)."""
    if cfg is None:
        cfg, recipe_overrides = finetune_settings("tiny")
        overrides = recipe_overrides if overrides is None else overrides
    model_config = model_config or preset("tiny")
    dist, device = setup(cfg)
    run = RunDir(out)
    try:
        open_run(run, cfg, dist, device, on_event if dist.main else None)
        started = None if cfg.fresh or run.latest() is None else resumed_init(run, init)
        data_dir = resolve_data(data, run, dist, unlabelled=False)
        try:
            vocab = load_vocabulary(data_dir)
        except W2VError:
            raise UsageError(f"{data_dir} has no vocabulary; run `w2v prep` with transcripts") from None
        utts, skipped = load_split(data_dir, "train", RECEPTIVE_FIELD / SAMPLE_RATE, require_text=True)
        valid, _ = load_split(data_dir, "valid", RECEPTIVE_FIELD / SAMPLE_RATE, require_text=True)
        if not utts:
            raise UsageError(f"{data_dir}/train.jsonl has no transcribed utterances to fine-tune on")
        latest = None if cfg.fresh else run.latest()
        train_cnn = trains_cnn(cfg, init)
        if latest is None:
            model, source = initial_model(init, model_config, vocab, overrides or {}, train_cnn)
            reinit_top_layers(model, cfg.reinit_layers)
        else:
            config = resume_config(run, model_config, False)
            model, source = Wav2Vec2ForCTC(config), str(latest)
        config = model.config
        loader = training_loader(utts, cfg, dist, device, vocab=vocab)
        validate = make_validator(valid, vocab, cfg, device, dist) if valid else None
        trainer = Trainer(
            model,
            FinetuneTask(config, cfg, train_cnn),
            loader,
            cfg,
            run,
            device,
            dist,
            on_event,
            validate=validate,
            vocab=vocab,
            info={"task": "finetune", "init": init},
            clock=clock or time.monotonic,
        )
        if not cfg.fresh:
            trainer.resume()  # with no checkpoint yet, it drops the log lines of a run killed before one
        if dist.main:
            run.write_settings(
                {
                    "command": "finetune",
                    "data": str(data_dir),
                    "init": started or init,  # what the run was started from
                    "start": source,
                    "train": cfg.to_dict(),
                    "model": config.to_dict(),
                    "train_feature_encoder": train_cnn,
                    "utterances": len(utts),
                    "valid_utterances": len(valid),
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
