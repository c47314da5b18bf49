"""Tiny corpora and models for the training tests (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from w2vcli.data.manifest import Utterance, write_manifest
from w2vcli.data.text import Vocabulary
from w2vcli.model.config import preset
from w2vcli.training.config import FinetuneConfig, PretrainConfig

SR = 16_000
WORDS = ["a cat", "the dog", "sun", "red sea", "no", "one two", "hi there", "big"]


def make_corpus(
    root: Path, n: int = 12, seconds: float = 1.0, labelled: bool = False, valid: int = 0
) -> Path:
    """n tones with a little noise; with `labelled`, a transcript each and vocab.json; `valid` more in valid.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {"train": [], "valid": []}
    for k in range(n + valid):
        samples = int(SR * seconds)
        t = np.arange(samples) / SR
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * k) * t) + 0.05 * rng.standard_normal(samples)
        sf.write(root / f"u{k}.wav", wav.astype(np.float32), SR)
        text = WORDS[k % len(WORDS)] if labelled else None
        splits["train" if k < n else "valid"].append(Utterance(f"u{k}", f"u{k}.wav", samples / SR, text))
    write_manifest(root / "train.jsonl", splits["train"])
    write_manifest(root / "valid.jsonl", splits["valid"])
    if labelled:
        Vocabulary.from_texts(WORDS).save(root)
    return root


def small_model(**changes):
    return preset("tiny").replace(
        conv_dim=(32,) * 7,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        codevector_dim=32,
        proj_codevector_dim=16,
        num_codevectors_per_group=16,
        num_negatives=10,
        mask_feature_length=8,
        **changes,
    )


SMALL = dict(max_updates=6, batch_seconds=3, log_every=2, save_every=3, device="cpu", warmup=2, lr=2e-3)


def small_train(**changes) -> PretrainConfig:
    """A seconds-long pretraining run."""
    return PretrainConfig(**{**SMALL, "crop_seconds": 1, **changes})


def small_finetune(**changes) -> FinetuneConfig:
    """A seconds-long fine-tuning run (linear schedule unless a test asks for tri-stage)."""
    return FinetuneConfig(**{**SMALL, "schedule": "linear", **changes})


class Ticks:
    """A fake clock for time budgets (`pretrain`/`finetune`'s `clock=`): each reading is `step` seconds
    after the last. The loop reads it once when it starts and once per update, so a budget buys an
    exact number of updates however busy the machine is."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
