"""What a careless or hostile user can do, and what must hold anyway (issue 14): no output outside the
output folder or over a file w2v did not write, no input dropped silently, one process per run folder,
absurd or damaged model files refused in one line before anything is allocated, and a run killed with
-9 at any moment resumed with a clean log and checkpoints folder."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.train_helpers import WORDS, make_corpus, small_model
from w2vcli.checkpoints.native import load_checkpoint, save_checkpoint
from w2vcli.data.text import Vocabulary
from w2vcli.errors import UsageError, W2VError
from w2vcli.model import Wav2Vec2ForCTC
from w2vcli.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def w2v(*args, cwd=None, stdin=None, timeout=180):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "150"}
    return subprocess.run(
        [sys.executable, "-m", "w2vcli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        env=env,
        timeout=timeout,
    )


def tone(path: Path, seconds: float = 1.0, freq: float = 300.0) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # through a handle: libsndfile takes UTF-8 names only
        sf.write(
            f, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000, format=path.suffix[1:].upper()
        )
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    vocab = Vocabulary.from_texts(WORDS)
    return save_checkpoint(
        Wav2Vec2ForCTC(small_model(vocab_size=len(vocab))), tmp_path_factory.mktemp("m") / "m", vocab
    )


# 1. Outputs stay inside the output folder and never replace a file w2v did not write.


def test_transcribe_never_replaces_reference_transcripts(model, tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(3):
        tone(corpus / "test" / f"a{i}.flac", freq=200 + 50 * i)
        (corpus / "test" / f"a{i}.txt").write_text("the reference\n")
    r = w2v("transcribe", "test/a0.flac", "test/a1.flac", "test/a2.flac", "-m", model, "-o", ".", cwd=corpus)
    assert r.returncode == 2 and "would replace a file" in r.stderr and "Traceback" not in r.stderr
    assert all((corpus / "test" / f"a{i}.txt").read_text() == "the reference\n" for i in range(3))
    # an input named with `..` gets a name inside -o, never its own sidecar
    work = tmp_path / "work"
    work.mkdir()
    r = w2v("transcribe", "../corpus/test/a0.flac", "-m", model, "-o", ".", cwd=work)
    assert r.returncode == 0, r.stderr
    assert (corpus / "test" / "a0.txt").read_text() == "the reference\n"
    outputs = [p for p in work.rglob("a0.txt")]
    assert len(outputs) == 1 and work in outputs[0].parents


def test_transcribe_overwrites_only_its_own_unchanged_outputs(model, tmp_path):
    clip = tone(tmp_path / "in" / "x.wav")
    out = tmp_path / "out"
    assert w2v("transcribe", clip, "-m", model, "-o", out, "-f", "txt").returncode == 0
    written = next(out.rglob("x.txt"))
    assert w2v("transcribe", clip, "-m", model, "-o", out, "-f", "txt").returncode == 0  # ours: rewritten
    written.write_text("corrected by hand\n")
    r = w2v("transcribe", clip, "-m", model, "-o", out, "-f", "txt")
    assert r.returncode == 2 and written.read_text() == "corrected by hand\n"
    r = w2v("transcribe", clip, "-m", model, "-o", out, "-f", "txt", "--skip-existing")
    assert r.returncode == 0 and written.read_text() == "corrected by hand\n"


def test_output_through_a_symlink_out_of_the_folder_is_refused(model, tmp_path):
    from w2vcli.fsutil import OutputLedger

    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    ledger = OutputLedger(tmp_path / "out")
    assert ledger.conflicts([tmp_path / "out" / "link" / "x.txt"]) == [tmp_path / "out" / "link" / "x.txt"]
    assert ledger.conflicts([tmp_path / "out" / "sub" / "x.txt"]) == []


def test_prep_maps_outside_inputs_inside_out(tmp_path):
    odd = tone(tmp_path / "odd" / "x.wav")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    r = w2v(
        "prep", os.path.relpath(odd, work), "--out", "o", "--valid-percent", "0", "--unlabelled", cwd=work
    )
    assert r.returncode == 0, r.stderr
    audio = [json.loads(line)["audio"] for line in (work / "o" / "train.jsonl").read_text().splitlines()]
    assert audio and all(".." not in a for a in audio)
    assert all((work / "o" / a).resolve().is_relative_to((work / "o").resolve()) for a in audio)
    assert sorted(p.name for p in odd.parent.iterdir()) == ["x.wav"]


@pytest.mark.parametrize("case", ["same", "foreign"])
def test_prep_refuses_an_out_folder_it_does_not_own(tmp_path, case):
    src = tmp_path / "src"
    tone(src / "a.wav")
    out = src if case == "same" else tmp_path / "mine"
    if case == "foreign":
        out.mkdir()
        (out / "train.jsonl").write_text("my own notes\n")
    r = w2v("prep", src, "--out", out, "--unlabelled")
    assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr
    if case == "foreign":
        assert (out / "train.jsonl").read_text() == "my own notes\n"


# 2. convert never deletes what is not a model.


def test_convert_keeps_other_files_in_dst(model, tmp_path):
    dst = tmp_path / "dst"
    (dst / "sub").mkdir(parents=True)
    (dst / "notes.txt").write_text("mine\n")
    r = w2v("convert", model, dst)
    assert r.returncode == 2 and "not empty" in r.stderr and (dst / "notes.txt").is_file()
    for to in ("w2v", "hf"):
        r = w2v("convert", model, dst, "--overwrite", "--to", to)
        assert r.returncode == 0, r.stderr
        assert (dst / "notes.txt").read_text() == "mine\n" and (dst / "sub").is_dir()
        assert not [p for p in dst.iterdir() if p.name.startswith(".")]
    assert load_checkpoint(model).vocab.tokens == Vocabulary.load(dst).tokens
    (tmp_path / "file").write_text("x")
    r = w2v("convert", model, tmp_path / "file", "--overwrite")
    assert r.returncode == 2 and "is a file" in r.stderr and (tmp_path / "file").read_text() == "x"


# 3. transcribe reports every input.


def test_transcribe_turns_reader_errors_into_records(model, tmp_path):
    (tmp_path / "x.raw").write_bytes(os.urandom(3200))
    good = [tone(tmp_path / f"good{i}.wav") for i in (1, 2)]
    sf.write(tmp_path / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    r = w2v("transcribe", "x.raw", *[g.name for g in good], "nan.wav", "-m", model, cwd=tmp_path)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [rec["audio"] for rec in records] == ["x.raw", "good1.wav", "good2.wav", "nan.wav"]
    assert "sox" in records[0]["error"] and "NaN" in records[3]["error"]
    assert all(isinstance(rec["text"], str) for rec in records[1:3])
    assert "2 transcribed, 2 failed" in r.stderr


def test_transcribe_reads_non_utf8_file_names(model, tmp_path):
    folder = tmp_path / "odd"
    for name in (b"plain.wav", b"caf\xe9.wav", b"x\xff.wav"):
        tone(Path(os.fsdecode(bytes(folder) + b"/" + name)))
    r = w2v("transcribe", folder, "-m", model)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3 and "3 transcribed, 0 failed" in r.stderr


# 4. One process per run folder.


def test_a_second_process_on_a_busy_run_is_refused_and_a_killed_owner_frees_it(tmp_path):
    from w2vcli.training.rundir import RunDir

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from w2vcli.training.rundir import RunDir; import time; "
            f"RunDir({str(run)!r}).lock(); print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"pid {holder.pid}"):
            RunDir(run).lock()
        audio = make_corpus(tmp_path / "audio", n=4)
        r = w2v("pretrain", audio, "--out", run, "--max-updates", "1", "--device", "cpu")
        assert r.returncode == 2 and "in use by another w2v process" in r.stderr
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    mine = RunDir(run)
    mine.lock()  # the kernel dropped the killed owner's lock
    mine.unlock()


@pytest.mark.slow
def test_lock_refusal_under_torchrun_is_one_line(tmp_path):
    from w2vcli.training.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.lock()
    try:
        audio = make_corpus(tmp_path / "audio", n=4)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "w2vcli",
            "pretrain",
            str(audio),
            "--out",
            str(run.path),
            "--max-updates",
            "1",
            "--device",
            "cpu",
        ]
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        )
    finally:
        run.unlock()
    assert r.returncode != 0
    assert (r.stdout + r.stderr).count("in use by another w2v process") == 1


# 5, 6. Models are checked before anything is allocated.


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_hidden_layers": 1_000_000}, "GiB"),
        ({"hidden_size": 1e9}, "hidden_size must be an integer"),
        ({"conv_stride": [5, 0, 2]}, "conv_stride"),
        ({"conv_kernel": ["3"] * 7}, "conv_kernel must be a list of integers"),
        ({"num_attention_heads": 0}, "num_attention_heads must be at least 1"),
        ({"do_normalize": "yes"}, "do_normalize must be true or false"),
        ({"layer_norm_eps": float("nan")}, "finite"),
    ],
)
def test_absurd_configs_fail_in_one_line_before_allocating(model, tmp_path, changes, message):
    config = json.loads((model / "config.json").read_text())
    for key, value in changes.items():
        config[key] = value
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    started = time.monotonic()
    with pytest.raises(W2VError, match=message):
        load_checkpoint(bad)
    assert time.monotonic() - started < 10  # refused from the numbers, not after building 10^6 layers


def test_parameter_count_matches_the_built_model():
    from w2vcli.model import Wav2Vec2ForPreTraining
    from w2vcli.model.config import preset

    for config in (preset("tiny"), small_model()):
        built = max(
            sum(p.numel() for p in head(config).parameters())
            for head in (Wav2Vec2ForPreTraining, Wav2Vec2ForCTC)
        )
        # an upper bound (both heads counted), close: measured 0.2% over (tiny), 2.5% (the small test model)
        assert built <= config.parameter_count() <= 1.03 * built


def test_a_vocabulary_of_another_size_than_the_head_is_refused_on_load(model, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    for f in ("config.json", "model.safetensors"):
        (short / f).write_bytes((model / f).read_bytes())
    Vocabulary(Vocabulary.load(model).tokens[:-2]).save(short)
    with pytest.raises(W2VError, match="the CTC head outputs"):
        load_checkpoint(short)
    r = w2v("info", short)
    assert r.returncode == 1 and "the CTC head outputs" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.safetensors", b"", "not a readable safetensors"),
        ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{", "not a readable safetensors"),
        ("config.json", b"{not json", "cannot read"),
        ("config.json", b"[1, 2]", "expected a JSON object"),
        ("vocab.json", b"{not json", "cannot read vocabulary"),
        ("vocab.json", b'["a", "b"]', "expected a JSON object"),
        ("vocab.json", b'{"<pad>": true}', "ids must be"),
    ],
)
def test_damaged_model_files_are_one_clear_line(model, tmp_path, name, content, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in model.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / name).write_bytes(content)
    r = w2v("info", bad)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_truncated_safetensors_is_one_clear_line(model, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in model.iterdir():
        data = f.read_bytes()
        (bad / f.name).write_bytes(data[: len(data) // 2] if f.name == "model.safetensors" else data)
    with pytest.raises(W2VError, match="truncated or damaged"):
        load_checkpoint(bad)


def test_a_corrupt_hugging_face_config_is_named_as_such(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2", ')
    (tmp_path / "model.safetensors").write_bytes(b"")
    r = w2v("info", tmp_path)
    assert r.returncode == 1 and "not valid JSON" in r.stderr and "not a w2vcli checkpoint" not in r.stderr


@pytest.mark.parametrize("shard", ["../other/model.safetensors", "/etc/passwd"])
def test_a_shard_index_cannot_point_outside_the_model(tmp_path, shard):
    from w2vcli.checkpoints.huggingface import _read_hf_weights

    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": shard}}))
    with pytest.raises(W2VError, match="outside its directory"):
        _read_hf_weights(tmp_path)


# 7, 8. A run killed with -9 resumes with a clean log and a clean checkpoints folder.


def _pretrain(audio: Path, run: Path, updates: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "w2vcli",
        "pretrain",
        str(audio),
        "--out",
        str(run),
        "--max-updates",
        str(updates),
        "--device",
        "cpu",
        "--batch-seconds",
        "2",
        "--crop-seconds",
        "0.5",
        "--log-every",
        "1",
        "--save-every",
        "4",
        "--gumbel-anneal",
        "0.5",
    ]


def _kill_when(cmd: list[str], ready, timeout: float = 120) -> bool:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; False if it ended first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    return False


def _losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    updates = [r["update"] for r in records]
    assert updates == sorted(set(updates)), f"update numbers repeat or go back: {updates}"
    return {r["update"]: r["loss"] for r in records}


@pytest.mark.slow
def test_kill_9_before_the_first_checkpoint_and_during_one(tmp_path):
    audio = make_corpus(tmp_path / "audio", n=4)
    reference = tmp_path / "reference"
    assert (
        subprocess.run(
            _pretrain(audio, reference, 10), capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        ).returncode
        == 0
    )
    run = tmp_path / "run"
    metrics, ckpts = run / "metrics.jsonl", run / "checkpoints"

    def logged(n):
        return metrics.is_file() and len(metrics.read_text().splitlines()) >= n

    # before the first checkpoint: two lines logged, nothing saved
    assert _kill_when(_pretrain(audio, run, 10), lambda: logged(2) and not ckpts.exists())
    # while a checkpoint is being written (a hidden partial directory exists)
    _kill_when(
        _pretrain(audio, run, 10),
        lambda: (
            (run / "last").exists()
            or (ckpts.is_dir() and any(p.name.startswith(".") for p in ckpts.iterdir()))
        ),
    )
    # what a kill mid-write leaves, whether or not the kill above landed inside the write
    ckpts.mkdir(parents=True, exist_ok=True)
    (ckpts / ".update-8.partial").mkdir(exist_ok=True)
    (ckpts / ".update-8.partial" / "model.safetensors").write_bytes(b"\0" * 100)
    (ckpts / "..update-8.partial.tmp-99999").mkdir(exist_ok=True)
    (run / ".best.old-99999").mkdir(exist_ok=True)

    r = subprocess.run(
        _pretrain(audio, run, 10),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "150"},
    )
    assert r.returncode == 0, r.stderr
    assert "half-written" in r.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["update-10", "update-8"]
    assert not (run / ".best.old-99999").exists()
    assert json.loads((run / "last").read_text())["update"] == 10
    got, want = _losses(run), _losses(reference)
    assert sorted(got) == list(range(1, 11))
    assert all(abs(got[u] - want[u]) < 1e-5 for u in want)  # resumed bit for bit; measured 0.0


# The smaller ones.


def test_a_full_disk_is_one_line_and_exit_1(monkeypatch, capsys):
    import w2vcli.cli as cli

    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "out/x.txt")

    monkeypatch.setattr(cli, "app", full)
    monkeypatch.delenv("W2V_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 1 and "no space left on the device writing out/x.txt" in capsys.readouterr().err
    assert cli._disk_full(RuntimeError("[enforce fail] write: No space left on device"))


@pytest.mark.parametrize("flag", ["--lr", "--max-minutes", "--clip-norm"])
def test_nan_flags_are_refused(tmp_path, flag):
    r = w2v("pretrain", tmp_path, "--out", tmp_path / "run", flag, "nan", "--device", "cpu")
    assert r.returncode == 2 and "finite" in r.stderr and "Traceback" not in r.stderr


def test_lm_writes_into_a_missing_folder(tmp_path):
    (tmp_path / "text.txt").write_text("a cat sat\nthe dog sat\n")
    r = w2v("lm", tmp_path / "text.txt", "--out", tmp_path / "new" / "lm.arpa", "--order", "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "lm.arpa").read_text().startswith("\\data\\")


def test_prep_reports_a_missing_stdin_path_and_carries_on(tmp_path):
    good = tone(tmp_path / "src" / "a.wav")
    r = w2v(
        "prep",
        "-",
        "--out",
        tmp_path / "out",
        "--unlabelled",
        "--valid-percent",
        "0",
        stdin=f"{good}\n{tmp_path / 'gone.wav'}\n",
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == 1
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejected] == ["missing"]


def test_an_unreadable_subfolder_is_reported(tmp_path, monkeypatch):
    from w2vcli.data import inputs

    tone(tmp_path / "src" / "a.wav")
    walk = os.walk

    def failing_walk(top, onerror=None, **kw):
        onerror(PermissionError(errno.EACCES, "Permission denied", str(top) + "/locked"))
        yield from walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(inputs.os, "walk", failing_walk)
    found = inputs.scan([tmp_path / "src"])
    assert [r[1] for r in found.rejected] == ["unreadable folder"] and len(found.audio) == 1


def test_score_strips_a_bom_on_stdin(tmp_path):
    (tmp_path / "ref.tsv").write_text("u1\tthe cat\n")
    r = w2v("score", tmp_path / "ref.tsv", "-", "--json", "-", stdin="\ufeffu1\tthe cat\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["wer"] == 0


def test_model_config_refuses_bad_types_directly():
    with pytest.raises(W2VError, match="conv_dim"):
        ModelConfig(conv_dim="abc")
