"""`--engine auto` by measurement (checkpoints/engine_choice.py): the decision for each job size, the
calibration record (kept per CPU and model file), no export for a short job, `w2v info --engines`."""

import json
import math
import os

import pytest

from w2vcli.checkpoints import engine_choice, onnx_cache, resolve
from w2vcli.checkpoints.engine_choice import CALIBRATE_AFTER, Calibration, decide
from w2vcli.checkpoints.resolve import load_model

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")
from test_cli_transcribe import w2v  # noqa: E402
from test_transcribe import babble, make_hf_model, write  # noqa: E402


def record(torch=0.10, onnx=0.05, torch_load=1.0, onnx_load=0.5, export=20.0) -> Calibration:
    return Calibration(torch, onnx, torch_load, onnx_load, export, "fp32", "cpu", "m", "now")


@pytest.mark.parametrize(
    "rec, seconds, exported, engine, calibrate, why",
    [
        (None, 1.0, False, "torch", False, "not calibrated here"),
        (None, CALIBRATE_AFTER - 1, False, "torch", False, "not calibrated here"),
        (None, CALIBRATE_AFTER, False, "torch", True, "calibrating"),
        (None, math.inf, False, "torch", True, "calibrating"),
        (None, None, True, "torch", False, "not calibrated and exported here"),
        (record(), None, False, "torch", False, "not calibrated and exported here"),
        (record(), None, True, "onnx", False, "ONNX Runtime 2.00x PyTorch here"),
        # exported: 1 s costs torch 1.0 + 0.1, onnx 0.5 + 0.05
        (record(), 1.0, True, "onnx", False, "ONNX Runtime 2.00x PyTorch here"),
        # not exported: 0.5 + 0.05 * A + 20 < 1.0 + 0.1 * A from A = 390 s
        (record(), 389.0, False, "torch", False, "too short a job to pay for the export"),
        (record(), 391.0, False, "onnx", False, "2.00x"),
        # opening the export dearer than loading the weights: a 1 s file stays on PyTorch
        (record(onnx_load=3.0), 1.0, True, "torch", False, "too short a job to pay for loading it"),
        (record(onnx_load=3.0), 60.0, True, "onnx", False, "2.00x"),
        (record(onnx=0.2), math.inf, True, "torch", False, "ONNX Runtime 0.50x PyTorch here"),
        (record(onnx=None), math.inf, True, "torch", False, "could not run"),
        (record(export=None), 10_000.0, False, "torch", False, "too short"),  # export time unknown
    ],
)
def test_decide(rec, seconds, exported, engine, calibrate, why):
    d = decide(rec, seconds, exported)
    assert (d.engine, d.calibrate) == (engine, calibrate) and why in d.why, d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf-calib")
    make_hf_model(d, "layer", seed=3)
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("W2V_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("W2V_ENGINE", raising=False)
    monkeypatch.setattr(engine_choice, "CALIBRATION_SECONDS", 1.0)
    return tmp_path / "cache"


def test_a_calibration_is_kept_per_cpu_and_model_file(model_dir, cache, monkeypatch):
    said = []
    rec = engine_choice.calibrate(model_dir, False, said.append)
    assert rec.torch > 0 and rec.onnx > 0 and rec.torch_load > 0 and rec.onnx_load > 0 and rec.export > 0
    assert said[0].startswith("measuring PyTorch and ONNX Runtime on this model") and any(
        m.startswith("exporting the model to ONNX") for m in said
    )
    stored = json.loads((cache / "engines.json").read_text())["records"]
    assert len(stored) == 1 and next(iter(stored.values()))["choice"] in ("onnx", "torch")
    assert engine_choice.lookup(model_dir, False) == rec
    assert engine_choice.lookup(model_dir, True) is None  # int8 is measured apart
    again = engine_choice.calibrate(model_dir, False)  # the export is cached now: its time is kept
    assert (
        again.export == rec.export and len(json.loads((cache / "engines.json").read_text())["records"]) == 1
    )
    monkeypatch.setattr(engine_choice, "cpu_description", lambda: "'Other CPU' flags=avx2")
    assert engine_choice.lookup(model_dir, False) is None  # another CPU measures for itself
    monkeypatch.undo()
    monkeypatch.setenv("W2V_CACHE", str(cache))
    monkeypatch.setattr(engine_choice, "CALIBRATION_SECONDS", 1.0)
    weights = next(model_dir.glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert engine_choice.lookup(model_dir, False) is None  # the model changed: measured again
    (cache / "engines.json").write_text("{not json")
    assert engine_choice.lookup(model_dir, False) is None  # damaged: measured again, never an error


def test_a_short_job_runs_at_once_on_torch_and_exports_nothing(model_dir, cache, monkeypatch):
    monkeypatch.setattr(engine_choice, "calibrate", lambda *a, **k: pytest.fail("calibrated a short job"))
    loaded = load_model(str(model_dir), engine="auto", audio_seconds=3.0)
    assert loaded.engine == "torch" and "not calibrated here" in loaded.why
    assert not list(cache.glob("onnx/*.onnx"))


def test_a_long_job_calibrates_then_runs_the_winner(model_dir, cache, monkeypatch):
    said = []
    loaded = load_model(str(model_dir), engine="auto", audio_seconds=CALIBRATE_AFTER, announce=said.append)
    rec = engine_choice.lookup(model_dir, False)
    assert rec is not None and said[0].startswith("measuring")
    assert loaded.engine == ("onnx" if rec.speedup() > 1 else "torch")
    # a later short run uses the record: no measurement, no export
    monkeypatch.setattr(engine_choice, "calibrate", lambda *a, **k: pytest.fail("measured twice"))
    monkeypatch.setattr(onnx_cache, "_export_locked", lambda *a, **k: pytest.fail("exported twice"))
    rec.torch, rec.onnx = 1.0, 0.1  # as if ONNX Runtime were 10x faster here
    engine_choice._save(engine_choice._key(model_dir, False), rec)
    again = load_model(str(model_dir), engine="auto", audio_seconds=60.0)
    assert again.engine == "onnx" and again.why == "auto: ONNX Runtime 10.00x PyTorch here"
    rec.torch, rec.onnx = 0.1, 1.0
    engine_choice._save(engine_choice._key(model_dir, False), rec)
    monkeypatch.setattr(resolve, "_load_onnx_file", lambda *a, **k: pytest.fail("opened the export"))
    assert load_model(str(model_dir), engine="auto", audio_seconds=math.inf).engine == "torch"


def test_explicit_engines_say_so(model_dir, cache):
    loaded = load_model(str(model_dir), engine="torch")
    assert loaded.why == "--engine torch"


def test_cli_summary_names_the_engine_and_info_shows_the_calibration(model_dir, cache, tmp_path):
    clip = write(tmp_path / "c.wav", babble(1.0, 2))
    env = {"W2V_CACHE": str(cache)}
    r = w2v("transcribe", clip, "--model", model_dir, env=env)
    assert r.returncode == 0, r.stderr
    last = " ".join(r.stderr.split())
    assert "engine torch fp32 on cpu (auto: not calibrated here; `w2v info MODEL --engines` measures)" in last
    assert not list(cache.glob("onnx/*.onnx"))  # a one-off job pays no export
    info = w2v("info", model_dir, "--engines", "--json", env=env)
    assert info.returncode == 0, info.stderr
    got = json.loads(info.stdout)
    assert got["precision"] == "fp32" and got["torch"] > 0 and got["onnx"] > 0 and "measuring" in info.stderr
    assert set(got["auto"]) == {"a 1 s file", "10 minutes of audio", "an hour", "a server"}
    assert got["auto"]["a server"] == ("onnx" if got["speedup"] > 1 else "torch")
    shown = w2v("info", model_dir, "--engines", env=env)  # kept: shown without measuring again
    assert shown.returncode == 0 and "measuring" not in shown.stderr and "ONNX Runtime" in shown.stdout
    r = w2v("transcribe", clip, "--model", model_dir, env=env)
    fields = {k: got[k] for k in Calibration.__dataclass_fields__}
    expected = decide(Calibration(**fields), 1.0, exported=True)  # the clip's second, export made
    assert f"engine {expected.engine} fp32 on cpu ({expected.why})" in " ".join(r.stderr.split())


@pytest.mark.parametrize(
    "args, message",
    [
        (("--int8",), "--int8 goes with --engines"),
        (("--recalibrate",), "--recalibrate goes with --engines"),
    ],
)
def test_info_flags_without_engines_are_refused(model_dir, args, message):
    r = w2v("info", model_dir, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
