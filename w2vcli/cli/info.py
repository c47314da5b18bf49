"""`w2v info`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def info() -> None:
    """Not built yet."""
    not_built("info")
