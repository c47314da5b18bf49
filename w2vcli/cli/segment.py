"""`w2v segment`: a long recording + its transcript -> utterance-sized training pairs for `w2v prep`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import CtcModel, Device, Edges, Engine


def segment(
    audio: Annotated[Path, typer.Argument(help="One long recording (any format libsndfile reads).")],
    text: Annotated[
        str,
        typer.Option(
            "--text", "-t", help="Its transcript: a text file (which must exist), or the text itself."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="A new folder (or one segment wrote before) for the segments and segments.jsonl.",
        ),
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
    min_fit: Annotated[
        float,
        typer.Option(
            "--min-fit",
            min=0,
            max=1,
            help="Drop segments whose audio does not say their text. Fit: the text's probability relative to "
            "the model's own best reading of the same frames (with 60-70%-CER models: 0.07-0.36 on speech "
            "with its text, 0.04-0.20 with a wrong text, under 0.015 on noise and silence). 0 keeps all.",
        ),
    ] = 0.05,
    min_file_fit: Annotated[
        float,
        typer.Option(
            "--min-file-fit",
            min=0,
            max=1,
            help="Reject the whole recording when its median segment fit is lower (a wrong transcript: "
            "medians 0.08-0.10, against 0.15-0.24 with its text), as when most of its segments are silent or "
            "do not match. 0 turns the median test off.",
        ),
    ] = 0.12,
    language: Annotated[
        str, typer.Option("--language", help="For reading numbers out (num2words code).")
    ] = "en",
    edges: Edges = True,
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Cut a long recording and its transcript into utterances for fine-tuning.

    Segments end at word boundaries inside pauses and last at most --max-seconds. OUT gets
    NAME-0001.flac + NAME-0001.txt per kept segment (`w2v prep OUT` takes it as it is) and
    segments.jsonl with every segment, kept or dropped, and why (unaligned word, untranscribed
    speech, too short, too long, silent, does not match the audio, low confidence). The .txt holds
    the text as it was aligned (numbers read out); the report keeps your words too. A recording
    whose segments mostly fail (silence, noise, a wrong transcript) is rejected whole: exit 1.

    Example: `w2v segment book.flac --text book.txt -m runs/ft -o data/book`
    """
    from rich.progress import TextColumn

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.console import err, progress
    from w2vcli.errors import UsageError, W2VError
    from w2vcli.pipelines.align import AlignOptions, align_inputs
    from w2vcli.pipelines.segment import SegmentOptions, open_output
    from w2vcli.pipelines.segment import segment as run
    from w2vcli.training.runtime import from_env, select_device

    open_output(out)  # before a model is loaded (or exported): a wrong --out costs nothing
    (job,) = align_inputs([str(audio)], text=text)  # --text: a file that is missing is an error now too
    if not job.item.path.is_file():
        raise UsageError(f"{audio}: no such audio file")
    options = SegmentOptions(
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        min_pause=min_pause,
        min_ratio=min_ratio,
        min_score=min_score,
        min_fit=min_fit,
        min_file_fit=min_file_fit,
        align=AlignOptions(language=language, **({} if edges else {"edges": None})),
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

        summary = run(str(audio), job.text, loaded, out, options, on_progress)
    dropped = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items()) or "none"
    err.print(
        f"{summary['kept']} of {summary['segments']} segments kept ({summary['kept_seconds'] / 60:.1f} of "
        f"{(summary['duration'] or 0) / 60:.1f} min) in {out}; dropped: {dropped}; report: {summary['report']}",
        markup=False,
    )
    if summary["rejected"]:
        raise W2VError(f"{audio}: {summary['rejected']}; nothing written but the report")
