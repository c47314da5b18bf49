"""`w2v convert`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def convert() -> None:
    """Not built yet."""
    not_built("convert")
