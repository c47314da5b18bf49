"""Corpora in the layouts of the big toolkits and releases, read as they are for `w2v prep`.

Each reader turns one source (a folder, or a manifest file) into `Recording`s, each holding the
utterances the layout defines in it, plus what it skipped and why (rows for `rejected.jsonl`):

- `kaldi`: a data directory (`wav.scp`, `text`, `segments`, `utt2spk`/`spk2utt`); layouts_kaldi.py
- `commonvoice`: a Common Voice release (`train/dev/test.tsv` or `validated.tsv`, `clips/*.mp3`)
- `nemo`: NeMo JSON-lines manifests (`audio_filepath`, `duration`, `text`, optional `offset`)
- `hf`: a Hugging Face dataset on disk (`save_to_disk` folder or Parquet files); layouts_hf.py
- `mls`: Multilingual LibriSpeech (`transcripts.txt` + `audio/SPEAKER/BOOK/ID.flac`)

An utterance's `name` is its place in prep's output mirror and its manifest id:
`SOURCE/SPEAKER/ID` when the layout knows speakers (so `w2v score --by '^[^/]+/([^/]+)/'` groups
by speaker), else `SOURCE/ID`. Texts are returned raw; prep normalises and checks them.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from w2vcli.errors import UsageError

LAYOUTS = ("kaldi", "commonvoice", "nemo", "hf", "mls")
MISSING_AUDIO, MALFORMED, DUPLICATE_ID, VOTED_DOWN = (
    "missing audio",
    "malformed line",
    "duplicate id",
    "voted down",
)
SPLIT_NAMES = {"train": "train", "dev": "valid", "valid": "valid", "validation": "valid", "test": "test"}
CV_SPLIT_FILES = {"train.tsv": "train", "dev.tsv": "valid", "test.tsv": "test"}
CV_ALL_FILE = "validated.tsv"


@dataclass(frozen=True)
class LayoutUtterance:
    name: str  # output mirror path (posix, no suffix) and manifest id
    text: str | None  # raw transcript; None when the layout has none for it
    speaker: str | None = None
    start: float = 0.0  # seconds into the recording
    end: float | None = None  # None: to the recording's end
    split: str | None = None  # the release's own split: train, valid, test


@dataclass
class Recording:
    source: str  # absolute audio path, or the command line of a Kaldi `cmd |` entry
    key: str  # the recording's place in the mirror (groups its utterances for file-level splits)
    utterances: list[LayoutUtterance] = field(default_factory=list)
    command: tuple[str, ...] = ()  # argv that writes the audio to stdout (Kaldi pipes, when allowed)


@dataclass
class LayoutData:
    layout: str
    recordings: list[Recording] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"path", "reason", "detail"}
    notes: list[str] = field(default_factory=list)  # what the summary should say about the reading
    listed: int = 0  # utterances (or rows) the layout lists, read or skipped

    def reject(self, path, reason: str, detail: str) -> None:
        self.rejected.append({"path": str(path), "reason": reason, "detail": detail})


def part(name: str) -> str:
    """One path component of a mirror name: separators and a leading dot cannot climb or hide."""
    name = name.replace("/", "_").replace("\\", "_").strip()
    return "_" + name if not name or name.startswith(".") else name


def utterance_name(source: Path, uid: str, speaker: str | None) -> str:
    parts = [part(source.name)] + ([part(speaker)] if speaker else []) + [part(uid)]
    return "/".join(parts)


def detect(path: Path) -> str | None:
    """The layout a source is in, from its files; None for a plain folder or audio file."""
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return "hf"
        return "nemo" if path.suffix.lower() in (".json", ".jsonl") and _is_nemo(path) else None
    if not path.is_dir():
        return None
    if (path / "wav.scp").is_file():
        return "kaldi"
    if (path / "clips").is_dir() and any((path / f).is_file() for f in (*CV_SPLIT_FILES, CV_ALL_FILE)):
        return "commonvoice"
    if _mls_parts(path):
        return "mls"
    hf_files = ("dataset_info.json", "state.json", "dataset_dict.json")
    parquet = ("*.parquet", "*/*.parquet", "data/*/*.parquet")  # not deeper: detection stays cheap
    if any((path / f).is_file() for f in hf_files) or any(next(path.glob(g), None) for g in parquet):
        return "hf"
    return "nemo" if _nemo_files(path) else None


def read(layout: str, path: Path, run_commands: bool, stage_dir: Path) -> LayoutData:
    """Read one source as `layout`; raises UsageError when it lacks the layout's files."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of auto, plain, {', '.join(LAYOUTS)}; not {layout!r}")
    data = LayoutData(layout)
    try:
        if layout == "kaldi":
            from w2vcli.data.layouts_kaldi import read_kaldi

            read_kaldi(path, run_commands, data)
        elif layout == "hf":
            from w2vcli.data.layouts_hf import read_hf

            read_hf(path, stage_dir, data)
        else:
            {"commonvoice": read_commonvoice, "nemo": read_nemo, "mls": read_mls}[layout](path, data)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: a {layout} listing is not UTF-8 ({e.reason}); re-encode it") from None
    except OSError as e:
        raise UsageError(f"cannot read {e.filename or path}: {e.strerror or e}") from None
    return data


def _is_nemo(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        return "audio_filepath" in json.loads(first)
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return False


def _nemo_files(folder: Path) -> list[Path]:
    return sorted(p for p in (*folder.glob("*.json"), *folder.glob("*.jsonl")) if _is_nemo(p))


def _mls_parts(root: Path) -> list[tuple[Path, str | None]]:
    """MLS: `transcripts.txt` + `audio/` in the folder itself, or in its train/dev/test folders."""
    if (root / "transcripts.txt").is_file() and (root / "audio").is_dir():
        return [(root, SPLIT_NAMES.get(root.name))]
    return [
        (root / s, SPLIT_NAMES[s])
        for s in ("train", "dev", "test")
        if (root / s / "transcripts.txt").is_file() and (root / s / "audio").is_dir()
    ]


def _missing(path: Path, what: str) -> UsageError:
    return UsageError(f"{path} is not a {what}; check the path or pass --layout auto")


def read_mls(root: Path, data: LayoutData) -> None:
    """`ID<TAB>text` lines, ID = SPEAKER_BOOK_SEGMENT, audio at audio/SPEAKER/BOOK/ID.flac (or .opus,
    as the Opus release has). A train/dev/test folder keeps its split."""
    parts = _mls_parts(root)
    if not parts:
        raise _missing(root, "Multilingual LibriSpeech folder (transcripts.txt + audio/)")
    for folder, split in parts:
        listing = folder / "transcripts.txt"
        for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            data.listed += 1
            uid, tab, text = line.partition("\t")
            pieces = uid.split("_")
            if not tab or len(pieces) != 3:
                data.reject(f"{listing}:{n}", MALFORMED, f"{listing}:{n}: expected SPEAKER_BOOK_ID<TAB>text")
                continue
            base = folder / "audio" / pieces[0] / pieces[1] / uid
            audio = next(
                (p for p in (base.with_suffix(".flac"), base.with_suffix(".opus")) if p.is_file()), None
            )
            if audio is None:
                data.reject(
                    base.with_suffix(".flac"), MISSING_AUDIO, f"{listing}:{n}: {uid} has no audio file"
                )
                continue
            name = utterance_name(root, uid, pieces[0])
            utt = LayoutUtterance(name, text.strip(), pieces[0], split=split)
            data.recordings.append(Recording(str(audio.absolute()), name, [utt]))


def read_commonvoice(root: Path, data: LayoutData) -> None:
    """The release's own splits when it has them (train.tsv -> train, dev.tsv -> valid, test.tsv ->
    test), else all of validated.tsv. `sentence` is the text, `client_id` the speaker. Votes: a clip
    is kept when up_votes > down_votes, Common Voice's own rule for "validated" (every clip of these
    files passes it; a row that does not is rejected as voted down); invalidated.tsv and other.tsv
    are never read. Clips of validated.tsv outside the release's splits are not used (the splits are
    speaker- and sentence-disjoint; adding them to train would break that): the summary counts them."""
    files = [(root / f, s) for f, s in CV_SPLIT_FILES.items() if (root / f).is_file()]
    if not files and (root / CV_ALL_FILE).is_file():
        files = [(root / CV_ALL_FILE, None)]
    if not files or not (root / "clips").is_dir():
        raise _missing(root, "Common Voice release (clips/ and train/dev/test.tsv or validated.tsv)")
    seen: set[str] = set()
    for path, split in files:
        for n, row in _tsv_rows(path):
            data.listed += 1
            clip = row.get("path") or ""
            if not clip or "client_id" not in row or "sentence" not in row:
                data.reject(f"{path}:{n}", MALFORMED, f"{path}:{n}: needs client_id, path and sentence")
                continue
            if clip in seen:
                data.reject(f"{path}:{n}", DUPLICATE_ID, f"{path}:{n}: {clip} is listed twice")
                continue
            seen.add(clip)
            up, down = _int(row.get("up_votes")), _int(row.get("down_votes"))
            if up is not None and down is not None and up <= down:
                data.reject(root / "clips" / clip, VOTED_DOWN, f"{path}:{n}: {up} up, {down} down votes")
                continue
            audio = root / "clips" / clip
            if not audio.is_file():
                data.reject(audio, MISSING_AUDIO, f"{path}:{n}: no file clips/{clip}")
                continue
            name = utterance_name(root, PurePosixPath(clip).stem, row["client_id"] or None)
            utt = LayoutUtterance(name, row["sentence"], row["client_id"] or None, split=split)
            data.recordings.append(Recording(str(audio.absolute()), name, [utt]))
    if files[0][1] is not None and (root / CV_ALL_FILE).is_file():
        unused = sum(1 for _, row in _tsv_rows(root / CV_ALL_FILE) if row.get("path") not in seen)
        if unused:
            data.notes.append(
                f"{root.name}: {unused} clips of {CV_ALL_FILE} are in none of train/dev/test.tsv; "
                "not used, to keep the release's speaker-disjoint splits"
            )


def _tsv_rows(path: Path):
    """Common Voice's TSVs are unquoted: a `"` in a sentence is a character, not a quote."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        yield from enumerate(reader, 2)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_nemo(source: Path, data: LayoutData) -> None:
    """Each line reads `duration` seconds of `audio_filepath` from `offset` (0 when absent), as NeMo's
    loader does; all lines on one file become one recording, decoded once. A relative
    `audio_filepath` is looked up beside the manifest, then in the working directory."""
    manifests = [source] if source.is_file() else _nemo_files(source)
    if not manifests:
        raise _missing(source, "NeMo manifest (JSON lines with audio_filepath)")
    by_audio: dict[Path, list[tuple[float, float | None, str | None]]] = {}
    for manifest in manifests:
        for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            data.listed += 1
            try:
                d = json.loads(line)
                offset = float(d.get("offset") or 0.0)
                duration = None if d.get("duration") is None else float(d["duration"])
                audio = _nemo_audio(manifest, str(d["audio_filepath"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                data.reject(
                    f"{manifest}:{n}", MALFORMED, f"{manifest}:{n}: needs audio_filepath (and numbers)"
                )
                continue
            if audio is None:
                data.reject(d["audio_filepath"], MISSING_AUDIO, f"{manifest}:{n}: no such file")
                continue
            end = None if duration is None else offset + duration
            by_audio.setdefault(audio, []).append((offset, end, d.get("text")))
    root = source if source.is_dir() else source.parent
    for audio, lines in by_audio.items():
        key = _mirror_key(source, root, audio)
        utts = []
        for start, end, text in lines:
            # several lines on one file (or an offset) need distinct names: the start in milliseconds
            name = key if len(lines) == 1 and start == 0 else f"{key}-{round(start * 1000):08d}"
            utts.append(LayoutUtterance(name, None if text is None else str(text), start=start, end=end))
        data.recordings.append(Recording(str(audio), key, utts))


def _nemo_audio(manifest: Path, audio: str) -> Path | None:
    p = Path(audio)
    for candidate in (p,) if p.is_absolute() else (manifest.parent / p, p):
        if candidate.is_file():
            return Path(os.path.abspath(candidate))
    return None


def _mirror_key(source: Path, root: Path, audio: Path) -> str:
    """`SOURCE/relative/path` of an audio file below the manifest's folder, else its absolute path."""
    try:
        rel = audio.relative_to(Path(os.path.abspath(root))).with_suffix("")
    except ValueError:
        rel = Path(*audio.with_suffix("").parts[1:])
    return "/".join([part(source.stem if source.is_file() else source.name), *map(part, rel.parts)])
