"""`w2v prep` on corpora in a known layout (w2vcli.data.layouts): which layout each source is in,
the conversion jobs for its recordings, and the splits (the release's own, by speaker, or by file)."""

from __future__ import annotations

from pathlib import Path

from w2vcli.data.layouts import LayoutData, LayoutUtterance, detect, read
from w2vcli.data.text import normalize_text
from w2vcli.data.transcripts import EMPTY_TEXT, NO_TRANSCRIPT
from w2vcli.errors import UsageError
from w2vcli.pipelines import _prep_outputs as outputs
from w2vcli.pipelines._prep_cache import CACHE_FILE
from w2vcli.pipelines._prep_convert import Job
from w2vcli.pipelines.prep import OUT_OF_VOCAB, PrepOptions

STAGE_DIR = ".sources"  # in the output folder: audio that a layout embeds (Hugging Face bytes)
DUPLICATE_NAME = "duplicate id"


def layouts_for(sources: list, options: PrepOptions) -> list[str] | None:
    """Each source's layout, or None for plain folders and files (prep's usual reading)."""
    layouts = None if options.layout == "plain" else layouts_of(sources, options.layout)
    if layouts is not None and options.transcripts:
        raise UsageError(
            "--transcripts is for plain folders; this layout has its own texts (or pass --layout plain)"
        )
    if layouts is None and options.split_by == "speaker":
        raise UsageError("--split-by speaker needs speakers: a kaldi, commonvoice, mls or hf --layout")
    return layouts


def layouts_of(sources: list, layout: str) -> list[str] | None:
    """The layout of each source, or None when all are plain folders/files (prep's usual reading)."""
    if layout != "auto":
        return [layout] * len(sources)
    found = [detect(Path(s)) for s in sources]
    if all(f is None for f in found):
        return None
    plain = [str(s) for s, f in zip(sources, found) if f is None]
    if plain:
        raise UsageError(
            f"{plain[0]} is a plain folder or file, the other sources are in a layout "
            f"({', '.join(sorted({f for f in found if f}))}); run prep on each kind separately"
        )
    return found


def read_all(sources: list, layouts: list[str], options: PrepOptions, out: Path) -> LayoutData:
    """Every source read and merged; `out` is created first (Hugging Face audio is staged in it)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CACHE_FILE).touch()  # before staging: an interrupted run leaves a folder prep owns
    merged = LayoutData("+".join(dict.fromkeys(layouts)))
    for source, layout in zip(sources, layouts):
        data = read(layout, Path(source), options.run_commands, out / STAGE_DIR)
        merged.recordings += data.recordings
        merged.rejected += data.rejected
        merged.notes += data.notes
        merged.listed += data.listed
    return merged


def plan(data: LayoutData, audio_dir: Path, options: PrepOptions, given_vocab) -> tuple:
    """-> (jobs, {name: text}, {name: extra fields}, labelled); what cannot be used goes to
    `data.rejected`. One job per recording: a whole file, or its cuts decoded once."""
    audio_root, rejected = str(audio_dir.resolve()), data.rejected
    labelled = not options.unlabelled and any(
        u.text is not None for r in data.recordings for u in r.utterances
    )
    jobs, texts, extras, names = [], {}, {}, set()
    for rec in data.recordings:
        keep = []
        for u in rec.utterances:
            problem = _problem(u, rec.source, labelled, options, given_vocab, texts, names)
            if problem is not None:
                rejected.append({"path": rec.source, "reason": problem[0], "detail": problem[1]})
                continue
            names.add(u.name)
            extras[u.name] = {k: v for k, v in (("speaker", u.speaker), ("split", u.split)) if v is not None}
            keep.append(u)
        if not keep:
            continue
        common = dict(
            max_seconds=options.max_seconds, split=not labelled, allow_clipping=options.allow_clipping
        )
        if len(keep) == 1 and keep[0].start == 0 and keep[0].end is None:
            jobs.append(Job(rec.source, audio_root, keep[0].name, command=rec.command, **common))
        else:
            cuts = tuple((u.name, u.start, u.end) for u in keep)
            jobs.append(Job(rec.source, audio_root, rec.key, cuts=cuts, command=rec.command, **common))
    if options.split_by == "speaker" and extras and not any("speaker" in e for e in extras.values()):
        raise UsageError(
            f"--split-by speaker: this {data.layout} data names no speakers; use --split-by file"
        )
    return jobs, texts, extras, labelled


def _problem(u: LayoutUtterance, source: str, labelled: bool, options, given_vocab, texts, names):
    """(reason, detail) when the utterance cannot be used; else None, its text stored in `texts`."""
    if u.name in names:
        return DUPLICATE_NAME, f"{source}: a second utterance named {u.name}"
    if not labelled:
        return None
    if u.text is None:
        return NO_TRANSCRIPT, f"{source} ({u.name}): others have one; pass --unlabelled for audio only"
    text = normalize_text(u.text, options.lowercase, options.strip_punctuation)
    if not text:
        return EMPTY_TEXT, f"{source} ({u.name}): empty after normalisation ({u.text!r})"
    unknown = given_vocab.unknown_chars(text) if given_vocab is not None else set()
    if unknown:
        return OUT_OF_VOCAB, f"{source} ({u.name}): {''.join(sorted(unknown))!r} not in {options.vocab}"
    texts[u.name] = text
    return None


def assign(groups: dict[str, list], options: PrepOptions) -> dict[str, list]:
    """The release's own split where the layout gives one; the rest split by speaker
    (`--split-by speaker`: no speaker in two splits) or by recording, stable per seed."""
    fixed: dict[str, list] = {}
    free: dict[str, list] = {}
    for rel, utts in groups.items():
        for u in utts:
            split = u.extra.pop("split", None)
            if split is not None:
                fixed.setdefault(split, []).append(u)
            elif options.split_by == "speaker":
                key = f"speaker\0{u.extra['speaker']}" if "speaker" in u.extra else f"file\0{rel}"
                free.setdefault(key, []).append(u)
            else:
                free.setdefault(rel, []).append(u)
    splits = outputs.assign_splits(free, options.valid_percent, options.seed) if free else {}
    for split, utts in fixed.items():
        splits.setdefault(split, []).extend(utts)
    for s in outputs.SPLITS:
        splits.setdefault(s, [])
    return splits


def summary(data: LayoutData) -> dict:
    return {"name": data.layout, "listed": data.listed, "notes": data.notes}
