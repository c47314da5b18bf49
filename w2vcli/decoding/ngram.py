"""Build a word n-gram language model from text: interpolated modified Kneser-Ney, written as ARPA.

    lm = estimate(sentences, order=3)   # sentences: lists of words
    write_arpa(lm, "lm.arpa")           # readable by `w2v transcribe --lm`, KenLM and SRILM

Chen & Goodman (1998): each order discounts its counts by D1, D2 or D3+ (from that order's
count-of-counts) and gives the mass it frees to the next lower order; every order below the top
counts a word's distinct left contexts instead of its occurrences ("continuation counts"), and
unigrams interpolate with the uniform distribution over the vocabulary plus <unk>. An interpolated
model is a back-off model whose probabilities are the interpolated ones and whose back-off weight
for a context h is the mass h freed, gamma(h), which is what the ARPA file stores.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from w2vcli.decoding.lm import BOS, EOS, UNK
from w2vcli.errors import W2VError
from w2vcli.fsutil import atomic_open

Ngram = tuple[str, ...]


@dataclass
class NgramModel:
    order: int
    probs: list[dict[Ngram, float]]  # probs[n - 1]: n-gram -> interpolated probability
    backoffs: list[dict[Ngram, float]]  # backoffs[n - 1]: context n-gram -> gamma (mass passed down)


def discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    """D1, D2, D3+ from the number of n-grams seen once .. four times (Chen & Goodman's estimates),
    kept in [0, c] so that no count goes negative; tiny corpora fall back to D = 0.5, 1, 1.5."""
    n = Counter(c for c in counts if c <= 4)
    n1, n2, n3, n4 = (n[k] for k in (1, 2, 3, 4))
    if not (n1 and n2 and n3 and n4):
        return 0.5, 1.0, 1.5
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return tuple(min(max(x, 0.0), float(k)) for k, x in zip((1, 2, 3), d, strict=True))


def _discount(c: int, d: tuple[float, float, float]) -> float:
    return 0.0 if c == 0 else d[min(c, 3) - 1]


def estimate(sentences: Iterable[list[str]], order: int = 3) -> NgramModel:
    """An interpolated modified Kneser-Ney model of `order` over the words of `sentences`."""
    if order < 1:
        raise W2VError("the n-gram order must be at least 1")
    top: Counter[Ngram] = Counter()
    for words in sentences:
        if not words:
            continue
        seq = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(1 if n == 1 else 0, len(seq) - n + 1):  # <s> is a context, never predicted
                if n == order or seq[i] == BOS:  # an n-gram at a sentence start has no left context
                    top[tuple(seq[i : i + n])] += 1
    if not top:
        raise W2VError("no words to build a language model from")
    # counts[n - 1]: raw counts at the top order and for n-grams starting with <s>; elsewhere the
    # number of distinct words seen to the left (continuation counts).
    counts: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    for gram, c in top.items():
        counts[len(gram) - 1][gram] += c
    for n in range(order, 1, -1):
        for gram in list(counts[n - 1]):
            counts[n - 2][gram[1:]] += 1
    vocab = {g[0] for g in counts[0]} | {UNK}
    probs: list[dict[Ngram, float]] = [{} for _ in range(order)]
    backoffs: list[dict[Ngram, float]] = [{} for _ in range(order)]

    def lower(gram: Ngram) -> float:  # "order 0": uniform over the vocabulary and <unk>
        return 1.0 / len(vocab)

    for n in range(1, order + 1):
        d = discounts(counts[n - 1].values())
        by_context: dict[Ngram, list[tuple[str, int]]] = defaultdict(list)
        for gram, c in counts[n - 1].items():
            by_context[gram[:-1]].append((gram[-1], c))
        for ctx, followers in by_context.items():
            total = sum(c for _, c in followers)
            freed = sum(_discount(c, d) for _, c in followers) / total
            for w, c in followers:
                below = lower((*ctx[1:], w))
                probs[n - 1][(*ctx, w)] = (c - _discount(c, d)) / total + freed * below
            if n == 1:
                for w in vocab - {
                    f for f, _ in followers
                }:  # never seen as a unigram (<unk>): uniform share only
                    probs[0][(w,)] = freed * lower((w,))
            else:
                backoffs[n - 2][ctx] = freed
        lower = _interpolated(probs, backoffs)
    probs[0].pop((BOS,), None)
    return NgramModel(order, probs, backoffs)


def _interpolated(probs, backoffs):
    """p(w | h) for any n-gram (h, w) up to the orders estimated so far: the stored value, or gamma(h)
    times the order below."""

    def p(gram: Ngram) -> float:
        hit = probs[len(gram) - 1].get(gram)
        if hit is not None or len(gram) == 1:
            return hit or 0.0
        return backoffs[len(gram) - 2].get(gram[:-1], 1.0) * p(gram[1:])

    return p


def write_arpa(model: NgramModel, path: str | os.PathLike) -> None:
    """ARPA text: log10 probabilities and back-off weights; <s> is listed with -99 (never predicted)."""
    grams = [dict(p) for p in model.probs]
    grams[0][(BOS,)] = 0.0
    with atomic_open(path) as f:
        f.write("\\data\\\n")
        for n, g in enumerate(grams, 1):
            f.write(f"ngram {n}={len(g)}\n")
        for n, g in enumerate(grams, 1):
            f.write(f"\n\\{n}-grams:\n")
            for gram in sorted(g):
                logp = -99.0 if gram == (BOS,) else math.log10(g[gram])
                line = f"{logp:.6f}\t{' '.join(gram)}"
                if n < model.order:
                    bow = model.backoffs[n - 1].get(gram)
                    if bow is not None:
                        line += f"\t{math.log10(bow):.6f}" if bow > 0 else "\t-99.000000"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def read_sentences(
    sources: list[str], lowercase: bool = True, strip_punctuation: bool = True, stdin=None
) -> list[list[str]]:
    """Sentences as word lists from text files (one per line), manifests (.jsonl: their "text"), `w2v prep`
    directories (train.jsonl and valid.jsonl) or "-" (stdin), normalised as `w2v prep` does."""
    import sys
    from pathlib import Path

    from w2vcli.data.manifest import read_manifest
    from w2vcli.data.text import normalize_text

    def lines_of(src: str) -> Iterable[str]:
        if src == "-":
            yield from stdin or sys.stdin
            return
        path = Path(src)
        if path.is_dir():
            manifests = [path / f for f in ("train.jsonl", "valid.jsonl") if (path / f).is_file()]
            if not manifests:
                raise W2VError(
                    f"{src}: a directory without train.jsonl; give text files, manifests or a prep output"
                )
            for m in manifests:
                yield from lines_of(str(m))
            return
        if path.suffix == ".jsonl":
            yield from (u.text or "" for u in read_manifest(path))
            return
        try:
            with open(path, encoding="utf-8") as f:
                yield from f
        except FileNotFoundError:
            raise W2VError(f"{src}: no such file") from None
        except UnicodeDecodeError:
            raise W2VError(f"{src}: not UTF-8 text") from None

    out = []
    for src in sources:
        for line in lines_of(src):
            words = normalize_text(line, lowercase, strip_punctuation).split()
            if words:
                out.append(words)
    return out
