"""A word's alignment confidence as a probability: how likely its edges lie within 50 ms of the truth.

The raw scores an alignment gives (`score`: the geometric mean probability of the word's letters on
their frames; `fit`: the same relative to the model's own best class) rank words, but they are not
probabilities, and how they map to "well placed" depends on things they do not see: an edge that faces
a pause goes where the signal's energy says speech starts (decoding/edges.py, a few ms off), while an
edge between two words in running speech is only where the model's letters change. `confidence` is a
logistic map of a few such features of each word, fitted on word-level truth and judged on speech,
voices and models it was not fitted on (`bench/bench_confidence.py`; the reliability table is in
bench/RESULTS.md): across a set, the mean confidence tracks the fraction of words whose both edges lie
within 50 ms of where they are spoken.

Why our own few lines of Newton's method rather than scikit-learn: ten features and a few thousand
words, and a runtime dependency for one fit that runs in the bench only.
"""

from __future__ import annotations

import math

import numpy as np

FEATURES = (
    "log_score",  # mean log-probability of the word's letters on their frames (nats)
    "log_fit",  # the same less the model's best class on those frames (0: the model hears the text)
    "worst_letter",  # the lowest of the letters' own log_fit (one letter the model does not hear)
    "log_frames_per_letter",  # log of the word's frames per letter (squeezed or stretched words)
    "start_at_pause",  # 1: the start faces a pause and was placed by the signal's energy
    "end_at_pause",  # 1: the same for the end
    "log_letters",  # log of the word's letter count (short words have little evidence)
    "gap_before",  # log(1 + frames of blank the path left before the word), if the start is not at a pause
    "gap_after",  # the same after the word's end
)

# Fitted by `python bench/bench_confidence.py fit` on the tuning set (festival, two voices, the example
# sets' sentence collections) aligned by two models (60.6% and 53.1% CER); judged on other sentences,
# another voice and three other models (bench/RESULTS.md, session 13).
WEIGHTS = {
    "bias": 5.4018,
    "log_score": 0.8579,
    "log_fit": -0.5857,
    "worst_letter": 0.1191,
    "log_frames_per_letter": 0.3068,
    "start_at_pause": -0.9709,
    "end_at_pause": -1.2736,
    "log_letters": 0.0226,
    "gap_before": -0.7408,
    "gap_after": -1.0085,
}


def mean_log_probs(spans) -> tuple[float, float]:
    """A word's mean log-probability of its letters on their frames, and the same less the model's
    best class there (decoding/align.py Span: frames, score, best); `exp` of each: `score`, `fit`."""
    frames = sum(s.end - s.start for s in spans)
    score = sum(s.score * (s.end - s.start) for s in spans) / frames
    return score, sum((s.score - s.best) * (s.end - s.start) for s in spans) / frames


def word_features(
    spans, start_at_pause: bool, end_at_pause: bool, gap_before: int, gap_after: int
) -> dict[str, float]:
    """The features of one word from its letters' spans and the frames the path left between it and
    its neighbours (capped at 50: 1 s)."""
    log_score, log_fit = mean_log_probs(spans)
    return {
        "log_score": log_score,
        "log_fit": log_fit,
        "worst_letter": min(s.score - s.best for s in spans),
        "log_frames_per_letter": math.log((spans[-1].end - spans[0].start) / len(spans)),
        "start_at_pause": float(start_at_pause),
        "end_at_pause": float(end_at_pause),
        "log_letters": math.log(len(spans)),
        "gap_before": 0.0 if start_at_pause else math.log1p(min(max(gap_before, 0), 50)),
        "gap_after": 0.0 if end_at_pause else math.log1p(min(max(gap_after, 0), 50)),
    }


def confidence(features: dict[str, float], weights: dict[str, float] = WEIGHTS) -> float:
    """The probability that the word is placed within 50 ms at both edges."""
    z = weights["bias"] + sum(weights[k] * features[k] for k in FEATURES)
    return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Weights (bias first) of the logistic regression of y (0/1) on the columns of x, by Newton's
    method with a small L2 penalty on the weights (not the bias), which keeps them finite when a
    feature separates the classes."""
    x1 = np.column_stack([np.ones(len(x)), np.asarray(x, np.float64)])
    y = np.asarray(y, np.float64)
    w = np.zeros(x1.shape[1])
    penalty = np.full(x1.shape[1], l2 * len(y))
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x1 @ w, -40, 40)))
        grad = x1.T @ (p - y) + penalty * w
        hess = (x1 * (p * (1 - p))[:, None]).T @ x1 + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w
