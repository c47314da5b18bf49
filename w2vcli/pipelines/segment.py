"""`w2v segment` as a library: a long recording and its transcript in, utterance-sized training pairs out.

    report = segment("book.flac", text, load_model("runs/ft"), "data/book", SegmentOptions(max_seconds=15))

The transcript is aligned (pipelines/align.py), then cut into segments of at most `max_seconds`
at word boundaries inside pauses: each segment ends at the last pause that keeps it within the
limit, preferring the longest pause near that limit. Each segment's audio runs from the middle of
the pause before it to the middle of the pause after it (at most `edge` seconds of pause on each
side). Written as `OUT/NAME-0001.flac` + `NAME-0001.txt` (the folder `w2v prep` takes as it is),
with `OUT/segments.jsonl`: every segment, kept or dropped, and why.

Dropped: segments whose audio and text disagree (misread passages, text the audio lacks, speech
the text lacks), found by three signs: a word the model could not place (`unaligned word`), an
untranscribed stretch inside (`untranscribed speech`), or a confidence below `min_ratio` times the
file's median segment confidence (`low confidence`), the confidence being the geometric mean of
the segment's word scores. Relative, because a weaker model scores every word lower; `min_score`
adds an absolute floor.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from w2vcli.data.audio import SAMPLE_RATE, load_audio
from w2vcli.errors import UsageError, W2VError
from w2vcli.fsutil import atomic_write
from w2vcli.pipelines.align import AlignOptions, align, align_inputs

REPORT = "segments.jsonl"


@dataclass
class SegmentOptions:
    max_seconds: float = 15.0
    min_seconds: float = 1.0
    min_pause: float = 0.15  # seconds: a gap this long between words is a pause to cut in
    edge: float = 0.25  # seconds of pause kept at most on each side of a segment
    min_ratio: float = 0.5  # keep segments scoring at least this times the file's median
    min_score: float = 0.0  # and at least this (absolute)
    align: AlignOptions = field(default_factory=AlignOptions)


@dataclass
class Segment:
    id: str
    start: float
    end: float
    text: str
    score: float
    kept: bool = True
    reason: str = ""


def plan(
    words: list[dict], untranscribed: list[dict], duration: float, options: SegmentOptions
) -> list[Segment]:
    """Segments over `words` (timed by `align`), before audio is written; ids are positions."""
    segments: list[Segment] = []
    i, n = 0, len(words)
    while i < n:
        j = _cut(words, i, options)
        part = words[i : j + 1]
        before = words[i - 1]["end"] if i else 0.0
        after = words[j + 1]["start"] if j + 1 < n else duration
        start = max(part[0]["start"] - min(options.edge, (part[0]["start"] - before) / 2), 0.0)
        end = min(part[-1]["end"] + min(options.edge, (after - part[-1]["end"]) / 2), duration)
        scores = np.array([max(w["score"], 1e-6) for w in part])
        seg = Segment(f"{len(segments) + 1:04d}", round(start, 3), round(end, 3),
                      " ".join(w["word"] for w in part), float(np.exp(np.log(scores).mean())))  # fmt: skip
        if any(w.get("aligned") is False for w in part):
            seg.kept, seg.reason = False, "unaligned word"
        elif any(u["start"] < seg.end and u["end"] > seg.start for u in untranscribed):
            seg.kept, seg.reason = False, "untranscribed speech"
        elif end - start > options.max_seconds:
            seg.kept, seg.reason = False, "too long: no pause to cut at"
        elif end - start < options.min_seconds:
            seg.kept, seg.reason = False, "too short"
        segments.append(seg)
        i = j + 1
    scored = [s.score for s in segments if s.kept]
    floor = max(options.min_ratio * float(np.median(scored)), options.min_score) if scored else 0.0
    for s in segments:
        if s.kept and s.score < floor:
            s.kept, s.reason = False, f"low confidence ({s.score:.3f} < {floor:.3f})"
    return segments


def _cut(words: list[dict], i: int, options: SegmentOptions) -> int:
    """The last word of the segment that starts at word i: the end of the longest pause among those
    in the last third of the allowed length (else the last pause within it, else the last word that
    fits, else word i alone)."""
    limit = words[i]["start"] + options.max_seconds - 2 * options.edge
    fits = [j for j in range(i, len(words)) if words[j]["end"] <= limit]
    if not fits:
        return i
    last = fits[-1]
    if last == len(words) - 1:
        return last
    pauses = [(words[j + 1]["start"] - words[j]["end"], j) for j in range(i, last + 1)]
    pauses = [(gap, j) for gap, j in pauses if gap >= options.min_pause]
    if not pauses:
        return last
    third = words[i]["start"] + (limit - words[i]["start"]) * 2 / 3
    late = [(gap, j) for gap, j in pauses if words[j]["end"] >= third]
    return max(late)[1] if late else pauses[-1][1]


def segment(
    audio: str,
    text: str,
    loaded,
    out: str | os.PathLike,
    options: SegmentOptions | None = None,
    on_progress=None,
) -> dict:
    """Align, cut, write the kept segments and the report; returns the summary."""
    options = options or SegmentOptions()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty; choose a new folder")
    (result,) = align(align_inputs([audio], text=text), loaded, options.align, on_progress)
    if result.error:
        raise W2VError(result.error)
    segments = plan(result.words, result.untranscribed or [], result.duration or 0.0, options)
    wav = load_audio(audio)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(audio).stem
    for s in segments:
        s.id = f"{stem}-{s.id}"
        if s.kept:
            clip = wav[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)]
            sf.write(out / f"{s.id}.flac", clip, SAMPLE_RATE, subtype="PCM_16")
            atomic_write(out / f"{s.id}.txt", s.text + "\n")
    atomic_write(out / REPORT, "".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in segments))
    kept = [s for s in segments if s.kept]
    reasons: dict[str, int] = {}
    for s in segments:
        if not s.kept:
            key = s.reason.split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "segments": len(segments),
        "kept": len(kept),
        "kept_seconds": round(sum(s.end - s.start for s in kept), 1),
        "duration": result.duration,
        "dropped": reasons,
        "report": str(out / REPORT),
    }
