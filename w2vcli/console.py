"""The two Rich consoles: `err` for humans (progress, summaries, warnings), `out` for data (JSON lines).

Only the CLI draws; pipelines report through callbacks, so they stay usable from Python.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def progress(*extra_columns) -> Progress:
    """A progress bar on stderr with ETA; `extra_columns` add live figures (e.g. files/s, loss)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)  # brackets in paths stay


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # ... and in 'w2vcli[listen]'
