"""`w2v segment`: cuts at pauses within the length limit, edges in the pauses, drop reasons and their
order, the confidence filter relative to the file, the fit floors and the file verdict, and the folder
`w2v prep` takes."""

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
    segs, _ = plan(words_of(spec), [], 17.0, SegmentOptions(max_seconds=10.0))
    assert all(s.kept for s in segs)
    assert all(s.end - s.start <= 10.0 for s in segs)
    cuts = [s.end for s in segs[:-1]]
    assert all(any(a + 0.2 < c < b for a, b in [(3.45, 4.5), (7.95, 9.0), (12.45, 13.5)]) for c in cuts)
    assert " ".join(s.text for s in segs).split() == [w for w, *_ in spec]  # every word once, in order


def test_cuts_go_only_where_the_audio_agrees_there_is_a_pause():
    spec = sentence(0.0, 10) + sentence(4.5, 10) + sentence(9.0, 10) + sentence(13.5, 10)  # pauses of ~1 s
    speech_over = (7.9, 9.1)  # the aligner left a gap here, but the signal holds speech throughout it

    def quiet(start, end):  # the longest stretch of [start, end] without speech
        if start < speech_over[1] and end > speech_over[0]:
            return max(speech_over[0] - start, end - speech_over[1], 0.0)
        return end - start

    segs, _ = plan(words_of(spec), [], 17.0, SegmentOptions(max_seconds=10.0), quiet=quiet)
    assert not any(7.95 < s.end < 9.0 for s in segs)  # no cut in that gap
    assert 3.45 < segs[0].end < 4.5  # the earlier pause instead (without `quiet`, the later one: above)
    assert " ".join(s.text for s in segs).split() == [w for w, *_ in spec]
    # No pause within the limit at all: the cut goes inside speech, and both segments beside it go.
    flow = [(f"f{i}", 0.3 * i, 0.3 * i + 0.28, 0.5) for i in range(40)]  # 12 s without a pause
    segs, _ = plan(words_of(flow), [], 12.0, SegmentOptions(max_seconds=5.0))
    assert len(segs) >= 3 and not any(s.kept for s in segs)
    assert {s.reason for s in segs} == {"no pause at its edge"}


def test_drop_reasons():
    spec = sentence(0.0, 8) + sentence(4.0, 8, score=0.01) + sentence(8.0, 8) + [("x", 12.0, 12.3, 0.5)]
    words = words_of(spec)
    words[20]["aligned"] = False
    segs, _ = plan(
        words, [{"start": 4.2, "end": 4.6}], 13.0, SegmentOptions(max_seconds=4.0, min_seconds=0.5)
    )
    reasons = [s.reason.split(" (")[0] for s in segs]
    assert reasons[0] == "" and segs[0].kept
    assert "untranscribed speech" in reasons and "unaligned word" in reasons
    assert reasons[-1] == "too short" or segs[-1].end - segs[-1].start >= 0.5


def test_low_confidence_is_relative_to_the_file():
    spec = sentence(0.0, 8, 0.05) + sentence(4.0, 8, 0.05) + sentence(8.0, 8, 0.005)
    segs, _ = plan(words_of(spec), [], 12.0, SegmentOptions(max_seconds=4.0))
    assert [s.kept for s in segs] == [True, True, False] and segs[-1].reason.startswith("low confidence")
    floor, _ = plan(words_of(spec), [], 12.0, SegmentOptions(max_seconds=4.0, min_score=0.1))
    assert not any(s.kept for s in floor)  # the absolute floor applies too


def fitted(spec):
    """(word, start, end, score, fit) -> align's word dicts."""
    return [{"word": w, "start": a, "end": b, "score": s, "fit": f} for w, a, b, s, f in spec]


def run_of(t0, n, score=0.5, fit=0.8):
    return [(f"w{t0:g}-{i}", t0 + 0.35 * i, t0 + 0.35 * i + 0.3, score, fit) for i in range(n)]


def test_contract_drop_rules_and_their_order():
    spec = (run_of(0.0, 8) + run_of(4.0, 8, fit=0.01) + run_of(8.0, 8) + run_of(12.0, 8, score=0.1)
            + run_of(16.0, 8) + run_of(20.0, 8) + run_of(24.0, 8) + run_of(28.0, 8) + run_of(32.0, 1))  # fmt: skip
    words = fitted(spec)
    words[44]["aligned"] = False

    def loudness(a, b):  # the fifth segment's audio is silent
        return -90.0 if 15.7 <= a and b <= 20.0 else -20.0

    segs, verdict = plan(words, [{"start": 8.5, "end": 8.7}], 32.5, SegmentOptions(max_seconds=4.0),
                         loudness=loudness)  # fmt: skip
    assert verdict == ""  # 2 of the 6 segments judged on sound fail: fewer than half
    assert [(s.kept, s.reason) for s in segs] == [
        (True, ""),
        (False, "does not match the audio (fit 0.010 < 0.050)"),
        (False, "untranscribed speech"),
        (False, "low confidence (0.100 < 0.250)"),
        (False, "silent (below -60 dBFS)"),
        (False, "unaligned word"),
        (True, ""),
        (True, ""),
        (False, "too short"),
    ]
    assert segs[0].text == " ".join(w for w, *_ in spec[:8]) and segs[0].fit == 0.8


def test_contract_the_file_verdict():
    two_bad = run_of(0.0, 8, fit=0.01) + run_of(4.0, 8, fit=0.02) + run_of(8.0, 8)
    segs, verdict = plan(fitted(two_bad), [], 12.0, SegmentOptions(max_seconds=4.0))
    assert verdict.startswith("file rejected: 2 of 3 segments") and not any(s.kept for s in segs)
    assert segs[2].reason == "file rejected"
    one_bad = run_of(0.0, 8, fit=0.01) + run_of(4.0, 8) + run_of(8.0, 8)
    segs, verdict = plan(fitted(one_bad), [], 12.0, SegmentOptions(max_seconds=4.0))
    assert verdict == "" and [s.kept for s in segs] == [False, True, True]
    weak = run_of(0.0, 8, fit=0.08) + run_of(4.0, 8, fit=0.2) + run_of(8.0, 8, fit=0.1)  # median 0.1
    segs, verdict = plan(fitted(weak), [], 12.0, SegmentOptions(max_seconds=4.0))
    assert verdict.startswith("file rejected: its median segment fit 0.100 is below 0.120")
    assert not any(s.kept for s in segs)
    off = SegmentOptions(max_seconds=4.0, min_fit=0.0, min_file_fit=0.0)
    assert all(s.kept for s in plan(fitted(two_bad), [], 12.0, off)[0])  # --min-fit 0 --min-file-fit 0


@pytest.mark.slow
def test_cli_writes_pairs_that_prep_takes(tmp_path, monkeypatch):
    """`w2v segment` on a recording of a weak model's clear speech (tone bursts for sound; --no-edges,
    as the scripted emissions do not follow the bursts), then `w2v prep` of what it wrote."""
    from test_cli_transcribe import w2v
    from test_hostile_align import LOWER, cli, loaded_with, record, speech

    import w2vcli.checkpoints.resolve as resolve

    text = " ".join(["the cat sat on the mat", "a rat ate the hat", "now the cow is out"] * 2)  # 25 s
    loaded = loaded_with(LOWER)
    audio = record(loaded, tmp_path / "long.wav", speech(text), "speech")
    monkeypatch.setattr(resolve, "load_model", lambda *a, **k: loaded)
    args = ("segment", audio, "--text", text, "-m", "m", "-o", tmp_path / "out", "--max-seconds", "8",
            "--min-ratio", "0", "--min-fit", "0", "--min-file-fit", "0", "--no-edges")  # fmt: skip
    code, out = cli(*args)
    assert code == 0, out
    report = [json.loads(line) for line in (tmp_path / "out" / "segments.jsonl").read_text().splitlines()]
    kept = [s for s in report if s["kept"]]
    assert len(kept) >= 3 and " ".join(s["text"] for s in report).split() == text.split()
    for s in kept:
        wav, sr = sf.read(tmp_path / "out" / f"{s['id']}.flac")
        assert (
            sr == 16000 and abs(len(wav) / sr - (s["end"] - s["start"])) < 0.01 and s["end"] - s["start"] <= 8
        )
        assert (tmp_path / "out" / f"{s['id']}.txt").read_text().strip() == s["text"]
    assert "segments kept" in out
    code, out = cli(*args)
    assert code == 0, out  # its own earlier output is replaced
    assert (tmp_path / "out" / "segments.jsonl").read_text().splitlines() == [json.dumps(s) for s in report]
    prep = w2v("prep", tmp_path / "out", "--out", tmp_path / "data")
    assert prep.returncode == 0, prep.stderr
    assert len((tmp_path / "data" / "train.jsonl").read_text().splitlines()) + len(
        (tmp_path / "data" / "valid.jsonl").read_text().splitlines()
    ) == len(kept)
