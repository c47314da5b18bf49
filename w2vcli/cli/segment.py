"""`w2v segment`: a long recording + its transcript -> utterance-sized training pairs for `w2v prep`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import CtcModel, Device, Engine


def segment(
    audio: Annotated[Path, typer.Argument(help="One long recording (any format libsndfile reads).")],
    text: Annotated[
        str, typer.Option("--text", "-t", help="Its transcript: a text file, or the text itself.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="A new folder for the segments and segments.jsonl.")
    ],
    model: CtcModel = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=1, help="Longest segment.")] = 15.0,
    min_seconds: Annotated[
        float, typer.Option("--min-seconds", min=0, help="Shorter segments are dropped.")
    ] = 1.0,
    min_pause: Annotated[
        float,
        typer.Option("--min-pause", min=0, help="Cut only in gaps between words at least this long (s)."),
    ] = 0.15,
    min_ratio: Annotated[
        float,
        typer.Option(
            "--min-ratio",
            min=0,
            help="Confidence filter: drop segments whose confidence (geometric mean of their word scores) is "
            "below this times the file's median segment confidence. Misread passages, text the audio lacks "
            "and speech the text lacks score far below the rest; relative, because weaker models score "
            "every word lower. 0 keeps all.",
        ),
    ] = 0.5,
    min_score: Annotated[
        float,
        typer.Option(
            "--min-score", min=0, max=1, help="Also drop segments below this confidence (absolute)."
        ),
    ] = 0.0,
    language: Annotated[
        str, typer.Option("--language", help="For reading numbers out (num2words code).")
    ] = "en",
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Cut a long recording and its transcript into utterances for fine-tuning.

    Segments end at word boundaries inside pauses and last at most --max-seconds. OUT gets
    NAME-0001.flac + NAME-0001.txt per kept segment (`w2v prep OUT` takes it as it is) and
    segments.jsonl with every segment, kept or dropped, and why (unaligned word, untranscribed
    speech, low confidence, too short, too long).

    Example: `w2v segment book.flac --text book.txt -m runs/ft -o data/book`
    """
    from rich.progress import TextColumn

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.console import err, progress
    from w2vcli.pipelines.align import AlignOptions
    from w2vcli.pipelines.segment import SegmentOptions
    from w2vcli.pipelines.segment import segment as run
    from w2vcli.training.runtime import from_env, select_device

    options = SegmentOptions(
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        min_pause=min_pause,
        min_ratio=min_ratio,
        min_score=min_score,
        align=AlignOptions(language=language),
    )
    dev = str(select_device(device, from_env()))
    loaded = load_model(model, device=dev, engine=engine, announce=lambda m: err.print(m, markup=False))
    bar = progress(TextColumn("{task.fields[audio]:.1f} min audio"))
    with bar:
        task = bar.add_task("aligning", total=None, audio=0.0)
        fed = [0.0]

        def on_progress(seconds: float) -> None:
            fed[0] += seconds
            bar.update(task, audio=fed[0] / 60)

        summary = run(str(audio), text, loaded, out, options, on_progress)
    dropped = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items()) or "none"
    err.print(
        f"{summary['kept']} of {summary['segments']} segments kept ({summary['kept_seconds'] / 60:.1f} of "
        f"{(summary['duration'] or 0) / 60:.1f} min) in {out}; dropped: {dropped}; report: {summary['report']}",
        markup=False,
    )
