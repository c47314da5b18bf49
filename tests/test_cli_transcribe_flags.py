"""`w2v transcribe` flags -> the pipeline: each flag reaches its `TranscribeOptions` field or `load_model`.

The CLI runs in-process with the model loader and the pipeline replaced by recorders, so no model is
loaded and nothing is transcribed: what is checked is the wiring alone, against `TranscribeOptions`
built directly with the same values (its defaults are the library's, which the CLI must keep).
"""

import dataclasses
import json
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

import w2vcli.checkpoints.resolve
import w2vcli.pipelines.transcribe
from w2vcli.cli import app
from w2vcli.cli.transcribe import LM_BEAM
from w2vcli.decoding.formats import Transcription
from w2vcli.pipelines.transcribe import TranscribeOptions

# flags -> (TranscribeOptions fields that differ from the defaults, --int8)
TABLE = [
    ([], {}, False),
    (["--beam", "7"], {"beam": 7}, False),
    (["--lm", "x.arpa"], {"lm": "x.arpa", "beam": LM_BEAM}, False),
    (["--lexicon", "words.txt"], {"lexicon": "words.txt", "beam": LM_BEAM}, False),
    (["--lm", "x.arpa", "--beam", "3"], {"lm": "x.arpa", "beam": 3}, False),
    (["--lm-weight", "1.25"], {"lm_weight": 1.25}, False),
    (["--word-score", "-0.75"], {"word_score": -0.75}, False),
    (["--lm-weight", "0.3", "--word-score", "2.5"], {"lm_weight": 0.3, "word_score": 2.5}, False),
    (["--int8"], {}, True),
    (["--chunk-seconds", "12.5"], {"chunk_seconds": 12.5}, False),
    (["--chunk-seconds", "0"], {"chunk_seconds": 0.0}, False),
    (["--stride-seconds", "1.5"], {"stride_seconds": 1.5}, False),
    (["--batch-seconds", "60"], {"batch_seconds": 60.0}, False),
    (["--batch-seconds", "0"], {"batch_seconds": 0.0}, False),
    (["--timestamps", "word"], {"timestamps": "word"}, False),
    (["--timestamps", "char"], {"timestamps": "char"}, False),
    (["--vad"], {"vad": True}, False),
    (
        ["--beam", "5", "--lm", "x.arpa", "--lexicon", "x.arpa", "--lm-weight", "0.9", "--word-score", "-1",
         "--int8", "--chunk-seconds", "20", "--stride-seconds", "2", "--batch-seconds", "30", "--timestamps", "word"],
        {"beam": 5, "lm": "x.arpa", "lexicon": "x.arpa", "lm_weight": 0.9, "word_score": -1.0,
         "chunk_seconds": 20.0, "stride_seconds": 2.0, "batch_seconds": 30.0, "timestamps": "word"},
        True,
    ),
]  # fmt: skip


LOADED = SimpleNamespace(engine="torch", device="cpu", why="--engine torch")


@pytest.fixture
def recorded(monkeypatch):
    """Replace the loader and the pipeline; return what they were called with."""
    calls: dict = {}

    def load_model(spec, device="cpu", int8=False, engine=None, announce=None, audio_seconds=None):
        calls["load"] = {"spec": spec, "device": device, "int8": int8, "engine": engine}
        calls["audio_seconds"] = audio_seconds
        return LOADED

    def transcribe(items, loaded, options=None, on_progress=None):
        calls["run"] = {"loaded": loaded, "options": options, "items": [it.audio for it in items]}
        for i, it in enumerate(items):
            yield Transcription(it.audio, i, text="ok", duration=1.0, elapsed=0.5)

    monkeypatch.setattr(w2vcli.checkpoints.resolve, "load_model", load_model)
    monkeypatch.setattr(w2vcli.pipelines.transcribe, "transcribe", transcribe)
    return calls


@pytest.mark.parametrize("flags, fields, int8", TABLE, ids=[" ".join(f) or "defaults" for f, _, _ in TABLE])
def test_each_flag_reaches_the_pipeline(recorded, tmp_path, flags, fields, int8):
    audio = str(tmp_path / "a.wav")  # never read: the pipeline is a recorder
    r = CliRunner().invoke(app, ["transcribe", audio, "-m", "some/model", *flags])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"audio": audio, "text": "ok", "duration": 1.0, "elapsed": 0.5, "rtf": 0.5}
    assert recorded["load"]["spec"] == "some/model"
    assert recorded["load"]["int8"] is int8
    assert recorded["run"]["loaded"] == LOADED
    assert recorded["run"]["items"] == [audio]
    expected = dataclasses.replace(TranscribeOptions(), **fields)
    got = recorded["run"]["options"]
    assert isinstance(got, TranscribeOptions)
    assert dataclasses.asdict(got) == dataclasses.asdict(expected)


def test_the_table_sets_every_option_field_and_every_flag():
    """A field added to TranscribeOptions (or a flag to the command) without a row here fails."""
    covered = {k for _, fields, _ in TABLE for k in fields}
    assert covered == {f.name for f in dataclasses.fields(TranscribeOptions)}
    flags = {f for row, _, _ in TABLE for f in row if f.startswith("--")}
    command = typer.main.get_command(app).commands["transcribe"]
    options = {o for p in command.params for o in p.opts if o.startswith("--")}
    elsewhere = {
        "--model",
        "--output-dir",
        "--format",
        "--skip-existing",
        "--device",
        "--engine",
    }  # not pipeline options
    assert flags == options - elsewhere


@pytest.mark.parametrize(
    "flags, engine", [([], None), (["--engine", "onnx"], "onnx"), (["--engine", "torch"], "torch")]
)
def test_engine_reaches_the_loader(recorded, tmp_path, flags, engine):
    r = CliRunner().invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-m", "m", *flags])
    assert r.exit_code == 0, r.output
    assert recorded["load"]["engine"] == engine  # None: $W2V_ENGINE, else auto


def test_the_jobs_audio_reaches_the_loader(recorded, tmp_path):
    """The auto engine weighs an export against the job's audio, read from the files' headers."""
    import numpy as np
    import soundfile as sf

    for i, seconds in enumerate([1.5, 2.25]):
        sf.write(tmp_path / f"{i}.wav", np.zeros(int(seconds * 8000), np.float32), 8000)
    (tmp_path / "bad.wav").write_text("not audio")  # weighs nothing; the pipeline reports it
    r = CliRunner().invoke(app, ["transcribe", str(tmp_path), "-m", "m"])
    assert r.exit_code == 0, r.output
    assert recorded["audio_seconds"] == pytest.approx(3.75)
    assert "engine torch fp32 on cpu (--engine torch)" in " ".join(r.stderr.split())
