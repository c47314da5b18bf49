"""The n-gram LM builder: a proper distribution in every context, the ARPA file our reader scores."""

import math

import pytest

from w2vcli.decoding.lm import ArpaLM
from w2vcli.decoding.ngram import discounts, estimate, write_arpa
from w2vcli.errors import W2VError

TEXT = [
    s.split()
    for s in (
        "the cat sat on the mat",
        "the dog sat on the log",
        "a cat and a dog",
        "the cat ran",
        "on the mat the cat sat",
        "a log",
        "the the the",
        "dog",
        "cat sat",
        "the mat",
    )
]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_sums_to_one_over_the_vocabulary_and_unk(order, tmp_path):
    write_arpa(estimate(TEXT, order), tmp_path / "lm.arpa")
    lm = ArpaLM.load(tmp_path / "lm.arpa")
    assert lm.order == order
    words = sorted({w for s in TEXT for w in s} | {"</s>", "<unk>"})
    for context in [
        ("<s>",),
        ("<s>", "the"),
        ("the", "cat"),
        ("sat", "on", "the"),
        ("zebra",),
        ("the", "zebra"),
    ]:
        context = context[-(order - 1) :] if order > 1 else ()
        total = sum(10 ** lm.log10_prob(context, w) for w in words)
        assert math.isclose(total, 1.0, rel_tol=1e-4), (context, total)


def test_seen_continuations_beat_unseen_and_kneser_ney_discounts_words_with_one_context(tmp_path):
    write_arpa(estimate(TEXT, 3), tmp_path / "lm.arpa")
    lm = ArpaLM.load(tmp_path / "lm.arpa")
    assert lm.log10_prob(("sat", "on"), "the") > lm.log10_prob(("sat", "on"), "dog")
    assert lm.log10_prob(("<s>",), "the") > lm.log10_prob(("<s>",), "sat")
    assert (
        lm.log10_prob(("the",), "zebra") == lm.log10_prob(("the",), "<unk>") < lm.log10_prob(("the",), "cat")
    )
    assert lm.probs[("<s>",)][0] == -99.0


def test_discounts_follow_the_count_of_counts_and_stay_in_range():
    d1, d2, d3 = discounts([1] * 100 + [2] * 40 + [3] * 20 + [4] * 10)
    y = 100 / (100 + 80)
    assert math.isclose(d1, 1 - 2 * y * 40 / 100) and math.isclose(d3, 3 - 4 * y * 10 / 20)
    assert 0 <= d1 <= 1 and 0 <= d2 <= 2 and 0 <= d3 <= 3
    assert discounts([1, 1, 2]) == (0.5, 1.0, 1.5)  # too few counts to estimate from
    with pytest.raises(W2VError):
        estimate([[], []], 3)


def test_cli_builds_from_text_manifests_and_stdin_leaving_out_excluded_sentences(tmp_path):
    import json

    from typer.testing import CliRunner

    from w2vcli.cli import app

    (tmp_path / "a.txt").write_text("The cat sat.\n\nThe dog ran!\n", encoding="utf-8")
    rows = [
        {"id": "x", "audio": "x.wav", "duration": 1.0, "text": "A cat ran"},
        {"id": "y", "audio": "y.wav", "duration": 1.0, "text": "The dog ran"},
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "lm.arpa"
    r = CliRunner().invoke(
        app,
        [
            "lm",
            str(tmp_path / "a.txt"),
            "-",
            "--out",
            str(out),
            "--order",
            "2",
            "--exclude",
            str(tmp_path / "test.jsonl"),
        ],
        input="a BIRD sang\n",
    )
    assert r.exit_code == 0, r.output
    assert "2 sentences (1 excluded), 6 words" in " ".join(r.output.split())
    lm = ArpaLM.load(out)
    assert ("bird",) in lm.probs and ("the", "cat") in lm.probs and ("dog", "ran") not in lm.probs
    bad = CliRunner().invoke(app, ["lm", str(tmp_path / "missing.txt"), "--out", str(out)])
    assert bad.exit_code != 0 and "no such file" in str(bad.exception)
