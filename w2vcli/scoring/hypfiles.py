"""Reading reference and hypothesis transcripts in the formats ASR people keep them in.

- jsonl: `prep` manifests (`id`, `audio`, `text`) and `transcribe` output (`audio`, `text`, maybe
  `id`, maybe `error`); a `.json` file may also hold one JSON array of such objects.
- tsv:   `id<TAB>text` (an `id<TAB>text` or `audio<TAB>text` header line is recognised).
- kaldi: `id text...` (Kaldi's `text` file).
- trn:   `text (id)` (sclite).
`auto` picks by extension (.jsonl .json .tsv .trn), else by content. `-` reads stdin.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import UsageError, W2VError

FORMATS = ("auto", "jsonl", "tsv", "kaldi", "trn")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".trn": "trn"}
_TRN_LINE = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$")
_HEADER_KEYS = {"id": "id", "audio": "audio", "path": "audio"}


@dataclass
class Entry:
    """One line of a transcript file. `id` or `audio` (or both) identify it; `error` marks a failed input."""

    id: str | None
    audio: str | None
    text: str | None
    line: int
    error: str | None = None

    @property
    def name(self) -> str:
        """How to call this utterance in messages and reports."""
        return self.id if self.id is not None else str(self.audio)


def read_entries(path: str, fmt: str = "auto") -> list[Entry]:
    """Read a transcript file (`-` for stdin); duplicate ids are an error that names them."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown transcript format {fmt!r}; use one of {', '.join(FORMATS)}")
    lines = _read_lines(path)
    if fmt == "auto":
        fmt = detect_format(path, lines)
    reader = {"jsonl": _read_json, "tsv": _read_tsv, "kaldi": _read_kaldi, "trn": _read_trn}[fmt]
    entries = reader(path, lines)
    _check_unique(path, entries)
    return entries


def detect_format(path: str, lines: list[str]) -> str:
    ext = _EXTENSIONS.get(Path(path).suffix.lower())
    if ext:
        return ext
    content = [ln for ln in lines if ln.strip()]
    if not content:
        return "kaldi"  # an empty file reads the same in every line format
    if content[0].lstrip().startswith(("{", "[")):
        return "jsonl"
    if all(_TRN_LINE.match(ln) for ln in content):
        return "trn"
    if all("\t" in ln for ln in content):
        return "tsv"
    return "kaldi"


def _read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return sys.stdin.read().removeprefix("\ufeff").splitlines()  # a BOM, as from Windows tools
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise W2VError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as e:
        raise W2VError(f"cannot read {path}: {e.strerror or e}") from None


def _read_json(path: str, lines: list[str]) -> list[Entry]:
    text = "\n".join(lines)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise W2VError(f"{path}: not valid JSON ({e})") from None
        numbered = list(enumerate(items if isinstance(items, list) else [items], 1))
    else:
        numbered = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    numbered.append((n, json.loads(line)))
                except ValueError as e:
                    raise W2VError(f"{path}:{n}: not a JSON line ({e})") from None
    return [_entry_from_json(path, n, d) for n, d in numbered]


def _entry_from_json(path: str, n: int, d) -> Entry:
    if not isinstance(d, dict) or ("id" not in d and "audio" not in d):
        raise W2VError(f"{path}:{n}: expected a JSON object with 'id' or 'audio' (and 'text')")
    audio = d.get("audio")
    if audio is not None and path != "-" and not os.path.isabs(audio):
        audio = str(Path(path).parent / audio)  # manifests store audio relative to themselves
    text = d.get("text")
    if text is not None and not isinstance(text, str):
        raise W2VError(f"{path}:{n}: 'text' must be a string, got {type(text).__name__}")
    error = d.get("error")
    return Entry(
        id=None if d.get("id") is None else str(d["id"]),
        audio=None if audio is None else str(audio),
        text=text,
        line=n,
        error=None if error in (None, "", False) else str(error),
    )


def _read_tsv(path: str, lines: list[str]) -> list[Entry]:
    entries, key = [], "id"
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, _, text = line.partition("\t")
        head = (name.strip().lower(), text.strip().lower())
        if not entries and n == _first_content(lines) and head[0] in _HEADER_KEYS and head[1] == "text":
            key = _HEADER_KEYS[head[0]]
            continue
        name = name.strip()
        if not name:
            raise W2VError(f"{path}:{n}: empty first column; expected 'id<TAB>text'")
        if key == "id":
            entries.append(Entry(id=name, audio=None, text=text, line=n))
        else:
            entries.append(Entry(id=None, audio=name, text=text, line=n))
    return entries


def _first_content(lines: list[str]) -> int:
    return next(n for n, ln in enumerate(lines, 1) if ln.strip())


def _read_kaldi(path: str, lines: list[str]) -> list[Entry]:
    entries = []
    for n, line in enumerate(lines, 1):
        parts = line.strip().split(maxsplit=1)
        if parts:
            entries.append(Entry(id=parts[0], audio=None, text=parts[1] if len(parts) > 1 else "", line=n))
    return entries


def _read_trn(path: str, lines: list[str]) -> list[Entry]:
    entries = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _TRN_LINE.match(line)
        if not m or not m.group(2).strip():
            raise W2VError(f"{path}:{n}: not an sclite trn line; expected 'text (id)'")
        entries.append(Entry(id=m.group(2).strip(), audio=None, text=m.group(1), line=n))
    return entries


def _check_unique(path: str, entries: list[Entry]) -> None:
    counts = Counter(e.id for e in entries if e.id is not None)
    dups = [i for i, c in counts.items() if c > 1]
    if dups:
        lines = [str(e.line) for e in entries if e.id == dups[0]]
        more = f" ({len(dups)} duplicated ids in all)" if len(dups) > 1 else ""
        raise W2VError(f"{path}: id {dups[0]!r} appears more than once (lines {', '.join(lines)}){more}")
