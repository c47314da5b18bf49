"""Word edges next to pauses (decoding/edges.py): energy steps, speech regions, edges snapped to them,
and the path kept out of pauses, on hand-built signals and emissions."""

import numpy as np
import pytest

from w2vcli.decoding.align import token_spans, viterbi
from w2vcli.decoding.edges import EdgeOptions, energy_db, pause_frames, snap_to_speech, speech_regions
from w2vcli.pipelines.align import word_times

SR = 16000


def steps(*runs: tuple[float, float]) -> np.ndarray:
    """Energy steps (dB, 10 ms each) from (seconds, level) runs."""
    return np.concatenate([np.full(round(s * 100), level, np.float32) for s, level in runs])


def test_energy_of_each_ten_milliseconds():
    t = np.arange(SR) / SR
    sine = 0.5 * np.sin(2 * np.pi * 400 * t)  # mean square 0.125: -9.03 dB
    db = energy_db(np.concatenate([sine, np.zeros(80)]))
    assert len(db) == 101 and np.allclose(db[:100], 10 * np.log10(0.125), atol=0.01)
    assert db[100] < -90  # the partial last step: silence
    partial = energy_db(np.full(80, 0.1, np.float32))  # half a step, scaled as a whole one
    assert partial.shape == (1,) and partial[0] == pytest.approx(-20.0, abs=0.01)
    assert energy_db(np.zeros(0, np.float32)).shape == (0,)


def test_speech_regions_bridge_dips_drop_clicks_and_ignore_digital_silence():
    db = steps(
        (0.5, -60), (0.4, -20), (0.05, -58), (0.3, -22), (0.6, -60),  # a word, a 50 ms closure, a word
        (0.02, -15), (0.5, -60), (0.3, -100), (0.3, -25), (0.4, -61),  # a click; digital zeros; a word
    )  # fmt: skip
    regions = speech_regions(db)
    assert regions.tolist() == [[50, 125], [267, 297]]
    # A pause longer than the bridge splits; a floor of digital silence alone would call noise speech.
    assert speech_regions(steps((0.5, -60), (0.3, -20), (0.2, -60), (0.3, -20), (0.5, -60))).tolist() == [
        [50, 80],
        [100, 130],
    ]
    assert speech_regions(steps((1, -30), (1, -24))) is None  # 6 dB of contrast: nothing to go by
    assert speech_regions(steps((1, -100))) is None


def test_edges_facing_a_pause_move_to_the_speech_and_others_keep_the_path():
    regions = np.array([[100, 180], [250, 300]])  # speech 1.0-1.8 s and 2.5-3.0 s
    words = [
        {"start": 1.04, "end": 1.30},  # late start (CTC inside its first sound), touches the next word
        {"start": 1.32, "end": 1.70},  # early end before the pause
        {"start": 2.10, "end": 2.30},  # the path put it in the pause: it belongs to the speech after
        {"start": 2.62, "end": 2.95},
    ]
    placed = snap_to_speech(words, regions, 3.2)
    assert placed == [(True, False), (False, True), (True, True), (False, True)]
    assert [(w["start"], w["end"]) for w in words] == [
        (1.0, 1.30), (1.32, 1.8), (2.5, 2.62), (2.62, 3.0),
    ]  # fmt: skip
    # A gap in the path alone (the signal's speech runs on through it: CTC's blanks between words
    # of running speech) is no pause: both edges keep the path's times (and get the pads later).
    near = [{"start": 1.05, "end": 1.2}, {"start": 1.5, "end": 1.6}]
    assert snap_to_speech(near, np.array([[100, 170]]), 2.0) == [(True, False), (False, True)]
    assert [(w["start"], w["end"]) for w in near] == [(1.0, 1.2), (1.5, 1.7)]
    # A pause in the signal inside the path's gap: both edges go to it.
    split = [{"start": 1.05, "end": 1.2}, {"start": 1.5, "end": 1.6}]
    assert snap_to_speech(split, np.array([[100, 125], [140, 170]]), 2.0) == [(True, True), (True, True)]
    assert [(w["start"], w["end"]) for w in split] == [(1.0, 1.25), (1.4, 1.7)]
    # With no speech region at all, nothing moves.
    alone = [{"start": 1.0, "end": 1.2}]
    assert snap_to_speech(alone, np.zeros((0, 2), np.int64), 2.0) == [(False, False)]


def test_pause_frames_are_deep_inside_long_pauses_only():
    options = EdgeOptions(min_pause=0.2, guard=0.03)
    regions = np.array([[20, 60], [70, 100]])  # speech 0.2-0.6 s and 0.7-1.0 s; a 0.1 s pause between
    quiet = pause_frames(regions, 60, 0.02, options)  # 1.2 s of frames
    centres = (np.arange(60) + 0.5) * 0.02
    expected = ((centres > 0.03) & (centres < 0.17)) | ((centres > 1.03) & (centres < 1.17))
    assert (quiet == expected).all()


def test_a_weak_model_cannot_hang_a_word_in_the_pause_when_the_signal_says_pause():
    blank, a, b, sep = 0, 1, 2, 3
    t = 60  # 1.2 s of 20 ms frames: a pause 0-0.6 s, then speech
    p = np.full((t, 4), 0.05)
    p[:, blank] = 0.85
    p[20, a] = 0.6  # the model half-hears "a" in the pause...
    p[20, blank] = 0.3
    p[34, a] = 0.45  # ...and a little less where it was said
    p[34, blank] = 0.45
    p[40, b] = 0.9
    p[40, blank] = 0.05
    lp = np.log(p / p.sum(axis=1, keepdims=True))
    tokens, words = [a, sep, b], [0, -1, 1]
    free, _ = viterbi(lp, tokens, blank, words=words)
    assert token_spans(free, lp, tokens, blank)[0].start == 20  # in the pause
    regions = np.array([[60, 120]])  # speech from 0.6 s
    quiet = pause_frames(regions, t, 0.02, EdgeOptions())
    steered = lp.copy()
    steered[np.ix_(quiet, [a, b, sep])] -= EdgeOptions().letter_in_pause
    path, _ = viterbi(steered, tokens, blank, words=words)
    spans = token_spans(path, lp, tokens, blank)
    assert spans[0].start == 34  # where it was said
    from w2vcli.decoding.align_text import Word

    timed = word_times([Word("a", "a", [a]), Word("b", "b", [b])], spans, words, 0.02, 1.2,
                       0.04, 0.06, regions)  # fmt: skip
    assert timed[0]["start"] == 0.6  # snapped to the speech's onset, no pad
    assert timed[1]["end"] == 1.2  # the file's end: the speech runs to it


def test_cli_align_places_edges_at_the_speech_unless_told_not_to(tmp_path, monkeypatch):
    """Through `w2v align`: a word said 0.8-1.2 s in a recording of pauses; the model marks its letters
    a little inside the sound. By default the edges are the sound's; --no-edges gives the frames + pads."""
    import json

    import soundfile as sf

    import w2vcli.checkpoints.resolve as resolve
    from tests.test_hostile_align import LOWER, cli, emissions, loaded_with

    loaded = loaded_with(LOWER)
    n = 99 * 320 + 400  # 100 frames: 2.0 s
    labels = [0] * 100
    for k, ch in zip(range(44, 56, 4), "cat", strict=True):  # letters on frames 44, 48, 52: 0.88-1.06 s
        labels[k] = LOWER.index[ch]
    loaded.model.by_length[n] = emissions(labels, len(LOWER), 0.9)
    rng = np.random.default_rng(0)
    wav = 0.001 * rng.standard_normal(n)
    t = np.arange(round(0.4 * SR)) / SR
    wav[round(0.8 * SR) : round(1.2 * SR)] += 0.3 * np.sin(2 * np.pi * 200 * t)  # the word: 0.8-1.2 s
    sf.write(tmp_path / "cat.wav", wav.astype(np.float32), SR, subtype="FLOAT")
    monkeypatch.setattr(resolve, "load_model", lambda *a, **k: loaded)
    code, out = cli("align", tmp_path / "cat.wav", "--text", "cat", "-m", "m")
    assert code == 0, out
    word = json.loads(next(x for x in out.splitlines() if x.startswith("{")))["words"][0]
    assert abs(word["start"] - 0.8) <= 0.02 and abs(word["end"] - 1.2) <= 0.02
    code, out = cli("align", tmp_path / "cat.wav", "--text", "cat", "-m", "m", "--no-edges")
    word = json.loads(next(x for x in out.splitlines() if x.startswith("{")))["words"][0]
    assert (
        code == 0
        and word["start"] == pytest.approx(0.88 - 0.04)
        and word["end"] == pytest.approx(1.06 + 0.06)
    )
