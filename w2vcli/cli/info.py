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
    engines: Annotated[
        bool,
        typer.Option(
            "--engines",
            help="Measure PyTorch and ONNX Runtime on this model and CPU (once; kept in the cache) and show "
            "which one `--engine auto` runs for short and long jobs.",
        ),
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="With --engines: the int8 paths instead of fp32.")
    ] = False,
    again: Annotated[
        bool, typer.Option("--recalibrate", help="With --engines: measure again, even if a result is kept.")
    ] = False,
) -> None:
    """Describe a model: head, architecture, parameters, vocabulary; with --engines, its engines' speed."""
    from rich.table import Table

    from w2vcli.checkpoints.huggingface import load_any
    from w2vcli.console import out
    from w2vcli.data.audio import SAMPLE_RATE
    from w2vcli.errors import UsageError

    if (int8 or again) and not engines:
        raise UsageError(f"{'--int8' if int8 else '--recalibrate'} goes with --engines")
    if engines:
        _engines(model, int8, again, as_json)
        return
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


def _engines(spec: Path, int8: bool, again: bool, as_json: bool) -> None:
    """The calibration record of this model on this CPU (measured now when there is none), and what
    `--engine auto` decides from it for a few job sizes."""
    import math

    from rich.table import Table

    from w2vcli.checkpoints import engine_choice
    from w2vcli.checkpoints.onnx_cache import cached_path
    from w2vcli.checkpoints.resolve import resolve_model
    from w2vcli.console import err, out
    from w2vcli.errors import UsageError

    if spec.suffix == ".onnx" and spec.is_file():
        raise UsageError(f"{spec} is an ONNX file: it runs on ONNX Runtime only; pass the model's directory")
    path = resolve_model(str(spec), given_as="MODEL")
    record = None if again else engine_choice.lookup(path, int8)
    if record is None:
        record = engine_choice.calibrate(path, int8, lambda m: err.print(m, markup=False))
    exported = cached_path(path, int8).is_file()
    jobs = {"a 1 s file": 1.0, "10 minutes of audio": 600.0, "an hour": 3600.0, "a server": math.inf}
    choices = {name: engine_choice.decide(record, seconds, exported).engine for name, seconds in jobs.items()}
    if as_json:
        from dataclasses import asdict

        print(json.dumps(asdict(record) | {"speedup": record.speedup(), "auto": choices}))
        return
    table = Table(show_header=False, box=None)
    rows = {
        "cpu": record.cpu,
        "precision": record.precision,
        "PyTorch": f"{record.torch:.4f} s per audio second, loads in {record.torch_load:.2f} s",
        "ONNX Runtime": (
            f"{record.onnx:.4f} s per audio second, opens in {record.onnx_load:.2f} s "
            f"({record.speedup():.2f}x PyTorch)"
            if record.onnx
            else "not available"
        ),
        "export": f"{record.export:.1f} s" if record.export is not None else "made before the measurement",
        "measured": record.when,
    } | {f"auto, {name}": engine for name, engine in choices.items()}
    for k, v in rows.items():
        table.add_row(
            f"[bold]{k}[/]",
            v,
        )
    out.print(table)
