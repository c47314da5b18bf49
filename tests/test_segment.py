"""`w2v segment`: cuts at pauses within the length limit, edges in the pauses, drop reasons, the
confidence filter relative to the file, and the folder `w2v prep` takes."""

import json
import os

import pytest
import soundfile as sf

from w2vcli.pipelines.segment import SegmentOptions, plan

os.environ["HF_HUB_OFFLINE"] = "1"


def words_of(spec):
    """(word, start, end, score) tuples -> align's word dicts."""
    return [{"word": w, "start": a, "end": b, "score": s} for w, a, b, s in spec]


def sentence(t0, n, score=0.5):
    """n words of 0.3 s with 0.05 s gaps from t0."""
    return [(f"w{t0:g}-{i}", t0 + 0.35 * i, t0 + 0.35 * i + 0.3, score) for i in range(n)]


def test_cuts_fall_in_the_long_pauses_and_keep_the_limit():
    spec = sentence(0.0, 10) + sentence(4.5, 10) + sentence(9.0, 10) + sentence(13.5, 10)  # pauses of ~1 s
    segs = plan(words_of(spec), [], 17.0, SegmentOptions(max_seconds=10.0))
    assert all(s.kept for s in segs)
    assert all(s.end - s.start <= 10.0 for s in segs)
    cuts = [s.end for s in segs[:-1]]
    assert all(any(a + 0.2 < c < b for a, b in [(3.45, 4.5), (7.95, 9.0), (12.45, 13.5)]) for c in cuts)
    assert " ".join(s.text for s in segs).split() == [w for w, *_ in spec]  # every word once, in order


def test_drop_reasons():
    spec = sentence(0.0, 8) + sentence(4.0, 8, score=0.01) + sentence(8.0, 8) + [("x", 12.0, 12.3, 0.5)]
    words = words_of(spec)
    words[20]["aligned"] = False
    segs = plan(words, [{"start": 4.2, "end": 4.6}], 13.0, SegmentOptions(max_seconds=4.0, min_seconds=0.5))
    reasons = [s.reason.split(" (")[0] for s in segs]
    assert reasons[0] == "" and segs[0].kept
    assert "untranscribed speech" in reasons and "unaligned word" in reasons
    assert reasons[-1] == "too short" or segs[-1].end - segs[-1].start >= 0.5


def test_low_confidence_is_relative_to_the_file():
    spec = sentence(0.0, 8, 0.05) + sentence(4.0, 8, 0.05) + sentence(8.0, 8, 0.005)
    segs = plan(words_of(spec), [], 12.0, SegmentOptions(max_seconds=4.0))
    assert [s.kept for s in segs] == [True, True, False] and segs[-1].reason.startswith("low confidence")
    floor = plan(words_of(spec), [], 12.0, SegmentOptions(max_seconds=4.0, min_score=0.1))
    assert not any(s.kept for s in floor)  # the absolute floor applies too


@pytest.mark.slow
def test_cli_writes_pairs_that_prep_takes(tmp_path):
    pytest.importorskip("transformers")
    from test_cli_transcribe import w2v
    from test_transcribe import babble, make_hf_model, write

    model = tmp_path / "m"
    make_hf_model(model, "layer", seed=3)
    audio = write(tmp_path / "long.wav", babble(30.0, 4))
    text = " ".join(["the cat sat on the mat", "a rat ate the hat", "now the cow is out"] * 4)
    r = w2v("segment", audio, "--text", text, "-m", model, "-o", tmp_path / "out", "--max-seconds", "8",
            "--min-ratio", "0", "--engine", "torch")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = [json.loads(line) for line in (tmp_path / "out" / "segments.jsonl").read_text().splitlines()]
    kept = [s for s in report if s["kept"]]
    assert kept and " ".join(s["text"] for s in report).split() == text.split()
    for s in kept:
        wav, sr = sf.read(tmp_path / "out" / f"{s['id']}.flac")
        assert (
            sr == 16000 and abs(len(wav) / sr - (s["end"] - s["start"])) < 0.01 and s["end"] - s["start"] <= 8
        )
        assert (tmp_path / "out" / f"{s['id']}.txt").read_text().strip() == s["text"]
    assert "segments kept" in r.stderr
    again = w2v("segment", audio, "--text", text, "-m", model, "-o", tmp_path / "out", "--engine", "torch")
    assert again.returncode == 2 and "not empty" in again.stderr
    prep = w2v("prep", tmp_path / "out", "--out", tmp_path / "data")
    assert prep.returncode == 0, prep.stderr
    assert len((tmp_path / "data" / "train.jsonl").read_text().splitlines()) + len(
        (tmp_path / "data" / "valid.jsonl").read_text().splitlines()
    ) == len(kept)
