"""`w2v prep` from the shell: exit codes 0/1/2, stdin sources, flags reach the pipeline, the summary."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.data.manifest import read_manifest
from w2vcli.errors import W2VError


def tone(seconds=1.0, sr=16000):
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def corpus(tmp_path, bad=False):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"u{i}.wav", tone(1.0, 22050), 22050)
        (src / f"u{i}.txt").write_text(f"Hello there, number {i}!")
    if bad:
        (src / "bad.wav").write_text("I am text")
        (src / "bad.txt").write_text("no audio really")
    return src


def run(*args, stdin=None):
    return CliRunner().invoke(app, ["prep", *map(str, args)], input=stdin)


def code(result) -> int:
    """The exit code main() gives: CliRunner bypasses main(), so a W2VError arrives as an exception."""
    return result.exception.exit_code if isinstance(result.exception, W2VError) else result.exit_code


def test_clean_input_exits_0_with_summary(tmp_path):
    src, out = corpus(tmp_path), tmp_path / "out"
    r = run(src, "--out", out, "--workers", "0", "--valid-percent", "34")
    assert r.exit_code == 0, r.output
    for words in ("Splits", "Durations", "rate 22050 Hz", "vocabulary (chars", "contain digits"):
        assert words in r.output
    report = json.loads((out / "prep.json").read_text())
    assert report["options"]["valid_percent"] == 34 and report["rejected"] == []


def test_rejections_exit_1_and_output_is_complete(tmp_path):
    src, out = corpus(tmp_path, bad=True), tmp_path / "out"
    r = run(src, "-o", out, "--workers", "0", "--valid-percent", "0")
    assert r.exit_code == 1, r.output
    assert "Rejected" in r.output and "not audio" in r.output
    assert len(read_manifest(out / "train.jsonl")) == 3
    assert [json.loads(x)["reason"] for x in (out / "rejected.jsonl").read_text().splitlines()] == [
        "not audio"
    ]


def test_usage_errors_exit_2(tmp_path):
    assert code(run(tmp_path / "nope", "--out", tmp_path / "o")) == 2
    assert not (tmp_path / "o").exists()  # nothing created on a usage error
    src = corpus(tmp_path)
    assert code(run(src, "--out", tmp_path / "o", "--valid-percent", "100")) == 2
    assert code(run(src, "--out", tmp_path / "o", "--min-seconds", "5", "--max-seconds", "2")) == 2
    assert code(run(src, "--out", tmp_path / "o", "--vocab", tmp_path / "missing.json")) == 2
    assert code(run(src, "--out", tmp_path / "o", "--transcripts", tmp_path / "missing.tsv")) == 2
    assert code(run(src)) == 2  # --out is required


def test_main_exit_codes_through_the_real_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "w2vcli", "prep", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "no such file or directory" in r.stderr and "Traceback" not in r.stderr


def test_sources_from_stdin(tmp_path):
    src, out = corpus(tmp_path), tmp_path / "out"
    paths = "\n".join(str(src / f"u{i}.wav") for i in (0, 2)) + "\n"
    r = run("-", "--out", out, "--workers", "0", "--valid-percent", "0", "--unlabelled", stdin=paths)
    assert r.exit_code == 0, r.output
    utts = read_manifest(out / "train.jsonl")
    assert len(utts) == 2 and all(u.text is None for u in utts)


def test_flags_reach_the_pipeline(tmp_path):
    src, out = corpus(tmp_path), tmp_path / "out"
    r = run(src, "--out", out, "--workers", "0", "--valid-percent", "0", "--keep-case", "--keep-punctuation",
            "--fairseq", "--seed", "7", "--vocab", "sentencepiece", "--vocab-size", "25")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert read_manifest(out / "train.jsonl")[0].text == "Hello there, number 0!"
    assert (out / "train.tsv").exists() and (out / "train.ltr").exists() and (out / "spm.model").exists()
    report = json.loads((out / "prep.json").read_text())
    assert report["options"]["seed"] == 7 and report["vocab"]["kind"] == "sentencepiece"


def test_transcripts_and_length_flags(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", tone(1.0), 16000)
    sf.write(src / "b.wav", tone(3.0), 16000)
    table = tmp_path / "t.csv"
    table.write_text("audio,text\na.wav,first\nb.wav,second\n")
    out = tmp_path / "out"
    r = run(src, "--out", out, "--workers", "0", "--transcripts", table, "--max-seconds", "2",
            "--min-seconds", "0.1", "--valid-percent", "0")  # fmt: skip
    assert r.exit_code == 1
    assert [u.text for u in read_manifest(out / "train.jsonl")] == ["first"]
    assert "too long for its transcript" in r.output
