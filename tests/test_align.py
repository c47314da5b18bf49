"""Forced alignment on hand-built emissions: exact paths, repeats, blanks, the wildcard, free ends,
long inputs a window at a time, and the text as the model spells it."""

import numpy as np
import pytest

from w2vcli.data.text import Vocabulary
from w2vcli.decoding.align import STAR, token_spans, viterbi
from w2vcli.decoding.align_text import prepare, spoken_form, token_sequence

BLANK, A, B, C, SEP = 0, 1, 2, 3, 4


def emissions(labels: list[int], v: int = 5, sure: float = 0.9) -> np.ndarray:
    """Log-probabilities (T, V) saying `labels[t]` with probability `sure` on frame t."""
    p = np.full((len(labels), v), (1 - sure) / (v - 1))
    p[np.arange(len(labels)), labels] = sure
    return np.log(p)


def spans_of(labels, tokens, **kw):
    lp = emissions(labels)
    path, _ = viterbi(lp, tokens, BLANK, **kw)
    return [(s.start, s.end) if s else None for s in token_spans(path, lp, tokens)]


def test_exact_path_blanks_and_a_skipped_blank():
    assert spans_of([0, A, A, 0, B, 0], [A, B]) == [(1, 3), (4, 5)]
    assert spans_of([A, B, B], [A, B]) == [(0, 1), (1, 3)]  # no blank between different tokens


def test_repeated_tokens_need_a_blank_between_them():
    assert spans_of([A, 0, A], [A, A]) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="need at least 3 frames"):
        viterbi(emissions([A, A]), [A, A])
    assert spans_of([A, A, A, 0, A], [A, A]) == [(0, 3), (4, 5)]


def test_every_token_is_placed_even_against_the_emissions():
    # the audio says only "a"; the text says "a b": b gets the frame that fits it least badly
    got = spans_of([0, A, A, 0, 0, 0], [A, B])
    assert got[0][0] == 1 and got[1] is not None and got[1][0] >= got[0][1]


def test_the_wildcard_absorbs_audio_the_text_lacks_and_is_optional():
    audio = [C, C, 0, C, C, 0, A, A, 0, B, B, 0]  # "c c" is not in the text
    without = spans_of(audio, [A, B])
    with_star = spans_of(audio, [STAR, A, B, STAR])
    assert with_star[1:3] == [(6, 8), (9, 11)]
    assert with_star[0] is not None and with_star[0][0] == 0 and with_star[0][1] <= 5
    assert without[0] == (6, 8)  # blanks can absorb it here too, but only at the blank's cost
    # a transcript that matches: the wildcards are skipped and the spans are those without them
    assert spans_of([0, A, 0, B, 0], [STAR, A, STAR, B, STAR]) == [None, (1, 2), None, (3, 4), None]


def test_star_between_words_takes_an_untranscribed_word_in_the_middle():
    audio = [A, A, SEP, C, C, C, SEP, B, B, 0]
    got = spans_of(audio, [A, SEP, STAR, B])
    assert got[0] == (0, 2) and got[3] == (7, 9)
    assert got[2] is not None and got[2][0] >= 3


def test_a_narrow_band_finds_the_full_trellis_path_on_a_long_input():
    rng = np.random.default_rng(0)
    labels, tokens = [], [STAR]
    for w in range(120):  # 120 words of 2-4 letters with pauses of 1-6 frames
        if w:
            tokens += [SEP, STAR]
            labels += [SEP] + [0] * int(rng.integers(1, 6))
        for _ in range(int(rng.integers(2, 5))):
            tok = int(rng.integers(1, 4))
            if tokens[-1] == tok:
                labels.append(0)
            tokens.append(tok)
            labels += [tok] * int(rng.integers(1, 4))
    tokens.append(STAR)
    lp = emissions(labels)
    full, total = viterbi(lp, tokens, band=10**6)
    banded, banded_total = viterbi(lp, tokens, band=48)
    assert 2 * len(tokens) + 1 > 20 * 48  # the band holds a small part of the trellis
    assert np.array_equal(full, banded) and banded_total == total


def test_an_untranscribed_stretch_longer_than_the_band_is_absorbed():
    labels = [A, A, SEP] + [C] * 300 + [SEP, B, B, 0]
    tokens = [STAR, A, SEP, STAR, B, STAR]
    lp = emissions(labels)
    path, _ = viterbi(lp, tokens, band=8)
    spans = token_spans(path, lp, tokens)
    assert (spans[1].start, spans[1].end) == (0, 2)
    assert (spans[4].start, spans[4].end) == (304, 306)
    assert spans[3].end - spans[3].start >= 290  # the wildcard took the stretch


VOCAB = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"])


def test_spoken_forms_numbers_scripts_case_and_punctuation():
    letters = set("abcdefghijklmnopqrstuvwxyz'")
    assert spoken_form("Hello,", letters) == "hello"
    assert spoken_form("1984", letters) == "one thousand nine hundred and eighty four"
    assert spoken_form("3rd", letters) == "third"
    assert spoken_form("Café", letters) == "cafe"
    assert spoken_form("Привет", letters) == "privet"
    assert spoken_form("—", letters) == ""
    assert spoken_form("don't", letters) == "don't"


def test_token_sequence_keeps_the_users_words():
    words = prepare("Hello, 2 worlds! —", VOCAB)
    assert [w.text for w in words] == ["Hello,", "2", "worlds!", "—"]
    assert [w.spoken for w in words] == ["hello", "two", "worlds", ""]
    tokens, owner = token_sequence(words, VOCAB)
    sep = VOCAB.index["|"]
    assert tokens[0] == STAR and tokens[-1] == STAR
    assert tokens.count(sep) == 2 and tokens.count(STAR) == 4  # the unspellable word adds nothing
    assert sorted(set(owner) - {-1}) == [0, 1, 2]


def test_a_letter_straight_after_a_letter_costs_more_than_one_after_a_blank():
    p = np.full((3, 5), 0.05)
    p[0, A] = 0.8
    p[1:, B] = p[1:, BLANK] = 0.425  # B on frame 1 or frame 2: the same emissions either way
    lp = np.log(p)
    path, _ = viterbi(lp, [A, B])
    spans = token_spans(path, lp, [A, B], trim=False)
    assert (spans[1].start, spans[1].end) == (2, 3)  # after a blank, not squeezed against A


# ---- contracts pinned with exact outputs (issue 26) ----


def spans_on(lp, tokens, **kw):
    """Token spans (start, end) on the emissions lp (T, V) of a full vocabulary."""
    path, _ = viterbi(lp, tokens, 0, **kw)
    return [(s.start, s.end) if s else None for s in token_spans(path, lp, tokens)]


def test_contract_the_wildcard_costs_two_nats_a_frame():
    p = np.full((3, len(VOCAB)), 0.2 / (len(VOCAB) - 3))
    a, c = VOCAB.index["a"], VOCAB.index["c"]
    p[0, c], p[0, 0] = 0.7, 0.1  # the text lacks this "c": star (0.7 e^-2 = 0.095) loses to blank (0.1)
    p[1, a], p[1, 0] = 0.7, 0.1
    p[2, 0] = 0.8
    lp = np.log(p / p.sum(axis=1, keepdims=True))
    assert spans_on(lp, [STAR, a, STAR]) == [None, (1, 2), None]
    assert spans_on(lp, [STAR, a, STAR], star_penalty=1.5) == [(0, 1), (1, 2), None]  # 0.7 e^-1.5 = 0.156


def test_contract_a_token_span_is_trimmed_to_frames_within_two_nats_of_blank():
    p = np.full((6, len(VOCAB)), 0.01)
    p[:, 0] = 0.5
    p[1, A] = 0.9  # heard
    p[2, A] = 0.5 * np.exp(-1.9)  # within 2 nats of blank: part of the span
    p[3, A] = 0.5 * np.exp(-2.1)  # beyond: cut, though the path lingers on "a" there
    p[5, B] = 0.9
    lp = np.log(p)
    a, b = token_spans(np.array([0, 1, 1, 1, 2, 3]), lp, [A, B])
    assert (a.start, a.end, b.start, b.end) == (1, 3, 5, 6)
    assert a.score == pytest.approx(np.log(p[1:3, A]).mean()) and a.best == pytest.approx(
        np.log([0.9, 0.5]).mean()
    )
    (a, _) = token_spans(np.array([0, 0, 0, 1, 2, 3]), lp, [A, B])
    assert (a.start, a.end) == (3, 4)  # nothing within 2 nats: the token keeps its best frame


# facebook/wav2vec2-base-960h's letters: capitals only
UPPER = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"])
BOTH = Vocabulary(
    ["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
)
SOME_CAPITALS = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'", "I", "O"])


@pytest.mark.parametrize(
    "word, vocab, spoken",
    [
        ("$1,234", VOCAB, "one thousand two hundred and thirty four dollars"),
        ("1,234,567", VOCAB, "one million two hundred and thirty four thousand five hundred and sixty seven"),
        ("$1", VOCAB, "one dollar"),
        ("$1.50", VOCAB, "one dollar fifty cents"),
        ("£5", VOCAB, "five pounds sterling"),
        ("12%", VOCAB, "twelve percent"),
        ("3.5", VOCAB, "three point five"),
        ("3RD", VOCAB, "third"),
        ("1984", UPPER, "ONE THOUSAND NINE HUNDRED AND EIGHTY FOUR"),
        ("Don’t", VOCAB, "don't"),
        ("O'Neil's", UPPER, "O'NEIL'S"),
        ("O'Neil's", BOTH, "O'Neil's"),
        ("Café", BOTH, "Cafe"),
        ("Привет", UPPER, "PRIVET"),
        ("forty-two", VOCAB, "forty two"),
        ("hello,", SOME_CAPITALS, "hello"),
        ("Oslo", SOME_CAPITALS, "Oslo"),
        ("Ice", SOME_CAPITALS, "Ice"),
        ("Wow", SOME_CAPITALS, "wow"),
        ("🎉", VOCAB, ""),
        (":tada:", UPPER, ""),
    ],
)
def test_contract_spelling(word, vocab, spoken):
    assert " ".join(w.spoken for w in prepare(word, vocab)) == spoken


def test_contract_spelling_in_other_languages():
    letters = set("abcdefghijklmnopqrstuvwxyz")
    assert spoken_form("1,5", letters, "fr") == "un virgule cinq"  # a decimal comma outside English
    assert spoken_form("12%", letters, "de") == "zwolf prozent"
