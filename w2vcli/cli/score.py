"""`w2v score`: WER/CER of one or more hypothesis files against a reference, tables on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.fsutil import atomic_write

_FORMAT_HELP = "auto (by extension, then content), jsonl, tsv, kaldi or trn."
_OP_STYLE = {"sub": "yellow", "del": "red", "ins": "green"}
_OP_MARK = {"sub": "S", "del": "D", "ins": "I", "equal": ""}


def score(
    ref: Annotated[str, typer.Argument(metavar="REF", help="Reference transcripts: prep manifest, JSONL, TSV, Kaldi text or .trn; - for stdin.")],
    hyps: Annotated[list[str], typer.Argument(metavar="HYP", help="Hypothesis file(s), e.g. `w2v transcribe` JSONL; two or more are compared.", show_default=False)],
    missing: Annotated[str, typer.Option("--missing", metavar="fail|skip|empty", help="A reference without hypothesis: fail, skip it, or score an empty one.")] = "fail",
    json_path: Annotated[str | None, typer.Option("--json", metavar="PATH", help="Write the machine-readable report here (- for stdout).")] = None,
    align: Annotated[int, typer.Option("--align", min=0, help="Show the word alignment of the N worst utterances.")] = 0,
    confusions: Annotated[int, typer.Option("--confusions", min=0, help="How many of the most frequent word errors to list.")] = 10,
    no_normalize: Annotated[bool, typer.Option("--no-normalize", help="Score the text as written (whitespace is still collapsed).")] = False,
    keep_case: Annotated[bool, typer.Option("--keep-case", help="Normalise, but do not lowercase.")] = False,
    keep_punctuation: Annotated[bool, typer.Option("--keep-punctuation", help="Normalise, but keep punctuation.")] = False,
    ref_format: Annotated[str, typer.Option("--ref-format", metavar="FORMAT", help=_FORMAT_HELP)] = "auto",
    hyp_format: Annotated[str, typer.Option("--hyp-format", metavar="FORMAT", help=_FORMAT_HELP)] = "auto",
    bootstrap: Annotated[int | None, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for 95% intervals (default 1000 when comparing systems, else 0).", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the bootstrap.")] = 0,
    by: Annotated[str | None, typer.Option("--by", metavar="REGEX", help=r"Also break the rates down by group: the regex's first capture group (else its whole match) in each utterance id, e.g. --by '^(\d+)-' for LibriSpeech speakers. Ids it does not match form the group '(other)'.", show_default=False)] = None,
) -> None:  # fmt: skip
    """Word and character error rates, with paired-bootstrap comparison of several systems.

    Utterances are joined by id, else by audio path, never by line order. WER counts whitespace
    tokens, CER characters including spaces (as jiwer); rates divide by the reference length, or
    by 1 when the whole reference is empty. Tables go to stderr, --json - to stdout.
    """
    from w2vcli.pipelines.score import score as run_score
    from w2vcli.scoring.report import Normalization

    norm = Normalization(
        lowercase=not (no_normalize or keep_case), strip_punctuation=not (no_normalize or keep_punctuation)
    )
    report = run_score(
        ref, hyps, normalization=norm, missing=missing, ref_format=ref_format, hyp_format=hyp_format,
        bootstrap=bootstrap, seed=seed, top_confusions=confusions, group_by=by,
    )  # fmt: skip
    _render(report, align)
    if json_path is not None:
        _write_json(report.to_json(), json_path)


def _write_json(data: dict, path: str) -> None:
    from w2vcli.errors import W2VError

    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if path == "-":
        typer.echo(text, nl=False)
        return
    target = Path(path)
    try:
        atomic_write(target, text)
    except OSError as e:
        raise W2VError(f"cannot write {path}: {e.strerror or e}") from None


def _render(report, align: int) -> None:
    from rich.markup import escape

    from w2vcli.console import err, warn

    many = len(report.systems) > 1
    for s in report.systems:
        if s.extra:
            warn(
                f"{escape(s.hyp_path)}: {len(s.extra)} hypotheses match no reference (e.g. {escape(repr(s.extra[0]))})"
            )
        if s.missing:
            failed = f", {len(s.failed)} failed in transcription" if s.failed else ""
            fate = "skipped" if report.missing_mode == "skip" else "scored as empty"
            warn(f"{escape(s.hyp_path)}: {len(s.missing)} references have no hypothesis{failed}; {fate}")
    err.print(f"[dim]normalisation: {report.normalization.describe()}; joined on {report.systems[0].key}[/]")
    if many:
        for i, s in enumerate(report.systems):
            err.print(f"[bold]{_label(i)}[/] = {escape(s.hyp_path)}", highlight=False)
    err.print(_totals_table(report))
    if report.group_by is not None:
        err.print(_groups_table(report))
    if report.comparisons:
        err.print(_comparison_table(report))
    for i, s in enumerate(report.systems):
        if s.confusions:
            err.print(_confusion_table(s, f" ({_label(i)})" * many))
    for i, s in enumerate(report.systems):
        for u in s.worst(align):
            if u.words.errors == 0:
                break  # worst first, so the rest are correct too
            _print_alignment(err, u, f"{_label(i)}: " * many)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""


def _label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else str(i + 1)


def _totals_table(report):
    from rich.table import Table

    many = len(report.systems) > 1
    title = f"Error rates (%) on {len(report.systems[0].utterances)} utterances"
    table = Table(title=title, title_justify="left")
    cols = ["system"] * many + ["level", "rate"] + ["95% CI"] * bool(report.bootstrap)
    for col in cols + ["sub", "del", "ins", "ref", "SER"]:
        table.add_column(col, justify="left" if col in ("system", "level") else "right", no_wrap=True)
    for i, s in enumerate(report.systems):
        for level, c, ci in (("words", s.words, s.wer_ci), ("chars", s.chars, s.cer_ci)):
            row = [_label(i) if level == "words" else ""] * many + [level, _pct(c.rate)]
            row += [_ci(ci)] * bool(report.bootstrap)
            row += [str(c.substitutions), str(c.deletions), str(c.insertions), str(c.ref_len)]
            table.add_row(*row, _pct(s.ser) if level == "words" else "")
    return table


def _groups_table(report):
    from rich.markup import escape
    from rich.table import Table

    many = len(report.systems) > 1
    table = Table(title=f"Error rates (%) by group (--by {escape(report.group_by)})", title_justify="left")
    table.add_column("group", justify="left")
    table.add_column("utts", justify="right")
    for i in range(len(report.systems)):
        for level in ("WER", "CER"):
            table.add_column(f"{_label(i)} {level}" if many else level, justify="right", no_wrap=True)
    for j, g in enumerate(report.systems[0].groups):
        rates = []
        for s in report.systems:
            rates += [_pct(s.groups[j].words.rate), _pct(s.groups[j].chars.rate)]
        table.add_row(escape(g.name), str(g.sentences), *rates)
    return table


def _comparison_table(report):
    from rich.table import Table

    title = (
        f"Paired bootstrap, {report.bootstrap} resamples, seed {report.seed} (Δ = B − A, negative: B better)"
    )
    table = Table(title=title, title_justify="left")
    for col in ("B vs A", "level", "Δ", "95% CI", "P(B better)"):
        table.add_column(col, justify="left" if col in ("B vs A", "level") else "right", no_wrap=True)
    for c in report.comparisons:
        name = f"{_label(c.b)} vs {_label(c.a)}"
        for level, d, ci, p in (
            ("words", c.delta_wer, c.delta_wer_ci, c.p_improvement_wer),
            ("chars", c.delta_cer, c.delta_cer_ci, c.p_improvement_cer),
        ):
            table.add_row(name if level == "words" else "", level, f"{100 * d:+.2f}", _ci(ci), f"{p:.3f}")
    return table


def _confusion_table(s, suffix: str):
    from rich.table import Table

    table = Table(title="Top errors" + suffix, title_justify="left")
    for col in ("count", "ref", "hyp"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for r, h, n in s.confusions:
        table.add_row(str(n), r if r is not None else "[dim]∅[/]", h if h is not None else "[dim]∅[/]")
    return table


def _pad(text: str, width: int) -> str:
    from rich.cells import cell_len

    return text + " " * (width - cell_len(text))


def _print_alignment(console, u, source: str) -> None:
    """sclite-style REF/HYP lines, columns padded to the wider word and wrapped to the terminal."""
    from rich.cells import cell_len
    from rich.markup import escape

    c = u.words
    console.print(
        f"[bold]{escape(source + u.id)}[/]  WER {_pct(c.rate)}% "
        f"(S {c.substitutions}, D {c.deletions}, I {c.insertions}, {c.ref_len} words)"
        + (" (no hypothesis)" if u.missing else ""),
        highlight=False,
        markup=True,
    )
    width = max(console.width - 6, 20)
    lines, cols, used = [], [], 0
    for op, r, h in u.alignment() or [("equal", "", "")]:
        r, h = r if r is not None else "*" * cell_len(h), h if h is not None else "*" * cell_len(r)
        w = max(cell_len(r), cell_len(h), 1)  # terminal cells, so CJK words stay aligned
        if cols and used + w + 1 > width:
            lines.append(cols)
            cols, used = [], 0
        cols.append((op, _pad(r, w), _pad(h, w), _OP_MARK[op].ljust(w)))
        used += w + 1
    lines.append(cols)
    for cols in lines:
        for label, k in (("REF", 1), ("HYP", 2), ("   ", 3)):
            cells = [
                f"[{_OP_STYLE[col[0]]}]{escape(col[k])}[/]" if col[0] in _OP_STYLE else escape(col[k])
                for col in cols
            ]
            console.print(f"{label}: " + " ".join(cells), highlight=False, soft_wrap=True)
    console.print()
