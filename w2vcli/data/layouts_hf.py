"""Hugging Face datasets on disk: a `save_to_disk` folder or Parquet files, read with pyarrow alone.

Why pyarrow and not `datasets`: both formats are plain Arrow (IPC streams `data-*.arrow` listed
in `state.json`, or Parquet), and the `Audio` feature is just a struct column {bytes, path}.
pyarrow reads them batch by batch from a memory map (one dependency, about 40 MB);
`datasets` brings pandas, fsspec, multiprocess and more, and would decode audio we only need
to copy. Install with `pip install 'w2vcli[hf]'`.

- A `save_to_disk` Dataset: `state.json` (its `_data_files`) + `dataset_info.json`; a DatasetDict:
  `dataset_dict.json` and one such folder per split. Parquet: every `*.parquet` below the folder
  (or the file given); the split is the file name's first word or its folder (`train-0000-of-0002`,
  `data/test/0.parquet`) when that is train, dev, valid(ation) or test.
- Columns: the audio column is `audio` (or any struct with `bytes` and `path`); the text is the
  first of text, sentence, transcript, transcription, normalized_text; the speaker the first of
  speaker_id, speaker, client_id; the id the first of id, audio_id, segment_id, else the audio's
  file name, else the row number.
- Audio bytes are written once into prep's `.sources/` folder (rewritten only when they change,
  so a re-run stays incremental); rows that only carry a `path` read that file.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from w2vcli.data.layouts import (
    MISSING_AUDIO,
    SPLIT_NAMES,
    LayoutData,
    LayoutUtterance,
    Recording,
    part,
    utterance_name,
)
from w2vcli.data.transcripts import _TEXT_COLUMNS
from w2vcli.errors import UsageError

_SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
_ID_COLUMNS = ("id", "audio_id", "segment_id")
_MAGIC = {b"RIFF": ".wav", b"fLaC": ".flac", b"OggS": ".ogg", b"ID3": ".mp3", b"\xff\xfb": ".mp3"}
UNREADABLE_TABLE = "unreadable table"
BATCH_ROWS = 256  # rows decoded at a time: memory stays bounded by a batch of audio


def _pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise UsageError("reading Hugging Face datasets needs pyarrow: pip install 'w2vcli[hf]'") from None
    return pyarrow


def _tables(root: Path) -> list[tuple[Path, str | None]]:
    """(arrow or parquet file, split) in order."""
    if root.is_file():
        return [(root, _split_of(root))]
    if (root / "dataset_dict.json").is_file():
        splits = _json(root / "dataset_dict.json", "splits")["splits"]
        return [t for s in splits for t in _arrow_files(root / s, SPLIT_NAMES.get(s.lower(), s))]
    if (root / "state.json").is_file():
        return _arrow_files(root, None)
    return [(p, _split_of(p)) for p in sorted(root.glob("**/*.parquet"))]


def _arrow_files(folder: Path, split: str | None) -> list[tuple[Path, str | None]]:
    state = _json(folder / "state.json", "_data_files")
    split = split or SPLIT_NAMES.get(str(state.get("_split") or "").lower())
    return [(folder / f["filename"], split) for f in state["_data_files"]]


def _json(path: Path, required: str) -> dict:
    """A dataset's JSON file; UsageError when it lacks `required` (not what `datasets` writes)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        d[required]
        return d
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path}: no {required!r}; is this a folder written by save_to_disk?") from None


def _split_of(path: Path) -> str | None:
    for word in (path.stem.split("-")[0], path.parent.name):
        if word.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[word.lower()]
    return None


def _batches(path: Path, columns: list[str] | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:  # older `datasets` versions wrote the file format
            source.seek(0)
            reader = pa.ipc.open_file(source)
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
            return
        yield from reader


def _schema(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_schema(path)
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).schema
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).schema


def _columns(path: Path) -> tuple[str, str | None, str | None, str | None]:
    import pyarrow as pa

    schema = _schema(path)
    names = schema.names
    structs = [
        f.name for f in schema if pa.types.is_struct(f.type) and {"bytes", "path"} <= {c.name for c in f.type}
    ]
    audio = "audio" if "audio" in structs else next(iter(structs), None)
    if audio is None:
        raise UsageError(f"{path}: no audio column (a struct of bytes and path); is it a speech dataset?")
    text = next((c for c in _TEXT_COLUMNS if c in names), None)
    speaker = next((c for c in _SPEAKER_COLUMNS if c in names), None)
    uid = next((c for c in _ID_COLUMNS if c in names), None)
    return audio, text, speaker, uid


def read_hf(root: Path, stage_dir: Path, data: LayoutData) -> None:
    pa = _pyarrow()
    tables = _tables(root)
    if not tables:
        raise UsageError(
            f"{root} is not a Hugging Face dataset (no state.json, dataset_dict.json or *.parquet)"
        )
    seen: set[str] = set()
    for path, split in tables:
        try:
            _read_table(root, stage_dir, data, seen, path, split)
        except pa.ArrowException as e:  # a corrupt shard is skipped, the others are read
            data.reject(path, UNREADABLE_TABLE, f"{path}: not a readable Arrow/Parquet file ({e})")


def _read_table(root: Path, stage_dir: Path, data: LayoutData, seen: set, path: Path, split) -> None:
    cols = _columns(path)  # (audio, text, speaker, id); the last three may be None
    present = [c for c in cols if c]
    row = 0
    for batch in _batches(path, present):
        d = batch.to_pydict()
        for i in range(batch.num_rows):
            row += 1
            data.listed += 1
            _row(root, stage_dir, data, seen, (path, row, split), {c: d[c][i] for c in present}, cols)


def _row(root: Path, stage_dir: Path, data: LayoutData, seen: set, where_from: tuple, values, cols):
    """One row -> a recording (its audio staged or found), or a rejection."""
    (table, row, split), (audio_col, text_col, speaker_col, id_col) = where_from, cols
    audio = values[audio_col] or {}
    blob, inner = audio.get("bytes"), audio.get("path")
    uid = str(values[id_col]) if id_col and values.get(id_col) is not None else None
    uid = uid or (PurePosixPath(inner).stem if inner else f"{table.stem}-{row:07d}")
    speaker = values.get(speaker_col) if speaker_col else None
    speaker = None if speaker is None else str(speaker)
    name = utterance_name(root, uid, speaker)
    where = f"{table}:row {row}"
    if name in seen:
        name = f"{name}-{row:07d}"  # ids repeat across some datasets' files: the row keeps it unique
    seen.add(name)
    if blob:
        source = _stage(stage_dir / root.name, name, blob, inner)
    else:
        source = _existing(root, table, inner)
        if source is None:
            data.reject(where, MISSING_AUDIO, f"{where}: no audio bytes and no file {inner}")
            return
    text = values.get(text_col) if text_col else None
    utt = LayoutUtterance(name, None if text is None else str(text), speaker, split=split)
    data.recordings.append(Recording(str(source), name, [utt]))


def _stage(folder: Path, name: str, blob: bytes, inner: str | None) -> Path:
    """Write embedded audio to a file once; an unchanged file keeps its mtime (prep's cache key)."""
    suffix = PurePosixPath(inner).suffix.lower() if inner else ""
    suffix = suffix or next((s for m, s in _MAGIC.items() if blob.startswith(m)), ".audio")
    path = folder / (part(name.replace("/", "__")) + suffix)
    try:
        if path.stat().st_size == len(blob) and path.read_bytes() == blob:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
    return path


def _existing(root: Path, table: Path, inner: str | None) -> Path | None:
    if not inner:
        return None
    for candidate in (Path(inner), table.parent / inner, root / inner):
        if candidate.is_file():
            return candidate.absolute()
    return None
