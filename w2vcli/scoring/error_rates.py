"""Error rates: edit-distance alignment, totals, confusions and the paired bootstrap.

Pure functions on already-normalised strings. WER aligns whitespace tokens, CER aligns
characters of the whole string including spaces (jiwer's `process_characters` definition).
The alignment is rapidfuzz's Levenshtein opcodes (jiwer's own engine, so the S/D/I split of
equal-cost alignments is the one jiwer reports). U = utterances, K = rows (systems x levels).

An empty reference has no denominator: the rate is errors / max(reference length, 1), so a
correct empty hypothesis scores 0 and each inserted word counts 1 (jiwer's convention).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein

EQUAL, SUB, DEL, INS = "equal", "sub", "del", "ins"
_OPS = {"equal": EQUAL, "replace": SUB, "delete": DEL, "insert": INS}


@dataclass(frozen=True)
class EditCounts:
    """Hits, substitutions, deletions, insertions of one alignment (or a sum of them)."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def hyp_len(self) -> int:
        return self.hits + self.substitutions + self.insertions

    @property
    def rate(self) -> float:
        return error_rate(self.errors, self.ref_len)

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.hits + other.hits,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )


def error_rate(errors: int, ref_len: int) -> float:
    """errors / ref_len; an empty reference divides by 1 (see the module docstring)."""
    return errors / max(ref_len, 1)


def align(
    ref: Sequence[Hashable], hyp: Sequence[Hashable]
) -> list[tuple[str, Hashable | None, Hashable | None]]:
    """Minimum-edit alignment as (op, ref_item, hyp_item) with op in equal/sub/del/ins."""
    pairs = []
    for tag, i1, i2, j1, j2 in Levenshtein.opcodes(ref, hyp):
        op = _OPS[tag]
        if op == DEL:
            pairs += [(DEL, r, None) for r in ref[i1:i2]]
        elif op == INS:
            pairs += [(INS, None, h) for h in hyp[j1:j2]]
        else:  # equal and replace blocks pair items one to one
            pairs += [(op, r, h) for r, h in zip(ref[i1:i2], hyp[j1:j2], strict=True)]
    return pairs


def count_edits(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> EditCounts:
    """Counts of the `align` alignment without building it."""
    n = {EQUAL: 0, SUB: 0, DEL: 0, INS: 0}
    for tag, i1, i2, j1, j2 in Levenshtein.opcodes(ref, hyp):
        n[_OPS[tag]] += max(i2 - i1, j2 - j1)
    return EditCounts(n[EQUAL], n[SUB], n[DEL], n[INS])


def counts_of(pairs: Iterable[tuple[str, object, object]]) -> EditCounts:
    """Counts of an alignment made by `align`."""
    n = Counter(op for op, _, _ in pairs)
    return EditCounts(n[EQUAL], n[SUB], n[DEL], n[INS])


def word_edits(ref: str, hyp: str) -> EditCounts:
    return count_edits(ref.split(), hyp.split())


def char_edits(ref: str, hyp: str) -> EditCounts:
    return count_edits(ref.strip(), hyp.strip())


def word_alignment(ref: str, hyp: str) -> list[tuple[str, str | None, str | None]]:
    return align(ref.split(), hyp.split())


def total(counts: Iterable[EditCounts]) -> EditCounts:
    return sum(counts, EditCounts())


def sentence_error_rate(counts: Sequence[EditCounts]) -> float:
    """Share of utterances with at least one error; 0 for no utterances."""
    return sum(c.errors > 0 for c in counts) / max(len(counts), 1)


def confusions(alignments: Iterable[list[tuple[str, str | None, str | None]]], top: int = 10):
    """Most frequent errors as (ref_word, hyp_word, count); None stands for the missing side."""
    counter = Counter((r, h) for pairs in alignments for op, r, h in pairs if op != EQUAL)
    # most_common keeps first-seen order among ties, so the result is stable for a given input
    return [(r, h, n) for (r, h), n in counter.most_common(top)]


def bootstrap_rates(errors: np.ndarray, ref_lens: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rates of `n` bootstrap resamples of utterances, the same resample for every row.

    errors, ref_lens: (K, U) per-utterance counts. Returns (n, K): sum(errors) / max(sum(ref_lens), 1)
    over each resample. Sharing the resample across rows is what makes the comparison paired.
    """
    errors = np.asarray(errors, dtype=np.float64)
    ref_lens = np.asarray(ref_lens, dtype=np.float64)
    k, u = errors.shape
    if u == 0:
        return np.zeros((n, k))
    rates = np.empty((n, k))
    block = max(1, 1_000_000 // u)  # bounds the (b, U) gathers to ~8 MB per row
    for start in range(0, n, block):
        stop = min(n, start + block)
        idx = rng.integers(0, u, size=(stop - start, u))  # (b, U)
        err = errors[:, idx].sum(axis=2)  # (K, b)
        ref = ref_lens[:, idx].sum(axis=2)
        rates[start:stop] = (err / np.maximum(ref, 1)).T
    return rates


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap samples (n,)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def probability_of_improvement(rates_a: np.ndarray, rates_b: np.ndarray) -> float:
    """Bisani & Ney (2004): share of paired resamples where B's error rate is strictly below A's."""
    return float(np.mean(rates_b < rates_a))
