"""`w2v convert`: Hugging Face wav2vec 2.0 directories <-> our checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert(
    src: Annotated[Path, typer.Argument(help="A w2vcli checkpoint or a Hugging Face wav2vec 2.0 directory.")],
    dst: Annotated[Path, typer.Argument(help="Output directory.")],
    to: Annotated[
        str, typer.Option("--to", help="w2v (our format) or hf (transformers' from_pretrained).")
    ] = "w2v",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="DST may hold a model already: replace its model files (others are kept)."
        ),
    ] = False,
) -> None:
    """Import a Hugging Face wav2vec 2.0 model, or export ours for transformers.

    Example: `w2v convert ./wav2vec2-base-960h models/base-960h`
    """
    from w2vcli.checkpoints.huggingface import convert as run
    from w2vcli.console import err
    from w2vcli.errors import UsageError

    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError("SRC and DST are the same directory; choose another DST")
    out = run(src, dst, to=to, overwrite=overwrite)
    err.print(f"[green]wrote[/] {out} ({'transformers' if to == 'hf' else 'w2vcli'} format)")
