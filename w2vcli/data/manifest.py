"""Manifests: one JSON object per utterance per line (`train.jsonl`, `valid.jsonl`, ...).

Fields: `id`, `audio` (path relative to the manifest's directory, or absolute), `duration`
(seconds), and `text` when the transcript is known. Unknown fields are kept in `extra`.

`read_manifest` gives a list of utterances; `ManifestIndex` is what training reads: the same lines,
kept on disk and parsed when used.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from w2vcli.errors import W2VError
from w2vcli.fsutil import atomic_open


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float
    text: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"id": self.id, "audio": self.audio, "duration": round(self.duration, 4)}
        if self.text is not None:
            d["text"] = self.text
        d.update(self.extra)
        return d


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSONL manifest; `audio` paths are resolved against the manifest's directory."""
    path = Path(path)
    base = path.parent
    utts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise W2VError(f"cannot read manifest {path}: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if line.strip():
            utts.append(_utterance(line, base, path, n))
    return utts


def _utterance(line: str | bytes, base: Path, path: Path, n: int) -> Utterance:
    try:
        d = json.loads(line)
        audio = d.pop("audio")
        return Utterance(
            id=str(d.pop("id", audio)),
            audio=str(base / audio),
            duration=float(d.pop("duration", 0.0)),
            text=d.pop("text", None),
            extra=d,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise W2VError(f"{path}:{n}: not a manifest line ({e}); expected JSON with 'audio'") from None


class ManifestIndex(Sequence[Utterance]):
    """A manifest that stays on disk: one pass over the file keeps each line's byte offset, length,
    line number, duration and whether it has a transcript (25 bytes a line, numpy arrays), and
    `index[i]` reads and parses line i when the loader needs it.

    Why not a list of `Utterance`: a training rank needs every duration (all ranks build the same
    length-bucketed batches) but only its own share of the lines, and a list costs ~1 kB per line per
    rank (1 GB for a million lines, on every rank, again in each DataLoader worker as reference counts
    touch the objects' pages after the fork). Arrays are shared by forked workers as they are."""

    def __init__(self, path: str | os.PathLike, _arrays: tuple[np.ndarray, ...] | None = None) -> None:
        self.path = Path(path)
        self.base = self.path.parent
        if _arrays is None:
            _arrays = _scan(self.path)
        self.offsets, self.sizes, self.lines, self.durations, self.texted = _arrays
        self._fd: int | None = None
        self._pid = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"utterance {i} of {len(self)}")
        if self._fd is None or self._pid != os.getpid():  # a DataLoader worker opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        raw = os.pread(self._fd, int(self.sizes[i]), int(self.offsets[i]))
        return _utterance(raw, self.base, self.path, int(self.lines[i]))

    def subset(self, rows: np.ndarray) -> ManifestIndex:
        """The utterances at `rows` (indices or a boolean mask), in that order."""
        arrays = (self.offsets, self.sizes, self.lines, self.durations, self.texted)
        return ManifestIndex(self.path, tuple(a[rows] for a in arrays))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def _scan(path: Path) -> tuple[np.ndarray, ...]:
    """Offsets, sizes, line numbers, durations and has-a-transcript flags of a manifest's lines,
    each line checked as `read_manifest` checks it."""
    offsets, sizes, numbers, durations, texted = array("q"), array("i"), array("i"), array("d"), array("b")
    offset = 0
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        d = json.loads(line)
                        d["audio"]  # noqa: B018 (a line without audio is not a manifest line)
                        duration = float(d.get("duration", 0.0))
                        text = d.get("text")
                    except (ValueError, KeyError, TypeError, AttributeError) as e:
                        raise W2VError(
                            f"{path}:{n}: not a manifest line ({e}); expected JSON with 'audio'"
                        ) from None
                    offsets.append(offset)
                    sizes.append(len(line))
                    numbers.append(n)
                    durations.append(duration)
                    texted.append(isinstance(text, str) and bool(text.strip()))
                offset += len(line)
    except OSError as e:
        raise W2VError(f"cannot read manifest {path}: {e.strerror or e}") from None
    return (
        np.frombuffer(offsets, np.int64),
        np.frombuffer(sizes, np.int32),
        np.frombuffer(numbers, np.int32),
        np.frombuffer(durations, np.float64),
        np.frombuffer(texted, np.int8).astype(bool),
    )


def write_manifest(path: str | os.PathLike, utts: list[Utterance]) -> None:
    """Write atomically (temporary name, then rename); `audio` is written relative to the manifest."""
    path = Path(path)
    with atomic_open(path, sync=True) as f:
        for u in utts:
            d = u.to_json()
            audio = Path(u.audio)
            if audio.is_absolute():
                try:
                    d["audio"] = str(audio.relative_to(path.parent.resolve()))
                except ValueError:
                    pass
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
