"""Files written whole or not at all: a temporary sibling, then a rename over the target.

    with atomic_open(path) as f:  # streamed
        f.write(...)
    atomic_write(path, text_or_bytes, sync=True)  # durable too: fsynced before the rename

A crash or an exception leaves the old file (or none), never a half-written one, and no temporary
file behind. The temporary name carries the process id, so DDP ranks and workers never share one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON file that must hold one object (a config, a vocabulary); anything else is one W2VError
    naming `what` it should have been."""
    from w2vcli.errors import W2VError

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise W2VError(f"cannot read {what} {path}: {e}") from None
    if not isinstance(raw, dict):
        raise W2VError(f"{what} {path}: expected a JSON object")
    return raw


LEDGER_FILE = ".w2v-written.jsonl"


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OutputLedger:
    """The files a command wrote into an output folder, each with the sha256 of what it wrote.

    A command may overwrite a file in the folder only when the ledger holds the file's current
    checksum: an input, a reference transcript or a file the user edited since is never replaced.
    The ledger line is appended before the file is renamed into place, so a kill between the two
    leaves either the old file (its own line is older) or the new one: both stay recognised.

        ledger = OutputLedger(out_dir)
        bad = ledger.conflicts(paths)  # existing files the command did not write
        ledger.write(path, text)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / LEDGER_FILE
        self._hashes: dict[str, set[str]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        for line in lines:
            try:
                rec = json.loads(line)
                self._hashes.setdefault(str(rec["path"]), set()).add(str(rec["sha256"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from a killed run

    def _key(self, path: Path) -> str:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))).as_posix()

    def inside(self, path: str | os.PathLike) -> bool:
        """Whether `path`, symlinks resolved, lies inside the output folder."""
        root = Path(self.root).resolve()
        target = Path(path).parent.resolve() / Path(path).name
        return target == root or root in target.parents

    def owns(self, path: str | os.PathLike) -> bool:
        """True when writing `path` loses nothing: it does not exist, or it holds what we wrote."""
        p = Path(path)
        if not os.path.lexists(p):
            return True
        if p.is_symlink() or not p.is_file():
            return False
        known = self._hashes.get(self._key(p))
        return bool(known) and sha256_of(p) in known

    def conflicts(self, paths) -> list[Path]:
        """The paths that lie outside the folder or would replace a file this ledger did not write."""
        return [Path(p) for p in paths if not self.inside(p) or not self.owns(p)]

    def write(self, path: str | os.PathLike, data: str | bytes) -> Path:
        path = Path(path)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        key = self._key(path)
        digest = hashlib.sha256(raw).hexdigest()
        path.parent.mkdir(parents=True, exist_ok=True)
        if digest not in self._hashes.get(key, set()):
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": key, "sha256": digest}) + "\n")
            self._hashes.setdefault(key, set()).add(digest)
        return atomic_write(path, raw)


@contextlib.contextmanager
def flocked(path: str | os.PathLike, on_wait=None) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if need be) for the block; another holder
    makes this one wait, after calling `on_wait()` once. The lock is the kernel's (flock), so a process
    killed with -9 releases it. Where there is no flock (Windows) the block runs unguarded."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
