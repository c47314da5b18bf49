"""`w2v convert`: Hugging Face wav2vec 2.0 directories <-> our checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert(
    src: Annotated[Path, typer.Argument(help="A w2vcli checkpoint or a Hugging Face wav2vec 2.0 directory.")],
    dst: Annotated[Path, typer.Argument(help="Output directory.")],
    to: Annotated[str, typer.Option("--to", help="w2v (our format) or hf (transformers' from_pretrained).")] = "w2v",
) -> None:
    """Import a Hugging Face wav2vec 2.0 model, or export ours for transformers."""
    from w2vcli.console import err
    from w2vcli.convert import convert as run
    from w2vcli.errors import UsageError

    if to not in ("w2v", "hf"):
        raise UsageError(f"--to must be 'w2v' or 'hf', not {to!r}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UsageError("SRC and DST are the same directory; choose another DST")
    out = run(src, dst, to=to)
    err.print(f"[green]wrote[/] {out} ({'transformers' if to == 'hf' else 'w2vcli'} format)")
