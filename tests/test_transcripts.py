"""Transcript sources: sidecars, LibriSpeech trans.txt, TSV/CSV/JSONL tables, and their matching."""

from __future__ import annotations

import json

import pytest

from w2vcli.data.transcripts import NOT_UTF8, TranscriptIndex, read_table, read_trans_txt
from w2vcli.errors import UsageError


def test_trans_txt(tmp_path):
    p = tmp_path / "19-198.trans.txt"
    p.write_bytes(b"19-198-0000 NORTHANGER ABBEY\n19-198-0001 CHAPTER ONE\n")
    entries = read_trans_txt(p)
    assert entries["19-198-0001"].text == "CHAPTER ONE"


def test_tsv_csv_and_jsonl_tables(tmp_path):
    (tmp_path / "t.tsv").write_text("a.wav\thello there\nsub/b.wav\tgood bye\n")
    assert [(k, t.text) for k, t in read_table(tmp_path / "t.tsv")] == [
        ("a.wav", "hello there"),
        ("sub/b.wav", "good bye"),
    ]
    (tmp_path / "t.csv").write_text('file,sentence\na.wav,"hello, there"\n')
    assert [(k, t.text) for k, t in read_table(tmp_path / "t.csv")] == [("a.wav", "hello, there")]
    (tmp_path / "cv.tsv").write_text("client_id\tpath\tsentence\tup_votes\nx\tc1.mp3\tHi!\t2\n")
    assert [(k, t.text) for k, t in read_table(tmp_path / "cv.tsv")] == [("c1.mp3", "Hi!")]
    (tmp_path / "t.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "hi"}) + "\n")
    assert [(k, t.text) for k, t in read_table(tmp_path / "t.jsonl")] == [("a.wav", "hi")]


def test_table_errors_are_usage_errors(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"audio": "a.wav"}\n')
    with pytest.raises(UsageError, match="no 'text'"):
        read_table(tmp_path / "t.jsonl")
    (tmp_path / "t.tsv").write_text("only-one-column\n")
    with pytest.raises(UsageError, match="expected path"):
        read_table(tmp_path / "t.tsv")


def test_non_utf8_lines_are_marked_not_fatal(tmp_path):
    (tmp_path / "t.tsv").write_bytes(b"a.wav\tcaf\xe9\nb.wav\tfine\n")
    (a, ta), (b, tb) = read_table(tmp_path / "t.tsv")
    assert ta.text is None and ta.problem == NOT_UTF8
    assert tb.text == "fine" and tb.problem is None


def test_index_matches_sidecars_trans_txt_and_tables(tmp_path):
    d = tmp_path / "corpus" / "spk"
    d.mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        (d / f"{name}.wav").write_bytes(b"")
    (d / "a.txt").write_text("from sidecar\n")
    (d / "b.lab").write_text("from lab")
    (d / "spk.trans.txt").write_text("c from trans\n")
    (tmp_path / "t.tsv").write_text("corpus/spk/d.wav\tfrom table\n")
    index = TranscriptIndex()
    index.add_text_files([d / "a.txt", d / "b.lab", d / "spk.trans.txt"])
    index.add_table(tmp_path / "t.tsv")
    got = {n: index.find(d / f"{n}.wav").text for n in "abcd"}
    assert got == {"a": "from sidecar", "b": "from lab", "c": "from trans", "d": "from table"}
    assert index.find(d / "zzz.wav") is None


def test_bare_names_in_a_table_match_by_trailing_path(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    (tmp_path / "t.tsv").write_text("path\tsentence\nc1.mp3\thello\nclips/c2\tbye\n")
    index = TranscriptIndex()
    index.add_table(tmp_path / "t.tsv")
    assert index.find(clips / "c1.mp3").text == "hello"
    assert index.find(clips / "c2.wav").text == "bye"


def test_orphans(tmp_path):
    audio_dir, docs = tmp_path / "a", tmp_path / "docs"
    audio_dir.mkdir()
    docs.mkdir()
    for p in (audio_dir / "x.txt", audio_dir / "lonely.lab", audio_dir / "lonely2.txt", docs / "README.txt"):
        p.write_text("words")
    index = TranscriptIndex()
    index.add_text_files(
        [audio_dir / "x.txt", audio_dir / "lonely.lab", audio_dir / "lonely2.txt", docs / "README.txt"]
    )
    index.find(audio_dir / "x.wav")
    sources = sorted(t.source for t in index.orphans({audio_dir}))
    assert sources == [str(audio_dir / "lonely.lab"), str(audio_dir / "lonely2.txt")]
