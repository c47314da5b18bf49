"""Kaldi data directories: `wav.scp`, `text`, `segments`, `utt2spk` / `spk2utt`.

- `wav.scp`: `RECORDING PATH`, or `RECORDING COMMAND |` (a command that writes audio to stdout,
  e.g. `flac -c -d -s a.flac |`). Commands are refused unless prep is told to run them
  (`--run-commands`); then a single command runs without a shell (split with shlex), so no
  pipeline `a | b |`, redirection or `$VAR` is interpreted. Extended filenames `file.ark:OFFSET`
  are refused (no audio file to read). Relative paths are tried from the working directory,
  the data directory and the recipe directory above `data/` (where Kaldi scripts run).
  A command's output is remembered by its command line: a re-run does not see a changed file
  behind an unchanged command (prepare into a new --out to redo it).
- `text`: `UTTERANCE words...`; optional for unlabelled data.
- `segments`: `UTTERANCE RECORDING START END` (seconds; END -1: to the end). Without it each
  recording is one utterance with the recording's id. A recording is decoded once and all its
  segments are cut from that one decoding.
- `utt2spk` (`UTTERANCE SPEAKER`), or `spk2utt` (`SPEAKER UTT...`) when there is no `utt2spk`.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from w2vcli.data.layouts import (
    MALFORMED,
    MISSING_AUDIO,
    LayoutData,
    LayoutUtterance,
    Recording,
    part,
    utterance_name,
)
from w2vcli.data.transcripts import ORPHAN
from w2vcli.errors import UsageError

PIPED_COMMAND, UNSUPPORTED_ENTRY, NO_RECORDING, BAD_SEGMENT = (
    "piped command",
    "unsupported wav.scp entry",
    "recording not in wav.scp",
    "bad segment",
)


def _table(path: Path, data: LayoutData, fields: int) -> dict[str, tuple[int, list[str]]]:
    """KEY REST... lines -> {KEY: (line number, rest)}; lines with fewer than `fields` fields rejected."""
    rows: dict[str, tuple[int, list[str]]] = {}
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < fields:
            data.reject(f"{path}:{n}", MALFORMED, f"{path}:{n}: expected at least {fields} fields")
            continue
        rows[parts[0]] = (n, parts[1:])
    return rows


def _texts(path: Path) -> dict[str, str]:
    """`text` keeps the whole rest of the line (an utterance may have an empty transcript)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, text = line.strip().partition(" ")
        if key:
            out[key] = text.strip()
    return out


def _speakers(root: Path, data: LayoutData) -> dict[str, str]:
    if (root / "utt2spk").is_file():
        return {utt: rest[0] for utt, (_, rest) in _table(root / "utt2spk", data, 2).items()}
    return {utt: spk for spk, (_, utts) in _table(root / "spk2utt", data, 2).items() for utt in utts}


def _audio(root: Path, path: str) -> Path | None:
    p = Path(path)
    tries = [p] if p.is_absolute() else [p, root / p, root.parent.parent / p]
    return next((Path(os.path.abspath(t)) for t in tries if t.is_file()), None)


def _source(root: Path, rec: str, n: int, rest: list[str], line: str, run_commands: bool, data):
    """A wav.scp entry -> (source, argv) or None after rejecting it."""
    where = f"{root / 'wav.scp'}:{n}"
    if rest[-1].endswith("|"):
        command = line.split(None, 1)[1].strip()[:-1].strip()
        if not run_commands:
            detail = (
                f"{where}: {rec} is made by a command ({command} |); pass --run-commands to run it "
                "(without a shell), or convert the audio to files first"
            )
            data.reject(where, PIPED_COMMAND, detail)
            return None
        if "|" in command:
            detail = f"{where}: {rec} pipes several commands; only one runs without a shell: convert it first"
            data.reject(where, PIPED_COMMAND, detail)
            return None
        try:
            return command, tuple(shlex.split(command))
        except ValueError as e:
            data.reject(where, PIPED_COMMAND, f"{where}: cannot split the command ({e})")
            return None
    if len(rest) > 1 or ":" in rest[0] and not Path(rest[0]).exists():
        data.reject(where, UNSUPPORTED_ENTRY, f"{where}: {rec}: neither an audio file nor a command |")
        return None
    audio = _audio(root, rest[0])
    if audio is None:
        data.reject(rest[0], MISSING_AUDIO, f"{where}: {rec}: no such file {rest[0]}")
        return None
    return str(audio), ()


def read_kaldi(root: Path, run_commands: bool, data: LayoutData) -> None:
    if not (root / "wav.scp").is_file():
        raise UsageError(f"{root} is not a Kaldi data directory (no wav.scp); check the path")
    lines = (root / "wav.scp").read_text(encoding="utf-8").splitlines()
    wav = _table(root / "wav.scp", data, 2)
    texts, speakers = _texts(root / "text"), _speakers(root, data)
    segments = _table(root / "segments", data, 4)
    if not segments:  # each recording is one utterance
        segments = {rec: (n, [rec, "0", "-1"]) for rec, (n, _) in wav.items()}
    by_recording: dict[str, list[LayoutUtterance]] = {}
    for utt, (n, (rec, start, end, *_)) in segments.items():
        data.listed += 1
        try:
            a, b = float(start), float(end)
        except ValueError:
            a, b = -1.0, 0.0
        if rec not in wav:
            data.reject(
                f"{root / 'segments'}:{n}",
                NO_RECORDING,
                f"{root / 'segments'}:{n}: {utt} is cut from {rec}, which wav.scp lacks",
            )
            continue
        if a < 0 or b != -1 and b <= a:
            data.reject(
                f"{root / 'segments'}:{n}",
                BAD_SEGMENT,
                f"{root / 'segments'}:{n}: {utt}: start {start}, end {end}",
            )
            continue
        spk = speakers.get(utt)
        name = utterance_name(root, utt, spk)
        cut = LayoutUtterance(name, texts.get(utt), spk, a, None if b == -1 else b)
        by_recording.setdefault(rec, []).append(cut)
    referenced = {rest[0] for _, rest in segments.values()}
    unused = [rec for rec in wav if rec not in referenced]
    if unused and (root / "segments").is_file():
        data.notes.append(
            f"{root.name}: {len(unused)} recordings of wav.scp have no segment (e.g. {unused[0]}); not used"
        )
    for rec, (n, rest) in wav.items():
        utts = by_recording.get(rec)
        if not utts:
            continue  # no usable segment: nothing to cut from it
        found = _source(root, rec, n, rest, lines[n - 1], run_commands, data)
        if found is not None:
            data.recordings.append(Recording(found[0], f"{part(root.name)}/{part(rec)}", utts, found[1]))
    for utt in sorted(set(texts) - set(segments)):
        data.reject(
            root / "text", ORPHAN, f"{root / 'text'}: {utt} has a text but no audio (wav.scp, segments)"
        )
