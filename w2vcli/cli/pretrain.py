"""`w2v pretrain`."""

from __future__ import annotations

from w2vcli.cli.common import not_built


def pretrain() -> None:
    """Not built yet."""
    not_built("pretrain")
