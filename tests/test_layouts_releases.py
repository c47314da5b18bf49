"""`w2v prep` on a Common Voice release and on Hugging Face datasets on disk (save_to_disk folders
and Parquet), read as they are; samples written here, expected utterances checked by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data.manifest import read_manifest
from w2vcli.pipelines.prep import PrepOptions, prepare

SR = 16000
HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"


def tone(seconds, sr=SR, freq=440.0):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)  # (N,)


def opts(**kw):
    return PrepOptions(workers=0, **{"valid_percent": 0, **kw})


def manifest(out: Path, split: str) -> dict:
    return {u.id: u for u in read_manifest(out / f"{split}.jsonl")}


def reasons(report) -> list[tuple[str, str]]:
    return sorted((r["reason"], Path(r["path"]).name) for r in report.rejected)


# --- Common Voice ---------------------------------------------------------------------------------


def cv_row(client: str, clip: str, sentence: str, up=2, down=0) -> str:
    return f"{client}\t{clip}\tsid\t{sentence}\t\t{up}\t{down}\t\t\t\t\ten\t"


def common_voice(tmp_path: Path) -> Path:
    root = tmp_path / "cv-corpus-20.0" / "en"
    (root / "clips").mkdir(parents=True)
    for k in range(7):  # 48 kHz MP3, as the releases ship
        sf.write(root / "clips" / f"common_voice_en_{k}.mp3", tone(1.0 + 0.1 * k, 48000, 300 + 50 * k), 48000, format="MP3")  # fmt: skip
    rows = {
        "train.tsv": [cv_row("aaa", "common_voice_en_0.mp3", 'He said "Hello".'),
                      cv_row("aaa", "common_voice_en_1.mp3", "Second one."),
                      cv_row("bbb", "common_voice_en_2.mp3", "Voted down.", up=1, down=2),
                      cv_row("bbb", "common_voice_en_9.mp3", "No such clip.")],
        "dev.tsv": [cv_row("ccc", "common_voice_en_3.mp3", "Dev sentence.")],
        "test.tsv": [cv_row("ddd", "common_voice_en_4.mp3", "Test sentence."),
                     cv_row("ddd", "common_voice_en_4.mp3", "Listed twice.")],
        "validated.tsv": [cv_row("aaa", f"common_voice_en_{k}.mp3", "x") for k in (0, 1, 3, 4, 5, 6)],
    }  # fmt: skip
    for name, lines in rows.items():
        (root / name).write_text(HEADER + "\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return root


def test_common_voice_keeps_the_release_splits_speakers_and_votes(tmp_path):
    root = common_voice(tmp_path)
    out = tmp_path / "out"
    report = prepare([root], out, opts())
    assert report.layout["name"] == "commonvoice" and report.layout["listed"] == 7
    train, valid, test = (manifest(out, s) for s in ("train", "valid", "test"))
    assert {i: (u.text, u.extra["speaker"]) for i, u in train.items()} == {
        "en/aaa/common_voice_en_0": ("he said hello", "aaa"),  # the quote is a character, not CSV quoting
        "en/aaa/common_voice_en_1": ("second one", "aaa"),
    }
    assert {i: u.text for i, u in valid.items()} == {"en/ccc/common_voice_en_3": "dev sentence"}
    assert {i: u.text for i, u in test.items()} == {"en/ddd/common_voice_en_4": "test sentence"}
    assert abs(train["en/aaa/common_voice_en_1"].duration - 1.1) < 0.08  # MP3 adds a little padding
    assert reasons(report) == [
        ("duplicate id", "test.tsv:3"),
        ("missing audio", "common_voice_en_9.mp3"),
        ("voted down", "common_voice_en_2.mp3"),
    ]
    assert report.layout["notes"] == [
        "en: 2 clips of validated.tsv are in none of train/dev/test.tsv; not used, to keep the "
        "release's speaker-disjoint splits"
    ]
    assert "test.jsonl" in report.outputs


def test_common_voice_with_only_validated_tsv_splits_it_by_speaker(tmp_path):
    root = common_voice(tmp_path)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (root / name).unlink()
    rows = [cv_row(f"spk{k % 3}", f"common_voice_en_{k}.mp3", f"sentence {k}") for k in range(7)]
    (root / "validated.tsv").write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    prepare([root], out, opts(valid_percent=40, split_by="speaker"))
    train, valid = (manifest(out, s) for s in ("train", "valid"))
    assert len(train) + len(valid) == 7 and valid
    assert not {u.extra["speaker"] for u in train.values()} & {u.extra["speaker"] for u in valid.values()}


# --- Hugging Face on disk -------------------------------------------------------------------------


@pytest.fixture
def pa():
    return pytest.importorskip("pyarrow", reason="the hf layout needs pyarrow (pip install 'w2vcli[hf]')")


def flac_bytes(seconds: float, freq: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, SR, freq), SR, format="FLAC")
    return buf.getvalue()


def hf_table(pa, rows: list[dict]):
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return pa.table(
        {
            "id": [r["id"] for r in rows],
            "audio": pa.array([r["audio"] for r in rows], type=audio),
            "transcription": [r["text"] for r in rows],
            "speaker_id": [r["speaker"] for r in rows],
        }
    )


def save_to_disk(pa, folder: Path, rows: list[dict], split: str) -> None:
    """What `datasets.Dataset.save_to_disk` writes: an Arrow IPC stream, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    table = hf_table(pa, rows)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": split}
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text(json.dumps({"features": {}}))


def test_hf_save_to_disk_dataset_dict(tmp_path, pa):
    root = tmp_path / "my_dataset"
    root.mkdir()
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    wav = tmp_path / "loose.wav"
    sf.write(wav, tone(1.3, SR, 660), SR)
    train = [
        {"id": "u1", "audio": {"bytes": flac_bytes(1.0, 300), "path": "u1.flac"}, "text": "Hello World", "speaker": 7},
        {"id": "u2", "audio": {"bytes": None, "path": str(wav)}, "text": "from a path", "speaker": 8},
        {"id": "u3", "audio": {"bytes": None, "path": "lost.wav"}, "text": "gone", "speaker": 8},
        {"id": "u4", "audio": {"bytes": flac_bytes(1.0, 500), "path": None}, "text": None, "speaker": 9},
    ]  # fmt: skip
    save_to_disk(pa, root / "train", train, "train")
    save_to_disk(pa, root / "validation", [{"id": "v1", "audio": {"bytes": flac_bytes(1.2, 400), "path": "v1.flac"}, "text": "Valid", "speaker": 9}], "validation")  # fmt: skip
    out = tmp_path / "out"
    report = prepare([root], out, opts())
    assert report.layout["name"] == "hf"
    assert {i: (u.text, u.extra["speaker"], u.duration) for i, u in manifest(out, "train").items()} == {
        "my_dataset/7/u1": ("hello world", "7", 1.0),
        "my_dataset/8/u2": ("from a path", "8", 1.3),
    }
    assert {i: u.text for i, u in manifest(out, "valid").items()} == {"my_dataset/9/v1": "valid"}
    assert reasons(report) == [("missing audio", "data-00000-of-00001.arrow:row 3"), ("no transcript", "my_dataset__9__u4.flac")]  # fmt: skip
    again = prepare([root], out, opts())  # the staged audio is not rewritten: all reused
    assert again.files["converted"] == 0 and again.files["cached"] == 3


def test_hf_parquet_files_with_split_names(tmp_path, pa):
    import pyarrow.parquet as pq

    root = tmp_path / "hub_download"
    (root / "data").mkdir(parents=True)
    rows = lambda k, n: [{"id": f"{k}{i}", "audio": {"bytes": flac_bytes(0.8, 300 + 60 * i), "path": f"{k}{i}.flac"}, "text": f"{k} {i}", "speaker": i} for i in range(n)]  # fmt: skip  # noqa: E731
    pq.write_table(hf_table(pa, rows("train", 3)), root / "data" / "train-00000-of-00001.parquet")
    pq.write_table(hf_table(pa, rows("test", 1)), root / "data" / "test-00000-of-00001.parquet")
    out = tmp_path / "out"
    report = prepare([root], out, opts())
    assert report.rejected == []
    assert sorted(manifest(out, "train")) == ["hub_download/0/train0", "hub_download/1/train1", "hub_download/2/train2"]  # fmt: skip
    assert {i: u.text for i, u in manifest(out, "test").items()} == {"hub_download/0/test0": "test 0"}
    one = prepare([root / "data" / "test-00000-of-00001.parquet"], tmp_path / "one", opts())  # a file alone
    assert one.splits["test"]["utterances"] == 1


def test_hf_without_pyarrow_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    from w2vcli.errors import UsageError

    root = tmp_path / "ds"
    root.mkdir()
    (root / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'w2vcli\[hf\]'"):
        prepare([root], tmp_path / "out", opts())


def test_hf_corrupt_shard_is_skipped_with_its_reason(tmp_path, pa):
    root = tmp_path / "ds"
    save_to_disk(pa, root, [{"id": "a", "audio": {"bytes": flac_bytes(1.0, 300), "path": "a.flac"}, "text": "ok", "speaker": 1}], "train")  # fmt: skip
    (root / "data-00001-of-00002.arrow").write_bytes(b"not arrow at all")
    state = json.loads((root / "state.json").read_text())
    state["_data_files"].append({"filename": "data-00001-of-00002.arrow"})
    (root / "state.json").write_text(json.dumps(state))
    report = prepare([root], tmp_path / "out", opts())
    assert reasons(report) == [("unreadable table", "data-00001-of-00002.arrow")]
    assert list(manifest(tmp_path / "out", "train")) == ["ds/1/a"]
