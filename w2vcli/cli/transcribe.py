"""`w2v transcribe`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def transcribe() -> None:
    """Not built yet."""
    not_built("transcribe")
