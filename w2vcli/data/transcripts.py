"""Where transcripts come from, and which audio file each belongs to.

Three sources, in order of precedence:
- a table given with `--transcripts FILE`: TSV or CSV (`path<TAB>text`, or a header naming
  the columns, as Common Voice's `path`/`sentence`), or JSONL with `audio`/`text`;
- LibriSpeech-style `*.trans.txt` (`ID text` per line, ID the audio file's stem, same folder);
- a sidecar `NAME.txt` or `NAME.lab` beside `NAME.wav`.

A table's `path` may be absolute, relative to the table, or a bare name/id; bare names match
the audio file whose trailing path components (without suffix) are equal.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from w2vcli.errors import UsageError

NO_TRANSCRIPT, ORPHAN, NOT_UTF8, EMPTY_TEXT, UNREADABLE = (
    "no transcript",
    "transcript without audio",
    "transcript not utf-8",
    "empty transcript",
    "transcript unreadable",
)
TRANS_SUFFIX = ".trans.txt"
_PATH_COLUMNS = ("path", "audio", "file", "filename", "file_name", "wav", "audio_filepath")
_TEXT_COLUMNS = ("text", "sentence", "transcript", "transcription", "normalized_text")


@dataclass
class Transcript:
    text: str | None  # None when it cannot be used; `problem` says why
    source: str  # the file it came from (and line), for messages
    problem: str | None = None
    used: bool = False

    def __post_init__(self) -> None:
        if self.text is None and self.problem is None:
            self.problem = NOT_UTF8


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        return None


def _lines(path: Path) -> list[tuple[int, bytes]]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read transcripts {path}: {e.strerror or e}") from None
    return [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]


def read_trans_txt(path: Path) -> dict[str, Transcript]:
    """LibriSpeech `*.trans.txt`: `ID text` per line -> {ID: Transcript}."""
    entries = {}
    for n, line in _lines(path):
        key, _, text = line.partition(b" ")
        entries[key.decode("utf-8", "replace")] = Transcript(_decode(text), f"{path}:{n}")
    return entries


def read_table(path: str | os.PathLike) -> list[tuple[str, Transcript]]:
    """`--transcripts FILE`: [(path key, Transcript)] from JSONL, CSV or TSV (by suffix)."""
    path = Path(path)
    lines = _lines(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        return [_json_entry(path, n, raw) for n, raw in lines]
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    return _delimited(path, lines, delimiter)


def _json_entry(path: Path, n: int, raw: bytes) -> tuple[str, Transcript]:
    text = _decode(raw)
    try:
        d = json.loads(text) if text is not None else None
        key = next(str(d[c]) for c in _PATH_COLUMNS if c in d) if d is not None else None
    except (ValueError, TypeError, StopIteration):
        raise UsageError(f"{path}:{n}: expected a JSON object with 'audio' and 'text'") from None
    if d is None:
        raise UsageError(f"{path}:{n}: not UTF-8; re-encode the transcripts file")
    value = next((d[c] for c in _TEXT_COLUMNS if c in d), None)
    if value is None:
        raise UsageError(f"{path}:{n}: no 'text' field")
    return key, Transcript(str(value).strip(), f"{path}:{n}")


def _delimited(path: Path, lines, delimiter: str) -> list[tuple[str, Transcript]]:
    rows = []
    for n, raw in lines:
        text = raw.decode("utf-8", "surrogateescape").lstrip("\ufeff")
        fields = next(csv.reader(io.StringIO(text), delimiter=delimiter))
        rows.append((n, fields, _decode(raw) is not None))
    if not rows:
        return []
    path_col, text_col, header = 0, 1, {c.strip().lower(): i for i, c in enumerate(rows[0][1])}
    if any(c in header for c in _PATH_COLUMNS) and any(c in header for c in _TEXT_COLUMNS):
        path_col = next(header[c] for c in _PATH_COLUMNS if c in header)
        text_col = next(header[c] for c in _TEXT_COLUMNS if c in header)
        rows = rows[1:]
    entries = []
    for n, fields, ok in rows:
        if len(fields) <= max(path_col, text_col):
            raise UsageError(f"{path}:{n}: expected path{'<TAB>' if delimiter == chr(9) else ','}text")
        value = fields[text_col].strip() if ok else None
        entries.append((fields[path_col].strip(), Transcript(value, f"{path}:{n}")))
    return entries


def _stem_key(path: str) -> str:
    p = PurePosixPath(path.replace("\\", "/"))
    return str(p.with_suffix("")) if p.suffix else str(p)


class TranscriptIndex:
    """All transcripts found; `find(audio_path)` matches one and marks it used."""

    def __init__(self) -> None:
        self.by_path: dict[str, Transcript] = {}  # absolute path without suffix (tables)
        self.by_tail: dict[str, Transcript] = {}  # bare key without suffix (tables)
        self.beside: dict[tuple[Path, str], Transcript] = {}  # (folder, stem): trans.txt, sidecars
        self.sidecar_txt: dict[tuple[Path, str], Path] = {}

    def __len__(self) -> int:
        return len(self.by_path) + len(self.beside)

    def add_table(self, path: str | os.PathLike) -> None:
        base = Path(path).absolute().parent
        for key, t in read_table(path):
            key = _stem_key(key)
            self.by_path[str((base / key).resolve())] = t
            while key.startswith("./"):
                key = key[2:]
            self.by_tail[key] = t

    def add_text_files(self, paths: list[Path]) -> None:
        """`*.trans.txt` and sidecars found next to the audio; trans.txt wins over a sidecar."""
        for p in sorted(paths, key=lambda p: not p.name.endswith(TRANS_SUFFIX)):
            if p.name.endswith(TRANS_SUFFIX):
                for key, t in read_trans_txt(p).items():
                    self.beside[(p.parent, key)] = t
            elif (p.parent, p.stem) not in self.beside:
                try:
                    t = Transcript(_decode(p.read_bytes()), str(p))
                except OSError as e:
                    t = Transcript(None, str(p), problem=f"{UNREADABLE}: {e.strerror or e}")
                self.beside[(p.parent, p.stem)] = t
                if p.suffix == ".txt":
                    self.sidecar_txt[(p.parent, p.stem)] = p

    def find(self, audio: Path) -> Transcript | None:
        stem = audio.with_suffix("")
        t = self.by_path.get(str(stem)) or self.by_path.get(str(stem.resolve()))
        parts = stem.as_posix().split("/")
        for i in range(1, len(parts)):  # longest tail first: `spk1/a` wins over a bare `a`
            t = t or self.by_tail.get("/".join(parts[i:]))
        t = t or self.beside.get((audio.parent, audio.stem))
        if t is not None:
            t.used = True
        return t

    def orphans(self, audio_dirs: set[Path]) -> list[Transcript]:
        """Transcripts no audio file claimed. A `.txt` counts only in a folder that holds audio,
        so a README.txt elsewhere is not reported."""
        loose = {
            id(t) for key, t in self.beside.items() if key in self.sidecar_txt and key[0] not in audio_dirs
        }
        every = {id(t): t for t in (*self.by_path.values(), *self.by_tail.values(), *self.beside.values())}
        return [t for i, t in every.items() if not t.used and i not in loose]
