"""`w2v segment` as a library: a long recording and its transcript in, utterance-sized training pairs out.

    report = segment("book.flac", text, load_model("runs/ft"), "data/book", SegmentOptions(max_seconds=15))

The transcript is aligned (pipelines/align.py), then cut into segments of at most `max_seconds`
at word boundaries inside pauses: each segment ends at the last pause that keeps it within the
limit, preferring the longest pause near that limit. Each segment's audio runs from the middle of
the pause before it to the middle of the pause after it (at most `edge` seconds of pause on each
side). Written as `OUT/NAME-0001.flac` + `NAME-0001.txt` (the folder `w2v prep` takes as it is),
with `OUT/segments.jsonl`: every segment, kept or dropped, and why. A segment's text is the spoken
form that was aligned ("$1,234" -> "one thousand two hundred and thirty four dollars"), so the pair
says what the audio says; the report keeps the user's words as `original`.

Cuts go only where the alignment leaves a pause and the signal agrees (it holds no speech there,
decoding/edges.py); where no such pause falls within `max_seconds`, the segment is cut inside speech
and dropped (`no pause at its edge`), as is the one after it, rather than written with a word cut
in two or given to the wrong side. Dropped, in this order of reasons: a word the model could not
place (`unaligned word`), an untranscribed stretch inside (`untranscribed speech`), a length
outside the limits, audio below
`silence_db` (`silent`), a fit below `min_fit` (`does not match the audio`), and a confidence below
`min_ratio` times the median of the segments still kept (`low confidence`; `min_score` adds an
absolute floor), the edge inside speech last. Fit is the geometric mean of the words' fits: each word's probability relative to
the model's own best class on the same frames (pipelines/align.py, `word_times`), so it measures
whether the model hears what the text says whatever the model's general certainty: silence (the
model hears blank), noise and a wrong text score far below speech it knows. The confidence filter
alone is relative to the file and cannot see a file that is bad throughout: when more than
`max_bad_share` of the segments judged on sound (kept, or dropped as silent or not matching) fail,
or their median fit is below `min_file_fit`, the whole file is rejected.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from w2vcli.data.audio import SAMPLE_RATE, load_audio
from w2vcli.decoding.align_text import prepare
from w2vcli.decoding.edges import energy_db, quiet_seconds, speech_regions
from w2vcli.errors import UsageError, W2VError
from w2vcli.fsutil import LEDGER_FILE, OutputLedger
from w2vcli.pipelines.align import AlignOptions, align, align_inputs

REPORT = "segments.jsonl"
# Fit floors. A segment's fit below MIN_FIT is audio that does not say its text; a file whose median
# segment fit is below MIN_FILE_FIT does not match its text throughout (a wrong transcript). Tuned on
# examples/mini/dev, judged on examples/mini/test and 84 held-out utterances of unseen voices, with
# the study's recipe stopped at 67% and at 62% CER (weak models, the hard case: a stronger model fits
# its speech better and a wrong text worse), bench/calibrate_segment.py. Segment fits:
#   speech with its text  0.07-0.31, file medians 0.15-0.19 (67%); 0.07-0.36, medians 0.21-0.24 (62%)
#   the same, wrong text  0.04-0.19, file medians 0.08-0.10 (67%); 0.05-0.20, medians 0.08-0.10 (62%)
#   white noise 0.000-0.013; digital silence 0.000.
MIN_FIT = 0.05
MIN_FILE_FIT = 0.12
SILENCE_DB = -60.0  # dBFS (RMS): quieter audio holds no speech (digital silence is -inf)
MAX_BAD_SHARE = 0.5  # a file whose segments fail on sound more often than this is rejected whole
_ON_SOUND = ("silent", "does not match the audio")  # drops the file verdict counts


@dataclass
class SegmentOptions:
    max_seconds: float = 15.0
    min_seconds: float = 1.0
    min_pause: float = 0.15  # seconds: a gap this long between words is a pause to cut in
    edge: float = 0.25  # seconds of pause kept at most on each side of a segment
    min_ratio: float = 0.5  # keep segments scoring at least this times the median of those kept
    min_score: float = 0.0  # and at least this (absolute)
    min_fit: float = MIN_FIT  # and fitting the model's own best reading at least this well
    min_file_fit: float = MIN_FILE_FIT  # a file whose median segment fit is lower is rejected whole
    silence_db: float = SILENCE_DB  # segments quieter than this (RMS, dBFS) are silent
    max_bad_share: float = MAX_BAD_SHARE  # share of segments failing on sound that rejects the file
    align: AlignOptions = field(default_factory=AlignOptions)


@dataclass
class Segment:
    id: str
    start: float
    end: float
    text: str  # the spoken form that was aligned: what the .txt holds
    score: float
    kept: bool = True
    reason: str = ""
    fit: float = 1.0
    original: str = ""  # the transcript's own words for the segment


def level_db(wav: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence or no samples)."""
    if not len(wav):
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def plan(
    words: list[dict],
    untranscribed: list[dict],
    duration: float,
    options: SegmentOptions,
    spoken: list[str] | None = None,
    loudness: Callable[[float, float], float] | None = None,
    quiet: Callable[[float, float], float] | None = None,
) -> tuple[list[Segment], str]:
    """Segments over `words` (timed by `align`), before audio is written; ids are positions. `spoken`
    are the words' spoken forms (the text written), `loudness(start, end)` the audio's level in dBFS,
    `quiet(start, end)` the longest stretch of that span where the signal holds no speech (cuts go
    only where the audio agrees there is a pause). Returns the segments and, when the file is
    rejected whole, why ("" otherwise)."""
    segments: list[Segment] = []
    inside: set[int] = set()  # segments with an edge cut inside speech
    i, n, paused = 0, len(words), True
    while i < n:
        j, paused_after = _cut(words, i, options, quiet)
        if not (paused and paused_after):
            inside.add(len(segments))
        segments.append(_segment(words, i, j, untranscribed, duration, options, spoken, len(segments)))
        i, paused = j + 1, paused_after
    for s in segments:
        if not s.kept:
            continue
        if loudness is not None and loudness(s.start, s.end) < options.silence_db:
            s.kept, s.reason = False, f"silent (below {options.silence_db:g} dBFS)"
        elif s.fit < options.min_fit:
            s.kept, s.reason = False, f"does not match the audio (fit {s.fit:.3f} < {options.min_fit:.3f})"
    verdict = _verdict(segments, options)
    if verdict:
        for s in segments:
            if s.kept:
                s.kept, s.reason = False, "file rejected"
        return segments, verdict
    for k in inside:  # judged on sound above like the rest; an edge inside speech cuts a word wrongly
        if segments[k].kept:
            segments[k].kept, segments[k].reason = False, "no pause at its edge"
    scored = [s.score for s in segments if s.kept]
    floor = max(options.min_ratio * float(np.median(scored)), options.min_score) if scored else 0.0
    for s in segments:
        if s.kept and s.score < floor:
            s.kept, s.reason = False, f"low confidence ({s.score:.3f} < {floor:.3f})"
    return segments, ""


def _verdict(segments: list[Segment], options: SegmentOptions) -> str:
    """Why the whole file is rejected ("" when it is not): most segments judged on sound (kept, or
    dropped as silent or not matching) fail, or their median fit is below the file's floor."""
    judged = [s for s in segments if s.kept or s.reason.startswith(_ON_SOUND)]
    if not judged:
        return ""
    bad = [s for s in judged if not s.kept]
    if len(bad) > options.max_bad_share * len(judged):
        return (
            f"file rejected: {len(bad)} of {len(judged)} segments are silent or do not match the text "
            "(a wrong transcript, noise, no speech?)"
        )
    median = float(np.median([s.fit for s in judged]))
    if median < options.min_file_fit:
        return (
            f"file rejected: its median segment fit {median:.3f} is below {options.min_file_fit:.3f}: "
            "the text does not match the audio (a wrong transcript?)"
        )
    return ""


def _segment(words, i, j, untranscribed, duration, options, spoken, number) -> Segment:
    """Words i..j as one segment, with the drop reasons that need no audio."""
    n, part = len(words), words[i : j + 1]
    before = words[i - 1]["end"] if i else 0.0
    after = words[j + 1]["start"] if j + 1 < n else duration
    start = max(part[0]["start"] - min(options.edge, (part[0]["start"] - before) / 2), 0.0)
    end = min(part[-1]["end"] + min(options.edge, (after - part[-1]["end"]) / 2), duration)
    scores = np.array([max(w["score"], 1e-6) for w in part])
    fits = np.array([max(w.get("fit", 1.0), 1e-6) for w in part])
    said = spoken[i : j + 1] if spoken is not None else [w["word"] for w in part]
    seg = Segment(f"{number + 1:04d}", round(start, 3), round(end, 3), " ".join(t for t in said if t),
                  float(np.exp(np.log(scores).mean())), fit=round(float(np.exp(np.log(fits).mean())), 4),
                  original=" ".join(w["word"] for w in part))  # fmt: skip
    if any(w.get("aligned") is False for w in part):
        seg.kept, seg.reason = False, "unaligned word"
    elif any(u["start"] < seg.end and u["end"] > seg.start for u in untranscribed):
        seg.kept, seg.reason = False, "untranscribed speech"
    elif end - start > options.max_seconds:
        seg.kept, seg.reason = False, "too long: no pause to cut at"
    elif end - start < options.min_seconds:
        seg.kept, seg.reason = False, "too short"
    return seg


def _cut(words: list[dict], i: int, options: SegmentOptions, quiet=None) -> tuple[int, bool]:
    """The last word of the segment that starts at word i, and whether the cut after it is in a
    pause: the end of the longest pause among those in the last third of the allowed length (else
    the last pause within it; else, cut inside speech, the last word that fits, or word i alone). A
    pause is a gap of `min_pause` between the aligned words that the audio agrees with: at least
    half of `min_pause` of it holds no speech (`quiet`)."""
    limit = words[i]["start"] + options.max_seconds - 2 * options.edge
    fits = [j for j in range(i, len(words)) if words[j]["end"] <= limit]
    if not fits:
        return i, i == len(words) - 1
    last = fits[-1]
    if last == len(words) - 1:
        return last, True
    pauses = [(words[j + 1]["start"] - words[j]["end"], j) for j in range(i, last + 1)]
    pauses = [(gap, j) for gap, j in pauses if gap >= options.min_pause]
    if quiet is not None:  # a gap in the alignment over speech the signal hears is no place to cut
        pauses = [
            p for p in pauses if quiet(words[p[1]]["end"], words[p[1] + 1]["start"]) >= options.min_pause / 2
        ]
    if not pauses:
        return last, False
    third = words[i]["start"] + (limit - words[i]["start"]) * 2 / 3
    late = [(gap, j) for gap, j in pauses if words[j]["end"] >= third]
    return (max(late)[1] if late else pauses[-1][1]), True


def open_output(out: str | os.PathLike) -> OutputLedger:
    """The output folder's ledger, after checking (before any model is loaded) that `out` is a folder,
    or nothing yet, holding only what `w2v segment` wrote there: its own earlier output is replaced,
    a user's files never."""
    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the segments")
    ledger = OutputLedger(out)
    if out.is_dir():
        theirs = sorted(p for p in out.iterdir() if p.name != LEDGER_FILE and not ledger.owns(p))
        if theirs:
            more = f" (and {len(theirs) - 1} more)" if len(theirs) > 1 else ""
            raise UsageError(
                f"--out {out} holds {theirs[0].name}{more}, which w2v segment did not write; choose a new folder"
            )
    return ledger


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
    ledger = open_output(out)
    (result,) = align(align_inputs([audio], text=text), loaded, options.align, on_progress)
    if result.error:
        raise W2VError(result.error)
    spoken = [w.spoken for w in prepare(result.text or "", loaded.vocab, options.align.language)]
    wav = load_audio(audio)

    def loudness(start: float, end: float) -> float:
        return level_db(wav[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])

    edges = options.align.edges
    regions = speech_regions(energy_db(wav), edges) if edges is not None else None

    def quiet(start: float, end: float) -> float:
        return quiet_seconds(regions, start, end)

    duration = result.duration or 0.0
    segments, verdict = plan(
        result.words, result.untranscribed or [], duration, options, spoken, loudness, quiet
    )
    _write(out, ledger, Path(audio).stem, segments, wav)
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
        "rejected": verdict,
        "report": str(out / REPORT),
    }


def _write(out: Path, ledger: OutputLedger, stem: str, segments: list[Segment], wav: np.ndarray) -> None:
    """The kept pairs and the report, through the ledger. An earlier run's pairs of this recording
    that this run does not write again are removed (they are ours: the ledger knows them); the
    report keeps the rows of other recordings segmented into the same folder."""
    mine = re.compile(rf"{re.escape(stem)}-\d{{4,}}\.(flac|txt)")
    written = set()
    out.mkdir(parents=True, exist_ok=True)
    for s in segments:
        s.id = f"{stem}-{s.id}"
        if s.kept:
            clip = wav[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)]
            buf = io.BytesIO()
            sf.write(buf, clip, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            ledger.write(out / f"{s.id}.flac", buf.getvalue())
            ledger.write(out / f"{s.id}.txt", s.text + "\n")
            written |= {f"{s.id}.flac", f"{s.id}.txt"}
    for p in out.iterdir():
        if mine.fullmatch(p.name) and p.name not in written and ledger.owns(p):
            p.unlink()
    rows = []
    if (out / REPORT).is_file():
        for line in (out / REPORT).read_text(encoding="utf-8").splitlines():
            try:
                if not mine.fullmatch(json.loads(line)["id"] + ".txt"):
                    rows.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                continue
    rows += [json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in segments]
    ledger.write(out / REPORT, "".join(rows))
