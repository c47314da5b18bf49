"""CTC decoding: greedy and prefix beam search (optionally with a word n-gram LM), text and timestamps.

Pure functions over emissions, independent of the model. T = frames, V = vocabulary size, B = batch.
Emissions are logits or log-probabilities, a torch tensor or numpy array `(T, V)` or `(B, T, V)`.
A frame covers 320 samples at 16 kHz, 0.02 s (the feature encoder's total stride).
Frame spans are half-open like Hugging Face's char offsets: a token occupies frames [start, end).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.decoding.lm import LanguageModel, Lexicon, PrefixTrie
from w2vcli.model.config import FRAME_STRIDE

FRAME_SECONDS = FRAME_STRIDE / SAMPLE_RATE
WORD_START = "\u2581"  # sentencepiece's "▁": this piece begins a word
_DROPPED = ("<pad>", "<s>", "</s>")  # never part of the text, like Vocabulary.decode


@dataclass
class Hypothesis:
    ids: list[int]  # emitted token ids: repeats collapsed, blanks dropped
    starts: list[int]  # first frame of each token
    ends: list[int]  # one past the last frame of each token
    score: float = 0.0  # log-prob of the best path (greedy) or beam score (acoustic + LM)


@dataclass
class BeamOptions:
    beam: int = 1  # 1 without an LM means greedy
    beam_prune_logp: float | None = -10.0  # drop beams this far below the best one
    token_topk: int = 16  # candidate tokens per frame
    token_min_logp: float = -12.0  # ...and only those at least this likely (the argmax always stays)
    lm: LanguageModel | None = field(default=None, repr=False)
    lm_weight: float = 0.5  # alpha: weight of the LM log-prob (natural log)
    word_score: float = 0.0  # beta: bonus per word, against the LM's preference for short outputs
    lexicon: Lexicon | None = field(default=None, repr=False)  # only these words may be spelt


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Over the last axis; a no-op (up to rounding) on log-probabilities, so logits are welcome too."""
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def greedy_search(emissions, blank_id: int = 0) -> Hypothesis:
    """Argmax per frame, collapse runs, drop blanks. emissions: (T, V)."""
    em = _as_numpy(emissions)
    if em.shape[0] == 0:
        return Hypothesis([], [], [])
    best = em.argmax(axis=-1)  # (T,)
    score = float(log_softmax(em)[np.arange(len(best)), best].sum())
    bounds = np.flatnonzero(np.diff(best)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(best)]))
    keep = best[starts] != blank_id
    return Hypothesis(best[starts][keep].tolist(), starts[keep].tolist(), ends[keep].tolist(), score)


def decode(emissions, lengths=None, options: BeamOptions | None = None, blank_id: int = 0, vocab=None):
    """Decode `(T, V)` to one Hypothesis or `(B, T, V)` + lengths `(B,)` to a list; frames past a length are ignored.

    `vocab` (token list or object with `.tokens`) is needed only for beam search, to find words.
    """
    options = options or BeamOptions()
    em = _as_numpy(emissions)
    if em.ndim == 2:
        return _decode_one(em, options, blank_id, vocab)
    lens = [em.shape[1]] * em.shape[0] if lengths is None else [int(n) for n in _as_numpy(lengths)]
    return [_decode_one(e[:n], options, blank_id, vocab) for e, n in zip(em, lens, strict=True)]


def _decode_one(em: np.ndarray, options: BeamOptions, blank_id: int, vocab) -> Hypothesis:
    if options.beam <= 1 and options.lm is None and options.lexicon is None:
        return greedy_search(em, blank_id)
    if vocab is None:
        raise ValueError("beam search needs the vocabulary to find word boundaries")
    return prefix_beam_search(em, _tokens(vocab), options, blank_id)


def _tokens(vocab) -> list[str]:
    return list(getattr(vocab, "tokens", vocab))


def is_sentencepiece(tokens) -> bool:
    """Word starts marked by "▁" (sentencepiece) instead of a "|" separator token."""
    return "|" not in tokens and any(t.startswith(WORD_START) for t in tokens)


def token_table(tokens, blank_id: int = 0) -> list[tuple[str, bool] | None]:
    """Per token id: (visible text, starts a new word), or None for the blank and dropped specials.

    A separator ("|" or a bare "▁") has empty text and starts a new word.
    """
    sp = is_sentencepiece(tokens)
    table: list[tuple[str, bool] | None] = []
    for i, tok in enumerate(tokens):
        if i == blank_id or tok in _DROPPED:
            table.append(None)
        elif sp and tok.startswith(WORD_START):
            table.append((tok.lstrip(WORD_START), True))
        else:
            table.append(("", True) if tok == "|" and not sp else (tok, False))
    return table


def token_pieces(ids, tokens) -> list[tuple[int, str, bool]]:
    """(position in ids, visible text, starts a new word) for each emitted token that is shown."""
    table = token_table(tokens)
    return [(k, *table[i]) for k, i in enumerate(ids) if table[i] is not None]


def _words(hyp: Hypothesis, tokens) -> list[tuple[str, int, int]]:
    """(word, first frame, end frame) for each word of a hypothesis."""
    words: list[list] = []
    new = True
    for k, text, starts in token_pieces(hyp.ids, tokens):
        new = new or starts
        if not text:
            continue
        if new:
            words.append([text, hyp.starts[k], hyp.ends[k]])
            new = False
        else:
            words[-1][0] += text
            words[-1][2] = hyp.ends[k]
    return [tuple(w) for w in words]


def to_text(hyp: Hypothesis, vocab) -> str:
    """Words joined by single spaces (what `Vocabulary.decode` gives for character vocabularies)."""
    return " ".join(w for w, _, _ in _words(hyp, _tokens(vocab)))


def _time(frame: int, frame_stride: float, time_offset: float) -> float:
    return round(time_offset + frame * frame_stride, 3)


def word_timestamps(
    hyp: Hypothesis, vocab, frame_stride: float = FRAME_SECONDS, time_offset: float = 0.0
) -> list[dict]:
    """`[{"word", "start", "end"}]` in seconds; start is the word's first frame, end its last frame's end."""
    return [
        {"word": w, "start": _time(s, frame_stride, time_offset), "end": _time(e, frame_stride, time_offset)}
        for w, s, e in _words(hyp, _tokens(vocab))
    ]


def char_timestamps(
    hyp: Hypothesis, vocab, frame_stride: float = FRAME_SECONDS, time_offset: float = 0.0
) -> list[dict]:
    """`[{"char", "start", "end"}]` in seconds, one per emitted token; a word separator is " ".

    For sentencepiece vocabularies "char" is the piece, with a leading space when it starts a word.
    """
    tokens = _tokens(vocab)
    sp = is_sentencepiece(tokens)
    return [
        {
            "char": (" " + text if sp and starts and text else text) or " ",
            "start": _time(hyp.starts[k], frame_stride, time_offset),
            "end": _time(hyp.ends[k], frame_stride, time_offset),
        }
        for k, text, starts in token_pieces(hyp.ids, tokens)
    ]


def forced_align(log_probs: np.ndarray, ids: list[int], blank_id: int = 0) -> tuple[list[int], list[int]]:
    """Best (Viterbi) CTC alignment of `ids`; returns each token's first frame and end frame.

    log_probs: (T, V). Beam search finds *which* tokens; this finds *where*, on one best path.
    """
    T, L = log_probs.shape[0], len(ids)
    if L == 0:
        return [], []
    ext = np.full(2 * L + 1, blank_id)  # (S,) blank, t1, blank, t2, ..., blank
    ext[1::2] = ids
    S = len(ext)
    skip = np.zeros(S, dtype=bool)  # a state may be entered from two back when it skips a blank
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    emit = log_probs[:, ext]  # (T, S)
    alpha = np.full(S, -np.inf)
    alpha[:2] = emit[0, :2]
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        cand = np.full((3, S), -np.inf)
        cand[0] = alpha
        cand[1, 1:] = alpha[:-1]
        cand[2, 2:] = np.where(skip[2:], alpha[:-2], -np.inf)
        back[t] = cand.argmax(axis=0)
        alpha = cand[back[t], np.arange(S)] + emit[t]
    s = S - 1 if S == 1 or alpha[S - 1] >= alpha[S - 2] else S - 2
    if not np.isfinite(alpha[s]):
        raise ValueError(f"{L} tokens cannot be aligned to {T} frames")
    starts, ends = [0] * L, [0] * L
    for t in range(T - 1, -1, -1):
        if s % 2:
            k = s // 2
            starts[k] = t
            if ends[k] == 0:
                ends[k] = t + 1
        s -= int(back[t, s])
    return starts, ends


def logaddexp(a: float, b: float) -> float:
    """Scalar log(exp(a) + exp(b)); plain floats are much faster than numpy scalars in the beam loop."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


def _candidates(lp: np.ndarray, options: BeamOptions, blank_id: int) -> list[list[tuple[int, float]]]:
    """Per frame, the (token, logp) pairs worth extending with: top-k above a floor, argmax always."""
    k = min(options.token_topk, lp.shape[1])
    top = np.argpartition(-lp, k - 1, axis=1)[:, :k]  # (T, k)
    top_lp = np.take_along_axis(lp, top, axis=1)
    keep = (top_lp >= options.token_min_logp) | (top_lp == lp.max(axis=1, keepdims=True))
    keep &= top != blank_id
    return [
        list(zip(top[t][keep[t]].tolist(), top_lp[t][keep[t]].tolist(), strict=True))
        for t in range(lp.shape[0])
    ]


def prefix_beam_search(emissions, tokens: list[str], options: BeamOptions, blank_id: int = 0) -> Hypothesis:
    """CTC prefix beam search (Hannun et al. 2014) with an optional word LM; emissions: (T, V).

    Each beam keeps the log-prob of its prefix ending in a blank (pb) and in a token (pnb), summed over
    all alignments; it is ranked by logaddexp(pb, pnb) + LM bonus. Timestamps come from `forced_align`.
    """
    lp = log_softmax(_as_numpy(emissions))  # (T, V)
    tree = PrefixTrie(
        token_table(tokens, blank_id), options.lm, options.lm_weight, options.word_score, options.lexicon
    )
    beams = {0: (0.0, -math.inf)}  # node -> (pb, pnb)
    neg = -math.inf
    for t, cands in enumerate(_candidates(lp, options, blank_id)):
        p_blank = float(lp[t, blank_id])
        nxt: dict = {}  # node or (node, token) -> [pb, pnb]
        for node, (pb, pnb) in beams.items():
            total = logaddexp(pb, pnb)
            last = tree.token[node]
            entry = nxt.setdefault(node, [neg, neg])
            entry[0] = logaddexp(entry[0], total + p_blank)
            for c, p in cands:
                if c == last:  # repeat collapses into the same prefix unless a blank came between
                    entry[1] = logaddexp(entry[1], pnb + p)
                    grown = pb + p
                else:
                    grown = total + p
                if grown == neg:
                    continue
                e = nxt.setdefault(tree.key(node, c), [neg, neg])
                e[1] = logaddexp(e[1], grown)
        scored = [(logaddexp(pb, pnb) + tree.bonus_of(k), k) for k, (pb, pnb) in nxt.items()]
        top = heapq.nlargest(options.beam, scored, key=itemgetter(0))
        floor = neg if options.beam_prune_logp is None else top[0][0] + options.beam_prune_logp
        beams = {tree.node(k): tuple(nxt[k]) for score, k in top if score >= floor and score > neg}
    node, score = max(
        ((n, logaddexp(pb, pnb) + tree.final_bonus(n)) for n, (pb, pnb) in beams.items()), key=lambda x: x[1]
    )
    if score == neg:  # with a lexicon, no beam ends in a whole word: the best one as it stands
        node, score = max(
            ((n, logaddexp(pb, pnb) + tree.bonus[n]) for n, (pb, pnb) in beams.items()), key=lambda x: x[1]
        )
    ids = tree.ids(node)
    starts, ends = forced_align(lp, ids, blank_id)
    return Hypothesis(ids, starts, ends, score)
