"""CTC decoding: parity with transformers' Wav2Vec2CTCTokenizer, beam search, LM, timestamps."""

import gzip
import itertools
import math
import sys

import numpy as np
import pytest
import torch

from w2vcli.data.text import SentencePieceVocabulary, Vocabulary
from w2vcli.decoding.ctc import (
    BeamOptions,
    Hypothesis,
    char_timestamps,
    decode,
    forced_align,
    greedy_search,
    log_softmax,
    prefix_beam_search,
    to_text,
    word_timestamps,
)
from w2vcli.decoding.lm import ArpaLM, Lexicon, load_lm
from w2vcli.errors import W2VError

VOCAB = Vocabulary.from_texts(["the bad bat's abc xyz"])


def emission(labels, tokens, peak=8.0, noise=1.0, seed=0):
    """Logits (T, V) whose argmax spells `labels` frame by frame ("_" is the blank)."""
    index = {t: i for i, t in enumerate(tokens)}
    g = torch.Generator().manual_seed(seed)
    logits = noise * torch.randn(len(labels), len(tokens), generator=g)
    for t, lab in enumerate(labels):
        logits[t, 0 if lab == "_" else index[lab]] += peak
    return logits


def probs_emission(rows, tokens):
    """Log-probs (T, V) from rows of {token: prob}; unlisted tokens get a tiny share."""
    index = {t: i for i, t in enumerate(tokens)}
    p = np.full((len(rows), len(tokens)), 1e-6)
    for t, row in enumerate(rows):
        for tok, q in row.items():
            p[t, 0 if tok == "_" else index[tok]] = q
    return torch.tensor(np.log(p / p.sum(axis=1, keepdims=True)), dtype=torch.float32)


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("vocab")
    VOCAB.save(d)
    return transformers.Wav2Vec2CTCTokenizer(str(d / "vocab.json"))


def random_frames(rng, n_frames):
    """Frame labels with runs, blanks between repeats, separators (also leading/trailing) and <unk>."""
    ids = [0, VOCAB.index["|"], VOCAB.unk_id] + list(range(5, len(VOCAB)))
    weights = np.array([6.0, 3.0, 0.5] + [1.0] * (len(ids) - 3))
    frames = []
    while len(frames) < n_frames:
        frames += [int(rng.choice(ids, p=weights / weights.sum()))] * int(rng.integers(1, 4))
    return frames[:n_frames]


def hf_comparable(frames):
    """HF keeps a literal "<s>"/"</s>" and a double space for "| <pad> |"; see test_known_differences."""
    return VOCAB.index["<s>"] not in frames and VOCAB.index["</s>"] not in frames


def test_greedy_text_and_offsets_equal_hf_tokenizer(hf_tokenizer):
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for case in range(300):
        frames = random_frames(rng, int(rng.integers(1, 60)))
        if case % 3 == 0:  # argmax from noisy logits, not only from crafted frames
            logits = torch.randn(len(frames), len(VOCAB), generator=g) * 2
            logits[:, 1:3] -= 100  # <s>, </s>: see hf_comparable
            frames = logits.argmax(-1).tolist()
        else:
            logits = torch.nn.functional.one_hot(torch.tensor(frames), len(VOCAB)).float() * 5
        hyp = greedy_search(logits)
        hf = hf_tokenizer.decode(frames, output_char_offsets=True, output_word_offsets=True)
        assert to_text(hyp, VOCAB) == " ".join(hf.text.split()) == VOCAB.decode(hyp.ids)
        if "  " not in hf.text:
            assert to_text(hyp, VOCAB) == hf.text
            checked += 1
        chars = char_timestamps(hyp, VOCAB, frame_stride=1.0)
        assert [(c["char"], c["start"], c["end"]) for c in chars] == [
            (o["char"], o["start_offset"], o["end_offset"]) for o in hf.char_offsets
        ]
        words = word_timestamps(hyp, VOCAB, frame_stride=1.0)
        assert [(w["word"], w["start"], w["end"]) for w in words] == [
            (o["word"], o["start_offset"], o["end_offset"]) for o in hf.word_offsets
        ]
    assert checked > 150  # most cases compare the raw strings exactly


def test_known_differences_from_hf_tokenizer(hf_tokenizer):
    i = VOCAB.index
    frames = [i["a"], 0, i["a"], i["|"], 0, i["|"], i["b"], i["<s>"], i["c"], i["</s>"]]
    assert hf_tokenizer.decode(frames) == "aa  b<s>c</s>"
    hyp = greedy_search(torch.nn.functional.one_hot(torch.tensor(frames), len(VOCAB)).float())
    assert to_text(hyp, VOCAB) == VOCAB.decode(hyp.ids) == "aa bc"


def test_greedy_frames_and_score():
    hyp = greedy_search(emission("bb_a||tt_t_", VOCAB.tokens))
    i = VOCAB.index
    assert hyp.ids == [i["b"], i["a"], i["|"], i["t"], i["t"]]
    assert hyp.starts == [0, 3, 4, 6, 9]
    assert hyp.ends == [2, 4, 6, 8, 10]
    lp = log_softmax(emission("bb_a||tt_t_", VOCAB.tokens).numpy())
    assert hyp.score == pytest.approx(lp.max(axis=1).sum(), rel=1e-5)
    assert forced_align(lp, hyp.ids) == (hyp.starts, hyp.ends)
    assert greedy_search(torch.zeros(0, len(VOCAB))) == Hypothesis([], [], [])


def test_timestamps_hand_computed_with_offset_and_stride():
    hyp = greedy_search(emission("_bb_a|||tt_", VOCAB.tokens))
    assert word_timestamps(hyp, VOCAB) == [
        {"word": "ba", "start": 0.02, "end": 0.1},
        {"word": "t", "start": 0.16, "end": 0.2},
    ]
    assert char_timestamps(hyp, VOCAB, time_offset=30.0) == [
        {"char": "b", "start": 30.02, "end": 30.06},
        {"char": "a", "start": 30.08, "end": 30.1},
        {"char": " ", "start": 30.1, "end": 30.16},
        {"char": "t", "start": 30.16, "end": 30.2},
    ]
    words = word_timestamps(hyp, VOCAB, frame_stride=0.04, time_offset=1.5)
    assert [(w["start"], w["end"]) for w in words] == [(1.54, 1.7), (1.82, 1.9)]


def test_sentencepiece_style_tokens():
    tokens = ["<pad>", "<unk>", "▁the", "▁ba", "d", "t", "▁", "xyz"]
    hyp = greedy_search(emission(["▁the", "▁the", "_", "▁ba", "d", "_", "▁", "xyz", "_"], tokens))
    assert to_text(hyp, tokens) == "the bad xyz"
    assert word_timestamps(hyp, tokens) == [
        {"word": "the", "start": 0.0, "end": 0.04},
        {"word": "bad", "start": 0.06, "end": 0.1},
        {"word": "xyz", "start": 0.14, "end": 0.16},
    ]
    assert [c["char"] for c in char_timestamps(hyp, tokens)] == [" the", " ba", "d", " ", "xyz"]


def test_trained_sentencepiece_vocabulary_text_matches_its_decode():
    vocab = SentencePieceVocabulary.train(
        ["the bad bat sat on the mat", "a cat had a hat"] * 20, vocab_size=30
    )
    rng = np.random.default_rng(1)
    usable = [i for i in range(len(vocab)) if i != vocab.unk_id]
    for _ in range(50):
        frames = rng.choice(usable, size=30).tolist()
        hyp = greedy_search(torch.nn.functional.one_hot(torch.tensor(frames), len(vocab)).float())
        assert to_text(hyp, vocab) == " ".join(vocab.decode(hyp.ids).split())


def test_batch_with_lengths_ignores_padding():
    a = emission("_bb_a|t", VOCAB.tokens, seed=1)
    b = emission("xyz", VOCAB.tokens, seed=2)
    batch = torch.stack([a, torch.cat([b, emission("cccc", VOCAB.tokens)])])  # (2, 7, V): b padded with "c"
    hyps = decode(batch, torch.tensor([7, 3]))
    assert [to_text(h, VOCAB) for h in hyps] == ["ba t", "xyz"]
    assert hyps[1] == greedy_search(b)
    beam_hyps = decode(batch, torch.tensor([7, 3]), BeamOptions(beam=4), vocab=VOCAB)
    assert [to_text(h, VOCAB) for h in beam_hyps] == ["ba t", "xyz"]


@pytest.mark.parametrize("beam", [1, 2, 8])
def test_beam_search_equals_greedy_on_peaky_emissions(beam):
    rng = np.random.default_rng(beam)
    for seed in range(10):
        frames = random_frames(rng, 80)
        logits = torch.nn.functional.one_hot(torch.tensor(frames), len(VOCAB)).float() * 9
        logits += torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed))
        greedy = greedy_search(logits)
        hyp = prefix_beam_search(logits, VOCAB.tokens, BeamOptions(beam=beam))
        assert (hyp.ids, hyp.starts, hyp.ends) == (greedy.ids, greedy.starts, greedy.ends)
        assert decode(logits, options=BeamOptions(beam=1)) == greedy


def brute_force_best(lp):
    """Most probable label sequence, summing over all T-frame alignments."""
    totals = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        labels = tuple(k for k, _ in itertools.groupby(path) if k != 0)
        totals[labels] = np.logaddexp(totals.get(labels, -np.inf), sum(lp[t, k] for t, k in enumerate(path)))
    return max(totals.items(), key=lambda kv: kv[1])


def test_beam_search_beats_greedy_by_summing_alignments():
    tokens = ["<pad>", "a", "b"]
    lp = probs_emission([{"_": 0.4, "a": 0.35, "b": 0.25}] * 2, tokens)
    assert greedy_search(lp).ids == []  # best single path: blank, blank (p = 0.16)
    hyp = prefix_beam_search(lp, tokens, BeamOptions(beam=4))
    assert hyp.ids == [1]  # "a" over three alignments: 0.35^2 + 2 * 0.4 * 0.35 = 0.4025
    assert hyp.score == pytest.approx(math.log(0.4025), abs=1e-4)


def test_beam_search_finds_the_most_probable_labelling():
    g = torch.Generator().manual_seed(3)
    tokens = ["<pad>", "a", "b"]
    for _ in range(5):
        lp = torch.log_softmax(torch.randn(5, 3, generator=g), -1)
        labels, score = brute_force_best(lp.double().numpy())
        hyp = prefix_beam_search(lp, tokens, BeamOptions(beam=50, beam_prune_logp=None))
        assert tuple(hyp.ids) == labels
        assert hyp.score == pytest.approx(score, abs=1e-4)


ARPA = """\\data\\
ngram 1=6
ngram 2=5

\\1-grams:
-1.0\t<s>\t-0.3
-1.0\t</s>
-2.0\t<unk>
-1.0\tthe\t-0.3
-1.5\tbat\t-0.2
-1.5\tbad\t-0.2

\\2-grams:
-0.1\t<s> the
-0.2\tthe bat
-2.0\tthe bad
-0.1\tbat </s>
-0.1\tbad </s>

\\end\\
"""


@pytest.fixture
def arpa(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(ARPA)
    return path


def test_arpa_backoff_by_hand(arpa):
    lm = ArpaLM.load(arpa)
    ln10 = math.log(10)
    s0 = lm.initial_state()
    logp, s1 = lm.score(s0, "the")
    assert logp == pytest.approx(-0.1 * ln10)
    assert lm.score(s1, "bad")[0] == pytest.approx(-2.0 * ln10)
    _, s2 = lm.score(s1, "bat")
    assert lm.score(s2, "the")[0] == pytest.approx((-0.2 - 1.0) * ln10)  # backoff(bat) + p(the)
    assert lm.score(s1, "zebra")[0] == pytest.approx((-0.3 - 2.0) * ln10)  # backoff(the) + p(<unk>)
    assert lm.score(s0, "bat")[1] == ("bat",)
    gz = arpa.with_suffix(".arpa.gz")
    gz.write_bytes(gzip.compress(arpa.read_bytes()))
    assert load_lm(gz).probs == lm.probs


def test_arpa_reader_agrees_with_kenlm(arpa):
    kenlm = pytest.importorskip("kenlm")
    model, ours = kenlm.Model(str(arpa)), ArpaLM.load(arpa)
    for sentence in ["the bat", "the bad", "bat the the", "zebra bad the", ""]:
        state, total = ours.initial_state(), 0.0
        for w in sentence.split() + ["</s>"]:
            logp, state = ours.score(state, w)
            total += logp
        assert total / math.log(10) == pytest.approx(model.score(sentence), abs=1e-4)


def test_binary_lm_without_kenlm_is_a_one_line_error(tmp_path, monkeypatch, arpa):
    monkeypatch.setitem(sys.modules, "kenlm", None)
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\x00\x01")
    with pytest.raises(W2VError, match="kenlm"):
        load_lm(binary)
    assert isinstance(load_lm(arpa), ArpaLM)
    with pytest.raises(W2VError, match="not found"):
        load_lm(tmp_path / "missing.arpa")


@pytest.mark.parametrize("style", ["chars", "sentencepiece"])
def test_lm_flips_between_similar_words(arpa, style):
    """Acoustically "the bad" is slightly ahead of "the bat"; the bigram "the bat" wins it back."""
    close = {"d": 0.55, "t": 0.45}
    if style == "chars":
        tokens = VOCAB.tokens
        rows = [{c: 1.0} for c in "the|ba"] + [close, {"_": 1.0}]
    else:
        tokens = ["<pad>", "<unk>", "▁the", "▁ba", "d", "t"]
        rows = [{"▁the": 1.0}, {"_": 1.0}, {"▁ba": 1.0}, close, {"_": 1.0}]
    lp = probs_emission(rows, tokens)
    plain = prefix_beam_search(lp, tokens, BeamOptions(beam=8))
    assert to_text(plain, tokens) == "the bad"
    with_lm = decode(
        lp, options=BeamOptions(beam=8, lm=load_lm(arpa), lm_weight=1.0, word_score=0.5), vocab=tokens
    )
    assert to_text(with_lm, tokens) == "the bat"
    bat_frames = word_timestamps(with_lm, tokens, frame_stride=1.0)[1]
    assert (bat_frames["start"], bat_frames["end"]) == ((4, 7) if style == "chars" else (2, 4))


@pytest.mark.parametrize("style", ["chars", "sentencepiece"])
def test_lexicon_keeps_the_beam_to_known_words(tmp_path, arpa, style):
    """Acoustically "the bax" leads; with the lexicon only "bad" or "bat" may follow, and the LM is optional."""
    if style == "chars":
        tokens = ["<pad>", "|", "t", "h", "e", "b", "a", "d", "x"]
        rows = [{c: 1.0} for c in "the|ba"] + [{"x": 0.5, "d": 0.3, "t": 0.2}, {"_": 1.0}]
    else:
        tokens = ["<pad>", "<unk>", "▁the", "▁ba", "d", "t", "x"]
        rows = [{"▁the": 1.0}, {"_": 1.0}, {"▁ba": 1.0}, {"x": 0.5, "d": 0.3, "t": 0.2}, {"_": 1.0}]
    lp = probs_emission(rows, tokens)
    assert to_text(decode(lp, options=BeamOptions(beam=8), vocab=tokens), tokens) == "the bax"
    words = tmp_path / "words.txt"
    words.write_text("the  t h e |\nbad\nbat\n\n")
    lexicon = Lexicon.load(words)
    assert lexicon.words == {"the", "bad", "bat"} and "ba" in lexicon.prefixes
    # beam 1 with a lexicon is still a (constrained) search, not greedy
    assert (
        to_text(decode(lp, options=BeamOptions(beam=1, lexicon=lexicon), vocab=tokens), tokens) == "the bad"
    )
    with_lm = BeamOptions(beam=8, lexicon=Lexicon.load(arpa), lm=load_lm(arpa), lm_weight=1.0)
    assert to_text(decode(lp, options=with_lm, vocab=tokens), tokens) == "the bat"
    # a finished word must be a whole lexicon word, not a prefix of one ...
    small = ["<pad>", "|", "t", "h", "e"]
    ending = probs_emission([{c: 1.0} for c in "th"] + [{"e": 0.2, "_": 0.8}], small)
    assert to_text(decode(ending, options=BeamOptions(beam=8), vocab=small), small) == "th"
    assert (
        to_text(decode(ending, options=BeamOptions(beam=8, lexicon=Lexicon(["the"])), vocab=small), small)
        == "the"
    )
    # ... and when no beam ends in one, the best stands as it is, with a finite score
    short = probs_emission([{c: 1.0} for c in "th"] + [{"_": 1.0}], small)
    hyp = decode(short, options=BeamOptions(beam=8, lexicon=Lexicon(["the"])), vocab=small)
    assert to_text(hyp, small) == "th" and math.isfinite(hyp.score)


def test_lexicon_errors_are_one_line(tmp_path):
    with pytest.raises(W2VError, match="not found"):
        Lexicon.load(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n<unk>\n")
    with pytest.raises(W2VError, match="no words"):
        Lexicon.load(empty)
