"""`w2v transcribe` end to end: model resolution (offline), stdout JSON lines, output files, exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from w2vcli.checkpoints.resolve import NO_MODEL, load_model, resolve_model
from w2vcli.errors import W2VError

os.environ["HF_HUB_OFFLINE"] = "1"  # never the network in tests
pytest.importorskip("transformers")
from test_transcribe import babble, make_hf_model, write  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    make_hf_model(d, "layer")
    return d


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for rel, seconds in [("a/x.wav", 1.0), ("b/x.wav", 1.5), ("b/y.wav", 0.7)]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        write(d / rel, babble(seconds, hash(rel) % 100))
    return d


def w2v(*args, cwd=None, stdin=None, env=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "w2vcli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        env=env,
        timeout=120,
    )


def test_model_sources_resolve(hf_dir, tmp_path, monkeypatch):
    from w2vcli.checkpoints.huggingface import load_any
    from w2vcli.checkpoints.native import save_checkpoint
    from w2vcli.training.rundir import RunDir

    assert resolve_model(str(hf_dir)) == hf_dir
    ckpt = load_any(hf_dir)
    ours = save_checkpoint(ckpt.model, tmp_path / "ckpt", ckpt.vocab)
    assert resolve_model(str(ours)) == ours
    run = tmp_path / "run"
    RunDir(run).save(ckpt.model, {"update": 3}, update=3, keep=2, vocab=ckpt.vocab)
    RunDir(run).save(ckpt.model, {"update": 7}, update=7, keep=2, vocab=ckpt.vocab)
    assert resolve_model(str(run)) == run / "checkpoints/update-7"  # what `last` names
    save_checkpoint(ckpt.model, run / "best", ckpt.vocab)
    assert resolve_model(str(run)) == run / "best"  # a fine-tuning run: its best checkpoint
    monkeypatch.setenv("W2V_MODEL", str(ours))
    assert resolve_model(None) == ours
    with pytest.raises(W2VError, match="neither a checkpoint"):
        resolve_model(str(tmp_path / "run" / "checkpoints" / ".." / ".."))
    with pytest.raises(W2VError, match="model not found"):
        resolve_model(str(tmp_path / "nope"))
    loaded = load_model(str(run))
    assert loaded.vocab.tokens == ckpt.vocab.tokens and loaded.normalize


def test_no_model_without_hub_names_the_three_ways(monkeypatch):
    monkeypatch.delenv("W2V_MODEL", raising=False)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails like when not installed
    with pytest.raises(W2VError) as e:
        resolve_model(None)
    assert str(e.value) == NO_MODEL and "--model" in NO_MODEL and "W2V_MODEL" in NO_MODEL
    assert "huggingface_hub" in NO_MODEL and "\n" not in NO_MODEL
    with pytest.raises(W2VError, match="huggingface_hub is not installed"):
        resolve_model("someone/some-model")


def test_hub_offline_without_cache_is_one_line(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    monkeypatch.delenv("W2V_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # empty cache, offline: nothing to find
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(W2VError, match="cannot get facebook/wav2vec2-base-960h") as e:
        resolve_model(None)
    assert "\n" not in str(e.value)


def test_json_lines_on_stdout_and_exit_code(hf_dir, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    r = w2v("transcribe", clips, bad, "--model", hf_dir, "--timestamps", "word")
    assert r.returncode == 1, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 4
    ok = [d for d in lines if "error" not in d]
    assert len(ok) == 3 and all(d["text"] and d["words"] and d["duration"] > 0 for d in ok)
    assert {"audio", "text", "duration", "elapsed", "rtf"} <= set(ok[0])
    assert not any(k.startswith("_") for d in lines for k in d)
    failed = [d for d in lines if "error" in d]
    assert failed[0]["audio"].endswith("bad.wav") and "not an audio file" in failed[0]["error"]
    assert "not an audio file" in r.stderr and "3 transcribed, 1 failed" in r.stderr


@pytest.mark.slow
def test_output_dir_mirrors_paths_and_skip_existing(hf_dir, clips, tmp_path):
    out = tmp_path / "out"
    paths = "\n".join(str(p) for p in sorted(clips.rglob("*.wav"))) + "\n"
    r = w2v(
        "transcribe",
        "-",
        "-m",
        hf_dir,
        "-o",
        out,
        "-f",
        "txt",
        "-f",
        "srt",
        "-f",
        "json",
        cwd=clips,
        stdin=paths,
    )
    assert r.returncode == 0, r.stderr
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got.pop(0) == ".w2v-written.jsonl"  # the ledger of what w2v wrote (and may overwrite)
    assert got == [
        f"{d}/{n}.{f}" for d, n in [("a", "x"), ("b", "x"), ("b", "y")] for f in ("json", "srt", "txt")
    ]
    text = (out / "b/x.txt").read_text().strip()
    assert text == json.loads((out / "b/x.json").read_text())["text"]
    assert "-->" in (out / "b/x.srt").read_text()
    (out / "a/x.txt").write_text("kept\n")
    (out / "b/y.txt").unlink()
    r = w2v("transcribe", "-", "-m", hf_dir, "-o", out, "--skip-existing", cwd=clips, stdin=paths)
    assert r.returncode == 0, r.stderr
    assert (out / "a/x.txt").read_text() == "kept\n"  # skipped
    assert (out / "b/y.txt").read_text().strip()  # redone
    assert "1 transcribed" in r.stderr
    r = w2v("transcribe", clips.name, "-m", hf_dir, "-o", out, "-f", "vtt", cwd=clips.parent)
    assert r.returncode == 0, r.stderr  # a directory argument keeps its own name in the mirror
    assert (out / clips.name / "b/y.vtt").read_text().startswith("WEBVTT")


def test_usage_errors_and_no_model(tmp_path):
    r = w2v("transcribe", "x.wav", "--format", "doc", "-m", tmp_path)
    assert r.returncode == 2 and "--format doc" in r.stderr
    r = w2v("transcribe", "x.wav", "--skip-existing")
    assert r.returncode == 2 and "--output-dir" in r.stderr
    wav = write(tmp_path / "a.wav", np.zeros(8000, np.float32))
    r = w2v("transcribe", wav, env={"W2V_MODEL": "", "HF_HUB_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 1 and "W2V_MODEL" in r.stderr and "--model" in r.stderr
    assert "Traceback" not in r.stderr


def test_int8_from_the_command_line(hf_dir, clips):
    r = w2v("transcribe", clips / "a/x.wav", "-m", hf_dir, "--int8", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    fast = json.loads(r.stdout)
    assert fast["text"] and fast["duration"] == pytest.approx(1.0, abs=0.01)
