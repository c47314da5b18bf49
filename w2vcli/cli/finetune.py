"""`w2v finetune`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def finetune() -> None:
    """Not built yet."""
    not_built("finetune")
