"""CTC forced alignment: where each token of a known transcript is said.

T = frames, V = vocabulary, L = tokens to align, S = 2L + 1 trellis states (a blank before, between
and after the tokens). The path is the most likely state sequence (Viterbi) under CTC's rules: each
state repeats or moves on, and a blank may be skipped between two different tokens. Written here
rather than taken from torchaudio (`forced_align`, in maintenance mode and tied to its CUDA build)
because two things are needed that it lacks: a wildcard, and a band that bounds memory on long audio.

- **The wildcard `STAR`** stands for audio the text lacks (an untranscribed stretch, a cough, an
  interjection). It scores each frame as the best of all classes minus `star_penalty` nats, so it
  wins only where every token of the text fits worse than that; it is optional (a path may skip it
  at no cost), so a transcript that matches the audio aligns as without it.
- **A band**: at each frame only `band` states around the best one are scored and kept, so an hour of
  audio with its whole transcript aligns in one pass (no windows, so no drift at window borders) in
  T x band bytes of back-pointers: 180,000 frames x 1,536 states = 276 MB. A transcript that fits
  the audio keeps the best path well inside the band (it spans ~20 s of speech either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STAR = -1  # the wildcard in a token sequence
STAR_PENALTY = 2.0  # nats per frame below the best class: what the wildcard costs
BAND = 1536  # trellis states kept per frame, around the best: ~20 s of speech either way
BONUSES = (2.0, 3.0, 1.0, 4.0)  # nats per token placed, tried in turn to centre the band
MAX_BYTES = 1 << 30  # back-pointers: the band doubles while T x band stays under this
SKIP_PENALTY = 1.0  # nats for a letter straight after the previous one, no blank between (see viterbi)
PAUSE_PENALTY = 0.2  # nats per blank frame inside a word (bench/RESULTS.md: 0.03-0.5 tried)


@dataclass
class Span:
    """One token of the sequence on the frames [start, end); `score` is its mean log-probability there,
    `best` the mean log-probability of the model's most likely class on the same frames."""

    start: int
    end: int
    score: float
    best: float = 0.0


def star_column(log_probs: np.ndarray, penalty: float = STAR_PENALTY) -> np.ndarray:
    """The wildcard's log-probability on each frame: the best class's, less the penalty. (T,)"""
    return log_probs.max(axis=1) - penalty


def viterbi(
    log_probs: np.ndarray,
    tokens: list[int],
    blank: int = 0,
    star_penalty: float = STAR_PENALTY,
    band: int = BAND,
    max_bytes: int = MAX_BYTES,
    words: list[int] | None = None,
    pause_penalty: float = PAUSE_PENALTY,
) -> tuple[np.ndarray, float]:
    """The best state per frame (T,) through the trellis of `tokens` (STAR allowed) and its total
    log-probability. log_probs (T, V) are per-frame log-softmax outputs. State 2k+1 is token k, even
    states are blanks. Raises ValueError when the tokens cannot fit in T frames.

    When the trellis has more than `band` states, each frame keeps `band` of them around a centre:
    the state whose path so far scores best with a bonus per token placed. Without the bonus the
    centre lags (a path that has placed fewer tokens has paid for fewer, and a blank costs little),
    with too much it rushes; the bonus that fits depends on the model. A result is accepted when its
    path stays clear of the band's moving edges, else another bonus is tried, then a band twice as
    wide (the exact trellis, at worst, within `max_bytes` of back-pointers).

    `words` (the word index of each token, -1 for separators and wildcards) makes a blank between two
    tokens of one word cost `pause_penalty` nats per frame: a letter the model does not hear (the
    silent e of "defense") is then placed next to its neighbours, not on the best-looking frame of
    the pause after the word, which would stretch the word's end over the pause.

    A letter that follows the previous letter with no blank frame between costs SKIP_PENALTY nats:
    speech at ~15 letters per second leaves blanks between most letters, and a weak model otherwise
    squeezes the first words of a sentence into the end of the one before."""
    extra = np.zeros(2 * len(tokens) + 1)
    if words is not None and pause_penalty:
        inner = np.array([a == b and a >= 0 for a, b in zip(words, words[1:])], dtype=bool)
        extra[2 : 2 * len(tokens) - 1 : 2][inner] = -pause_penalty  # blank state 2k between tokens k-1, k
    s_max = 2 * len(tokens) + 1
    while True:
        if band >= s_max or log_probs.shape[0] * 2 * band > max_bytes:
            return _viterbi(log_probs, tokens, blank, star_penalty, band, 0.0, extra)[:2]
        for bonus in BONUSES:
            try:
                path, total, clear = _viterbi(log_probs, tokens, blank, star_penalty, band, bonus, extra)
            except ValueError:
                continue
            if clear:
                return path, total
        band *= 2


def _viterbi(
    log_probs: np.ndarray,
    tokens: list[int],
    blank: int,
    star_penalty: float,
    band: int,
    bonus: float,
    extra: np.ndarray,
) -> tuple[np.ndarray, float, bool]:
    """One banded pass: (path, total, whether the path kept clear of the band's moving edges)."""
    t_max, n = log_probs.shape[0], len(tokens)
    s_max = 2 * n + 1
    if n and t_max < min_frames(tokens):
        raise ValueError(f"{n} tokens need at least {min_frames(tokens)} frames; the audio has {t_max}")
    ids = np.full(s_max, blank, dtype=np.int64)
    ids[1::2] = tokens
    star = ids == STAR
    table = np.concatenate([log_probs, star_column(log_probs, star_penalty)[:, None]], axis=1)  # (T, V + 1)
    column = np.where(star, log_probs.shape[1], ids)  # each state's column of `table`
    allowed = _moves(ids, star)  # (5, S): may state s be reached from s - k
    cost = np.where(allowed, 0.0, -np.inf)  # (5, S): what entering s from s - k adds
    token = np.zeros(s_max, dtype=bool)
    token[1::2] = ~star[1::2]
    straight = np.zeros(s_max, dtype=bool)  # a letter right after the previous letter, no blank between
    straight[2:] = token[2:] & token[:-2]
    cost[2, straight & allowed[2]] -= SKIP_PENALTY

    width = min(s_max, band)
    neg = -np.inf
    score = np.full(s_max + 4, neg)  # 4 never-reached states in front: shifts need no bounds checks
    first = [0, 1] + ([2, 3] if n and star[1] and s_max > 3 else [])  # a leading wildcard may be skipped
    for s in first[:s_max]:
        score[4 + s] = table[0, column[s]] + extra[s]
    back = np.zeros((t_max, width), dtype=np.int8)
    los = np.zeros(t_max, dtype=np.int64)
    lo = 0
    placed = bonus * (np.arange(s_max) // 2)  # the centre's bonus per token placed
    for t in range(1, t_max):
        best = lo + int(np.argmax(score[4 + lo : 4 + lo + width] + placed[lo : lo + width]))
        new_lo = max(lo, min(best - width // 2, s_max - width))
        hi = new_lo + width
        cand = np.stack([score[4 + new_lo - k : 4 + hi - k] for k in range(5)])  # (5, W): from s - k
        cand += cost[:, new_lo:hi]
        score[4 + lo : 4 + new_lo] = neg  # states the band leaves behind are dropped
        lo = new_lo
        move = cand.argmax(axis=0)
        score[4 + lo : 4 + hi] = cand[move, np.arange(width)] + table[t, column[lo:hi]] + extra[lo:hi]
        back[t], los[t] = move, lo
    ends = _end_states(tokens)
    ends = ends[(ends >= lo) & (ends < lo + width)]
    if not len(ends) or not np.isfinite(score[4 + ends]).any():
        raise ValueError("no alignment: the tokens cannot be placed on these frames")
    last = int(ends[np.argmax(score[4 + ends])])
    total = float(score[4 + last])
    path = np.empty(t_max, dtype=np.int64)
    path[-1] = last
    for t in range(t_max - 1, 0, -1):
        path[t - 1] = path[t] - back[t, path[t] - los[t]]
    margin = width // 16
    inside = path - los
    low_edge = (los > 0) & (inside < margin)  # near a lower edge that the band had moved up to
    high_edge = (los + width < s_max) & (inside >= width - margin)
    return path, total, not (low_edge.any() or high_edge.any())


def _moves(ids: np.ndarray, star: np.ndarray) -> np.ndarray:
    """(5, S) bool: whether state s may be entered from s - k. 0: stay; 1: from the state before;
    2: a token from the previous token when they differ (skipping the blank between), or a blank
    after a wildcard from the blank before it (skipping the wildcard); 3 and 4: a token after a
    wildcard from the blank before the wildcard, or from the token before it when they differ."""
    s_max = len(ids)
    token = np.zeros(s_max, dtype=bool)
    token[1::2] = True
    allowed = np.zeros((5, s_max), dtype=bool)
    allowed[0] = True
    allowed[1, 1:] = True
    allowed[2, 2:] = (token[2:] & (ids[2:] != ids[:-2])) | (~token[2:] & star[1:-1])
    after_star = np.zeros(s_max, dtype=bool)
    after_star[2:] = token[2:] & star[:-2]
    allowed[3, 3:] = after_star[3:]
    allowed[4, 4:] = after_star[4:] & (ids[4:] != ids[:-4])
    return allowed


def min_frames(tokens: list[int]) -> int:
    """Frames the shortest path needs: one per real token, one more between equal neighbours."""
    real = [t for t in tokens if t != STAR]
    return len(real) + sum(a == b for a, b in zip(real, real[1:]))


def _end_states(tokens: list[int]) -> np.ndarray:
    """States a complete path may end in: the last token or the blank after it; with a trailing
    wildcard, also the token before it and that token's blank."""
    s_max = 2 * len(tokens) + 1
    ends = [s_max - 1]
    if tokens:
        ends.append(s_max - 2)
        if tokens[-1] == STAR and len(tokens) > 1:
            ends += [s_max - 3, s_max - 4]
    return np.array(ends)


def token_spans(
    path: np.ndarray, log_probs: np.ndarray, tokens: list[int], blank: int = 0, trim: bool = True
) -> list[Span | None]:
    """Each token's frames on the path (None for a wildcard the path skipped). With `trim`, a real
    token's span is cut to the frames where the model does not clearly prefer blank (the token's
    log-probability within 2 nats of the blank's), keeping at least its most likely frame: a path
    may linger in a token through a pause when the model is unsure, and a word's end would follow."""
    spans: list[Span | None] = [None] * len(tokens)
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(path)]])
    for a, b in zip(starts, ends):
        s = int(path[a])
        if s % 2 == 0:
            continue
        k = s // 2
        tok = tokens[k]
        if tok == STAR:
            best = float(np.mean(log_probs[a:b].max(axis=1)))
            spans[k] = Span(int(a), int(b), float(np.mean(star_column(log_probs[a:b]))), best)
            continue
        lp = log_probs[a:b, tok]
        if trim and b - a > 1:
            core = np.flatnonzero(lp >= log_probs[a:b, blank] - 2.0)
            lo, hi = (core[0], core[-1] + 1) if len(core) else (int(np.argmax(lp)), int(np.argmax(lp)) + 1)
            a, b, lp = a + lo, a + hi, lp[lo:hi]
        spans[k] = Span(int(a), int(b), float(np.mean(lp)), float(np.mean(log_probs[a:b].max(axis=1))))
    return spans
