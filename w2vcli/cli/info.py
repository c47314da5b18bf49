"""`w2v info`: what a model directory holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def info(
    model: Annotated[
        Path,
        typer.Argument(help="A w2vcli checkpoint, a Hugging Face wav2vec 2.0 directory or an ONNX file."),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Describe a model: head, architecture, parameters, vocabulary."""
    from rich.table import Table

    from w2vcli.checkpoints.huggingface import load_any
    from w2vcli.console import out
    from w2vcli.data.audio import SAMPLE_RATE

    if model.suffix == ".onnx" and model.is_file():
        head, parameters, cfg, vocab = _onnx(model)
    else:
        ckpt = load_any(model)
        head, cfg, vocab = ckpt.head, ckpt.config, ckpt.vocab
        parameters = sum(p.numel() for p in ckpt.model.parameters())
    summary = {
        "path": str(model),
        "head": head,
        "parameters": parameters,
        "feature_encoder": f"{len(cfg.conv_dim)} conv x {cfg.conv_dim[0]} ch, {cfg.feat_extract_norm} norm",
        "transformer": f"{cfg.num_hidden_layers} layers x {cfg.hidden_size} dim, {cfg.num_attention_heads} heads, "
        f"{'pre' if cfg.do_stable_layer_norm else 'post'}-LN",
        "waveform_normalization": cfg.do_normalize,
        "frame_ms": 1000 * cfg.frame_stride / SAMPLE_RATE,
        "vocab_size": len(vocab) if vocab else None,
        "vocab": "".join(t for t in vocab.tokens if len(t) == 1) if vocab else None,
    }
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    table = Table(show_header=False, box=None)
    for k, v in summary.items():
        table.add_row(f"[bold]{k}[/]", f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
    out.print(table)


def _onnx(path: Path):
    """(head, parameters, config, vocabulary) of an ONNX file written by `w2v export`."""
    from w2vcli.checkpoints.onnx import load_info

    meta = load_info(path)
    head = f"ctc (ONNX, {'int8 transformer' if meta.int8 else 'fp32'})"
    return head, meta.parameters, meta.config, meta.vocab
