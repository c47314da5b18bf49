"""`w2v prep`: a folder of audio (and transcripts) -> training-ready data, with a summary of what was found."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import Seed, Workers


def prep(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Audio folders (searched recursively), audio files, or - to read paths from stdin."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created; re-runs resume).")],
    valid_percent: Annotated[
        float,
        typer.Option("--valid-percent", help="Share of files for valid.jsonl; stable per file and seed."),
    ] = 5.0,
    min_seconds: Annotated[
        float, typer.Option("--min-seconds", help="Drop utterances shorter than this.")
    ] = 0.5,
    max_seconds: Annotated[
        float,
        typer.Option("--max-seconds", help="Split longer unlabelled recordings at their quietest points."),
    ] = 30.0,
    transcripts: Annotated[
        Path | None,
        typer.Option(
            "--transcripts", help="Table of transcripts: TSV/CSV path<TAB>text, or JSONL audio/text."
        ),
    ] = None,
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled", help="Ignore transcripts: prepare audio for pretraining only.")
    ] = False,
    vocab: Annotated[
        str,
        typer.Option("--vocab", help="chars, sentencepiece, or an existing vocab.json / spm.model / folder."),
    ] = "chars",
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="Pieces for --vocab sentencepiece.")] = 1000,
    keep_case: Annotated[bool, typer.Option("--keep-case", help="Do not lowercase transcripts.")] = False,
    keep_punctuation: Annotated[
        bool, typer.Option("--keep-punctuation", help="Keep punctuation (apostrophes are always kept).")
    ] = False,
    fairseq: Annotated[
        bool, typer.Option("--fairseq", help="Also write fairseq .tsv/.ltr/.wrd files.")
    ] = False,
    allow_clipping: Annotated[
        bool, typer.Option("--allow-clipping", help="Keep clipped recordings instead of rejecting them.")
    ] = False,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="auto (recognised from the files), plain, kaldi, commonvoice, nemo, hf or mls.",
        ),
    ] = "auto",
    split_by: Annotated[
        str,
        typer.Option("--split-by", help="file, or speaker: no speaker in both train and valid."),
    ] = "file",
    run_commands: Annotated[
        bool,
        typer.Option(
            "--run-commands",
            help="Run Kaldi wav.scp commands (`sox a.wav -t wav - |`), without a shell. Runs programs named in the data.",
        ),
    ] = False,
    workers: Workers = os.cpu_count() or 1,
    seed: Seed = 0,
) -> None:
    """Convert audio to 16 kHz mono FLAC, check it, split it, and write manifests and a vocabulary.

    Corpora in a toolkit's layout are read as they are (Kaldi data dir, Common Voice release, NeMo
    manifest, Hugging Face dataset on disk, Multilingual LibriSpeech):

        w2v prep data/train --out prepared/ --split-by speaker

    Exit code 0 when every input was usable, 1 when some were rejected (see rejected.jsonl), 2 for usage errors.
    """
    from w2vcli.pipelines.prep import PrepOptions, prepare

    listed = []
    if "-" in sources:
        from w2vcli.data.inputs import check_path_list

        data = check_path_list(sys.stdin.buffer.read(), "prep")
        listed = [os.fsdecode(line.rstrip(b"\r\n")) for line in io.BytesIO(data) if line.strip()]
        sources = [s for s in sources if s != "-"] + listed
    options = PrepOptions(
        valid_percent=valid_percent,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        transcripts=str(transcripts) if transcripts else None,
        unlabelled=unlabelled,
        vocab=vocab,
        vocab_size=vocab_size,
        lowercase=not keep_case,
        strip_punctuation=not keep_punctuation,
        fairseq=fairseq,
        allow_clipping=allow_clipping,
        workers=workers,
        seed=seed,
        layout=layout,
        split_by=split_by,
        run_commands=run_commands,
    )
    options.check()  # before the progress bar, so a bad flag prints one line
    with _Progress() as bar:
        report = prepare(sources, out, options, on_progress=bar.update, listed=frozenset(listed))
    render(report)
    if report.rejected:
        raise typer.Exit(1)


class _Progress:
    """The conversion bar: files, files/s and hours of audio produced."""

    def __enter__(self):
        from rich.progress import TextColumn

        from w2vcli.console import progress

        self.bar = progress(
            TextColumn("{task.fields[rate]:.1f} files/s"), TextColumn("{task.fields[hours]:.2f} h")
        )
        self.bar.__enter__()
        self.task = self.bar.add_task("converting", total=None, rate=0.0, hours=0.0)
        self.start = time.monotonic()
        return self

    def update(self, p) -> None:
        rate = (p.done - p.cached) / max(time.monotonic() - self.start, 1e-6)
        self.bar.update(self.task, completed=p.done, total=p.total, rate=rate, hours=p.seconds / 3600)

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def render(report) -> None:
    """The summary on stderr: splits, durations, sources, vocabulary, numbers, rejections."""
    from rich.table import Table
    from rich.text import Text

    from w2vcli.console import err

    f = report.files
    if report.layout:
        err.print(
            f"layout {report.layout['name']}: {report.layout['listed']} utterances listed", markup=False
        )
        for note in report.layout["notes"]:
            err.print(note, markup=False)
    err.print(
        f"[bold]{f['found']}[/] files found: {f['converted']} converted, {f['cached']} already done, "
        f"{f['rejected']} rejected; {'labelled' if report.labelled else 'unlabelled (for pretraining)'}"
    )
    splits = Table("split", "utterances", "audio", title="Splits", title_justify="left")
    for name, s in report.splits.items():
        splits.add_row(name, str(s["utterances"]), _hours(s["seconds"]))
    err.print(splits)
    if report.durations:
        d = report.durations
        hist = Table("seconds", "utterances", title="Durations", title_justify="left")
        for b in d["histogram"]:
            hist.add_row(
                f"{b['from']:g}-{b['to']:g}" if b["to"] is not None else f"{b['from']:g}+", str(b["count"])
            )
        err.print(hist)
        err.print(
            f"min {d['min']:.2f} s, median {d['median']:.2f}, mean {d['mean']:.2f}, p95 {d['p95']:.2f}, max {d['max']:.2f}"
        )
    s = report.sources
    if s["sample_rates"]:
        found = Table("found in sources", "files", title="Sources", title_justify="left")
        for label, counts, unit in (
            ("rate", s["sample_rates"], " Hz"),
            ("channels", s["channels"], ""),
            ("", s["encodings"], ""),
        ):
            for k, n in counts.items():
                found.add_row(f"{label} {k}{unit}".strip(), str(n))
        err.print(found)
    if report.vocab:
        v = report.vocab
        err.print(
            f"vocabulary ({v['kind']}, {v['size']} tokens, {v['file']}): {v['characters']}", markup=False
        )
    if report.numbers["utterances"]:
        examples = "; ".join(report.numbers["examples"][:3])
        err.print(
            f"{report.numbers['utterances']} transcripts contain digits (kept as written), e.g. {examples}",
            markup=False,
        )
    if report.rejected:
        table = Table(
            "reason", "count", "example", title="Rejected (see rejected.jsonl)", title_justify="left"
        )
        for reason, n in report.rejected_by_reason.items():
            example = next(r for r in report.rejected if r["reason"] == reason)
            table.add_row(reason, str(n), Text(example["detail"] or example["path"]))
        err.print(table)
    err.print(f"wrote {report.out_dir}: {', '.join(report.outputs)} in {report.elapsed:.1f} s", markup=False)
