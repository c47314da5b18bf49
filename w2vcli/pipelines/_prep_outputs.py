"""What `w2v prep` writes besides audio: stable splits, the vocabulary, manifests, fairseq files,
`rejected.jsonl`, and the figures of the summary (`prep.json`)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np

from w2vcli.data.manifest import Utterance
from w2vcli.data.text import SPM_FILE, VOCAB_FILE, SentencePieceVocabulary, Vocabulary
from w2vcli.fsutil import atomic_open, atomic_write

SPLITS = ("train", "valid")


def split_value(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by the file's mirror path and the seed: its split never changes
    between runs, and adding files never moves old ones."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(groups: dict[str, list[Utterance]], valid_percent: float, seed: int) -> dict[str, list]:
    """Whole source files (all segments of a long recording together) go to one split. If the
    percentage rounds to no file at all, the file with the smallest split value is validation."""
    values = {g: split_value(g, seed) for g in groups}
    valid = {g for g, v in values.items() if v < valid_percent / 100}
    if not valid and valid_percent > 0 and len(groups) > 1:
        valid = {min(values, key=values.get)}
    out = {s: [] for s in SPLITS}
    for g in sorted(groups):
        out["valid" if g in valid else "train"].extend(groups[g])
    return out


def build_vocab(kind: str, vocab_size: int, texts: list[str], given=None):
    """`given` (an existing vocabulary) wins; else characters or a sentencepiece model on `texts`."""
    if given is not None:
        return given
    if kind == "sentencepiece":
        return SentencePieceVocabulary.train(texts, vocab_size)
    return Vocabulary.from_texts(texts)


def save_vocab(out_dir: Path, vocab) -> None:
    """Save it and remove the other kind, so DIR never holds two contradicting vocabularies."""
    for name in (VOCAB_FILE, SPM_FILE):
        (out_dir / name).unlink(missing_ok=True)
    if vocab is not None:
        vocab.save(out_dir)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_fairseq(out_dir: Path, splits: dict[str, list[Utterance]], sample_rate: int) -> list[str]:
    """fairseq's wav2vec manifests: `SPLIT.tsv` (root, then `path<TAB>frames`), `SPLIT.ltr`
    (letters, `|` between words), `SPLIT.wrd` (words), and `dict.ltr.txt` (letter counts)."""
    written, letters = [], Counter()
    for split, utts in splits.items():
        rows = [str(out_dir.resolve())]
        rows += [f"{Path(u.audio).as_posix()}\t{round(u.duration * sample_rate)}" for u in utts]
        atomic_write(out_dir / f"{split}.tsv", "\n".join(rows) + "\n")
        written.append(f"{split}.tsv")
        if utts and all(u.text is not None for u in utts):
            ltr = [" ".join(w for w in u.text.replace(" ", "|")) + " |" for u in utts]
            letters.update(c for line in ltr for c in line.split(" "))
            atomic_write(out_dir / f"{split}.ltr", "".join(line + "\n" for line in ltr))
            atomic_write(out_dir / f"{split}.wrd", "".join(u.text + "\n" for u in utts))
            written += [f"{split}.ltr", f"{split}.wrd"]
    if letters:
        atomic_write(out_dir / "dict.ltr.txt", "".join(f"{c} {n}\n" for c, n in letters.most_common()))
        written.append("dict.ltr.txt")
    return written


def duration_stats(durations: list[float]) -> dict:
    """min/median/mean/p95/max and a histogram over fixed, readable bins (seconds)."""
    if not durations:
        return {}
    d = np.asarray(durations)
    edges = [0, 1, 2, 5, 10, 15, 20, 30, 60, float("inf")]
    counts, _ = np.histogram(d, bins=edges)
    hist = [
        {"from": lo, "to": None if hi == float("inf") else hi, "count": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        if c
    ]
    return {
        "min": round(float(d.min()), 3),
        "median": round(float(np.median(d)), 3),
        "mean": round(float(d.mean()), 3),
        "p95": round(float(np.percentile(d, 95)), 3),
        "max": round(float(d.max()), 3),
        "histogram": hist,
    }


def source_stats(infos: list[dict]) -> dict:
    """How many source files had each sample rate, channel count and encoding."""
    return {
        "sample_rates": dict(
            sorted(Counter(str(i["sample_rate"]) for i in infos).items(), key=lambda kv: int(kv[0]))
        ),
        "channels": dict(
            sorted(Counter(str(i["channels"]) for i in infos).items(), key=lambda kv: int(kv[0]))
        ),
        "encodings": dict(Counter(f"{i['format']} {i['subtype']}" for i in infos).most_common()),
    }


def vocab_summary(vocab) -> dict | None:
    if vocab is None:
        return None
    if isinstance(vocab, SentencePieceVocabulary):
        return {
            "kind": "sentencepiece",
            "file": SPM_FILE,
            "size": len(vocab),
            "characters": "".join(sorted(vocab.characters())),
        }
    chars = [t for t in vocab.tokens if len(t) == 1 and t != vocab.word_separator]
    return {"kind": "chars", "file": VOCAB_FILE, "size": len(vocab), "characters": "".join(chars)}
