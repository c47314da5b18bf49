"""The cache of on-the-fly ONNX exports: on the CPU, `w2v transcribe` exports a model once and reuses it.

The folder, cache_dir() / "onnx", holds:

    <key>.onnx, <key>-int8.onnx   exports, named by cache_key (the model folder's files, int8, versions)
    .entries                      the ledger: the names of the exports this cache wrote, one a line
    .lock                         held (flock) while exporting, sweeping and evicting
    .<key>.onnx.<random>/         an export in progress, renamed into place whole when done

Contract. Eviction deletes only files that the ledger names and whose names are keys, so a user's
own files in the folder are never touched; it keeps the CACHE_ENTRIES most recently used exports (a
use touches the file's modification time). An entry that cannot be opened (truncated, empty,
unreadable) is discarded and exported again. A second process that needs an export another one is
making waits on the lock and reuses it. Temporary folders of a killed export are swept by the next
export. A folder that cannot be written raises CacheUnwritable, so the `auto` engine can run on
PyTorch instead; a read-only cache that already holds the export works as it is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch

from w2vcli import __version__
from w2vcli.checkpoints import onnx as w2v_onnx
from w2vcli.errors import W2VError
from w2vcli.fsutil import atomic_write, flocked

CACHE_ENTRIES = 4  # exports kept (a base model is ~380 MB in fp32, ~100 MB in int8)
LEDGER_FILE, LOCK_FILE = ".entries", ".lock"
_ENTRY = re.compile(r"^[0-9a-f]{32}(-int8)?\.onnx$")
_PARTIAL = re.compile(r"^\.[0-9a-f]{32}(-int8)?\.onnx\..+")  # export()'s temporary folder for an entry


class CacheUnwritable(W2VError):
    """The cache folder cannot take a new export (read-only, no permission, disk full)."""

    def __init__(self, root: Path, reason: str, full: bool = False) -> None:
        self.root, self.reason = root, reason
        way_out = "set W2V_CACHE to a writable folder" + (" on another disk" if full else "")
        super().__init__(f"cannot write the ONNX cache {root} ({reason}); {way_out} or use --engine torch")


def cache_dir() -> Path:
    """Where on-the-fly exports are kept: $W2V_CACHE, else $XDG_CACHE_HOME/w2vcli, else ~/.cache/w2vcli."""
    if os.environ.get("W2V_CACHE"):
        return Path(os.environ["W2V_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "w2vcli"


def cache_key(directory: Path, int8: bool) -> str:
    """A key for the export of the model in `directory` as its files are now: their names, sizes and
    modification times (a file changed or replaced is a new key), with int8 and the versions that
    export. Only the files' metadata is read, so a cached model starts without loading its weights."""
    directory = Path(directory).resolve()
    h = hashlib.sha256()
    h.update(json.dumps([str(directory), int8, __version__, torch.__version__]).encode())
    for f in sorted(p for p in directory.iterdir() if p.is_file()):
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _readable(path: Path) -> Path:
    w2v_onnx.read_meta(path)
    return path


def cached_path(directory: Path, int8: bool) -> Path:
    """Where the cache keeps (or would keep) the export of the model in `directory`."""
    return cache_dir() / "onnx" / f"{cache_key(directory, int8)}{'-int8' if int8 else ''}.onnx"


def cached_export(directory: Path, int8: bool, announce=None, open_entry=_readable):
    """`open_entry(path)` of the ONNX file of the CTC model in `directory`, exported into the cache first
    when it is missing or cannot be opened (`announce(msg)` is told: exporting takes seconds for
    tiny, about half a minute for base). `open_entry` raises W2VError for a file it cannot use."""
    say = announce or (lambda message: None)
    path = cached_path(directory, int8)
    root = path.parent
    if _is_file(path):
        try:
            opened = open_entry(path)
        except W2VError:
            say(f"the cached ONNX export {path.name} is damaged; exporting it again")
        else:
            _touch(path)
            return opened
    waiting = "waiting for another w2v process to finish its ONNX export"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with flocked(root / LOCK_FILE, on_wait=lambda: say(waiting)):
            return _export_locked(Path(directory), int8, path, open_entry, say)
    except Exception as e:
        if not _disk_full(e) and not (isinstance(e, OSError) and _inside(e.filename, root)):
            raise
        full = _disk_full(e)
        reason = "no space left on the device" if full else (getattr(e, "strerror", None) or str(e))
        raise CacheUnwritable(root, reason, full) from None


def _export_locked(directory: Path, int8: bool, path: Path, open_entry, say):
    """The export at `path`, made unless another process made it while this one waited (lock held)."""
    root = path.parent
    if path.is_file():
        try:
            opened = open_entry(path)
        except W2VError:
            path.unlink()
        else:
            _touch(path)
            return opened
    from w2vcli.checkpoints.resolve import load_ctc

    sweep(root)
    ckpt, vocab = load_ctc(directory)
    say(f"exporting the model to ONNX{' (int8)' if int8 else ''}, once: cached in {root}")
    with open(root / LEDGER_FILE, "a", encoding="utf-8") as f:  # before the file exists: never unowned
        f.write(path.name + "\n")
    w2v_onnx.export(ckpt.model, ckpt.config, vocab, path, int8=int8)
    evict(root)
    return open_entry(path)


def ledger(root: Path) -> list[str]:
    """The names of the exports this cache wrote into `root` (present or not), oldest line first."""
    try:
        lines = (root / LEDGER_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [n for n in dict.fromkeys(line.strip() for line in lines) if _ENTRY.match(n)]


def evict(root: Path, keep: int = CACHE_ENTRIES) -> list[Path]:
    """Delete the exports beyond the `keep` most recently used, of those the ledger names; rewrite the
    ledger to the ones kept. Anything else in the folder is not the cache's. Call with the lock held."""
    entries = [root / n for n in ledger(root) if (root / n).is_file() and not (root / n).is_symlink()]
    entries.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)  # newest first
    kept, gone = entries[:keep], entries[keep:]
    for p in gone:
        p.unlink(missing_ok=True)
    atomic_write(root / LEDGER_FILE, "".join(p.name + "\n" for p in kept))
    return gone


def sweep(root: Path) -> list[Path]:
    """Delete the temporary folders of exports killed before their rename. An export holds the lock for
    as long as its folder exists, so with the lock held every such folder is stale."""
    stale = [p for p in root.iterdir() if _PARTIAL.match(p.name)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(
            missing_ok=True
        )
    return stale


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a cache folder this user may not read: as good as empty
        return False


def _touch(path: Path) -> None:
    """Mark an entry used (eviction keeps the most recently used); in a read-only cache it stays as is."""
    try:
        os.utime(path)
    except OSError:
        pass


def _inside(filename, root: Path) -> bool:
    """Whether an OSError's file is the cache folder, in it or above it (None: a write's OSError)."""
    if filename is None:
        return True
    root, name = os.path.abspath(root), os.path.abspath(os.fsdecode(filename))
    return os.path.commonpath([name, root]) in (root, name)


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)
