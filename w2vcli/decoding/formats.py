"""Transcription results and their writers: txt, json, jsonl, tsv, srt, vtt.

A `Transcription` is one input's result; `to_dict()` is what `w2v transcribe` prints per file:
`audio`, (`id`), `text`, `duration`, timing fields, `words` / `chars` when timestamps were asked
for, `error` when the file failed. Subtitle and TSV writers use the word times whether or not
they are shown in JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("txt", "json", "jsonl", "tsv", "srt", "vtt", "ctm", "textgrid")
CUE_SECONDS = 6.0  # a subtitle line stays on screen at most this long
CUE_CHARS = 42  # ... and holds at most this many characters (the usual broadcast limit)
CUE_GAP = 1.0  # a pause this long starts a new cue
TEXTGRID_EPSILON = 1e-6  # seconds: the least length of a TextGrid interval (its times are written to 1 µs)


@dataclass
class Transcription:
    """One input's transcription, or why there is none (`error`)."""

    audio: str  # the input as the user named it
    index: int  # its position among the inputs
    id: str | None = None  # from a manifest
    text: str | None = None
    duration: float | None = None  # seconds of audio
    elapsed: float | None = None  # seconds of model and decoding
    error: str | None = None  # one line for the user
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end"} in seconds
    chars: list[dict] | None = None  # {"char", "start", "end"}, when asked for
    untranscribed: list[dict] | None = None  # alignment: stretches of speech the text lacks
    show_words: bool = False  # words were asked for: they go into to_dict()
    segments: list[dict] | None = None  # {"start", "end", "text"}: the stretches voice activity found

    @property
    def rtf(self) -> float | None:
        """Real-time factor: elapsed seconds per second of audio."""
        return round(self.elapsed / self.duration, 4) if self.duration and self.elapsed is not None else None

    def to_dict(self) -> dict:
        """The JSON object `w2v transcribe` prints for this input."""
        out: dict = {"audio": self.audio} | ({"id": self.id} if self.id is not None else {})
        if self.error is not None:
            return out | {"text": None, "error": self.error}
        out |= {"text": self.text, "duration": self.duration, "elapsed": self.elapsed, "rtf": self.rtf}
        if self.chars is not None:
            out["chars"] = self.chars
        if self.show_words:
            out["words"] = self.words
        if self.untranscribed is not None:
            out["untranscribed"] = self.untranscribed
        if self.segments is not None:
            out["segments"] = self.segments
        return out


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


def srt_cue(n: int, start: float, end: float, text: str) -> str:
    """One numbered SRT cue, ending in a newline (cues are separated by an empty line)."""
    return f"{n}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"


def vtt_cue(start: float, end: float, text: str) -> str:
    """One WebVTT cue, ending in a newline (after the "WEBVTT" header, cues are separated by an empty line)."""
    return f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n"


def to_srt(result: Transcription) -> str:
    return "\n".join(srt_cue(i, s, e, text) for i, (s, e, text) in enumerate(_cues_or_whole(result), 1))


def to_vtt(result: Transcription) -> str:
    return "WEBVTT\n\n" + "\n".join(vtt_cue(s, e, text) for s, e, text in _cues_or_whole(result))


def _cues_or_whole(result: Transcription) -> list[tuple[float, float, str]]:
    if result.segments and result.words:  # no cue spans two voice activity segments
        return [
            c
            for seg in result.segments
            for c in cues([w for w in result.words if seg["start"] <= w["start"] < seg["end"]])
        ]
    if result.words:
        return cues(result.words)
    text = result.text or ""
    return [(0.0, float(result.duration or 0.0), text)] if text else []


def to_tsv(result: Transcription) -> str:
    """`start<TAB>end<TAB>text` in seconds: one row per word when word times exist, else one for the file."""
    rows = ["start\tend\ttext"]
    if result.words:
        rows += [f"{w['start']:.3f}\t{w['end']:.3f}\t{w['word']}" for w in result.words]
    elif result.text:
        rows.append(f"0.000\t{float(result.duration or 0.0):.3f}\t{result.text}")
    return "\n".join(rows) + "\n"


def to_ctm(result: Transcription) -> str:
    """NIST CTM: `utterance channel start duration word confidence`, one line per word; the confidence
    is an alignment's calibrated one where there is one (decoding/confidence.py), else the score."""
    utt = (result.id or Path(result.audio).with_suffix("").name).replace(" ", "_")
    return "".join(
        f"{utt} 1 {w['start']:.3f} {w['end'] - w['start']:.3f} {w['word']} {w.get('confidence', w.get('score', 1.0)):.3f}\n"
        for w in result.words
    )


def _seconds(t: float) -> str:
    """A TextGrid time to the microsecond, without trailing zeros (`2`, `0.5`, `10000.04`). Not `:g`: its
    six significant digits round times past 10,000 s (2 h 47 min) to 0.1 s and collapse short intervals."""
    return f"{t:.6f}".rstrip("0").rstrip(".")


def _tier(name: str, items: list[tuple[float, float, str]], end: float) -> list[str]:
    """A Praat interval tier covering [0, end]: the items, and empty intervals in the gaps."""
    intervals, t = [], 0.0
    for a, b, text in items:
        if a > t:
            intervals.append((t, a, ""))
        intervals.append((a, b, text))
        t = max(t, b)
    if end > t or not intervals:
        intervals.append((t, max(end, t), ""))
    lines = ['        class = "IntervalTier"', f'        name = "{name}"', "        xmin = 0", f"        xmax = {_seconds(end)}",
             f"        intervals: size = {len(intervals)}"]  # fmt: skip
    for n, (a, b, text) in enumerate(intervals, 1):
        quoted = text.replace('"', '""')
        lines += [
            f"        intervals [{n}]:",
            f"            xmin = {_seconds(a)}",
            f"            xmax = {_seconds(b)}",
            f'            text = "{quoted}"',
        ]
    return lines


def _positive(items: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Intervals in order with a positive length each: an item starts no earlier than the one before
    ends, and one with no length (unaligned words at the end of the audio share a gap of 0 s) gets
    TEXTGRID_EPSILON after it, since Praat and the `textgrid` package refuse empty intervals."""
    out, t = [], 0.0
    for a, b, text in items:
        a = max(a, t)
        b = max(b, a + TEXTGRID_EPSILON)
        out.append((a, b, text))
        t = b
    return out


def to_textgrid(result: Transcription) -> str:
    """A Praat TextGrid (long text format): a `words` tier, and a `chars` tier when there are char times."""
    tiers = [("words", _positive([(w["start"], w["end"], w["word"]) for w in result.words]))]
    if result.chars:
        tiers.append(("chars", _positive([(c["start"], c["end"], c["char"]) for c in result.chars])))
    end = max([float(result.duration or 0.0), *(b for _, items in tiers for _, b, _ in items)])
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {_seconds(end)}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]  # fmt: skip
    for n, (name, items) in enumerate(tiers, 1):
        lines += [f"    item [{n}]:", *_tier(name, items, end)]
    return "\n".join(lines) + "\n"


def render(result: Transcription, fmt: str) -> str:
    """The file content of one result in one format."""
    if fmt == "txt":
        return (result.text or "") + "\n"
    if fmt == "json":
        return json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return json.dumps(result.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "tsv":
        return to_tsv(result)
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    if fmt == "ctm":
        return to_ctm(result)
    if fmt == "textgrid":
        return to_textgrid(result)
    raise ValueError(f"unknown format {fmt!r}")
