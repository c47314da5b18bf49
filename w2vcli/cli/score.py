"""`w2v score`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def score() -> None:
    """Not built yet."""
    not_built("score")
