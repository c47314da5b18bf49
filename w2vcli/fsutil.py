"""Files written whole or not at all: a temporary sibling, then a rename over the target.

    with atomic_open(path) as f:  # streamed
        f.write(...)
    atomic_write(path, text_or_bytes, sync=True)  # durable too: fsynced before the rename

A crash or an exception leaves the old file (or none), never a half-written one, and no temporary
file behind. The temporary name carries the process id, so DDP ranks and workers never share one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", sync: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing ("w" text in UTF-8, or "wb"); on a clean exit it
    replaces `path` (after an fsync when `sync`); on an exception it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, sync: bool = False) -> Path:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w", sync) as f:
        f.write(data)
    return Path(path)
