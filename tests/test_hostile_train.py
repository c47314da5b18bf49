"""Training runs and their messages under hostile use (issue 26): `--init` on resume (D11), a preset
that contradicts `--init`'s model (D12), messages that name what the user gave (D18), audio piped
where paths are read (D20), a run with no checkpoint yet (D21), a resumed run whose budget changed
(the lr must not jump back up), and the contracts of the tri-stage schedule and of recipe versus
model flags, pinned with exact values."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tests.train_helpers import WORDS, Ticks, make_corpus, small_finetune, small_model, small_train
from w2vcli.checkpoints.native import load_checkpoint, save_checkpoint
from w2vcli.checkpoints.resolve import resolve_model
from w2vcli.cli import app
from w2vcli.data.inputs import binary_kind
from w2vcli.data.text import Vocabulary
from w2vcli.errors import UsageError, W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.model.config import preset
from w2vcli.pipelines._training import init_source
from w2vcli.pipelines.finetune import finetune
from w2vcli.pipelines.pretrain import check_init_flags, initial_model, pretrain
from w2vcli.training.config import FinetuneConfig, PretrainConfig
from w2vcli.training.metrics import read_metrics
from w2vcli.training.recipes import pretrain_settings, recipe_for
from w2vcli.training.rundir import RunDir
from w2vcli.training.schedule import Stretch, lr_at, progress, stretch, tri_stage

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def refused(result, *parts: str) -> str:
    """The one-line message of a command refused with the project's error type, holding `parts`."""
    e = result.exception
    assert isinstance(e, W2VError), result.output
    message = str(e)
    assert "\n" not in message and all(p in message for p in parts), message
    return message


def settings(run: Path) -> dict:
    return json.loads((run / "train.json").read_text())


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("audio"), n=4, seconds=1.5)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("lab"), n=4, labelled=True, valid=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two pretraining checkpoints (A, B) and a CTC one (C), all of small_model()'s architecture."""
    root = tmp_path_factory.mktemp("models")
    for seed, name in ((1, "A"), (2, "B")):
        torch.manual_seed(seed)
        save_checkpoint(Wav2Vec2ForPreTraining(small_model()), root / name)
    vocab = Vocabulary.from_texts(WORDS)
    ctc = Wav2Vec2ForCTC(small_model(vocab_size=len(vocab), pad_token_id=vocab.blank_id))
    save_checkpoint(ctc, root / "C", vocab)
    return root


# D11: `--init` on resume.


def test_resuming_pretraining_with_another_init_is_refused_and_train_json_keeps_its_start(
    unlabelled, models, tmp_path
):
    a, b, run = str(models / "A"), str(models / "B"), tmp_path / "run"
    pretrain(unlabelled, run, small_train(max_updates=1, save_every=1), small_model(), init=a)
    assert settings(run)["init"] == a
    with pytest.raises(UsageError) as e:
        pretrain(unlabelled, run, small_train(max_updates=2, save_every=1), small_model(), init=b)
    assert str(e.value) == (
        f"{run} was started from --init {a}, and resuming continues from its own checkpoints: "
        f"give that --init to resume it, or add --fresh to start it over from --init {b}"
    )
    assert settings(run)["init"] == a and RunDir(run).latest().name == "update-1"
    # the same model spelt another way, or no --init, resumes; train.json still names A
    pretrain(unlabelled, run, small_train(max_updates=2, save_every=1), small_model(), init=a + "/")
    pretrain(unlabelled, run, small_train(max_updates=3, save_every=1), small_model())
    assert settings(run)["init"] == a and read_metrics(run / "metrics.jsonl")[-1]["update"] == 3
    # --fresh starts over from B
    pretrain(unlabelled, run, small_train(max_updates=1, fresh=True), small_model(), init=b)
    assert settings(run)["init"] == b


def test_resuming_finetuning_with_another_init_is_refused(labelled, models, tmp_path):
    run = tmp_path / "ft"
    finetune(labelled, run, small_finetune(max_updates=1, save_every=1), "none", small_model())
    with pytest.raises(UsageError, match=r"was started from scratch \(--init none\).*--fresh") as e:
        finetune(labelled, run, small_finetune(max_updates=2), str(models / "A"), small_model())
    assert "\n" not in str(e.value)
    finetune(labelled, run, small_finetune(max_updates=2, save_every=1), "none", small_model())
    record = settings(run)
    # `init` is what the run was started from; `start` the checkpoint this invocation resumed
    assert record["init"] == "none" and record["start"] == str(run / "checkpoints" / "update-1")
    a, other = str(models / "A"), tmp_path / "from-a"
    finetune(labelled, other, small_finetune(max_updates=1, save_every=1), a, small_model())
    assert settings(other)["init"] == a and settings(other)["start"] == a
    finetune(labelled, other, small_finetune(max_updates=2, save_every=1), a + "/", small_model())
    assert settings(other)["init"] == a  # the same model spelt another way resumes; the record stays


# D12: a preset of another size than `--init`'s model; model flags that contradict it.


def test_a_preset_that_contradicts_the_init_model_is_refused(models, tmp_path, monkeypatch):
    import w2vcli.pipelines.finetune as ft
    import w2vcli.pipelines.pretrain as pt

    seen = {}
    monkeypatch.setattr(pt, "pretrain", lambda data, out, cfg, model, **kw: seen.update(pre=(cfg, model)))
    monkeypatch.setattr(
        ft, "finetune", lambda data, out, cfg, init, model, overrides, **kw: seen.update(ft=cfg)
    )
    a = str(models / "A")
    r = runner.invoke(
        app, ["pretrain", str(tmp_path), "--init", a, "--preset", "base", "--out", str(tmp_path / "r")]
    )
    assert refused(r) == (
        f"--preset base contradicts --init {a}, a tiny-size model (2 layers of 32): the architecture "
        "comes from the model; drop --preset (the tiny recipe is used) and set single flags such as "
        "--lr to change the recipe"
    )
    r = runner.invoke(
        app, ["finetune", str(tmp_path), "--init", a, "--preset", "large", "--out", str(tmp_path / "f")]
    )
    refused(r, "--preset large contradicts --init")
    assert seen == {}  # refused before anything ran
    r = runner.invoke(
        app, ["pretrain", str(tmp_path), "--init", a, "--codebook-size", "99", "--out", str(tmp_path / "r")]
    )
    assert refused(r) == (
        f"--codebook-size 99 contradicts --init {a} (16): the architecture comes from the model; drop the flag"
    )
    # the model's own size is accepted, and is the default
    for extra in ([], ["--preset", "tiny"]):
        r = runner.invoke(app, ["pretrain", str(tmp_path), "--init", a, *extra, "--out", str(tmp_path / "r")])
        assert not isinstance(r.exception, W2VError), r.exception
        assert seen.pop("pre")[0] == pretrain_settings("tiny")[0]
    r = runner.invoke(
        app, ["finetune", str(tmp_path), "--init", a, "--preset", "tiny", "--out", str(tmp_path / "f")]
    )
    assert not isinstance(r.exception, W2VError) and seen["ft"].lr == 2e-3, r.exception


# Recipe versus model flags: what comes from the recipe, what from `--init`'s model.


def test_recipe_and_model_flags_with_init_exact(models):
    a, c = str(models / "A"), str(models / "C")
    recipe = small_model().replace(
        num_negatives=7, num_codevectors_per_group=8, mask_time_length=3, hidden_size=64
    )
    # objective flags are the recipe's to set; the quantizer's shape is the model's when it has one
    objective = {
        "num_negatives": 7,
        "mask_time_prob": 0.5,
        "mask_time_length": 3,
        "diversity_loss_weight": 0.2,
    }
    assert check_init_flags(a, objective) == small_model()
    with pytest.raises(UsageError) as e:
        check_init_flags(a, {"num_codevectors_per_group": 8})
    assert str(e.value) == (
        f"num_codevectors_per_group 8 contradicts --init {a} (16): the architecture comes from the "
        "model; drop the flag"
    )
    assert check_init_flags(c, {"num_codevectors_per_group": 8}).hidden_size == 32  # a fresh quantizer
    model, source = initial_model(a, recipe)
    got = model.config
    assert source == a and (got.hidden_size, got.num_hidden_layers) == (32, 2)  # architecture: the model's
    assert (got.num_negatives, got.mask_time_length, got.num_codevectors_per_group) == (7, 3, 16)
    reference = load_checkpoint(a).model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    fresh, _ = initial_model(c, recipe)
    assert (fresh.config.num_codevectors_per_group, fresh.config.hidden_size) == (8, 32)
    # the preset a loaded model's recipe comes from: the same width and depth, else the nearest width
    sizes = [recipe_for(p) for p in (small_model(), preset("base"), preset("large"))]
    assert sizes == ["tiny", "base", "large"]
    assert recipe_for(preset("base").replace(num_hidden_layers=3)) == "base"


def test_finetune_recipe_and_model_flags_exact(models):
    from w2vcli.pipelines.finetune import initial_model as finetune_start
    from w2vcli.pipelines.finetune import trains_cnn

    vocab = Vocabulary.from_texts(WORDS)
    overrides = {"mask_time_prob": 0.3, "mask_time_length": 4, "layerdrop": 0.0}
    model, source = finetune_start(str(models / "A"), preset("base"), vocab, overrides)
    got = model.config
    # the architecture is the model's (not the preset passed alongside), masking the recipe's, the
    # head the vocabulary's, and a pretrained CNN stays frozen (no gradient through it)
    assert source == str(models / "A") and (got.hidden_size, got.num_hidden_layers) == (32, 2)
    assert (got.mask_time_prob, got.mask_time_length, got.layerdrop) == (0.3, 4, 0.0)
    assert (got.vocab_size, got.pad_token_id, got.feature_grad_mult) == (len(vocab), vocab.blank_id, 0.0)
    scratch, source = finetune_start("none", small_model(), vocab, overrides, train_cnn=True)
    assert source == "none" and scratch.config.hidden_size == 32 and scratch.config.feature_grad_mult == 1.0
    cnn = [
        trains_cnn(FinetuneConfig(train_feature_encoder=v), i)
        for v in (None, True, False)
        for i in ("none", "A")
    ]
    assert cnn == [True, False, True, True, False, False]


def test_recipe_budget_rules_exact():
    cfg, model = pretrain_settings("tiny")
    budget = (cfg.max_updates, cfg.max_minutes, cfg.lr, cfg.warmup, cfg.gumbel_anneal)
    assert budget == (10_000, None, 1e-3, 0.05, 0.4)
    assert (model.num_negatives, model.num_codevectors_per_group, model.mask_time_length) == (20, 64, 5)
    timed, _ = pretrain_settings("tiny", {"max_minutes": 8})
    assert (timed.max_updates, timed.max_minutes) == (None, 8)  # a time budget alone: no update budget
    both, _ = pretrain_settings("tiny", {"max_minutes": 8, "max_updates": 50})
    assert (both.max_updates, both.max_minutes) == (50, 8)
    decay, _ = pretrain_settings("base", {"gumbel_decay": 0.99})
    assert (decay.gumbel_decay, decay.gumbel_anneal) == (0.99, None)  # a decay rate replaces the annealing
    kept, _ = pretrain_settings("base", {"gumbel_decay": 0.99, "gumbel_anneal": 0.5})
    assert kept.gumbel_anneal == 0.5


# The tri-stage schedule: exact values at known points.


def test_tri_stage_schedule_exact():
    # by updates: warm-up 10 from 0.01x, hold 40 at the peak, exponential decay to 0.05x by update 100
    values = [tri_stage(u, 10, 40, 100) for u in (0, 4, 9, 10, 49, 50, 75, 100, 150)]
    assert values == pytest.approx([0.109, 0.505, 1.0, 1.0, 1.0, 1.0, 0.05**0.5, 0.05, 0.05], rel=1e-12)
    # by the fraction of a time budget (warm-up 0.1, hold 0.4 of it), peak lr 2e-3
    cfg = FinetuneConfig(max_updates=None, max_minutes=10, lr=2e-3, warmup=0.1, hold=0.4)
    at = [lr_at(cfg, 0, p) / 2e-3 for p in (0.0, 0.05, 0.1, 0.3, 0.5, 0.75, 0.95, 1.0)]
    expected = [0.01 + 0.99 * 1e-3, 0.505, 1.0, 1.0, 1.0, 0.05**0.5, 0.05**0.9, 0.05]
    assert at == pytest.approx(expected, rel=1e-12)
    # an update budget alone follows updates exactly: fractions of max_updates
    by_updates = FinetuneConfig(max_updates=100, lr=1.0, warmup=0.1, hold=0.4)
    assert [lr_at(by_updates, u, u / 100) for u in (0, 9, 75, 100)] == pytest.approx(
        [0.109, 1.0, 0.05**0.5, 0.05], rel=1e-12
    )
    # pretraining's linear schedule: up over the warm-up, down to 0 at the end
    linear = PretrainConfig(max_updates=None, max_minutes=10, lr=1.0, warmup=0.05)
    assert [lr_at(linear, 0, p) for p in (0.025, 0.05, 0.525, 1.0)] == pytest.approx([0.5, 1.0, 0.5, 0.0])


# A resumed run with another budget: the schedule never jumps back up.


def test_a_longer_budget_on_resume_continues_the_schedule_exact():
    short = FinetuneConfig(max_updates=None, max_minutes=10, lr=2e-3, warmup=0.1, hold=0.4)
    longer = FinetuneConfig(max_updates=None, max_minutes=20, lr=2e-3, warmup=0.1, hold=0.4)
    seconds = 570.0  # 95% of the 10 minutes: deep in the decay
    was, at = progress(short, 100, seconds), progress(longer, 100, seconds)
    assert (was, at) == pytest.approx((0.95, 0.475))
    assert lr_at(longer, 100, at) == 2e-3  # without the stretch: back at the peak (the 1.9e-3)
    s = stretch(at, was)
    assert s == Stretch(at, was) and stretch(0.5, 0.5) is None and stretch(0.5, None) is None
    values = [lr_at(longer, 100, p, s) for p in (at, (at + 1) / 2, 1.0)]
    assert values == pytest.approx([2e-3 * 0.05**0.9, 2e-3 * 0.05**0.95, 2e-3 * 0.05], rel=1e-12)
    grid = [lr_at(longer, 100, at + k * (1 - at) / 50, s) for k in range(51)]
    assert all(x >= y for x, y in zip(grid, grid[1:]))  # monotone to the end
    # the same with update budgets: 950 of 1000 updates, resumed with 2000
    u_short = FinetuneConfig(max_updates=1000, lr=1.0, warmup=0.1, hold=0.4)
    u_long = FinetuneConfig(max_updates=2000, lr=1.0, warmup=0.1, hold=0.4)
    s = stretch(progress(u_long, 950), progress(u_short, 950))
    assert lr_at(u_short, 950) == pytest.approx(0.05**0.9, rel=1e-12)
    assert lr_at(u_long, 950, 0.475, s) == pytest.approx(0.05**0.9, rel=1e-12)
    assert lr_at(u_long, 2000, 1.0, s) == pytest.approx(0.05)
    assert s.notice(2e-3 * 0.05**0.9) == (
        "the budget differs from the one the checkpoint was saved under: the lr schedule continues from "
        "where it was (0.000135, 95% through) to its end with the new budget"
    )
    # a finished schedule stays at its end
    assert lr_at(longer, 0, 0.75, Stretch(0.5, 1.0)) == pytest.approx(2e-3 * 0.05)


def test_resuming_a_finished_finetuning_run_with_more_minutes_keeps_the_final_lr(labelled, tmp_path):
    run, events = tmp_path / "ft", []
    cfg = dict(
        max_updates=None, schedule="tri_stage", warmup=0.1, log_every=1, save_every=1000, valid_every=1000
    )
    finetune(labelled, run, small_finetune(max_minutes=0.25, **cfg), "none", small_model(), clock=Ticks(1.25))
    before = [r["lr"] for r in read_metrics(run / "metrics.jsonl") if "lr" in r]
    assert len(before) == 12 and before[-1] == round(2e-3 * 0.05 ** (5 / 6), 6)  # metrics.jsonl: 6 decimals
    result = finetune(
        labelled, run, small_finetune(max_minutes=0.5, **cfg), "none", small_model(),
        on_event=events.append, clock=Ticks(1.25),
    )  # fmt: skip
    after = [r["lr"] for r in read_metrics(run / "metrics.jsonl") if "lr" in r][12:]
    assert result.update == 24 and after == [round(2e-3 * 0.05, 6)] * 12
    warnings = [e.message for e in events if e.kind == "warning"]
    assert warnings == [
        "this run had finished its schedule: the new budget trains at its final lr (0.0001), which does "
        "not rise again; for a new schedule start a new run with --init from this one"
    ]


# D21: a run with no checkpoint yet.


def test_a_run_with_no_checkpoint_yet_is_named_as_such(models, tmp_path):
    run = RunDir(tmp_path / "ft")
    run.lock()  # as a training process does when it starts
    try:
        run.checkpoints.mkdir()  # a first checkpoint being written
        expected = (
            f"{run.path} is a training run in progress (pid {os.getpid()}) with no checkpoint yet: the "
            "first comes after --save-every updates; try again then"
        )
        for attempt in (load_checkpoint, resolve_model, init_source):
            with pytest.raises(W2VError) as e:
                attempt(str(run.path))
            assert str(e.value) == expected, attempt
        assert refused(runner.invoke(app, ["export", str(run.path), str(tmp_path / "m.onnx")])) == expected
    finally:
        run.unlock()
    with pytest.raises(W2VError) as e:
        load_checkpoint(run.path)
    assert str(e.value) == (
        f"{run.path} is a training run with no checkpoint yet, and nothing is training it: it stopped "
        "before its first; run its command again to resume it"
    )
    # a folder that is no run keeps its message
    with pytest.raises(W2VError, match="is not a w2vcli checkpoint"):
        load_checkpoint(models)


# D18: messages name what the user gave.


def test_export_names_its_model_argument_not_a_flag(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\0")
    r = runner.invoke(app, ["export", str(text), str(tmp_path / "out.onnx")])
    assert refused(r) == f"MODEL {text} is a file; pass the model's directory"
    r = runner.invoke(app, ["export", str(onnx), str(tmp_path / "out.onnx")])
    assert "--model" not in refused(r, f"MODEL {onnx} is an ONNX file already")
    r = runner.invoke(app, ["export", "", str(tmp_path / "out.onnx")])
    refused(r, "MODEL is empty")
    with pytest.raises(
        W2VError, match=r"^--model .* is a file; pass the model's directory or an \.onnx file$"
    ):
        resolve_model(str(text))  # transcribe's flag keeps its name


# D20: audio piped where a list of paths is read.


def _wav_bytes(fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, dtype=np.float32), 16000, format=fmt)
    return buf.getvalue()


LATIN1_NAMES = "caf\u00e9.wav\n".encode("latin-1") + b"x\xff.wav\n"


def test_binary_kind_exact():
    pcm = (np.random.default_rng(0).standard_normal(4000) * 3000).astype(np.int16).tobytes()
    cases = {
        _wav_bytes("WAV"): "WAV audio",
        _wav_bytes("FLAC"): "FLAC audio",
        b"OggS\0\x02" + bytes(50): "Ogg audio",
        b"ID3\x04\0\0\0\0\0\x21" + bytes(40): "MP3 audio",
        pcm: "binary data",
        b"a.wav\nb\0.wav\n": "binary data",
        b"a.wav\nb.wav\r\nsub dir/c.flac\n": None,
        LATIN1_NAMES: None,  # names that are not UTF-8 are still names
        b"": None,
    }
    assert [binary_kind(data) for data in cases] == list(cases.values())


def test_audio_on_stdin_is_refused_in_one_line(tmp_path):
    wav = _wav_bytes()
    r = runner.invoke(app, ["transcribe", "-"], input=wav)
    assert refused(r) == (
        "stdin holds WAV audio, not a list of paths (- reads file names, one a line): pass the audio "
        "file's name instead of -, or pipe in names (ls *.wav | w2v transcribe -)"
    )
    r = runner.invoke(app, ["prep", "-", "--out", str(tmp_path / "p")], input=_wav_bytes("FLAC"))
    refused(r, "stdin holds FLAC audio", "w2v prep -")
    assert not (tmp_path / "p").exists()
    # the real command: exit 2, one line on stderr, no traceback
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-m", "w2vcli", "transcribe", "-"],
        input=wav,
        capture_output=True,
        env=env,
        timeout=120,
    )
    lines = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "stdin holds WAV audio" in lines[0], p.stderr


def test_exact_lr_after_resume_matches_checkpointed_position():
    """The checkpoint's `schedule` entry is where the schedule was, so a second resume under the same
    longer budget continues the stretch instead of starting another."""
    longer = FinetuneConfig(max_updates=None, max_minutes=20, lr=1.0, warmup=0.1, hold=0.4)
    first = Stretch(0.475, 0.95)
    saved = first(0.6)  # saved at 60% of the longer budget
    again = stretch(0.6, saved)
    for p in (0.6, 0.8, 1.0):
        assert lr_at(longer, 0, p, again) == pytest.approx(lr_at(longer, 0, p, first), rel=1e-12)
    assert math.isclose(first(1.0), 1.0)
