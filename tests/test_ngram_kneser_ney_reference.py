"""`w2v lm` against Kneser-Ney computed another way: by hand for two sentences, and by a small
independent implementation; the ARPA header counts against the sections they announce.

The variant (ngram.py's docstring; KenLM's, Chen & Goodman's interpolated modified Kneser-Ney):
- adjusted counts a(g): raw counts at the top order and for n-grams that start with <s>; elsewhere
  the number of distinct words seen to the left of g (continuation counts). <s> is never predicted.
- each order n discounts by D1, D2, D3+ estimated from its own adjusted count-of-counts n1..n4
  (Y = n1 / (n1 + 2 n2), Dk = k - (k + 1) Y n_{k+1} / n_k, clipped to [0, k]; 0.5, 1, 1.5 when
  some n_k is 0), and gives the freed mass gamma(h) = sum_w D(a(h w)) / sum_w a(h w) to order n - 1:
  p(w | h) = (a(h w) - D(a(h w))) / sum_w a(h w) + gamma(h) p(w | h minus its first word).
- below unigrams: uniform over the vocabulary (the words, </s> and <unk>).
"""

import math
import re
from collections import Counter, defaultdict
from functools import cache
from itertools import product

import pytest
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.decoding.lm import ArpaLM
from w2vcli.decoding.ngram import estimate

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# Two sentences whose raw bigram and trigram count-of-counts n1..n4 are all non-zero: the top order
# of the bigram and the trigram model estimates three different discounts (0.64, 1.05, 0.45 and
# 0.71, 0.93, 0.14); the lower orders (continuation counts) and the 4-gram model use the fallback.
SENTENCES = ["b c a c b b d c a c a c", "d b d c a d c a c"]
# ARPA stores log10 values with 6 decimals: each stored number is off by <= 5e-7, a backed-off
# probability adds up to `order` of them. Measured: <= 9.3e-7 over orders 1-4 and every context here.
# In memory (`estimate`) the two implementations agree exactly (relative difference 0).
ARPA_TOL = 2.5e-6


def reference_model(sentences: list[list[str]], order: int):
    """p(w | h) by the textbook definitions, straight from the corpus (not from ngram.py's tables)."""
    seqs = [[BOS, *s, EOS] for s in sentences if s]
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n]: n-gram -> occurrences
    for q in seqs:
        for n in range(1, order + 1):
            for i in range(len(q) - n + 1):
                gram = tuple(q[i : i + n])
                if gram != (BOS,):
                    raw[n][gram] += 1
    left: list[defaultdict] = [defaultdict(set) for _ in range(order + 1)]  # left[n]: n-gram -> left words
    for n in range(1, order):
        for gram in raw[n + 1]:
            left[n][gram[1:]].add(gram[0])
    adjusted = [{}] + [
        {g: (c if n == order or g[0] == BOS else len(left[n][g])) for g, c in raw[n].items()}
        for n in range(1, order + 1)
    ]

    def discounts(counts) -> tuple[float, float, float]:
        k = Counter(counts)
        n1, n2, n3, n4 = k[1], k[2], k[3], k[4]
        if 0 in (n1, n2, n3, n4):
            return 0.5, 1.0, 1.5
        y = n1 / (n1 + 2 * n2)
        d = 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
        return tuple(min(max(x, 0.0), i) for i, x in zip((1, 2, 3), d, strict=True))

    d = [None] + [discounts(adjusted[n].values()) for n in range(1, order + 1)]
    vocab = {g[0] for g in adjusted[1]} | {UNK}
    followers: list[defaultdict] = [defaultdict(dict) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in adjusted[n].items():
            followers[n][g[:-1]][g[-1]] = c

    def discount(n: int, c: int) -> float:
        return 0.0 if c == 0 else d[n][min(c, 3) - 1]

    def gamma(h: tuple) -> float | None:
        f = followers[len(h) + 1].get(h)
        return sum(discount(len(h) + 1, c) for c in f.values()) / sum(f.values()) if f else None

    @cache
    def p(h: tuple, w: str) -> float:
        h = h[max(len(h) - order + 1, 0) :]  # the last order - 1 words at most
        f = followers[len(h) + 1].get(h)
        if not f:  # an unseen context passes everything down
            return p(h[1:], w)
        below = 1.0 / len(vocab) if not h else p(h[1:], w)
        c = f.get(w, 0)
        return (c - discount(len(h) + 1, c)) / sum(f.values()) + gamma(h) * below

    return p, gamma, adjusted, vocab


def arpa_sections(path) -> tuple[dict[int, int], dict[int, list[str]]]:
    """The `ngram n=K` header counts and the lines of each `\\n-grams:` section."""
    header, sections, current = {}, {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"ngram (\d+)=(\d+)", line.strip()):
            header[int(m[1])] = int(m[2])
        elif m := re.fullmatch(r"\\(\d+)-grams:", line.strip()):
            current = int(m[1])
            sections[current] = []
        elif line.strip() == "\\end\\":
            current = None
        elif current is not None and line.strip():
            sections[current].append(line)
    return header, sections


def w2v_lm(tmp_path, lines: list[str], order: int):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    out = tmp_path / f"lm{order}.arpa"
    r = CliRunner().invoke(app, ["lm", str(text), "--out", str(out), "--order", str(order)])
    assert r.exit_code == 0, r.output
    return out, " ".join(r.output.split())


def test_two_sentences_by_hand(tmp_path):
    """Bigram model of "the cat" and "the dog": every count is 1 or 2, so D = 0.5, 1 (the fallback).

    Unigram adjusted counts (distinct left words): the 1 (<s>), cat 1, dog 1, </s> 2 (cat, dog); total 5.
    gamma() = (3 x 0.5 + 1) / 5 = 0.5, spread over 5 words (the, cat, dog, </s>, <unk>): 0.1 each.
      p(the) = p(cat) = p(dog) = (1 - 0.5) / 5 + 0.1 = 0.2,  p(</s>) = (2 - 1) / 5 + 0.1 = 0.3,  p(<unk>) = 0.1
    Bigrams (raw counts, the top order): <s> the 2; the cat 1, the dog 1; cat </s> 1; dog </s> 1.
      p(the | <s>) = (2 - 1) / 2 + (1 / 2) 0.2 = 0.6        p(cat | <s>) = (1 / 2) 0.2 = 0.1
      p(cat | the) = (1 - 0.5) / 2 + (1 / 2) 0.2 = 0.35     p(</s> | the) = (1 / 2) 0.3 = 0.15
      p(</s> | cat) = (1 - 0.5) / 1 + (0.5 / 1) 0.3 = 0.65  p(<unk> | cat) = 0.5 x 0.1 = 0.05
    """
    out, _ = w2v_lm(tmp_path, ["the cat", "the dog"], order=2)
    lm = ArpaLM.load(out)
    by_hand = {
        ((), "the"): 0.2, ((), "cat"): 0.2, ((), "dog"): 0.2, ((), "</s>"): 0.3, ((), "<unk>"): 0.1,
        (("<s>",), "the"): 0.6, (("<s>",), "cat"): 0.1, (("the",), "cat"): 0.35, (("the",), "dog"): 0.35,
        (("the",), "</s>"): 0.15, (("cat",), "</s>"): 0.65, (("cat",), "<unk>"): 0.05, (("dog",), "zebra"): 0.05,
    }  # fmt: skip
    for (context, word), p in by_hand.items():
        assert lm.log10_prob(context, word) == pytest.approx(math.log10(p), abs=ARPA_TOL), (context, word)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_estimate_equals_an_independent_kneser_ney(order):
    sentences = [s.split() for s in SENTENCES]
    p, gamma, adjusted, vocab = reference_model(sentences, order)
    model = estimate(sentences, order)
    for n in range(1, order + 1):  # the same n-grams are stored: those seen (and <unk>)
        expected = set(adjusted[n]) | ({(UNK,)} if n == 1 else set())
        assert set(model.probs[n - 1]) == expected, n
        for gram, prob in model.probs[n - 1].items():
            assert prob == pytest.approx(p(gram[:-1], gram[-1]), rel=1e-12), gram
    for n in range(1, order):
        for context, weight in model.backoffs[n - 1].items():
            assert weight == pytest.approx(gamma(context), rel=1e-12), context


@pytest.mark.parametrize("order", [2, 3, 4])
def test_w2v_lm_arpa_scores_equal_an_independent_kneser_ney_in_every_context(tmp_path, order):
    sentences = [s.split() for s in SENTENCES]
    p, _, _, vocab = reference_model(sentences, order)
    out, _ = w2v_lm(tmp_path, SENTENCES, order)
    lm = ArpaLM.load(out)
    words = sorted(vocab - {EOS, UNK})
    contexts = [()]
    for k in range(1, order):
        contexts += list(product(words, repeat=k)) + [(BOS, *h) for h in product(words, repeat=k - 1)]
    worst = 0.0
    for context, word in product(contexts, [*words, EOS, UNK, "zebra"]):
        want = math.log10(p(context, UNK if word == "zebra" else word))
        worst = max(worst, abs(lm.log10_prob(context, word) - want))
        assert lm.log10_prob(context, word) == pytest.approx(want, abs=ARPA_TOL), (context, word)
    assert worst > 0  # the file really was rounded: the tolerance is not hiding a second code path


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_arpa_header_counts_equal_the_section_lengths(tmp_path, order):
    out, message = w2v_lm(tmp_path, [*SENTENCES, "a zebra"], order)
    header, sections = arpa_sections(out)
    assert sorted(header) == sorted(sections) == list(range(1, order + 1))
    for n in range(1, order + 1):
        assert header[n] == len(sections[n]), (n, header[n], len(sections[n]))
        assert f"{len(sections[n]):,} {n}-grams" in message  # what `w2v lm` says it wrote
    assert any(line.split("\t")[1] == BOS for line in sections[1])  # <s> is listed (and counted)
