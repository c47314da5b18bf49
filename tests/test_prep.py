"""The prep pipeline end to end on small synthetic folders: every bad-input case, resume, splits."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data import audio
from w2vcli.data.manifest import read_manifest
from w2vcli.data.text import Vocabulary
from w2vcli.pipelines import _prep_convert
from w2vcli.pipelines.prep import PrepOptions, prepare


def tone(seconds=1.0, sr=16000, freq=440.0, amp=0.3, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # (N,)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def opts(**kw):
    return PrepOptions(workers=0, **kw)


def rejected_reasons(report):
    return {os.path.basename(r["path"]): r["reason"] for r in report.rejected}


def utterance_ids(out):
    return sorted(u.id for split in ("train", "valid") for u in read_manifest(out / f"{split}.jsonl"))


def test_mixed_formats_rates_channels_depths(tmp_path):
    src = tmp_path / "corpus"
    src.mkdir()
    files = [("a.wav", 8000, 1, "PCM_U8"), ("b.wav", 44100, 2, "PCM_24"), ("c.wav", 48000, 6, "PCM_32"),
             ("d.wav", 22050, 1, "FLOAT"), ("e.flac", 32000, 2, "PCM_16"), ("f.ogg", 16000, 1, "VORBIS")]  # fmt: skip
    for name, sr, ch, sub in files:
        sf.write(src / name, tone(1.5, sr, channels=ch), sr, subtype=sub)
    out = tmp_path / "out"
    report = prepare([src], out, opts(valid_percent=0))
    assert report.rejected == []
    assert report.sources["sample_rates"] == {
        "8000": 1,
        "16000": 1,
        "22050": 1,
        "32000": 1,
        "44100": 1,
        "48000": 1,
    }
    assert report.sources["channels"] == {"1": 3, "2": 2, "6": 1}
    utts = read_manifest(out / "train.jsonl")
    assert [u.id for u in utts] == [f"corpus/{n}" for n in "abcdef"]
    for u in utts:
        info = sf.info(u.audio)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert u.duration == pytest.approx(1.5, abs=0.01) and u.text is None
    assert not report.labelled and report.vocab is None and not (out / "vocab.json").exists()
    assert json.loads((out / "prep.json").read_text())["splits"]["train"]["utterances"] == 6


def _bad_corpus(tmp_path, name, write):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    sf.write(src / "good.wav", tone(1.0), 16000)
    write(src / name)
    return src


def _truncate(path):
    sf.write(path, tone(2.0), 16000)
    path.write_bytes(path.read_bytes()[:30000])


def _corrupt_flac(path):
    sf.write(path, tone(2.0), 16000)
    data = bytearray(path.read_bytes())
    data[200:4000] = os.urandom(3800)
    path.write_bytes(bytes(data))


def _with_sample(value):
    def write(path):
        x = tone(1.0)
        x[100] = value
        sf.write(path, x, 16000, subtype="FLOAT")

    return write


BAD = {
    "corrupt": ("bad.flac", _corrupt_flac, {audio.CORRUPT, audio.NOT_AUDIO, audio.TRUNCATED}),
    "truncated": ("bad.wav", _truncate, {audio.TRUNCATED}),
    "zero-length": ("bad.wav", lambda p: p.write_bytes(b""), {audio.EMPTY}),
    "text-named-wav": ("bad.wav", lambda p: p.write_text("hello, I am text\n"), {audio.NOT_AUDIO}),
    "silence": ("bad.wav", lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), {audio.SILENCE}),
    "nan": ("bad.wav", _with_sample(np.nan), {audio.NONFINITE}),
    "inf": ("bad.wav", _with_sample(np.inf), {audio.NONFINITE}),
    "clipping": ("bad.wav", lambda p: sf.write(p, np.clip(tone(1.0, amp=4), -1, 1), 16000), {audio.CLIPPING}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_audio_is_rejected_and_the_rest_prepared(tmp_path, case):
    name, write, reasons = BAD[case]
    src = _bad_corpus(tmp_path, name, write)
    out = tmp_path / "out"
    report = prepare([src], out, opts(valid_percent=0))
    assert rejected_reasons(report)[name] in reasons
    assert utterance_ids(out) == ["in/good"]
    rows = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rows] == [report.rejected[0]["reason"]]
    assert not list(out.rglob("*.tmp"))


def test_clipping_kept_with_allow_clipping(tmp_path):
    src = _bad_corpus(tmp_path, "loud.wav", BAD["clipping"][1])
    out = tmp_path / "out"
    assert prepare([src], out, opts(valid_percent=0, allow_clipping=True)).rejected == []
    assert utterance_ids(out) == ["in/good", "in/loud"]


def test_unreadable_permissions_simulated(tmp_path, monkeypatch):
    src = _bad_corpus(tmp_path, "locked.wav", lambda p: sf.write(p, tone(), 16000))
    real_soundfile = audio.sf.SoundFile

    def soundfile(path, *a, **k):
        if str(path).endswith("locked.wav"):
            raise PermissionError(13, "Permission denied")
        return real_soundfile(path, *a, **k)

    real_open = open

    def guarded_open(path, *a, **k):
        if str(path).endswith("locked.wav"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(audio.sf, "SoundFile", soundfile)
    monkeypatch.setattr(audio, "open", guarded_open, raising=False)
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"locked.wav": audio.UNREADABLE}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_permissions_real(tmp_path):
    src = _bad_corpus(tmp_path, "locked.wav", lambda p: sf.write(p, tone(), 16000))
    (src / "locked.wav").chmod(0)
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"locked.wav": audio.UNREADABLE}


def test_non_utf8_file_name(tmp_path):
    src = _bad_corpus(tmp_path, "ok.wav", lambda p: sf.write(p, tone(), 16000))
    bad = os.path.join(os.fsencode(src), b"caf\xe9.wav")
    sf.write(bad, tone(), 16000)
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert [(r["path"].endswith("caf\\xe9.wav"), r["reason"]) for r in report.rejected] == [
        (True, "non-utf-8 file name")
    ]
    assert utterance_ids(tmp_path / "out") == ["in/good", "in/ok"]
    (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8")  # still valid UTF-8


def _labelled(tmp_path, n=4):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        sf.write(src / f"u{i}.wav", tone(1.0, freq=300 + 50 * i), 16000)
        (src / f"u{i}.txt").write_text(f"Hello, World number {i}!\n")
    return src


def test_sidecar_transcripts_make_labelled_data(tmp_path):
    src, out = _labelled(tmp_path), tmp_path / "out"
    report = prepare([src], out, opts(valid_percent=25))
    assert report.labelled and report.rejected == []
    utts = read_manifest(out / "train.jsonl") + read_manifest(out / "valid.jsonl")
    assert {u.text for u in utts} == {f"hello world number {i}" for i in range(4)}
    assert len(read_manifest(out / "valid.jsonl")) >= 1
    vocab = Vocabulary.load(out)
    assert vocab.unknown_chars("hello world number 0123") == set()
    assert report.numbers["utterances"] == 4 and report.vocab["kind"] == "chars"


def test_keep_case_and_punctuation(tmp_path):
    src, out = _labelled(tmp_path, 1), tmp_path / "out"
    prepare([src], out, opts(valid_percent=0, lowercase=False, strip_punctuation=False))
    assert read_manifest(out / "train.jsonl")[0].text == "Hello, World number 0!"


def test_non_utf8_transcript(tmp_path):
    src = _labelled(tmp_path, 2)
    (src / "u1.txt").write_bytes(b"caf\xe9 au lait\n")
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"u1.wav": "transcript not utf-8"}


def test_transcript_without_audio_and_audio_without_transcript(tmp_path):
    src = _labelled(tmp_path, 3)
    (src / "u2.txt").unlink()
    (src / "ghost.lab").write_text("nobody says this")
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"u2.wav": "no transcript", "ghost.lab": "transcript without audio"}
    assert utterance_ids(tmp_path / "out") == ["in/u0", "in/u1"]


def test_empty_transcript(tmp_path):
    src = _labelled(tmp_path, 2)
    (src / "u1.txt").write_text(" ?! \n")
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"u1.wav": "empty transcript"}


def test_characters_outside_a_given_vocabulary(tmp_path):
    src = _labelled(tmp_path, 3)
    (src / "u2.txt").write_text("zürich")
    vocab_dir = tmp_path / "v"
    vocab_dir.mkdir()
    Vocabulary.from_texts(["hello world number 0123456789 z r i c h"]).save(vocab_dir)
    out = tmp_path / "out"
    report = prepare([src], out, opts(valid_percent=0, vocab=str(vocab_dir / "vocab.json")))
    assert rejected_reasons(report) == {"u2.wav": "characters outside the vocabulary"}
    assert "'ü'" in report.rejected[0]["detail"]
    assert Vocabulary.load(out).tokens == Vocabulary.load(vocab_dir).tokens


def test_transcripts_table_and_sentencepiece(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rows = []
    for i in range(6):
        sf.write(src / f"c{i}.wav", tone(1.0), 16000)
        rows.append(f"in/c{i}.wav\tthe quick brown fox {'jumps' if i % 2 else 'sleeps'} again")
    rows.append("in/missing.wav\tno audio for me")
    table = tmp_path / "t.tsv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    report = prepare(
        [src], out, opts(valid_percent=0, transcripts=str(table), vocab="sentencepiece", vocab_size=30)
    )
    assert rejected_reasons(report) == {"t.tsv:7": "transcript without audio"}
    assert report.vocab["kind"] == "sentencepiece" and (out / "spm.model").exists()
    assert not (out / "vocab.json").exists()


def test_long_unlabelled_recording_is_split_at_pauses(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    speech = np.concatenate(
        [np.concatenate([tone(4.5, freq=200 + 20 * k), np.zeros(8000, np.float32)]) for k in range(10)]
    )
    sf.write(src / "long.wav", speech, 16000)  # 50 s
    out = tmp_path / "out"
    report = prepare([src], out, opts(valid_percent=50, max_seconds=12))
    utts = read_manifest(out / "train.jsonl") + read_manifest(out / "valid.jsonl")
    assert len(utts) >= 5 and all(u.duration <= 12 for u in utts)
    assert sum(u.duration for u in utts) == pytest.approx(50, abs=0.01)
    assert (
        report.splits["train"]["utterances"] * report.splits["valid"]["utterances"] == 0
    )  # one file, one split


def test_long_labelled_recording_is_rejected_not_cut(tmp_path):
    src = _labelled(tmp_path, 2)
    sf.write(src / "u1.wav", tone(5.0), 16000)
    report = prepare([src], tmp_path / "out", opts(valid_percent=0, max_seconds=3))
    assert rejected_reasons(report) == {"u1.wav": _prep_convert.TOO_LONG}


def test_min_seconds(tmp_path):
    src = _bad_corpus(tmp_path, "short.wav", lambda p: sf.write(p, tone(0.3), 16000))
    report = prepare([src], tmp_path / "out", opts(valid_percent=0, min_seconds=0.5))
    assert rejected_reasons(report) == {"short.wav": "too short"}


def test_rerun_skips_converted_files_and_adds_new_ones(tmp_path):
    src, out = _labelled(tmp_path, 3), tmp_path / "out"
    first = prepare([src], out, opts(valid_percent=34))
    assert first.files["converted"] == 3 and first.files["cached"] == 0
    stamp = (out / "audio/in/u0.flac").stat().st_mtime_ns
    again = prepare([src], out, opts(valid_percent=34))
    assert again.files["converted"] == 0 and again.files["cached"] == 3
    assert (out / "audio/in/u0.flac").stat().st_mtime_ns == stamp
    assert again.splits == first.splits
    sf.write(src / "u9.wav", tone(1.0), 16000)
    (src / "u9.txt").write_text("new one")
    more = prepare([src], out, opts(valid_percent=34))
    assert more.files["converted"] == 1 and more.files["cached"] == 3
    assert "in/u9" in utterance_ids(out)
    (out / "audio/in/u1.flac").unlink()  # a lost output is rebuilt
    assert prepare([src], out, opts(valid_percent=34)).files["converted"] == 1


def test_split_is_stable_per_file_and_seed(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(30):
        sf.write(src / f"f{i:02d}.wav", tone(0.6), 16000)

    def valid_ids(out, seed):
        prepare([src], out, opts(valid_percent=30, seed=seed))
        return {u.id for u in read_manifest(out / "valid.jsonl")}

    first = valid_ids(tmp_path / "a", 1)
    assert 2 <= len(first) <= 20
    assert valid_ids(tmp_path / "b", 1) == first  # a fresh directory, the same split
    assert valid_ids(tmp_path / "c", 2) != first
    for i in range(30, 40):
        sf.write(src / f"f{i:02d}.wav", tone(0.6), 16000)
    assert first <= valid_ids(tmp_path / "a", 1)  # adding files never moves old ones


def test_worker_exception_becomes_a_rejection(tmp_path, monkeypatch):
    src = _bad_corpus(tmp_path, "boom.wav", lambda p: sf.write(p, tone(), 16000))
    real = _prep_convert.decode_checked

    def flaky(path, *a, **k):
        if str(path).endswith("boom.wav"):
            raise ZeroDivisionError("decoder bug")
        return real(path, *a, **k)

    monkeypatch.setattr(_prep_convert, "decode_checked", flaky)
    report = prepare([src], tmp_path / "out", opts(valid_percent=0))
    assert rejected_reasons(report) == {"boom.wav": _prep_convert.DECODER_ERROR}
    assert "ZeroDivisionError" in report.rejected[0]["detail"]


def test_process_pool_and_fairseq_outputs(tmp_path):
    src = _labelled(tmp_path, 4)
    (src / "junk.wav").write_text("text")
    (src / "junk.txt").write_text("junk")
    out = tmp_path / "out"
    report = prepare([src], out, PrepOptions(workers=2, valid_percent=25, fairseq=True))
    assert rejected_reasons(report) == {"junk.wav": audio.NOT_AUDIO}
    tsv = (out / "train.tsv").read_text().splitlines()
    assert tsv[0] == str(out.resolve()) and tsv[1].split("\t") == ["audio/in/u0.flac", "16000"]
    assert (out / "train.ltr").read_text().splitlines()[0] == "h e l l o | w o r l d | n u m b e r | 0 |"
    assert (out / "train.wrd").read_text().splitlines()[0] == "hello world number 0"
    assert "| " in (out / "dict.ltr.txt").read_text()


def test_output_inside_the_source_is_not_scanned(tmp_path):
    src = _bad_corpus(tmp_path, "b.wav", lambda p: sf.write(p, tone(), 16000))
    prepare([src], src / "prepared", opts(valid_percent=0))
    again = prepare([src], src / "prepared", opts(valid_percent=0))
    assert again.files["found"] == 2
