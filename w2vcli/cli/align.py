"""`w2v align`: audio + its transcript -> when each word is said, as JSON lines or subtitle/Praat/CTM files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import AudioInputs, CtcModel, Device, Edges, Engine, OutputDir

FORMATS_HELP = (
    "jsonl (default on stdout), json, ctm, textgrid, srt, vtt, tsv or txt; repeat for several with -o."
)


def align(
    audio: AudioInputs,
    model: CtcModel = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            "-t",
            help="The transcript of the one audio file: a text file (which must exist), or the text itself.",
        ),
    ] = None,
    transcripts: Annotated[
        Path | None,
        typer.Option(
            "--transcripts", help="A table of transcripts (TSV/CSV path<TAB>text, or JSONL audio/text)."
        ),
    ] = None,
    output_dir: OutputDir = None,
    formats: Annotated[list[str] | None, typer.Option("--format", "-f", help=FORMATS_HELP)] = None,
    chars: Annotated[bool, typer.Option("--chars", help="Also time each character (token).")] = False,
    language: Annotated[
        str,
        typer.Option(
            "--language", help="Language for reading numbers out (num2words code: en, fr, de, ...)."
        ),
    ] = "en",
    star_penalty: Annotated[
        float,
        typer.Option(
            "--star-penalty",
            min=0,
            help="What the wildcard for untranscribed audio costs, in nats per frame below the best class. "
            "Lower: more audio counts as not in the text.",
        ),
    ] = 2.0,
    edges: Edges = True,
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Align known transcripts to audio: each word's start, end and confidence.

    Transcripts come from --text (one file), sidecar NAME.txt / NAME.lab files, LibriSpeech
    *.trans.txt, a prep manifest, or --transcripts. Numbers are read out and other scripts
    transliterated for the model while the output keeps your words; audio the text lacks is
    absorbed by a wildcard and listed as `untranscribed`. Exit 1 when some inputs failed.

    Example: `w2v align talk.flac --text talk.txt -m runs/ft -f srt -o subs/`
    """
    from w2vcli.decoding.formats import FORMATS
    from w2vcli.errors import UsageError

    formats = list(dict.fromkeys(formats or (["json"] if output_dir else [])))  # each once
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {bad[0]}: expected one of {', '.join(FORMATS)}")
    if output_dir is None and len(formats) > 1:
        raise UsageError(
            f"--format {' and '.join(formats)} on stdout would run together in one stream; "
            "give one --format, or --output-dir DIR for a file per format"
        )
    if "-" in audio and sys.stdin.isatty():
        raise UsageError("- reads paths from stdin, but stdin is a terminal; pipe paths in")

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.cli.transcribe import run_with_progress
    from w2vcli.console import err
    from w2vcli.pipelines.align import AlignOptions, align_inputs
    from w2vcli.pipelines.align import align as run
    from w2vcli.pipelines.transcribe import open_outputs
    from w2vcli.training.runtime import from_env, select_device

    stdin = ()
    if "-" in audio:
        from w2vcli.data.inputs import check_path_list

        data = check_path_list(sys.stdin.buffer.read(), "align")
        stdin = (os.fsdecode(line) for line in data.splitlines(keepends=True))
    inputs = align_inputs(audio, stdin, text, str(transcripts) if transcripts else None)
    items = [a.item for a in inputs]
    ledger = open_outputs(items, output_dir, formats) if output_dir is not None else None
    options = AlignOptions(language=language, star_penalty=star_penalty, chars=chars)
    if not edges:
        options.edges = None
    dev = str(select_device(device, from_env()))
    loaded = load_model(model, device=dev, engine=engine, announce=lambda m: err.print(m, markup=False))
    failed = run_with_progress(
        lambda on_progress: run(inputs, loaded, options, on_progress), items, ledger, formats, "aligning"
    )
    if failed:
        raise typer.Exit(1)
