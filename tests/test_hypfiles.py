"""Transcript readers (format detection, every format) and joining by id or audio path."""

import json

import pytest

from w2vcli.errors import UsageError, W2VError
from w2vcli.scoring.hypfiles import Entry, read_entries
from w2vcli.scoring.pairing import pair, path_parts


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _jsonl(path, rows):
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _texts(entries):
    return [(e.id, e.text) for e in entries]


def test_formats_read_by_extension_and_content(tmp_path):
    expected = [("u1", "hello world"), ("u2", ""), ("u3", "東京 は")]
    tsv = _write(tmp_path / "a.tsv", "id\ttext\nu1\thello world\nu2\t\nu3\t東京 は\n")
    kaldi = _write(tmp_path / "text", "u1 hello world\nu2\nu3 東京 は\n")
    trn = _write(tmp_path / "a.trn", "hello world (u1)\n(u2)\n東京 は (u3)\n")
    trn_no_ext = _write(tmp_path / "hyp.txt", "hello world (u1)\n(u2)\n東京 は (u3)\n")
    tsv_no_ext = _write(tmp_path / "hyp2.txt", "u1\thello world\nu2\t\nu3\t東京 は\n")
    for path in (tsv, kaldi, trn, trn_no_ext, tsv_no_ext):
        assert _texts(read_entries(path)) == expected, path


def test_jsonl_manifest_and_transcribe_output(tmp_path):
    (tmp_path / "m").mkdir()
    man = _jsonl(
        tmp_path / "m" / "test.jsonl", [{"id": "a", "audio": "../wavs/a.wav", "duration": 1.0, "text": "x"}]
    )
    (e,) = read_entries(man)
    assert (e.id, e.text, path_parts(e.audio)[-2:]) == ("a", "x", ("wavs", "a.wav"))
    hyp = _jsonl(
        tmp_path / "hyp.out", [{"audio": "/abs/a.wav", "text": "y"}, {"audio": "b.wav", "error": "boom"}]
    )
    a, b = read_entries(hyp)  # no extension: detected from content
    assert (a.id, a.audio, a.text) == (None, "/abs/a.wav", "y")
    assert b.error == "boom" and b.text is None
    arr = _write(tmp_path / "all.json", json.dumps([{"id": "a", "text": "x"}]))
    assert _texts(read_entries(arr)) == [("a", "x")]


def test_format_override(tmp_path):
    # a Kaldi line whose text ends in parentheses would sniff as trn; --format says otherwise
    path = _write(tmp_path / "text", "u1 hello (laughs)\n")
    assert _texts(read_entries(path)) == [("laughs", "u1 hello")]
    assert _texts(read_entries(path, "kaldi")) == [("u1", "hello (laughs)")]
    with pytest.raises(UsageError, match="unknown transcript format"):
        read_entries(path, "csv")


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(W2VError, match="cannot read"):
        read_entries(str(tmp_path / "nope.tsv"))
    (tmp_path / "bin.tsv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(W2VError, match="not UTF-8"):
        read_entries(str(tmp_path / "bin.tsv"))
    with pytest.raises(W2VError, match=r"bad\.jsonl:2: not a JSON line"):
        read_entries(_write(tmp_path / "bad.jsonl", '{"id": "a", "text": "x"}\n{oops\n'))
    with pytest.raises(W2VError, match=r"id 'u1' appears more than once \(lines 1, 3\)"):
        read_entries(_write(tmp_path / "dup.tsv", "u1\ta\nu2\tb\nu1\tc\n"))
    with pytest.raises(W2VError, match="expected 'text \\(id\\)'"):
        read_entries(_write(tmp_path / "x.trn", "no id here\n"))


def _e(id=None, audio=None, text="t"):
    return Entry(id=id, audio=audio, text=text, line=1)


def test_pair_by_id_ignores_order_and_reports_extra():
    refs = [_e("a"), _e("b"), _e("c")]
    hyps = [_e("c"), _e("z"), _e("a")]
    p = pair(refs, hyps)
    assert p.key == "id"
    assert [(r.id, h and h.id) for r, h in p.pairs] == [("a", "a"), ("b", None), ("c", "c")]
    assert [h.id for h in p.extra] == ["z"]


def test_pair_by_audio_path_from_another_cwd():
    refs = [
        _e("1", "/data/test/spk1/0001.wav"),
        _e("2", "/data/test/spk2/0001.wav"),
        _e("3", "/data/x/b.flac"),
    ]
    hyps = [_e(None, "spk2/0001.wav"), _e(None, "/mnt/copy/test/spk1/0001.wav"), _e(None, "elsewhere/b.wav")]
    p = pair(refs, hyps)
    assert p.key == "audio"
    got = [(r.id, h and h.audio) for r, h in p.pairs]
    # suffix match for the first two; the third only by stem (extension changed), unambiguous
    assert got == [("1", "/mnt/copy/test/spk1/0001.wav"), ("2", "spk2/0001.wav"), ("3", "elsewhere/b.wav")]


def test_pair_ambiguous_names_stay_unmatched():
    refs = [_e("1", "/d/spk1/0001.wav"), _e("2", "/d/spk2/0001.wav")]
    p = pair(refs, [_e(None, "0001.wav")])
    assert all(h is None for _, h in p.pairs) and len(p.extra) == 1


def test_pair_transcribe_audio_with_kaldi_ids():
    refs = [_e("1089-0000"), _e("1089-0001")]
    hyps = [_e(None, "/x/1089-0001.flac"), _e(None, "/x/1089-0000.flac")]
    p = pair(refs, hyps)
    assert [(r.id, h.audio) for r, h in p.pairs] == [
        ("1089-0000", "/x/1089-0000.flac"),
        ("1089-0001", "/x/1089-0001.flac"),
    ]


def test_pair_prefers_audio_when_ids_disagree():
    refs = [_e("utt1", "/d/a.wav"), _e("utt2", "/d/b.wav")]
    hyps = [_e("a", "/d/a.wav"), _e("b", "/d/b.wav")]  # transcribe named them by stem
    assert pair(refs, hyps).key == "audio"


def test_duplicate_audio_without_ids_is_an_error():
    with pytest.raises(W2VError, match="appears more than once"):
        pair([_e("1", "/d/a.wav")], [_e(None, "/d/a.wav"), _e(None, "./d/../d/a.wav")], hyp_path="h.jsonl")
