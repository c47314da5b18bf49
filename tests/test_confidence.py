"""Word confidence (decoding/confidence.py): its features from an alignment's spans, the logistic
map, and the fit that produces its weights."""

import math

import numpy as np

from w2vcli.decoding.align import Span
from w2vcli.decoding.confidence import FEATURES, WEIGHTS, confidence, fit_logistic, word_features


def test_features_of_known_spans():
    spans = [Span(10, 14, math.log(0.8), math.log(0.8)), Span(16, 18, math.log(0.2), math.log(0.5))]
    f = word_features(spans, start_at_pause=True, end_at_pause=False, gap_before=30, gap_after=3)
    assert set(f) == set(FEATURES)
    assert math.isclose(f["log_score"], (4 * math.log(0.8) + 2 * math.log(0.2)) / 6)
    assert math.isclose(f["log_fit"], 2 * math.log(0.2 / 0.5) / 6)
    assert math.isclose(f["worst_letter"], math.log(0.2 / 0.5))
    assert math.isclose(f["log_frames_per_letter"], math.log((18 - 10) / 2))
    assert f["log_letters"] == math.log(2)
    # A gap counts only at an edge the signal did not place; it is capped at 50 frames.
    assert f["start_at_pause"] == 1.0 and f["gap_before"] == 0.0
    assert f["end_at_pause"] == 0.0 and math.isclose(f["gap_after"], math.log(4))
    capped = word_features(spans, False, False, 500, -2)
    assert math.isclose(capped["gap_before"], math.log(51)) and capped["gap_after"] == 0.0


def test_confidence_is_a_probability_that_falls_where_the_model_does_not_hear_the_word():
    heard = [Span(0, 3, math.log(0.9), math.log(0.9)), Span(4, 6, math.log(0.9), math.log(0.9))]
    unheard = [Span(0, 3, math.log(0.9), math.log(0.9)), Span(4, 6, math.log(0.02), math.log(0.9))]
    sure = confidence(word_features(heard, False, False, 0, 0))
    unsure = confidence(word_features(unheard, False, False, 0, 0))
    assert 0 < unsure < sure < 1
    # A long stretch of blanks beside an edge the signal could not place: the edge is a guess.
    assert confidence(word_features(heard, False, False, 0, 40)) < sure
    assert set(WEIGHTS) == {"bias", *FEATURES}
    # Extreme inputs stay finite.
    assert 0.0 <= confidence(dict.fromkeys(FEATURES, -1e6)) <= 1.0


def test_fit_logistic_recovers_the_weights_that_made_the_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    true = np.array([0.5, 2.0, -1.0, 0.0])
    p = 1 / (1 + np.exp(-(true[0] + x @ true[1:])))
    y = (rng.random(len(p)) < p).astype(float)
    w = fit_logistic(x, y, l2=0.0)
    assert np.allclose(w, true, atol=0.1)
    # Calibrated on its own data: per decile of the predicted probability, the mean prediction
    # matches the observed rate.
    pred = 1 / (1 + np.exp(-(w[0] + x @ w[1:])))
    for part in np.array_split(np.argsort(pred), 10):
        assert abs(pred[part].mean() - y[part].mean()) < 0.03


def test_fit_logistic_stays_finite_when_a_feature_separates_the_classes():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    w = fit_logistic(x, y, l2=1e-2)
    assert np.isfinite(w).all() and w[1] > 0
