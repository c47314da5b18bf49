"""Text normalisation, transcript matching and the pairing of references with hypotheses, pinned
with known inputs and exact outputs."""

from __future__ import annotations

import json
import unicodedata

import pytest

from w2vcli.data.text import Vocabulary, normalize_text
from w2vcli.data.transcripts import TranscriptIndex, _decode, read_trans_txt
from w2vcli.scoring.hypfiles import Entry, read_entries
from w2vcli.scoring.pairing import pair, path_parts

# --- normalisation ---------------------------------------------------------------------------------

NORMALISED = [
    ("Hello, World!", "hello world"),
    ("don\u2019t STOP", "don't stop"),  # the typographic apostrophe is the ASCII one, and kept
    ("rock-n-roll/jazz", "rock n roll jazz"),  # punctuation splits words, never glues them
    ("a+b=c $5 \u20ac3 <x>", "a b c 5 3 x"),  # symbols go like punctuation
    ("\ufb01ne \uff21\uff22\uff23", "fine abc"),  # NFKC: ligature and full-width letters
    ("  tabs\tand\nnew\u00a0lines  ", "tabs and new lines"),  # every space kind, once, no ends
    ("\u00abquoted\u00bb \u2014 dash", "quoted dash"),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISED)
def test_normalize_text_exact(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_composes_accents_and_keeps_case_or_punctuation_when_asked():
    assert normalize_text("Cafe\u0301") == "caf\u00e9"  # one code point, as a vocabulary holds it
    assert normalize_text("  Hello,\tWorld!  ", lowercase=False) == "Hello World"
    assert normalize_text("  Hello,\tWorld!  ", strip_punctuation=False) == "hello, world!"
    assert normalize_text("\uff21\u2019s", lowercase=False, strip_punctuation=False) == "A's"
    assert unicodedata.is_normalized("NFC", normalize_text("e\u0301t\u00e9"))


def test_character_vocabulary_encode_decode_exact():
    v = Vocabulary.from_texts(["ba ab", "c", "ab"])
    assert v.tokens == ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c"]
    assert v.encode("ab c") == [5, 6, 4, 7]
    assert v.encode("ax") == [5, 3]  # unknown -> <unk>
    assert v.unknown_chars("ab xy z") == {"x", "y", "z"}
    assert v.decode([4, 5, 0, 4, 4, 6, 1, 2, 4]) == "a b"  # blanks and specials dropped, spaces once


# --- transcripts beside the audio and in tables ----------------------------------------------------


def test_transcript_bytes_lose_a_bom_and_surrounding_space_and_bad_utf8_is_none():
    assert _decode(b"\xef\xbb\xbf  Hello there \r\n") == "Hello there"
    assert _decode(b"caf\xe9") is None


def test_trans_txt_splits_at_the_first_space_only(tmp_path):
    path = tmp_path / "1-2.trans.txt"
    path.write_bytes(b"1-2-0000 HELLO  THERE WORLD\n\n1-2-0001 \xef\xbb\xbfBYE\n1-2-0002\n")
    got = {k: t.text for k, t in read_trans_txt(path).items()}
    assert got == {"1-2-0000": "HELLO  THERE WORLD", "1-2-0001": "BYE", "1-2-0002": ""}


def test_table_entries_match_by_the_longest_trailing_path_first(tmp_path):
    for rel in ("spk1/a.wav", "spk2/a.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    table = tmp_path / "lists" / "t.tsv"  # elsewhere: entries match by their trailing path only
    table.parent.mkdir()
    table.write_text("path\ttext\na.mp3\tbare name\nspk1/a\tfirst speaker\n")
    index = TranscriptIndex()
    index.add_table(table)
    assert index.find(tmp_path / "spk1/a.wav").text == "first speaker"  # the more specific entry wins
    assert index.find(tmp_path / "spk2/a.wav").text == "bare name"
    assert index.orphans(set()) == []


def test_table_wins_over_trans_txt_which_wins_over_a_sidecar(tmp_path):
    d = tmp_path / "spk"
    d.mkdir()
    (d / "u1.txt").write_text("sidecar one")
    (d / "u2.txt").write_text("sidecar two")
    (d / "u3.lab").write_text("lab three")
    (d / "spk.trans.txt").write_text("u1 trans one\nu2 trans two\n")
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"audio": "spk/u1.wav", "text": "table one"}) + "\n")
    index = TranscriptIndex()
    index.add_text_files(sorted(d.iterdir()))
    index.add_table(table)
    found = {n: index.find(d / f"{n}.wav").text for n in ("u1", "u2", "u3")}
    assert found == {"u1": "table one", "u2": "trans two", "u3": "lab three"}
    assert index.find(d / "u4.wav") is None


# --- hypothesis and reference files ---------------------------------------------------------------


def _rows(entries):
    return [(e.id, e.audio, e.text, e.line, e.error) for e in entries]


def test_readers_give_exact_entries(tmp_path):
    (tmp_path / "a.tsv").write_text("\n audio \tText\nx/a.wav\thello  there\n")  # header after a blank line
    assert _rows(read_entries(str(tmp_path / "a.tsv"))) == [(None, "x/a.wav", "hello  there", 3, None)]
    (tmp_path / "k").write_text("\ufeffu1   hello there\nu2\n\n")  # a BOM, as Windows tools write
    assert _rows(read_entries(str(tmp_path / "k"))) == [
        ("u1", None, "hello there", 1, None),
        ("u2", None, "", 2, None),
    ]
    (tmp_path / "s.trn").write_text("hello (there) (spk-u1)\n")
    assert _rows(read_entries(str(tmp_path / "s.trn"))) == [("spk-u1", None, "hello (there)", 1, None)]
    (tmp_path / "m").mkdir()
    (tmp_path / "m/t.jsonl").write_text(
        json.dumps({"id": 7, "audio": "audio/u.flac", "text": "hi"})
        + "\n"
        + json.dumps({"audio": "/abs/v.wav", "error": "", "text": "yo"})
        + "\n"
    )
    assert _rows(read_entries(str(tmp_path / "m/t.jsonl"))) == [
        ("7", str(tmp_path / "m/audio/u.flac"), "hi", 1, None),  # relative to the manifest
        (None, "/abs/v.wav", "yo", 2, None),
    ]


def _e(id=None, audio=None, text="t"):
    return Entry(id=id, audio=audio, text=text, line=1)


def _pairs(p):
    return [(r.name, None if h is None else h.name) for r, h in p.pairs]


def test_pair_by_exact_id_keeps_reference_order_marks_missing_and_lists_extras():
    refs = [_e("u3"), _e("u1"), _e("u2"), _e("U4")]
    hyps = [_e("u1"), _e("u4"), _e("u3"), _e("u9"), _e("u1 ")]
    p = pair(refs, hyps)
    assert p.key == "id"
    assert _pairs(p) == [("u3", "u3"), ("u1", "u1"), ("u2", None), ("U4", None)]  # ids compare exactly
    assert [h.id for h in p.extra] == ["u4", "u9", "u1 "]


def test_pair_ties_between_ids_and_paths_go_to_ids():
    refs = [_e("r1", "/d/a.wav"), _e("r2", "/d/b.wav")]
    hyps = [_e("r1", "/e/c.wav"), _e("h2", "/d/b.wav")]  # one pair either way
    p = pair(refs, hyps)
    assert p.key == "id" and _pairs(p) == [("r1", "r1"), ("r2", None)]
    assert [h.id for h in p.extra] == ["h2"]
    hyps.append(_e("h3", "/d/a.wav"))  # now paths pair two: they win
    p = pair(refs, hyps)
    assert p.key == "audio" and _pairs(p) == [("r1", "h3"), ("r2", "h2")]


def test_pair_paths_on_their_longest_common_suffix_then_by_stem():
    refs = [_e(None, "/data/s1/a.wav"), _e(None, "/data/s2/a.wav"), _e(None, "corpus\\s3\\b.wav")]
    hyps = [_e(None, "../s2/a.wav"), _e(None, "./x/../s1/a.wav"), _e(None, "/out/s3/b.flac")]
    p = pair(refs, hyps)
    assert p.key == "audio"
    assert [(r.audio, h.audio) for r, h in p.pairs] == [
        ("/data/s1/a.wav", "./x/../s1/a.wav"),
        ("/data/s2/a.wav", "../s2/a.wav"),
        ("corpus\\s3\\b.wav", "/out/s3/b.flac"),
    ]
    assert path_parts("..\\..\\s3\\.\\b.wav") == ("s3", "b.wav")
    assert path_parts("/a/b/../c.wav") == ("a", "c.wav")


def test_pair_paths_ambiguous_names_stay_unpaired_and_a_hypothesis_pairs_once():
    refs = [_e(None, "/d/spk1/0001.wav"), _e(None, "/d/spk2/0001.wav")]
    p = pair(refs, [_e(None, "0001.wav")])  # which speaker? neither
    assert _pairs(p) == [("/d/spk1/0001.wav", None), ("/d/spk2/0001.wav", None)]
    assert [h.audio for h in p.extra] == ["0001.wav"]
    refs = [_e(None, "/d/s1/a.wav"), _e(None, "/e/d/s1/a.wav")]  # both end like the one hypothesis
    p = pair(refs, [_e(None, "/mnt/e/d/s1/a.wav")])
    assert _pairs(p) == [("/d/s1/a.wav", None), ("/e/d/s1/a.wav", "/mnt/e/d/s1/a.wav")]  # the closer one
    assert p.extra == []
