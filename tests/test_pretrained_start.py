"""The shipped starting point, examples/pretrained/tiny: its weights are the ones the model card
describes (checksum), it loads into the documented architecture in fp32, and it runs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from w2vcli.checkpoints.native import load_checkpoint
from w2vcli.model.config import preset

START = Path(__file__).resolve().parent.parent / "examples" / "pretrained" / "tiny"
CARD = (START / "README.md").read_text(encoding="utf-8")


def card_value(row: str) -> str:
    """The value cell of the card's table row whose label starts with `row`."""
    match = re.search(rf"^\| {re.escape(row)}[^|]* \| (.+?) \|$", CARD, flags=re.M)
    assert match, f"the model card has no '{row}' row"
    return match.group(1).strip("` ")


def test_weights_match_the_checksum_on_the_card_and_fit_the_size_limit():
    weights = START / "model.safetensors"
    assert weights.stat().st_size <= 10 * 2**20
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card_value("sha256 of model.safetensors")


def test_loads_into_the_documented_architecture_in_fp32():
    ckpt = load_checkpoint(START)
    assert ckpt.head == "best-rq" and ckpt.vocab is None
    tiny = preset("tiny")
    for field in (
        "conv_dim",
        "conv_kernel",
        "conv_stride",
        "feat_extract_norm",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "do_stable_layer_norm",
    ):
        assert getattr(ckpt.config, field) == getattr(tiny, field), field
    assert (ckpt.config.rpq_num_codebooks, ckpt.config.rpq_codebook_size, ckpt.config.rpq_codebook_dim) == (
        1,
        1024,
        16,
    )
    params = list(ckpt.model.parameters())
    assert all(p.dtype == torch.float32 for p in params)
    assert sum(p.numel() for p in params) == int(card_value("parameters").split()[0].replace(",", ""))


def test_runs_on_audio_and_gives_finite_features():
    ckpt = load_checkpoint(START)
    with torch.no_grad():
        hidden = ckpt.model.wav2vec2(torch.randn(1, 16000)).last_hidden_state
    assert hidden.shape == (1, 49, ckpt.config.hidden_size)
    assert torch.isfinite(hidden).all()
