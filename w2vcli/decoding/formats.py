"""Transcript writers: txt, json, jsonl, tsv, srt, vtt. Pure functions from a result dict to text.

A result dict is what `w2v transcribe` prints per file: `audio`, `text`, `duration`, timing fields,
`words` / `chars` when timestamps were asked for, `error` when the file failed. Subtitle formats
need word times; they are taken from `words` (or `_words`, kept aside when not shown in JSON).
"""

from __future__ import annotations

import json

FORMATS = ("txt", "json", "jsonl", "tsv", "srt", "vtt")
CUE_SECONDS = 6.0  # a subtitle line stays on screen at most this long
CUE_CHARS = 42  # ... and holds at most this many characters (the usual broadcast limit)
CUE_GAP = 1.0  # a pause this long starts a new cue


def public(result: dict) -> dict:
    """The result without private keys (`_words`)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def words_of(result: dict) -> list[dict]:
    return result.get("words") or result.get("_words") or []


def cues(
    words: list[dict], max_seconds: float = CUE_SECONDS, max_chars: int = CUE_CHARS, max_gap: float = CUE_GAP
) -> list[tuple[float, float, str]]:
    """Group timed words into subtitle cues (start, end, text)."""
    out: list[list] = []
    for w in words:
        if out:
            start, end, text = out[-1]
            if (
                w["end"] - start <= max_seconds
                and len(text) + 1 + len(w["word"]) <= max_chars
                and w["start"] - end <= max_gap
            ):
                out[-1][1:] = [w["end"], f"{text} {w['word']}"]
                continue
        out.append([w["start"], w["end"], w["word"]])
    return [tuple(c) for c in out]


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(result: dict) -> str:
    blocks = [
        f"{i}\n{_clock(s, ',')} --> {_clock(e, ',')}\n{text}\n"
        for i, (s, e, text) in enumerate(_cues_or_whole(result), 1)
    ]
    return "\n".join(blocks)


def to_vtt(result: dict) -> str:
    blocks = [f"{_clock(s, '.')} --> {_clock(e, '.')}\n{text}\n" for s, e, text in _cues_or_whole(result)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _cues_or_whole(result: dict) -> list[tuple[float, float, str]]:
    words = words_of(result)
    if words:
        return cues(words)
    text = result.get("text") or ""
    return [(0.0, float(result.get("duration") or 0.0), text)] if text else []


def to_tsv(result: dict) -> str:
    """`start<TAB>end<TAB>text` in seconds: one row per word when word times exist, else one for the file."""
    rows = ["start\tend\ttext"]
    words = words_of(result)
    if words:
        rows += [f"{w['start']:.3f}\t{w['end']:.3f}\t{w['word']}" for w in words]
    elif result.get("text"):
        rows.append(f"0.000\t{float(result.get('duration') or 0.0):.3f}\t{result['text']}")
    return "\n".join(rows) + "\n"


def render(result: dict, fmt: str) -> str:
    """The file content of one result in one format."""
    if fmt == "txt":
        return (result.get("text") or "") + "\n"
    if fmt == "json":
        return json.dumps(public(result), ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return json.dumps(public(result), ensure_ascii=False) + "\n"
    if fmt == "tsv":
        return to_tsv(result)
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    raise ValueError(f"unknown format {fmt!r}")
