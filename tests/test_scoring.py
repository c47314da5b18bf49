"""Error counts agree with jiwer and with hand-computed cases; the bootstrap is seeded and sane."""

import random
import unicodedata

import jiwer
import numpy as np
import pytest

from w2vcli.data.text import normalize_text
from w2vcli.scoring import error_rates as scoring
from w2vcli.scoring.error_rates import EditCounts

WORDS = ["a", "b", "the", "cat", "café", "naïve", "東京", "は", "大きい", "don't", "x"]


def _jiwer_counts(out) -> tuple:
    return (out.hits, out.substitutions, out.deletions, out.insertions)


def _ours(c: EditCounts) -> tuple:
    return (c.hits, c.substitutions, c.deletions, c.insertions)


def _random_pairs(n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 9)))
        hyp = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 9)))
        yield ref, hyp


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_match_jiwer_per_utterance(seed):
    for ref, hyp in _random_pairs(400, seed):
        assert _ours(scoring.word_edits(ref, hyp)) == _jiwer_counts(jiwer.process_words(ref, hyp)), (ref, hyp)
        assert _ours(scoring.char_edits(ref, hyp)) == _jiwer_counts(jiwer.process_characters(ref, hyp)), (
            ref,
            hyp,
        )


def test_corpus_rates_match_jiwer_on_normalised_text():
    raw = [
        ("Hello, World!", "hello word"),
        ("The CAT sat.", "the cat sat on"),
        ("Café au lait", "cafe au lait"),
    ]
    raw += list(_random_pairs(50, 7))
    refs = [normalize_text(r) for r, _ in raw]
    hyps = [normalize_text(h) for _, h in raw]
    words = scoring.total(scoring.word_edits(r, h) for r, h in zip(refs, hyps, strict=True))
    chars = scoring.total(scoring.char_edits(r, h) for r, h in zip(refs, hyps, strict=True))
    jw, jc = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    assert _ours(words) == _jiwer_counts(jw)
    assert _ours(chars) == _jiwer_counts(jc)
    assert words.rate == pytest.approx(jw.wer)
    assert chars.rate == pytest.approx(jc.cer)


def test_alignment_counts_equal_count_edits():
    for ref, hyp in _random_pairs(200, 3):
        pairs = scoring.word_alignment(ref, hyp)
        assert scoring.counts_of(pairs) == scoring.word_edits(ref, hyp)
        assert [r for _, r, _ in pairs if r is not None] == ref.split()
        assert [h for _, _, h in pairs if h is not None] == hyp.split()


@pytest.mark.parametrize(
    "ref, hyp, counts, rate",
    [
        ("", "", (0, 0, 0, 0), 0.0),  # both empty: nothing to get wrong
        ("", "a b", (0, 0, 0, 2), 2.0),  # empty reference: each inserted word counts 1 (jiwer)
        ("a b c", "", (0, 0, 3, 0), 1.0),  # empty hypothesis: all deleted
        ("a b c d", "a x c d e", (3, 1, 0, 1), 0.5),
        ("東京 は 大きい", "東京 が 大きい", (2, 1, 0, 0), 1 / 3),
    ],
)
def test_hand_computed_word_cases(ref, hyp, counts, rate):
    c = scoring.word_edits(ref, hyp)
    assert _ours(c) == counts
    assert c.rate == pytest.approx(rate)


def test_hand_computed_char_cases():
    # "café" vs "cafe": one substitution out of 4 characters
    assert _ours(scoring.char_edits("café", "cafe")) == (3, 1, 0, 0)
    # spaces are characters: "ab c" -> "abc" deletes the space
    c = scoring.char_edits("ab c", "abc")
    assert _ours(c) == (3, 0, 1, 0) and c.rate == pytest.approx(1 / 4)
    # CJK: characters are code points
    assert _ours(scoring.char_edits("東京は", "東京が")) == (2, 1, 0, 0)
    assert scoring.char_edits("", "ab").rate == 2.0


def test_decomposed_accents_fold_under_normalisation():
    decomposed = unicodedata.normalize("NFD", "Café")
    assert scoring.word_edits(normalize_text("café"), normalize_text(decomposed)).errors == 0
    assert scoring.word_edits("café", decomposed).substitutions == 1  # without normalisation they differ


def test_align_ops():
    pairs = scoring.word_alignment("a b c d", "a x c d e")
    assert pairs == [
        ("equal", "a", "a"),
        ("sub", "b", "x"),
        ("equal", "c", "c"),
        ("equal", "d", "d"),
        ("ins", None, "e"),
    ]
    assert scoring.word_alignment("a b", "b") == [("del", "a", None), ("equal", "b", "b")]


def test_totals_ser_and_confusions():
    pairs = [("a b c", "a b c"), ("a b c", "a x c"), ("b c", "x c"), ("a", "")]
    counts = [scoring.word_edits(r, h) for r, h in pairs]
    t = scoring.total(counts)
    assert (t.errors, t.ref_len, t.hyp_len) == (3, 9, 8)
    assert t.rate == pytest.approx(3 / 9)
    assert scoring.sentence_error_rate(counts) == pytest.approx(3 / 4)
    assert scoring.sentence_error_rate([]) == 0.0
    conf = scoring.confusions([scoring.word_alignment(r, h) for r, h in pairs], top=2)
    assert conf == [("b", "x", 2), ("a", None, 1)]


def test_bootstrap_is_seeded_and_bounded():
    errors = np.array([[1, 0, 3, 2, 0], [0, 0, 1, 2, 0]])  # (K=2, U=5)
    lens = np.array([[4, 3, 5, 6, 2]] * 2)
    a = scoring.bootstrap_rates(errors, lens, 200, np.random.default_rng(5))
    b = scoring.bootstrap_rates(errors, lens, 200, np.random.default_rng(5))
    c = scoring.bootstrap_rates(errors, lens, 200, np.random.default_rng(6))
    assert a.shape == (200, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    per_utt = errors / lens
    assert (a >= per_utt.min() - 1e-12).all() and (a <= per_utt.max() + 1e-12).all()
    # system 1 never makes more errors than system 0 on any utterance, so it is never worse
    assert (a[:, 1] <= a[:, 0]).all()
    assert scoring.probability_of_improvement(a[:, 0], a[:, 1]) > 0.9


def test_bootstrap_identical_systems_and_single_utterance():
    errors = np.array([[2, 1, 0], [2, 1, 0]])
    lens = np.array([[5, 5, 5], [5, 5, 5]])
    r = scoring.bootstrap_rates(errors, lens, 100, np.random.default_rng(0))
    assert scoring.probability_of_improvement(r[:, 0], r[:, 1]) == 0.0  # ties are not improvements
    one = scoring.bootstrap_rates(np.array([[3]]), np.array([[4]]), 50, np.random.default_rng(0))
    np.testing.assert_allclose(one, 0.75)  # one utterance: every resample is the whole set


def test_bootstrap_blocks_cover_all_resamples():
    u = 300_000  # large enough that the resamples are drawn in several blocks
    rng = np.random.default_rng(1)
    errors = rng.integers(0, 3, size=(1, u))
    lens = np.full((1, u), 10)
    r = scoring.bootstrap_rates(errors, lens, 15, np.random.default_rng(2))
    assert r.shape == (15, 1) and np.isfinite(r).all()
    full = errors.sum() / lens.sum()
    assert np.abs(r - full).max() < 0.01  # 300k utterances: resamples stay close to the full rate
    assert len(np.unique(r)) > 1


def test_percentile_ci():
    lo, hi = scoring.percentile_ci(np.arange(1001) / 1000)
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)
