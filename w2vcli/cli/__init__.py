"""The `w2v` command. Parse -> call one pipeline -> render. This package is the only Typer import.

Subcommand modules import torch and the pipelines lazily inside their functions, so
`w2v --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from w2vcli import __version__
from w2vcli.cli import (
    align,
    convert,
    curves,
    export,
    finetune,
    info,
    listen,
    lm,
    prep,
    pretrain,
    score,
    segment,
    serve,
    transcribe,
)

app = typer.Typer(
    name="w2v",
    help="wav2vec 2.0 from a folder of raw audio to working speech recognition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"w2v {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """wav2vec 2.0: prep -> pretrain -> finetune -> transcribe -> score."""


app.command("prep")(prep.prep)
app.command("pretrain")(pretrain.pretrain)
app.command("finetune")(finetune.finetune)
app.command("transcribe")(transcribe.transcribe)
app.command("serve")(serve.serve)
app.command("listen")(listen.listen)
app.command("align")(align.align)
app.command("segment")(segment.segment)
app.command("score")(score.score)
app.command("lm")(lm.lm)
app.command("convert")(convert.convert)
app.command("export")(export.export)
app.command("info")(info.info)
app.command("curves")(curves.curves)


def main() -> None:
    """Entry point: known errors become one red line and a non-zero exit; W2V_DEBUG=1 shows tracebacks."""
    from w2vcli.errors import W2VError

    try:
        app()
    except W2VError as e:
        if os.environ.get("W2V_DEBUG"):
            raise
        from w2vcli.console import error

        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: one says why
            error(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a full disk shows up as OSError, or inside torch's and safetensors' errors
        if not _disk_full(e) or os.environ.get("W2V_DEBUG"):
            raise
        from w2vcli.console import error

        where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
        error(
            f"no space left on the device{where}; free some space and run again (finished outputs are kept)"
        )
        sys.exit(1)


def _disk_full(e: BaseException) -> bool:
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)
