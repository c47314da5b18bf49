"""`w2v align` as a library: audio files with their transcripts in, word (and character) times out.

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.align import AlignOptions, align, align_inputs
    loaded = load_model("runs/ft")
    for result in align(align_inputs(["talk.flac"], text="the whole transcript ..."), loaded):
        print(result.words)  # [{"word", "start", "end", "score"}, ...]

The model's frame log-probabilities are computed as for transcription (long files in overlapping
chunks, in bounded memory) and the transcript, spelt as the model spells it (decoding/align_text.py),
is placed on them by CTC forced alignment (decoding/align.py), in one banded pass even for long files.
`score` is a word's confidence: the geometric mean probability of its tokens on its frames; `fit`
the same relative to the model's own most likely class on those frames (1: the model hears the text).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.chunking import ChunkPlan
from w2vcli.data.manifest import read_manifest
from w2vcli.data.transcripts import TRANS_SUFFIX, TranscriptIndex
from w2vcli.decoding.align import BAND, STAR, STAR_PENALTY, Span, min_frames, token_spans, viterbi
from w2vcli.decoding.align_text import Word, prepare, token_sequence
from w2vcli.decoding.confidence import confidence, mean_log_probs, word_features
from w2vcli.decoding.edges import EdgeOptions, energy_db, pause_frames, snap_to_speech, speech_regions
from w2vcli.decoding.formats import Transcription
from w2vcli.errors import UsageError
from w2vcli.pipelines._transcribe_engine import Prefetcher, report_progress, run_events
from w2vcli.pipelines._transcribe_inputs import Item, expand

NO_TEXT = "no transcript: give --text, a sidecar NAME.txt or NAME.lab, a manifest or --transcripts"


@dataclass
class AlignItem:
    item: Item
    text: str | None  # None: `problem` says why there is none
    problem: str | None = None


@dataclass
class AlignOptions:
    language: str = "en"  # for reading numbers out (num2words)
    star_penalty: float = STAR_PENALTY  # nats per frame the wildcard costs: lower absorbs more audio
    band: int = BAND  # trellis states kept per frame (memory: frames x band bytes)
    # CTC marks a letter a little after its sound starts and stops marking it before the sound ends;
    # word edges move out by these many seconds (at most to a share of the gap to the neighbour).
    # Measured on held-out synthesised speech, bench/RESULTS.md: starts 39 ms late, ends 60 ms early.
    start_pad: float = 0.04
    end_pad: float = 0.06
    # Edges next to a pause go where the signal's energy says speech starts and stops (decoding/edges.py);
    # None: the pads everywhere.
    edges: EdgeOptions | None = EdgeOptions()
    chars: bool = False  # add per-character (per-token) times
    features: bool = False  # add each word's confidence features (decoding/confidence.py; for the bench)
    chunk_seconds: float = 30.0
    stride_seconds: float = 2.5


def align_inputs(
    args: list[str], stdin_lines=(), text: str | None = None, transcripts: str | None = None
) -> list[AlignItem]:
    """Each audio input with its transcript: `text` (a file's content, or the text itself) for a
    single input; else a manifest's `text`, a `--transcripts` table, a `*.trans.txt` or a sidecar."""
    items = expand(args, stdin_lines)
    if text is not None:
        if len(items) != 1:
            raise UsageError(f"--text is one transcript, for one audio file; {len(items)} were given")
        return [AlignItem(items[0], _text_or_file(text))]
    by_manifest: dict[str, str | None] = {}
    for arg in args:
        if arg.endswith(".jsonl") and Path(arg).is_file():
            for utt in read_manifest(arg):
                by_manifest[os.path.abspath(utt.audio)] = utt.text
    index = TranscriptIndex()
    if transcripts:
        index.add_table(transcripts)
    folders = {it.path.parent for it in items}
    index.add_text_files(
        [
            p
            for d in folders
            if d.is_dir()
            for p in d.iterdir()
            if p.name.endswith((".txt", ".lab", TRANS_SUFFIX))
        ]
    )
    out = []
    for it in items:
        found = by_manifest.get(os.path.abspath(it.path))
        t = None if found is not None else index.find(it.path)
        if found is not None:
            out.append(AlignItem(it, found))
        elif t is not None and t.text is not None:
            out.append(AlignItem(it, t.text))
        else:
            out.append(AlignItem(it, None, t.problem if t is not None and t.problem else NO_TEXT))
    return out


_FILE_LIKE = re.compile(r"\S*[/\\]\S*|\S*\w\.[A-Za-z][A-Za-z0-9]{0,4}")  # a/b, a\b, name.txt


def looks_like_a_path(text: str) -> bool:
    """A `--text` of one "word" with a folder separator or ending in a file extension (`transcrpt.txt`,
    `texts/a`): a file name, not a transcript, even when no such file exists."""
    return bool(_FILE_LIKE.fullmatch(text.strip()))


def _text_or_file(text: str) -> str:
    """`--text`: the content of the file it names, else the text itself; a missing file whose name
    looks like one (a typo) is an error, never a transcript of one word."""
    try:
        is_file = "\n" not in text and Path(text).is_file()
    except OSError:  # a name too long for the file system: it is text
        is_file = False
    if not is_file:
        if looks_like_a_path(text):
            raise UsageError(
                f"--text {text}: no such file; give the transcript file's path, or the transcript itself"
            )
        return text
    try:
        return Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--text {text}: cannot read it ({type(e).__name__}: {e})") from None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)


def align(
    inputs: list[AlignItem],
    loaded,
    options: AlignOptions | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[Transcription]:
    """One Transcription per input, in input order, `words` (and `chars`) timed; `error` when the
    input could not be aligned (no transcript, nothing to spell, unreadable audio, text too long)."""
    options = options or AlignOptions()
    config, vocab = loaded.config, loaded.vocab
    plan = ChunkPlan.from_seconds(options.chunk_seconds, options.stride_seconds, config)
    frame = config.frame_stride / SAMPLE_RATE
    normalize = getattr(loaded, "normalize", False)
    todo = [i for i, a in enumerate(inputs) if a.text is not None]  # the others need no audio read
    untold = iter([i for i, a in enumerate(inputs) if a.text is None] + [len(inputs)])
    pending = next(untold)

    def without_text(before: int) -> Iterator[Transcription]:
        nonlocal pending
        while pending < before:
            a = inputs[pending]
            yield Transcription(a.item.audio, pending, id=a.item.id, error=f"{a.item.audio}: {a.problem}")
            pending = next(untold)

    prefetch = Prefetcher([inputs[i].item.path for i in todo], plan, normalize)
    energy: dict[int, list[np.ndarray]] = {}  # per file: the energy of each chunk's kept part

    def measured(events):
        for ev in events:
            if ev.kind == "chunk" and options.edges is not None:
                lo, hi = ev.chunk.keep
                kept = ev.chunk.wav[lo * plan.frame : hi * plan.frame if hi >= 0 else None]
                energy.setdefault(ev.index, []).append(energy_db(kept))
            yield ev

    try:
        events = run_events(
            report_progress(measured(prefetch), on_progress, plan.frame),
            loaded.model,
            getattr(loaded, "device", "cpu"),
            0,
            False,
            prefetch.pending,
            normalize,
            _log_softmax,
        )
        for ev, pieces, spent in events:
            index = todo[ev.index]
            yield from without_text(index)
            a = inputs[index]
            result = Transcription(a.item.audio, index, id=a.item.id, text=a.text, show_words=True)
            if ev.kind == "error":
                # the engine is transcription's: its messages name that verb
                result.error = ev.message.replace("too short to transcribe", "too short to align")
                yield result
                continue
            result.duration = round(ev.samples / SAMPLE_RATE, 3)
            log_probs = np.concatenate([lp for _, lp in pieces]) if pieces else np.zeros((0, 1), np.float32)
            steps = energy.pop(ev.index, [])
            regions = None
            if options.edges is not None and steps:
                regions = speech_regions(np.concatenate(steps), options.edges)
            try:
                _align_one(result, a.text, log_probs, vocab, frame, options, regions)
            except UsageError as e:
                result.error = f"{a.item.audio}: {e}"
            result.elapsed = round(spent, 3)
            yield result
        yield from without_text(len(inputs))
    finally:
        prefetch.close()


def _align_one(
    result: Transcription, text: str, log_probs: np.ndarray, vocab, frame: float, options, regions=None
) -> None:
    words = prepare(text, vocab, options.language)
    if not words:
        raise UsageError("the transcript is empty")
    tokens, owner = token_sequence(words, vocab)
    if all(o < 0 for o in owner):
        raise UsageError("nothing in the transcript can be spelt with the model's vocabulary")
    need = min_frames(tokens)
    if log_probs.shape[0] < need:
        raise UsageError(
            f"the transcript is longer than the audio can hold: {need} frames ({need * frame:.2f} s) "
            f"needed, the audio has {log_probs.shape[0] * frame:.2f} s"
        )
    steered = log_probs
    if regions is not None and options.edges is not None and options.edges.letter_in_pause > 0:
        quiet = pause_frames(regions, len(log_probs), frame, options.edges)
        steered = log_probs.copy()
        letters = np.arange(log_probs.shape[1]) != vocab.blank_id
        steered[np.ix_(quiet, letters)] -= options.edges.letter_in_pause
    path, _ = viterbi(steered, tokens, vocab.blank_id, options.star_penalty, options.band, words=owner)
    spans = token_spans(path, log_probs, tokens, vocab.blank_id)
    result.words = word_times(
        words, spans, owner, frame, result.duration or 0.0, options.start_pad, options.end_pad,
        regions, options.edges or EdgeOptions(), options.features,
    )  # fmt: skip
    if options.chars:
        result.chars = [
            {"char": _token_text(vocab, tokens[k]), "start": round(s.start * frame, 3), "end": round(s.end * frame, 3),
             "score": round(float(np.exp(s.score)), 3)}
            for k, s in enumerate(spans) if s is not None and owner[k] >= 0
        ]  # fmt: skip
    result.untranscribed = [
        {"start": round(s.start * frame, 3), "end": round(s.end * frame, 3)}
        for k, s in enumerate(spans)
        if s is not None and tokens[k] == STAR and s.end - s.start >= 5  # 0.1 s or more
    ]


def _token_text(vocab, token: int) -> str:
    return vocab.tokens[token] if hasattr(vocab, "tokens") else vocab.decode([token])


STRAY_GAP = 0.3  # seconds: a letter this far from the rest of its word, and barely heard,
STRAY_PROB = 0.1  # is not taken as the word's edge


def _heard(spans: list[Span], frame: float) -> list[Span]:
    """A word's token spans without a first or last letter that the path put far from the others
    where the model barely hears it (a silent letter, placed on the best-looking frame of a pause):
    such a letter would stretch the word over the pause."""
    far, faint = STRAY_GAP / frame, np.log(STRAY_PROB)
    while len(spans) > 1 and spans[1].start - spans[0].end > far and spans[0].score < faint:
        spans = spans[1:]
    while len(spans) > 1 and spans[-1].start - spans[-2].end > far and spans[-1].score < faint:
        spans = spans[:-1]
    return spans


def word_times(
    words: list[Word],
    spans: list[Span | None],
    owner: list[int],
    frame: float,
    duration: float,
    start_pad: float = 0.0,
    end_pad: float = 0.0,
    regions: np.ndarray | None = None,
    edges: EdgeOptions = EdgeOptions(),
    features: bool = False,
) -> list[dict]:
    """Each word's start, end, score and fit from its tokens' spans; edges that face a pause placed at
    the edges of the signal's speech `regions` (decoding/edges.py), the others moved out by the pads
    (each into at most its share of the gap to the neighbour); a word with nothing placed (nothing to
    spell) shares the gap between its aligned neighbours and is flagged `aligned: false`.

    `score` is the geometric mean probability of the word's tokens on their frames; `fit` divides it
    by the geometric mean probability of the model's own best class on the same frames: near 1 where
    the model hears what the text says, however sure or unsure the model is in general, and far
    below it where the model hears silence (blank) or other letters. `confidence` is the calibrated
    probability that both edges lie within 50 ms of the truth (decoding/confidence.py); `features`
    adds what it was computed from."""
    placed: dict[int, list[Span]] = {}
    for k, s in enumerate(spans):
        if s is not None and owner[k] >= 0:
            placed.setdefault(owner[k], []).append(s)
    out: list[dict] = []
    heard: list[list[Span]] = []  # per timed word, the spans its times and confidence come from
    for i, w in enumerate(words):
        got = placed.get(i)
        if got and len(got) == len(w.tokens):
            got = _heard(got, frame)
            heard.append(got)
            score, fit = (float(np.exp(v)) for v in mean_log_probs(got))
            out.append({"word": w.text, "start": round(got[0].start * frame, 3), "end": round(got[-1].end * frame, 3),
                        "score": round(score, 3), "fit": round(fit, 3)})  # fmt: skip
        else:
            out.append(
                {"word": w.text, "start": None, "end": None, "score": 0.0, "fit": 0.0, "confidence": 0.0,
                 "aligned": False}
            )  # fmt: skip
    timed = [w for w in out if w["start"] is not None]
    placed = [(False, False)] * len(timed)
    if regions is not None:
        placed = snap_to_speech(timed, regions, duration, edges)
        # The signal placed the pauses: the pads serve edges in running speech only.
        start_pad, end_pad = edges.start_pad, edges.end_pad
    total = round(duration / frame)
    for n, (w, got, (at_start, at_end)) in enumerate(zip(timed, heard, placed)):
        before = got[0].start - (heard[n - 1][-1].end if n else 0)
        after = (heard[n + 1][0].start if n + 1 < len(heard) else total) - got[-1].end
        facts = word_features(got, at_start, at_end, before, after)
        w["confidence"] = round(confidence(facts), 3)
        if features:
            w["features"] = {k: round(v, 4) for k, v in facts.items()}
    share = start_pad / (start_pad + end_pad) if start_pad + end_pad > 0 else 0.5
    for prev, w, (fixed, _) in zip([None, *timed], timed, placed):
        if not fixed:
            gap = max(w["start"] - (prev["end"] if prev else 0.0), 0.0)
            w["start"] = round(w["start"] - min(start_pad, gap * share if prev else gap), 3)
    for w, nxt, (_, fixed) in zip(timed, [*timed[1:], None], placed):
        if not fixed:
            gap = max((nxt["start"] if nxt else max(duration, w["end"])) - w["end"], 0.0)
            w["end"] = round(w["end"] + min(end_pad, gap * (1 - share) if nxt else gap), 3)
    i = 0
    while i < len(out):  # runs of unaligned words: spread over the gap between their neighbours
        if out[i]["start"] is not None:
            i += 1
            continue
        j = i
        while j < len(out) and out[j]["start"] is None:
            j += 1
        lo = out[i - 1]["end"] if i else 0.0
        hi = out[j]["start"] if j < len(out) else max(duration, lo)
        step = (hi - lo) / (j - i)
        for n in range(i, j):
            out[n]["start"], out[n]["end"] = round(lo + (n - i) * step, 3), round(lo + (n - i + 1) * step, 3)
        i = j
    return out
