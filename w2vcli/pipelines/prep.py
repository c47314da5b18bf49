"""`w2v prep`: any folder of audio (and transcripts) -> 16 kHz mono FLAC, manifests, vocabulary.

    report = prepare(["corpus/"], "data/", PrepOptions(valid_percent=5))

Layout of the output directory: `audio/` (a mirror of the sources), `train.jsonl`,
`valid.jsonl`, `rejected.jsonl`, `vocab.json` or `spm.model` when there are transcripts,
fairseq `.tsv/.ltr/.wrd` on request, `prep.json` (the report), `.prep-cache.jsonl` (resume).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from w2vcli import __version__
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.inputs import scan
from w2vcli.data.layouts import LAYOUTS
from w2vcli.data.manifest import Utterance, write_manifest
from w2vcli.data.text import find_numbers, load_vocabulary, normalize_text
from w2vcli.data.transcripts import EMPTY_TEXT, NO_TRANSCRIPT, ORPHAN, TranscriptIndex
from w2vcli.errors import UsageError
from w2vcli.fsutil import atomic_write
from w2vcli.pipelines import _prep_outputs as outputs
from w2vcli.pipelines._prep_cache import CACHE_FILE, ConversionCache
from w2vcli.pipelines._prep_convert import Job, convert_all

AUDIO_DIR, REPORT_FILE, REJECTED_FILE = "audio", "prep.json", "rejected.jsonl"
TOO_SHORT, OUT_OF_VOCAB = "too short", "characters outside the vocabulary"


@dataclass
class PrepOptions:
    valid_percent: float = 5.0
    min_seconds: float = 0.5
    max_seconds: float = 30.0
    transcripts: str | None = None  # a TSV/CSV/JSONL table (see w2vcli.data.transcripts)
    unlabelled: bool = False  # ignore every transcript: data for pretraining
    vocab: str = "chars"  # "chars", "sentencepiece", or the path of an existing vocabulary
    vocab_size: int = 1000  # sentencepiece only
    lowercase: bool = True
    strip_punctuation: bool = True
    fairseq: bool = False
    allow_clipping: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 0
    layout: str = "auto"  # auto (from the files), plain, or one of w2vcli.data.layouts.LAYOUTS
    split_by: str = "file"  # valid split by source file, or by "speaker" (none in both splits)
    run_commands: bool = False  # run Kaldi wav.scp commands (`cmd |`), without a shell

    def check(self) -> None:
        if not 0 <= self.valid_percent < 100:
            raise UsageError(f"--valid-percent must be in [0, 100), got {self.valid_percent:g}")
        if self.max_seconds <= 0 or not 0 <= self.min_seconds < self.max_seconds:
            raise UsageError("need 0 <= --min-seconds < --max-seconds")
        if self.vocab_size < 2:
            raise UsageError("--vocab-size must be at least 2")
        if self.transcripts is not None and not Path(self.transcripts).is_file():
            raise UsageError(f"--transcripts: no such file {self.transcripts}")
        if self.layout not in ("auto", "plain", *LAYOUTS):
            raise UsageError(f"--layout must be auto, plain, {', '.join(LAYOUTS)}; not {self.layout!r}")
        if self.split_by not in ("file", "speaker"):
            raise UsageError(f"--split-by must be file or speaker, not {self.split_by!r}")


@dataclass
class PrepProgress:
    done: int  # files finished (converted, reused or rejected)
    total: int  # files to look at
    seconds: float  # audio seconds produced so far
    cached: int  # files reused from an earlier run


@dataclass
class PrepReport:
    out_dir: str
    labelled: bool
    files: dict  # found, converted, cached, rejected
    splits: dict  # split -> {"utterances", "seconds"}
    durations: dict
    sources: dict  # sample_rates, channels, encodings: counts of source files
    vocab: dict | None
    numbers: dict  # utterances whose text has digits, with examples
    rejected: list[dict]  # {"path", "reason", "detail"}
    outputs: list[str]
    options: dict
    elapsed: float
    version: str = __version__
    layout: dict | None = None  # name, utterances listed, notes; None for plain folders

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> dict:
        d = asdict(self)
        d["rejected_by_reason"] = self.rejected_by_reason
        return d


def _given_vocab(options: PrepOptions):
    if options.vocab in ("chars", "sentencepiece"):
        return None
    if not Path(options.vocab).exists():
        raise UsageError(
            f"--vocab must be chars, sentencepiece or an existing vocabulary; {options.vocab} not found"
        )
    return load_vocabulary(options.vocab)


def prepare(
    sources: list,
    out_dir: str | os.PathLike,
    options: PrepOptions | None = None,
    on_progress=None,
    listed=frozenset(),
) -> PrepReport:
    """Convert, check and split everything under `sources` into `out_dir`; see the module docstring.

    Bad inputs never stop the run: each becomes an entry of `report.rejected` (so does a path of
    `listed`, read from stdin, that does not exist). Raises UsageError for bad options, a missing
    source, or an `out_dir` that is a source or holds files `prep` did not write. `on_progress(PrepProgress)` is called as
    files finish.
    """
    options = options or PrepOptions()
    options.check()
    given_vocab = _given_vocab(options)
    started, out = time.monotonic(), Path(out_dir)
    _check_out(out, sources)
    from w2vcli.pipelines import _prep_layouts  # it imports this module, so not at the top

    layouts, layout, extras = _prep_layouts.layouts_for(sources, options), None, {}
    if layouts is None:
        found = scan(sources, skip_dir=out, listed=listed)
        out.mkdir(parents=True, exist_ok=True)
        rejected = [{"path": p, "reason": r, "detail": d} for p, r, d in found.rejected]
        jobs, texts, labelled = _plan(found, str((out / AUDIO_DIR).resolve()), options, given_vocab, rejected)
        n_found = len(found.audio) + len(found.rejected)
    else:
        layout = _prep_layouts.read_all(sources, layouts, options, out)
        jobs, texts, extras, labelled = _prep_layouts.plan(layout, out / AUDIO_DIR, options, given_vocab)
        rejected, n_found = layout.rejected, layout.listed
    results = _convert(jobs, out, options.workers, on_progress)
    groups, infos, cached = _collect(jobs, results, texts, options, rejected, extras)

    if layout is None:
        splits = outputs.assign_splits(groups, options.valid_percent, options.seed)
    else:
        splits = _prep_layouts.assign(groups, options)
    utts = [u for s in splits for u in splits[s]]
    all_texts = [u.text for u in utts if u.text is not None]
    vocab = None
    if labelled:
        vocab = outputs.build_vocab(options.vocab, options.vocab_size, all_texts, given_vocab)
    written = _write(out, splits, vocab, rejected, options)
    with_digits = [u for u in utts if u.text and find_numbers(u.text)]
    counts = {
        "found": n_found,
        "cached": cached,
        "converted": len(jobs) - cached,
    }
    report = PrepReport(
        out_dir=str(out),
        labelled=labelled,
        files={**counts, "rejected": len(rejected)},
        splits={
            s: {"utterances": len(u), "seconds": round(sum(x.duration for x in u), 3)}
            for s, u in splits.items()
        },
        durations=outputs.duration_stats([u.duration for u in utts]),
        sources=outputs.source_stats(infos),
        vocab=outputs.vocab_summary(vocab),
        numbers={"utterances": len(with_digits), "examples": [f"{u.id}: {u.text}" for u in with_digits[:5]]},
        rejected=rejected,
        outputs=written,
        options=asdict(options),
        elapsed=round(time.monotonic() - started, 3),
        layout=_prep_layouts.summary(layout) if layout is not None else None,
    )
    atomic_write(out / REPORT_FILE, json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n")
    return report


def _check_out(out: Path, sources: list) -> None:
    """`prep` owns its output folder: it must be new, empty or an earlier prep output, and no source."""
    resolved = out.resolve()
    for source in sources:
        src = Path(source)
        if src.is_dir() and src.resolve() == resolved:
            raise UsageError(f"--out {out} is also a source; write the prepared data to another folder")
        if src.exists() and (resolved / AUDIO_DIR) in (src.resolve(), *src.resolve().parents):
            raise UsageError(
                f"{src} lies inside {out / AUDIO_DIR}, which prep rewrites; move it or choose another --out"
            )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    ours = (out / REPORT_FILE).is_file() or (out / CACHE_FILE).is_file()
    if out.is_dir() and not ours and any(out.iterdir()):
        raise UsageError(f"--out {out} holds files that w2v prep did not write; choose a new or empty folder")


def _plan(found, audio_root: str, options: PrepOptions, given_vocab, rejected: list) -> tuple:
    """Match transcripts, reject what needs no decoding to reject, and make the conversion jobs.
    -> (jobs, {rel: normalised text}, labelled)"""
    index = TranscriptIndex()
    if not options.unlabelled:
        index.add_text_files(found.text_files)
        if options.transcripts:
            index.add_table(options.transcripts)
    matched = {a.rel: index.find(a.path) for a in found.audio} if not options.unlabelled else {}
    labelled = bool(options.transcripts) or any(t is not None for t in matched.values())
    jobs, texts = [], {}
    for a in found.audio:
        t, reason, detail = matched.get(a.rel), None, None
        if labelled and t is None:
            reason, detail = NO_TRANSCRIPT, f"{a.path}: others have one; pass --unlabelled for audio only"
        elif labelled and t.problem:
            reason, detail = t.problem, t.source
        elif labelled:
            texts[a.rel] = normalize_text(t.text, options.lowercase, options.strip_punctuation)
            unknown = given_vocab.unknown_chars(texts[a.rel]) if given_vocab is not None else set()
            if not texts[a.rel]:
                reason, detail = EMPTY_TEXT, t.source
            elif unknown:
                reason, detail = (
                    OUT_OF_VOCAB,
                    f"{t.source}: {''.join(sorted(unknown))!r} not in {options.vocab}",
                )
        if reason:
            rejected.append({"path": str(a.path), "reason": reason, "detail": detail})
            continue
        split = not labelled  # text cannot be cut without an alignment
        jobs.append(Job(str(a.path), audio_root, a.rel, options.max_seconds, split, options.allow_clipping))
    for t in index.orphans(found.audio_dirs) if labelled else ():
        rejected.append(
            {"path": t.source, "reason": ORPHAN, "detail": f"{t.source}: no audio file matches it"}
        )
    return jobs, texts, labelled


def _collect(jobs, results, texts: dict, options: PrepOptions, rejected: list, extras=None) -> tuple:
    """Conversion results -> ({rel: [Utterance]}, source infos, number reused from cache).
    Texts and `extras` (fields a layout adds, e.g. speaker) are keyed by the job's rel or the cut's name."""
    groups, infos, cached = {}, [], 0
    for job, (result, was_cached) in zip(jobs, results, strict=True):
        cached += was_cached
        if result.get("info"):
            infos.append(result["info"])
        if result["status"] != "ok":
            rejected.append({"path": job.src, "reason": result["reason"], "detail": result["detail"]})
            continue
        rejected += [
            {"path": job.src, "reason": r["reason"], "detail": r["detail"]} for r in result["rejected"]
        ]
        for seg in result["segments"]:
            if seg["duration"] < options.min_seconds:
                detail = f"{seg['audio']}: {seg['duration']:.2f} s < --min-seconds {options.min_seconds:g}"
                rejected.append({"path": job.src, "reason": TOO_SHORT, "detail": detail})
                continue
            utt_id, key = seg["audio"].rsplit(".", 1)[0], seg.get("cut", job.rel)
            extra = dict((extras or {}).get(key, {}))
            utt = Utterance(utt_id, f"{AUDIO_DIR}/{seg['audio']}", seg["duration"], texts.get(key), extra)
            groups.setdefault(job.rel, []).append(utt)
    return groups, infos, cached


def _convert(jobs: list[Job], out: Path, workers: int, on_progress) -> list[tuple[dict, bool]]:
    """Results in job order, as (result, reused-from-cache)."""
    cache = ConversionCache(out)
    results: dict[Job, tuple[dict, bool]] = {}
    todo, seconds, reused = [], 0.0, 0

    def done(job: Job, result: dict, cached: bool = False) -> None:
        nonlocal seconds, reused
        results[job] = (result, cached)
        seconds += sum(s["duration"] for s in result.get("segments", ()))
        reused += cached  # a running count: summing `results` per file is quadratic at 100k files
        if not cached:
            cache.put(job, result)
        if on_progress is not None:
            on_progress(PrepProgress(len(results), len(jobs), seconds, reused))

    for job in jobs:
        hit = cache.get(job)
        if hit is not None:
            done(job, hit, cached=True)
        else:
            todo.append(job)
    try:
        convert_all(todo, workers, done)
    finally:
        cache.close()
    return [results[j] for j in jobs]


def _write(out: Path, splits: dict, vocab, rejected: list[dict], options: PrepOptions) -> list[str]:
    written = []
    for split, utts in splits.items():
        write_manifest(out / f"{split}.jsonl", utts)
        written.append(f"{split}.jsonl")
    outputs.write_jsonl(out / REJECTED_FILE, rejected)
    written.append(REJECTED_FILE)
    outputs.save_vocab(out, vocab)
    if vocab is not None:
        written.append(outputs.vocab_summary(vocab)["file"])
    if options.fairseq:
        written += outputs.write_fairseq(out, splits, SAMPLE_RATE)
    return written
