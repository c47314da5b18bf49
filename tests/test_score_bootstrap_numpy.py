"""`w2v score REF A B`: every bootstrap figure equals a plain numpy re-implementation with the same seed.

Per-utterance errors come from jiwer (an independent edit distance); the resampling is the one the
module docstring of scoring.py describes: one (n, U) draw of utterance indices from
`np.random.default_rng(seed)`, shared by both systems and both levels (paired), rates as
sum(errors) / max(sum(reference lengths), 1) per resample, 95% percentile intervals, and
P(B better) = share of resamples where B's rate is strictly below A's.
"""

import json
import re

import jiwer
import numpy as np
import pytest
from typer.testing import CliRunner

from w2vcli.cli import app

# Already normalised (lowercase, no punctuation), so the reference and hypotheses are scored as written.
REF = [
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dog",
    "hello world",
    "she sells sea shells by the sea shore",
    "we will meet at noon",
    "it is raining again today",
    "one two three four five",
    "please call me back later",
    "the weather is fine",
    "good morning everyone",
]
HYP_A = [  # the worse system
    "the cat sad on a mat",
    "a quick brown fox jump over lazy dog",
    "hello word",
    "she sells see shells by the shore",
    "we will meet at new",
    "it is raining again to day",
    "one two tree for five",
    "please call me back",
    "the whether is fine",
    "good morning every one",
]
HYP_B = [  # better on most utterances, worse on one: the intervals are not one-sided
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dog",
    "hello world",
    "she sells sea shells by the sea shore",
    "we will meet at noon",
    "it is raining again today",
    "one too three four five",
    "please fall me back later",
    "whether is fine",
    "good morning every one of you",
]
RESAMPLES, SEED = 400, 11
# Measured: the report and this re-implementation agree to within one ulp (2e-17: the same draws,
# another summation order); 1e-12 is far below any real difference (a swapped figure moves by > 0.01).
TOL = 1e-12


def per_utterance(hyps: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Word errors, reference words, character errors, reference characters per utterance (U,)."""
    words = [jiwer.process_words(r, h) for r, h in zip(REF, hyps, strict=True)]
    chars = [jiwer.process_characters(r, h) for r, h in zip(REF, hyps, strict=True)]

    def err(o):
        return o.substitutions + o.deletions + o.insertions

    return (
        np.array([err(o) for o in words], float),
        np.array([len(r.split()) for r in REF], float),
        np.array([err(o) for o in chars], float),
        np.array([len(r) for r in REF], float),
    )


def numpy_bootstrap(seed: int, n: int) -> dict:
    """The report's figures, from scratch."""
    wa, wlen, ca, clen = per_utterance(HYP_A)
    wb, _, cb, _ = per_utterance(HYP_B)
    u = len(REF)
    idx = np.random.default_rng(seed).integers(0, u, size=(n, u))  # (n, U), one draw for all rows

    def rates(errors, lens):  # (n,)
        return errors[idx].sum(1) / np.maximum(lens[idx].sum(1), 1)

    ra_w, rb_w, ra_c, rb_c = rates(wa, wlen), rates(wb, wlen), rates(ca, clen), rates(cb, clen)

    def ci(x):  # 95% percentile interval
        return list(np.percentile(x, [2.5, 97.5]))

    return {
        "a": {
            "wer": wa.sum() / wlen.sum(),
            "cer": ca.sum() / clen.sum(),
            "wer_ci": ci(ra_w),
            "cer_ci": ci(ra_c),
        },
        "b": {
            "wer": wb.sum() / wlen.sum(),
            "cer": cb.sum() / clen.sum(),
            "wer_ci": ci(rb_w),
            "cer_ci": ci(rb_c),
        },
        "delta_wer": wb.sum() / wlen.sum() - wa.sum() / wlen.sum(),
        "delta_wer_ci": ci(rb_w - ra_w),
        "p_b_better_wer": float(np.mean(rb_w < ra_w)),
        "delta_cer": cb.sum() / clen.sum() - ca.sum() / clen.sum(),
        "delta_cer_ci": ci(rb_c - ra_c),
        "p_b_better_cer": float(np.mean(rb_c < ra_c)),
    }


@pytest.fixture
def report(tmp_path):
    paths = []
    for name, texts in (("ref", REF), ("a", HYP_A), ("b", HYP_B)):
        p = tmp_path / f"{name}.tsv"
        p.write_text("".join(f"u{i:02d}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
        paths.append(str(p))
    args = ["score", *paths, "--bootstrap", str(RESAMPLES), "--seed", str(SEED), "--json", "-"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_bootstrap_figures_equal_a_numpy_reimplementation(report):
    data, _ = report
    want = numpy_bootstrap(SEED, RESAMPLES)
    a, b = data["systems"]
    for got, exp in ((a, want["a"]), (b, want["b"])):
        for key in ("wer", "cer", "wer_ci", "cer_ci"):
            assert got[key] == pytest.approx(exp[key], abs=TOL), key
    (c,) = data["comparisons"]
    for key in ("delta_wer", "delta_wer_ci", "p_b_better_wer", "delta_cer", "delta_cer_ci", "p_b_better_cer"):
        assert c[key] == pytest.approx(want[key], abs=TOL), key
    # The data make the checks discriminating: B is better, but not on every resample, and an
    # interval of B - A swapped for A - B would not be the same interval.
    assert c["delta_wer_ci"][0] < 0 and c["delta_cer_ci"][0] < 0
    assert c["delta_wer_ci"] != pytest.approx([-c["delta_wer_ci"][1], -c["delta_wer_ci"][0]], abs=1e-3)
    assert c["delta_cer_ci"] != pytest.approx([-c["delta_cer_ci"][1], -c["delta_cer_ci"][0]], abs=1e-3)
    assert 0.5 < c["p_b_better_wer"] < 1 and 0.5 < c["p_b_better_cer"] < 1


def test_comparison_table_shows_the_same_figures(report):
    """The stderr table: Δ, its interval and P(B better) per level, as the JSON (and numpy) give them."""
    _, stderr = report
    want = numpy_bootstrap(SEED, RESAMPLES)
    table = stderr[stderr.index("Paired bootstrap") :]
    for level in ("words", "chars"):
        key = "wer" if level == "words" else "cer"
        m = re.search(rf"{level}\W+([+-]\d+\.\d+)\W+\[(-?\d+\.\d+), (-?\d+\.\d+)\]\W+(\d\.\d+)", table)
        assert m, table
        delta, lo, hi, p = map(float, m.groups())
        assert delta == pytest.approx(100 * want[f"delta_{key}"], abs=0.006)  # printed with 2 decimals
        assert [lo, hi] == pytest.approx([100 * x for x in want[f"delta_{key}_ci"]], abs=0.006)
        assert p == pytest.approx(want[f"p_b_better_{key}"], abs=0.0006)  # 3 decimals
