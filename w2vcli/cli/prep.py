"""`w2v prep`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def prep() -> None:
    """Not built yet."""
    not_built("prep")
