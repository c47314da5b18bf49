"""What `w2v transcribe` reads: AUDIO arguments expanded into a list of files, each with its output name.

An argument is an audio file, a directory (searched recursively for audio suffixes), a `prep`
manifest (`.jsonl`: its `audio` entries, with their ids), or `-` (paths on stdin, one per line).
`rel` places a file's outputs inside `--output-dir`, mirroring its path, so two inputs with the same
name never share an output file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from w2vcli.data.inputs import AUDIO_SUFFIXES, _rel_of_file, _walk, shown
from w2vcli.data.manifest import read_manifest
from w2vcli.errors import UsageError


@dataclass(frozen=True)
class Item:
    path: Path  # what is opened
    audio: str  # the path as the user named it (JSON `audio` field)
    rel: str  # output name inside --output-dir: posix, no suffix
    id: str | None = None  # the manifest id, when the file came from a manifest


def expand(args: list[str], stdin_lines=(), skip_dir: str | os.PathLike | None = None) -> list[Item]:
    """Files to transcribe, in argument order; a file named twice is transcribed once.

    A path that does not exist is kept (it fails later as that input's error, so the rest continues),
    except a directory or manifest argument the user typed, which is a usage error.
    """
    found: list[tuple[Path, str, PurePosixPath, str | None]] = []
    skip = Path(skip_dir).resolve() if skip_dir is not None else None
    for arg in args:
        if arg == "-":
            found += [_file(line.rstrip("\r\n")) for line in stdin_lines if line.strip()]
            continue
        p = Path(arg)
        if p.is_dir():
            root = p.resolve()
            found += [
                (
                    f,
                    shown(p / f.relative_to(root)),
                    PurePosixPath(root.name) / f.relative_to(root).as_posix(),
                    None,
                )
                for f in _walk(root, skip)
                if f.suffix.lower() in AUDIO_SUFFIXES
            ]
        elif p.suffix.lower() == ".jsonl":
            if not p.is_file():
                raise UsageError(f"no such manifest: {shown(p)}")
            found += [_from_manifest(p, u) for u in read_manifest(p)]
        else:
            found.append(_file(arg))
    return _unique(found)


def _file(arg: str) -> tuple[Path, str, PurePosixPath, None]:
    path = Path(arg)
    return path, shown(arg), _rel_of_file(path.absolute()), None


def _from_manifest(manifest: Path, utt) -> tuple[Path, str, PurePosixPath, str]:
    path = Path(utt.audio)
    try:
        rel = PurePosixPath(path.resolve().relative_to(manifest.parent.resolve()).as_posix())
    except ValueError:
        rel = _rel_of_file(path.absolute())
    return path, utt.audio, rel, utt.id


def _unique(found) -> list[Item]:
    items, seen, taken = [], set(), set()
    for path, audio, rel, id_ in found:
        key = os.path.abspath(path)
        if key in seen:
            continue
        seen.add(key)
        name = str(rel.with_suffix("")) if rel.suffix else str(rel)
        if name in taken:  # a.wav and a.flac side by side: keep the suffix in the name
            name = str(rel)
        base, n = name, 2
        while name in taken:
            name, n = f"{base}~{n}", n + 1
        taken.add(name)
        items.append(Item(path, audio, name, id_))
    return items
