"""`w2v export`: a CTC model as one ONNX file, for ONNX Runtime or any ONNX runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    model: Annotated[
        str, typer.Argument(help="Fine-tuning run, checkpoint or Hugging Face directory of a CTC model.")
    ],
    out: Annotated[Path, typer.Argument(help="The ONNX file to write (.onnx).")],
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Quantize the transformer's matrix products to int8 (dynamic, per channel); the CNN, "
            "its projection and the CTC head stay fp32. About 4x smaller, faster on CPUs.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Export a CTC model to ONNX: dynamic batch and length, the vocabulary and config in its metadata.

    Input `wav` (batch, samples) float32 at 16 kHz, output `logits` (batch, frames, vocabulary); when
    the metadata says `normalize`, scale each input to zero mean and unit variance first.
    `w2v transcribe --model OUT` runs it. Example: `w2v export runs/ft model.onnx --int8`
    """
    import time

    from w2vcli.checkpoints.onnx import export as run
    from w2vcli.checkpoints.resolve import load_ctc, resolve_model
    from w2vcli.console import err
    from w2vcli.errors import UsageError

    if out.suffix != ".onnx":
        raise UsageError(f"{out}: the output must end in .onnx")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; add --overwrite to replace it")
    if out.is_dir():
        raise UsageError(f"{out} is a directory; name the .onnx file to write")
    if not model.strip():
        raise UsageError("MODEL is empty; name a fine-tuning run, checkpoint or Hugging Face directory")
    if Path(model).suffix == ".onnx" and Path(model).is_file():
        raise UsageError(
            f"MODEL {model} is an ONNX file already; export takes a fine-tuning run, checkpoint or "
            "Hugging Face directory"
        )
    path = resolve_model(model, given_as="MODEL")
    ckpt, vocab = load_ctc(path)
    start = time.monotonic()
    with err.status(f"exporting {path} to ONNX{' (int8)' if int8 else ''}"):
        run(ckpt.model, ckpt.config, vocab, out, int8=int8)
    size = out.stat().st_size / 2**20
    err.print(f"[green]wrote[/] {out} ({size:.1f} MiB, {time.monotonic() - start:.0f} s)")
