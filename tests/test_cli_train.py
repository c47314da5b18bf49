"""`w2v pretrain` / `w2v finetune` / `w2v curves` end to end on a folder of audio (real tiny preset, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tests.train_helpers import make_corpus
from w2vcli.checkpoints.native import load_checkpoint
from w2vcli.cli import app

runner = CliRunner()
FAST = ["--device", "cpu", "--batch-seconds", "2", "--crop-seconds", "0.5", "--log-every", "1"]


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = make_corpus(tmp_path_factory.mktemp("audio"), n=6)
    for f in ("train.jsonl", "valid.jsonl"):
        (root / f).unlink()  # a plain folder of audio: pretrain must prepare it
    return root


@pytest.mark.slow
def test_pretrain_a_plain_folder_then_finetune_and_curves(audio, tmp_path):
    run = tmp_path / "pt"
    r = runner.invoke(
        app,
        [
            "pretrain",
            str(audio),
            "--out",
            str(run),
            "--max-updates",
            "2",
            *FAST,
            "--gumbel-decay",
            "0.99",
            "--diversity-weight",
            "0.5",
            "--grad-checkpointing",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (run / "data" / "train.jsonl").is_file() and (run / "checkpoints" / "update-2").is_dir()
    settings = json.loads((run / "train.json").read_text())
    assert settings["train"]["crop_seconds"] == 0.5 and settings["train"]["gumbel_decay"] == 0.99
    assert (
        settings["model"]["diversity_loss_weight"] == 0.5 and settings["train"]["grad_checkpointing"] is True
    )
    temperatures = [json.loads(x)["temperature"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert temperatures[-1] < 20.0 * 0.99**0.5  # from the tiny recipe's start, at the rate asked for
    both = runner.invoke(
        app,
        [
            "pretrain",
            str(audio),
            "--out",
            str(run),
            "--gumbel-decay",
            "0.99",
            "--gumbel-anneal",
            "0.5",
            *FAST,
        ],
    )
    assert both.exit_code != 0 and "not both" in str(both.exception or both.output)
    again = runner.invoke(app, ["pretrain", str(audio), "--out", str(run), "--max-updates", "3", *FAST])
    assert again.exit_code == 0 and "resuming" in again.output
    assert [json.loads(x)["update"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]

    labelled = make_corpus(tmp_path / "lab", n=6, labelled=True, valid=2)
    ft = tmp_path / "ft"
    r = runner.invoke(
        app,
        [
            "finetune",
            str(labelled),
            "--init",
            str(run),
            "--out",
            str(ft),
            "--max-updates",
            "2",
            "--valid-every",
            "2",
            "--lr",
            "1e-3",
            "--speed-perturb",
            "0.9,1.1",
            "--dropout",
            "0.2",
            "--layerdrop",
            "0.1",
            "--reinit-layers",
            "1",
            "--layer-decay",
            "0.8",
            "--grad-checkpointing",
            *FAST[:4],
        ],
    )
    assert r.exit_code == 0, r.output
    assert "valid WER" in r.output and load_checkpoint(ft / "best").vocab is not None
    settings = json.loads((ft / "train.json").read_text())
    assert settings["train"]["speed_perturb"] == [0.9, 1.1]
    assert settings["model"]["hidden_dropout"] == settings["model"]["attention_dropout"] == 0.2
    assert settings["model"]["layerdrop"] == 0.1 and settings["train"]["reinit_layers"] == 1
    assert settings["train"]["grad_checkpointing"] is True and settings["train"]["layer_decay"] == 0.8
    too_many = runner.invoke(
        app,
        [
            "finetune",
            str(labelled),
            "--init",
            str(run),
            "--out",
            str(tmp_path / "ft9"),
            "--reinit-layers",
            "9",
            *FAST[:2],
        ],
    )
    assert too_many.exit_code != 0 and "has 4 transformer layers" in str(
        too_many.exception or too_many.output
    )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--speed-perturb", "0.9,fast", "comma-separated numbers"),
        ("--speed-perturb", "0.9,3", "between 0.5 and 2"),
        ("--dropout", "1.5", "must lie in [0, 1)"),
        ("--reinit-layers", "1", "needs a pretrained --init"),
        ("--layer-decay", "1.5", "--layer-decay must be in (0, 1]"),
    ],
)
def test_bad_regularisation_flags_are_one_clear_line(audio, tmp_path, flag, value, message):
    labelled = make_corpus(tmp_path / "lab", n=2, labelled=True, valid=1)
    r = runner.invoke(
        app,
        ["finetune", str(labelled), "--init", "none", "--out", str(tmp_path / "ft"), flag, value, *FAST[:2]],
    )
    assert r.exit_code != 0 and message in str(r.exception or r.output)
    assert not (tmp_path / "ft" / "checkpoints").exists()


def test_curves_draws_metrics(tmp_path):
    from w2vcli.cli.curves import curves

    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"update": u, "loss": 5.0 - u / 10, "lr": 1e-4}) + "\n" for u in range(1, 30))
    )
    import typer

    app2 = typer.Typer()
    app2.command()(curves)
    r = runner.invoke(app2, [str(tmp_path), "--width", "20", "--height", "4"])
    assert r.exit_code == 0 and "loss" in r.output and "█" in r.output
    bad = runner.invoke(app2, [str(tmp_path), "--metric", "wer"])
    assert bad.exit_code != 0 and "available: loss, lr" in str(bad.exception or bad.output)


def test_unavailable_device_is_one_clear_line(audio, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2vcli",
            "pretrain",
            str(audio),
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cuda",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no CUDA GPU" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_130(audio, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "w2vcli",
        "pretrain",
        str(audio),
        "--out",
        str(run),
        "--max-updates",
        "1000",
        *FAST,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run / "metrics.jsonl").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    last = json.loads((run / "last").read_text())
    assert last["update"] >= 1 and (run / last["checkpoint"] / "trainer.pt").is_file()


def test_clean_targets_without_best_rq_and_augmentation_is_one_clear_line(audio, tmp_path):
    for extra in ([], ["--objective", "best-rq"], ["--augment", "noise"]):
        r = runner.invoke(
            app, ["pretrain", str(audio), "--out", str(tmp_path / "run"), "--clean-targets", *extra, *FAST]
        )
        assert r.exit_code != 0 and "--clean-targets needs --objective best-rq and --augment" in str(
            r.exception or r.output
        )
    assert not (tmp_path / "run" / "checkpoints").exists()
