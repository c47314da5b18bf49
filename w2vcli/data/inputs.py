"""Finding the inputs of `w2v prep`: audio files and transcript files under the given sources.

Each audio file gets `rel`, its place in the output mirror (posix, no suffix): a directory
source keeps its own name (`corpus/spk1/a`), so outputs and splits stay stable when more
sources are added later; a file source is placed by its path relative to the working
directory (or its absolute path when outside it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from w2vcli.errors import UsageError

AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .aif .aiff .aifc .au .snd .caf .w64 .rf64 .sph .nist .voc".split()
)
TEXT_SUFFIXES = frozenset({".txt", ".lab"})

# The first bytes of audio files: stdin that starts so holds audio, not a list of paths.
AUDIO_MAGIC = {
    b"RIFF": "WAV audio",
    b"RIFX": "WAV audio",
    b"RF64": "WAV audio",
    b"fLaC": "FLAC audio",
    b"OggS": "Ogg audio",
    b"ID3": "MP3 audio",
    b"\xff\xfb": "MP3 audio",
    b"\xff\xf3": "MP3 audio",
    b"FORM": "AIFF audio",
    b".snd": "AU audio",
    b"caff": "CAF audio",
}
PATH_LIST_PROBE = 65536  # bytes of stdin looked at

BAD_NAME, DUPLICATE = "non-utf-8 file name", "duplicate name"
MISSING, UNREADABLE_DIR = "missing", "unreadable folder"


@dataclass(frozen=True)
class AudioInput:
    path: Path  # absolute
    rel: str  # mirror path inside the output directory, posix, without suffix


@dataclass
class Scan:
    audio: list[AudioInput] = field(default_factory=list)
    text_files: list[Path] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (shown path, reason, detail)
    audio_dirs: set[Path] = field(default_factory=set)


def shown(path: str | os.PathLike) -> str:
    """A path as a user can read it, even when its bytes are not UTF-8 (escaped as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(path: str | os.PathLike) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.fsdecode turned undecodable bytes into lone surrogates
        return False


def _walk(root: Path, skip: Path | None, unreadable: list | None = None):
    """Files under `root`, following symlinks without looping; hidden files (`.x`, macOS `._x`) skipped.
    Folders that cannot be listed are appended to `unreadable` as (path, reason)."""
    seen = set()

    def failed(e: OSError) -> None:
        if unreadable is not None:
            unreadable.append((e.filename or str(root), e.strerror or str(e)))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=failed):
        here = Path(dirpath)
        real = here.resolve()
        if real in seen or (skip is not None and real == skip):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def _rel_of_file(path: Path) -> PurePosixPath:
    """A file's place in an output mirror: its path below the working directory, else its absolute
    path without the root (`/data/a.wav` -> `data/a`). `..` is resolved first, so the result never
    climbs out of the output folder."""
    path = Path(os.path.abspath(path))
    try:
        return PurePosixPath(path.relative_to(Path.cwd()).as_posix())
    except ValueError:
        return PurePosixPath(path.as_posix().lstrip("/"))


def scan(
    sources: list[str | os.PathLike], skip_dir: str | os.PathLike | None = None, listed=frozenset()
) -> Scan:
    """Audio (by suffix) and .txt/.lab files under directory sources, plus file sources as audio.

    `skip_dir` (the output directory) is never entered. A missing source raises UsageError, unless it
    is one of `listed` (paths read from stdin): that one is rejected like a bad file and the rest go on.
    """
    result, by_rel = Scan(), {}
    skip = Path(skip_dir).resolve() if skip_dir is not None else None
    unreadable: list[tuple[str, str]] = []
    for source in sources:
        src = Path(source)
        if not src.exists():
            if source in listed:
                result.rejected.append((shown(src), MISSING, "listed on stdin, but no such file"))
                continue
            raise UsageError(f"no such file or directory: {shown(src)}")
        if src.is_dir():
            root = src.resolve()
            found = (
                (p, PurePosixPath(root.name) / p.relative_to(root).as_posix())
                for p in _walk(root, skip, unreadable)
            )
        else:
            path = src.absolute()
            found = [(path, _rel_of_file(path))]
        for path, rel in found:
            _add(result, by_rel, path, rel, explicit=not src.is_dir())
    result.rejected += [(shown(p), UNREADABLE_DIR, f"{shown(p)}: {why}") for p, why in unreadable]
    result.audio.sort(key=lambda a: a.rel)
    return result


def _add(result: Scan, by_rel: dict, path: Path, rel: PurePosixPath, explicit: bool) -> None:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES and not explicit:
        result.text_files.append(path)
        return
    if suffix not in AUDIO_SUFFIXES and not explicit:
        return
    if not _utf8(path):
        result.rejected.append((shown(path), BAD_NAME, "rename it to valid UTF-8 (e.g. with convmv)"))
        return
    key = str(rel.with_suffix(""))
    other = by_rel.get(key)
    if other is not None:
        if other != path:
            result.rejected.append((str(path), DUPLICATE, f"same output name as {other}; rename one"))
        return
    by_rel[key] = path
    result.audio.append(AudioInput(path, key))
    result.audio_dirs.add(path.parent)


def binary_kind(head: bytes) -> str | None:
    """What the start of a would-be list of paths holds when it is not text: "WAV audio", "FLAC
    audio", ..., or "binary data" (a NUL byte, which no path has, or control bytes in more than 1% of
    it, as raw PCM has); None for text. Paths that are not UTF-8 (Latin-1 names) are still text."""
    head = head[:PATH_LIST_PROBE]
    for magic, kind in AUDIO_MAGIC.items():
        if head.startswith(magic):
            return kind
    controls = sum(1 for b in head if b < 0x20 and b not in b"\t\n\r" or b == 0x7F)
    if b"\0" in head or controls > len(head) // 100:
        return "binary data"
    return None


def check_path_list(data: bytes, command: str) -> bytes:
    """`-` reads paths from stdin, one a line: audio piped in instead (`cat a.wav | w2v transcribe -`)
    is refused in one line rather than read as hundreds of paths. Returns `data`."""
    kind = binary_kind(data)
    if kind is not None:
        raise UsageError(
            f"stdin holds {kind}, not a list of paths (- reads file names, one a line): pass the audio "
            f"file's name instead of -, or pipe in names (ls *.wav | w2v {command} -)"
        )
    return data
