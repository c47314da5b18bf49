"""`w2v align` end to end on a random model: the transcript's words come back timed, in order, with
the user's spelling; unspellable words are flagged; each output format; bad inputs fail alone."""

import json
import os

import numpy as np
import pytest

from w2vcli.checkpoints.resolve import load_model
from w2vcli.decoding.confidence import FEATURES
from w2vcli.decoding.formats import render
from w2vcli.pipelines.align import AlignOptions, align, align_inputs

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")
from test_cli_transcribe import w2v  # noqa: E402
from test_transcribe import babble, make_hf_model, write  # noqa: E402

TEXT = "The 2 cats, that shout: 'hush'!"  # the model's letters are etaoinshrdlucmwy'


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    make_hf_model(d, "group", seed=1)
    return d


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(str(model_dir), engine="torch")


def test_words_come_back_in_order_timed_and_spelt_as_given(loaded, tmp_path):
    clip = write(tmp_path / "a.wav", babble(4.0, 7))
    (r,) = align(align_inputs([str(clip)], text=TEXT), loaded)
    assert r.error is None
    assert [w["word"] for w in r.words] == TEXT.split()
    times = [(w["start"], w["end"]) for w in r.words]
    assert all(0 <= a < b <= r.duration + 1e-9 for a, b in times)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(times, times[1:]))
    assert all(0 <= w["score"] <= 1 for w in r.words)
    assert all(0 < w["confidence"] < 1 and "features" not in w for w in r.words)
    assert all(w.get("aligned", True) for w in r.words)
    (with_features,) = align(align_inputs([str(clip)], text=TEXT), loaded, AlignOptions(features=True))
    assert all(set(w["features"]) == set(FEATURES) for w in with_features.words)


def test_an_unspellable_word_is_flagged_with_times_between_its_neighbours(loaded, tmp_path):
    clip = write(tmp_path / "a.wav", babble(3.0, 8))
    (r,) = align(align_inputs([str(clip)], text="the cat ??? sat"), loaded)
    flagged = [w for w in r.words if w.get("aligned") is False]
    assert [w["word"] for w in flagged] == ["???"]
    cat, odd, sat = r.words[1:]
    assert cat["end"] <= odd["start"] < odd["end"] <= sat["start"]


def test_bad_inputs_are_errors_of_their_own_file(loaded, tmp_path):
    write(tmp_path / "ok.wav", babble(2.0, 1))
    (tmp_path / "ok.txt").write_text("the cat")
    write(tmp_path / "short.wav", babble(0.3, 2))
    (tmp_path / "short.txt").write_text("the cat sat on the mat that the rat ate " * 3)
    write(tmp_path / "empty.wav", babble(1.0, 3))
    (tmp_path / "empty.txt").write_text("  \n")
    write(tmp_path / "foreign.wav", babble(1.0, 4))
    (tmp_path / "foreign.txt").write_text("??? !!!")
    write(tmp_path / "orphan.wav", babble(1.0, 5))
    write(tmp_path / "silent.wav", np.zeros(32000, np.float32))
    (tmp_path / "silent.txt").write_text("the cat")
    results = {os.path.basename(r.audio): r for r in align(align_inputs([str(tmp_path)]), loaded)}
    assert results["ok.wav"].error is None and len(results["ok.wav"].words) == 2
    assert "longer than the audio can hold" in results["short.wav"].error
    assert "empty" in results["empty.wav"].error
    assert "nothing in the transcript can be spelt" in results["foreign.wav"].error
    assert "no transcript" in results["orphan.wav"].error
    assert results["silent.wav"].error is None  # no speech: still timed, with low scores


def test_formats_ctm_textgrid_and_subtitles(loaded, tmp_path):
    clip = write(tmp_path / "talk.wav", babble(3.0, 9))
    (r,) = align(align_inputs([str(clip)], text="the cat sat"), loaded)
    ctm = render(r, "ctm").splitlines()
    assert [line.split()[0] for line in ctm] == ["talk"] * 3 and [line.split()[4] for line in ctm] == [
        "the",
        "cat",
        "sat",
    ]
    grid = render(r, "textgrid")
    assert grid.startswith('File type = "ooTextFile"') and 'name = "words"' in grid and 'text = "cat"' in grid
    assert "-->" in render(r, "srt") and render(r, "vtt").startswith("WEBVTT")


@pytest.mark.slow
def test_cli_stdout_output_dir_and_usage_errors(model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    a = write(tmp_path / "in" / "a.wav", babble(2.0, 1))
    (tmp_path / "in" / "a.txt").write_text("the cat")
    b = write(tmp_path / "in" / "b.wav", babble(2.0, 2))  # no transcript: fails alone
    r = w2v("align", tmp_path / "in", "-m", model_dir, "--engine", "torch")
    assert r.returncode == 1
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["words"][1]["word"] for d in lines if "error" not in d] == ["cat"]
    assert any("no transcript" in d.get("error", "") for d in lines) and "no transcript" in r.stderr
    flags = ["--text", "the cat", "-m", model_dir, "-o", "out", "-f", "textgrid", "-f", "ctm", "--chars"]
    r = w2v("align", "in/a.wav", *flags, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    grid = (tmp_path / "out" / "in" / "a.textgrid").read_text()  # mirrors the input's path
    assert 'name = "chars"' in grid and len((tmp_path / "out" / "in" / "a.ctm").read_text().splitlines()) == 2
    r = w2v("align", a, b, "--text", "the cat", "-m", model_dir)
    assert r.returncode == 2 and "one audio file" in r.stderr
