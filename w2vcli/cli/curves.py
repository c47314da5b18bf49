"""`w2v curves`: training curves of a run, drawn in the terminal from RUN/metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT = ["loss", "x_chance", "code_perplexity", "valid_wer", "valid_cer", "lr"]
# What a pretraining chart's title says about the run: accuracy as a multiple of guessing (1 = chance).
NOTES = {"x_chance": "masked-frame accuracy / chance: 1 = guessing, 2+ = learning"}


def curves(
    run: Annotated[Path, typer.Argument(help="A run directory of `w2v pretrain` or `w2v finetune`.")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Metric to draw (repeatable); default: the main ones present."),
    ] = None,
    width: Annotated[int, typer.Option("--width", min=10, help="Chart width in columns.")] = 60,
    height: Annotated[int, typer.Option("--height", min=2, help="Chart height in rows.")] = 8,
) -> None:
    """Show how training went: one chart per metric, update numbers below."""
    from w2vcli.console import out
    from w2vcli.errors import UsageError
    from w2vcli.training.metrics import chart, read_metrics, series

    records = read_metrics(run / "metrics.jsonl")
    if not records:
        raise UsageError(f"no metrics in {run / 'metrics.jsonl'}; is {run} a training run?")
    available = sorted(
        {k for r in records for k, v in r.items() if isinstance(v, (int, float)) and k != "update"}
    )
    keys = metric or [k for k in DEFAULT if k in available]
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise UsageError(f"no metric {', '.join(unknown)} in this run; available: {', '.join(available)}")
    for key in keys:
        updates, values = series(records, key)
        if not values:
            continue
        note = f"; {NOTES[key]}" if key in NOTES else ""
        out.print(f"[bold]{key}[/]  (updates {updates[0]}-{updates[-1]}, last {values[-1]:.4g}{note})")
        if key == "x_chance" and records[-1].get("health"):
            out.print(f"  now: {records[-1]['health']}", markup=False)
        for row in chart(values, width, height):
            out.print(row, markup=False, highlight=False)
