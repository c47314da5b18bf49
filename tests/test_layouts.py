"""`w2v prep` on Kaldi data dirs, NeMo manifests and Multilingual LibriSpeech, read as they are;
speaker-disjoint splits. Each sample is written here and its expected utterances checked by hand."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data.manifest import read_manifest
from w2vcli.errors import UsageError
from w2vcli.pipelines import _prep_convert
from w2vcli.pipelines.prep import PrepOptions, prepare

SR = 16000


def tone(seconds, freq=440.0, amp=0.3):
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # (N,)


def opts(**kw):
    return PrepOptions(workers=0, valid_percent=0, **kw)


def manifest(out: Path, split="train") -> dict:
    return {u.id: u for u in read_manifest(out / f"{split}.jsonl")}


def reasons(report) -> list[tuple[str, str]]:
    return sorted((r["reason"], Path(r["path"]).name) for r in report.rejected)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# --- Kaldi ----------------------------------------------------------------------------------------


def kaldi_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """rec1: 6 s, three tones (a 0-1.5 s at 300 Hz, b 2-3.5 s at 500 Hz, c 4-6 s at 700 Hz)."""
    wav = np.zeros(6 * SR, np.float32)
    for (a, b), f in zip([(0, 1.5), (2, 3.5), (4, 6)], [300, 500, 700]):
        wav[int(a * SR) : int(b * SR)] = tone(b - a, f)
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "rec1.wav", wav, SR)
    sf.write(audio / "rec2.wav", tone(1.0, 600), SR)
    data = tmp_path / "data" / "train"
    write_lines(
        data / "wav.scp",
        [
            f"rec1 {audio / 'rec1.wav'}",
            f"rec2 cat {audio / 'rec2.wav'} |",  # a command: refused unless --run-commands
            f"rec3 cat {audio / 'rec2.wav'} | sox -t wav - -t wav - |",  # a pipeline: never run
            "rec4 raw.ark:1234",  # an extended filename: no audio file
            "rec5 audio/missing.wav",
            f"rec6 {audio / 'rec2.wav'}",  # no segment uses it: a note, not a rejection
        ],
    )
    segments = [
        "spkA-a rec1 0.0 1.5",
        "spkB-b rec1 2.0 3.5",
        "spkA-c rec1 4.0 -1",  # -1: to the end
        "spkB-d rec1 5.5 9.0",  # past the 6 s recording
        "spkA-e rec9 0 1",  # rec9 is not in wav.scp
        "spkB-f rec2 0 1",
        "spkA-g rec3 0 1",
        "spkA-h rec4 0 1",
        "spkA-i rec5 0 1",
    ]
    write_lines(data / "segments", segments)
    utts = [line.split()[0] for line in segments]
    write_lines(data / "text", [f"{u} Word {u[-1].upper()}!" for u in utts] + ["spkA-z orphan text"])
    write_lines(data / "utt2spk", [f"{u} {u[:4]}" for u in utts])
    return data, wav


def test_kaldi_segments_texts_speakers_and_what_is_skipped(tmp_path, monkeypatch):
    data, wav = kaldi_dir(tmp_path)
    decoded = []
    real = _prep_convert.decode_checked
    monkeypatch.setattr(
        _prep_convert, "decode_checked", lambda p, *a, **k: decoded.append(p) or real(p, *a, **k)
    )
    out = tmp_path / "out"
    report = prepare([data], out, opts())
    assert report.layout["name"] == "kaldi"
    utts = manifest(out)
    assert sorted(utts) == ["train/spkA/spkA-a", "train/spkA/spkA-c", "train/spkB/spkB-b"]
    assert {i: (u.text, u.extra["speaker"], u.duration) for i, u in utts.items()} == {
        "train/spkA/spkA-a": ("word a", "spkA", 1.5),
        "train/spkA/spkA-c": ("word c", "spkA", 2.0),
        "train/spkB/spkB-b": ("word b", "spkB", 1.5),
    }
    for uid, (a, b) in {"train/spkA/spkA-a": (0, 1.5), "train/spkB/spkB-b": (2, 3.5)}.items():
        cut, _ = sf.read(utts[uid].audio, dtype="float32")
        np.testing.assert_allclose(cut, wav[int(a * SR) : int(b * SR)], atol=1e-3)  # the right samples
    assert len(decoded) == 1  # rec1 decoded once for all its segments
    assert report.layout["notes"] == ["train: 1 recordings of wav.scp have no segment (e.g. rec6); not used"]
    assert reasons(report) == sorted(
        [
            ("piped command", "wav.scp:2"),
            ("piped command", "wav.scp:3"),
            ("recording not in wav.scp", "segments:5"),
            ("transcript without audio", "text"),
            ("missing audio", "missing.wav"),
            ("segment outside its recording", "rec1.wav"),
            ("unsupported wav.scp entry", "wav.scp:4"),
        ]
    )
    piped = next(r for r in report.rejected if r["path"].endswith("wav.scp:2"))
    assert "--run-commands" in piped["detail"]

    again = prepare([data], out, opts())  # incremental: nothing decoded a second time
    assert again.files["cached"] == again.files["converted"] + again.files["cached"] == 1
    assert len(decoded) == 1


@pytest.mark.skipif(shutil.which("cat") is None, reason="needs cat")
def test_kaldi_commands_run_without_a_shell_only_when_asked(tmp_path):
    data, _ = kaldi_dir(tmp_path)
    out = tmp_path / "out"
    report = prepare([data], out, opts(run_commands=True))
    utts = manifest(out)
    assert utts["train/spkB/spkB-f"].duration == 1.0 and utts["train/spkB/spkB-f"].text == "word f"
    still = [r for r in report.rejected if r["reason"] == "piped command"]
    assert [Path(r["path"]).name for r in still] == ["wav.scp:3"]  # a pipeline needs a shell: refused
    write_lines(data / "wav.scp", [f"rec2 cat {tmp_path / 'nowhere.wav'} |"])
    report = prepare([data], tmp_path / "out2", opts(run_commands=True))
    assert "command failed" in {r["reason"] for r in report.rejected}


def test_kaldi_without_segments_is_one_utterance_per_recording(tmp_path):
    audio = tmp_path / "a"
    audio.mkdir()
    for k in range(2):
        sf.write(audio / f"r{k}.flac", tone(1.0 + k, 400 + 100 * k), SR)
    data = tmp_path / "dev"
    write_lines(data / "wav.scp", [f"s1-r0 {audio / 'r0.flac'}", f"s2-r1 {audio / 'r1.flac'}"])
    write_lines(data / "text", ["s1-r0 HELLO", "s2-r1 "])  # an empty transcript
    write_lines(data / "spk2utt", ["s1 s1-r0", "s2 s2-r1"])  # no utt2spk: spk2utt names speakers
    report = prepare([data], tmp_path / "out", opts(layout="kaldi"))
    assert {i: (u.text, u.duration, u.extra) for i, u in manifest(tmp_path / "out").items()} == {
        "dev/s1/s1-r0": ("hello", 1.0, {"speaker": "s1"}),
    }
    assert [r["reason"] for r in report.rejected] == ["empty transcript"]


# --- NeMo -----------------------------------------------------------------------------------------


def test_nemo_offsets_durations_and_relative_paths(tmp_path):
    corpus = tmp_path / "nemo"
    (corpus / "wavs").mkdir(parents=True)
    long = np.concatenate([tone(1.0, 300), tone(1.0, 500), tone(1.0, 700)])
    sf.write(corpus / "wavs" / "long.wav", long, SR)
    sf.write(corpus / "wavs" / "short.wav", tone(1.2, 440), SR)
    lines = [
        {"audio_filepath": "wavs/long.wav", "offset": 0.0, "duration": 1.0, "text": "one"},
        {"audio_filepath": "wavs/long.wav", "offset": 2.0, "duration": 1.0, "text": "three"},
        {"audio_filepath": str(corpus / "wavs" / "short.wav"), "duration": 1.2, "text": "Short."},
        {"audio_filepath": "wavs/gone.wav", "duration": 1.0, "text": "gone"},
    ]
    write_lines(corpus / "train_manifest.json", [json.dumps(d) for d in lines] + ["{not json"])
    out = tmp_path / "out"
    report = prepare([corpus / "train_manifest.json"], out, opts())
    assert report.layout["name"] == "nemo" and report.layout["listed"] == 5
    utts = manifest(out)
    assert {i: (u.text, u.duration) for i, u in utts.items()} == {
        "train_manifest/wavs/long-00000000": ("one", 1.0),
        "train_manifest/wavs/long-00002000": ("three", 1.0),
        "train_manifest/wavs/short": ("short", 1.2),
    }
    cut, _ = sf.read(utts["train_manifest/wavs/long-00002000"].audio, dtype="float32")
    np.testing.assert_allclose(cut, long[2 * SR :], atol=1e-3)
    assert reasons(report) == [("malformed line", "train_manifest.json:5"), ("missing audio", "gone.wav")]
    assert prepare([corpus], tmp_path / "out2", opts()).layout["name"] == "nemo"  # found in its folder


# --- Multilingual LibriSpeech ---------------------------------------------------------------------


def test_mls_transcripts_audio_tree_and_its_splits(tmp_path):
    root = tmp_path / "mls_german"
    for split, uid, seconds in [("train", "10_20_000001", 1.0), ("train", "11_21_000002", 1.5), ("dev", "12_22_000003", 1.0)]:  # fmt: skip
        spk, book, _ = uid.split("_")
        (root / split / "audio" / spk / book).mkdir(parents=True, exist_ok=True)
        sf.write(root / split / "audio" / spk / book / f"{uid}.flac", tone(seconds), SR)
    write_lines(root / "train" / "transcripts.txt", ["10_20_000001\tguten tag", "11_21_000002\tauf wiedersehen", "13_23_000009\tno audio", "bad line"])  # fmt: skip
    write_lines(root / "dev" / "transcripts.txt", ["12_22_000003\tdanke schön"])
    out = tmp_path / "out"
    report = prepare([root], out, opts())
    assert report.layout["name"] == "mls"
    assert {i: (u.text, u.extra["speaker"]) for i, u in manifest(out).items()} == {
        "mls_german/10/10_20_000001": ("guten tag", "10"),
        "mls_german/11/11_21_000002": ("auf wiedersehen", "11"),
    }
    assert {i: u.text for i, u in manifest(out, "valid").items()} == {
        "mls_german/12/12_22_000003": "danke schön"
    }
    assert reasons(report) == [
        ("malformed line", "transcripts.txt:4"),
        ("missing audio", "13_23_000009.flac"),
    ]


# --- speaker-disjoint splits ----------------------------------------------------------------------


def speakers_dir(tmp_path: Path, speakers=12, per_speaker=3) -> Path:
    audio, data = tmp_path / "wav", tmp_path / "spk"
    audio.mkdir()
    scp, text, u2s = [], [], []
    for s in range(speakers):
        for k in range(per_speaker):
            uid = f"s{s:02d}-u{k}"
            sf.write(audio / f"{uid}.wav", tone(0.6, 200 + 40 * s + 10 * k), SR)
            scp.append(f"{uid} {audio / uid}.wav")
            text.append(f"{uid} text {s} {k}")
            u2s.append(f"{uid} s{s:02d}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", u2s)):
        write_lines(data / name, lines)
    return data


def split_speakers(out: Path) -> tuple[set, set]:
    return tuple({u.extra["speaker"] for u in manifest(out, s).values()} for s in ("train", "valid"))


def test_split_by_speaker_keeps_each_speaker_in_one_split(tmp_path):
    data = speakers_dir(tmp_path)
    by_file = prepare([data], tmp_path / "f", PrepOptions(workers=0, valid_percent=30))
    train, valid = split_speakers(tmp_path / "f")
    assert train & valid  # by file, speakers straddle the splits: the property below is not free
    report = prepare([data], tmp_path / "s", PrepOptions(workers=0, valid_percent=30, split_by="speaker"))
    train, valid = split_speakers(tmp_path / "s")
    assert valid and train and not train & valid
    assert report.splits["valid"]["utterances"] == 3 * len(valid)
    assert by_file.splits["train"]["utterances"] + by_file.splits["valid"]["utterances"] == 36


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"split_by": "speaker"}, "--split-by speaker needs speakers"),
        ({"split_by": "voice"}, "--split-by must be file or speaker"),
        ({"layout": "kaldi"}, "not a Kaldi data directory"),
        ({"layout": "espnet"}, "--layout must be auto, plain"),
    ],
)
def test_layout_usage_errors(tmp_path, kw, message):
    plain = tmp_path / "plain"
    plain.mkdir()
    sf.write(plain / "a.wav", tone(1.0), SR)
    with pytest.raises(UsageError, match=message):
        prepare([plain], tmp_path / "out", opts(**kw))


def test_cli_layout_flags(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from w2vcli.cli import app

    data, _ = kaldi_dir(tmp_path)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "w2vcli", "prep", str(data), "--out", str(out), "--layout", "nope"]
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--layout must be" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    cmd = ["prep", str(data), "-o", str(out), "--workers", "0", "--run-commands", "--split-by", "speaker"]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 1  # some entries rejected
    assert "layout kaldi: 9 utterances listed" in result.output
    train, valid = split_speakers(out)
    assert not train & valid and (out / "rejected.jsonl").exists()
