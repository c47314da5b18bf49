"""Input discovery, pinned with exact outputs: which files `prep` (scan) and `transcribe` (expand)
pick up from folders, file arguments and stdin lists, in which order, and under which names."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2vcli.data import inputs
from w2vcli.data.inputs import DUPLICATE, MISSING, scan
from w2vcli.errors import UsageError
from w2vcli.pipelines._transcribe_inputs import expand

# Created in this order on purpose (not sorted): the listing order of a folder must not leak out.
TREE = [
    "corpus/spk2/b.wav",
    "corpus/spk1/zz.flac",
    "corpus/spk1/A.WAV",  # upper-case suffix: still audio
    "corpus/spk1/m.Mp3",
    "corpus/spk1/c.ogg",
    "corpus/spk1/b.wav",
    "corpus/spk1/b.txt",  # a sidecar transcript
    "corpus/spk1/b.lab",
    "corpus/spk1/notes.pdf",  # neither audio nor text
    "corpus/spk1/.hidden.wav",  # hidden file
    "corpus/spk1/._b.wav",  # macOS resource fork
    "corpus/.cache/x.wav",  # hidden folder
    "corpus/spk0/q.wav",
]


def make(root: Path, rels=TREE) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    return tmp_path


def test_scan_finds_audio_by_suffix_any_case_sorted_and_skips_hidden(tree):
    found = scan(["corpus"])
    assert [a.rel for a in found.audio] == [
        "corpus/spk0/q",
        "corpus/spk1/A",
        "corpus/spk1/b",
        "corpus/spk1/c",
        "corpus/spk1/m",
        "corpus/spk1/zz",
        "corpus/spk2/b",
    ]
    assert [a.path for a in found.audio][1] == tree / "corpus/spk1/A.WAV"
    assert sorted(p.name for p in found.text_files) == ["b.lab", "b.txt"]
    assert found.rejected == []
    assert found.audio_dirs == {tree / "corpus/spk0", tree / "corpus/spk1", tree / "corpus/spk2"}


def test_scan_sorts_across_sources_given_in_any_order(tree):
    make(tree, ["alpha/z.wav", "alpha/a.wav"])
    found = scan(["corpus/spk2", "alpha", "corpus/spk0"])
    assert [a.rel for a in found.audio] == ["alpha/a", "alpha/z", "spk0/q", "spk2/b"]


def test_scan_walks_each_folder_in_name_order(tree):
    # the walk itself is sorted (expand relies on it: it keeps the walk's order)
    names = [p.name for p in inputs._walk(tree / "corpus", None)]
    assert names == [
        "q.wav",
        "A.WAV",
        "b.lab",
        "b.txt",
        "b.wav",
        "c.ogg",
        "m.Mp3",
        "notes.pdf",
        "zz.flac",
        "b.wav",
    ]


def test_scan_same_name_twice_in_one_folder_keeps_the_first_and_rejects_the_second(tree):
    make(tree, ["dup/a.wav", "dup/a.flac", "dup/b.wav"])
    found = scan(["dup"])
    assert [(a.rel, a.path.name) for a in found.audio] == [("dup/a", "a.flac"), ("dup/b", "b.wav")]
    assert [(Path(p).name, reason) for p, reason, _ in found.rejected] == [("a.wav", DUPLICATE)]


def test_scan_same_file_twice_is_one_input_without_a_rejection(tree):
    found = scan(["corpus/spk0", "corpus/spk0/q.wav", "corpus/spk0"])
    assert [a.rel for a in found.audio] == ["corpus/spk0/q", "spk0/q"]  # a folder source keeps its own name
    found = scan(["corpus/spk0/q.wav", "./corpus/spk0/q.wav"])
    assert [a.rel for a in found.audio] == ["corpus/spk0/q"] and found.rejected == []


def test_scan_file_sources_are_audio_whatever_their_suffix_and_text_files_only_from_folders(tree):
    found = scan(["corpus/spk1/notes.pdf", "corpus/spk1/b.txt"])
    assert [a.rel for a in found.audio] == ["corpus/spk1/b", "corpus/spk1/notes"]
    assert found.text_files == []


def test_scan_does_not_enter_the_output_folder(tree):
    make(tree, ["corpus/out/audio/corpus/spk0/q.flac", "corpus/out/x.wav"])
    found = scan(["corpus"], skip_dir="corpus/out")
    assert not any("out" in a.rel.split("/") for a in found.audio)
    assert len(found.audio) == 7


def test_scan_missing_source_is_a_usage_error_unless_listed_on_stdin(tree):
    with pytest.raises(UsageError, match="no such file or directory: nope.wav"):
        scan(["corpus/spk0", "nope.wav"])
    found = scan(["corpus/spk0", "nope.wav"], listed={"nope.wav"})
    assert [a.rel for a in found.audio] == ["spk0/q"]
    assert found.rejected == [("nope.wav", MISSING, "listed on stdin, but no such file")]


def test_expand_folder_recursive_audio_only_sorted_hidden_skipped(tree):
    items = expand(["corpus"])
    assert [i.rel for i in items] == [
        "corpus/spk0/q",
        "corpus/spk1/A",
        "corpus/spk1/b",
        "corpus/spk1/c",
        "corpus/spk1/m",
        "corpus/spk1/zz",
        "corpus/spk2/b",
    ]
    assert items[1].audio == "corpus/spk1/A.WAV"  # as the user would name it
    assert items[1].path == tree / "corpus/spk1/A.WAV"


def test_expand_keeps_argument_order_and_each_file_once(tree):
    again = ["./corpus/spk2/b.wav", str(tree / "corpus/spk0/q.wav"), str(tree / "corpus/spk2/b.wav")]
    items = expand(["corpus/spk2/b.wav", "corpus/spk0", *again, "corpus/../corpus/spk0/q.wav"])
    assert [i.rel for i in items] == ["corpus/spk2/b", "spk0/q"]
    assert [i.audio for i in items] == ["corpus/spk2/b.wav", "corpus/spk0/q.wav"]


def test_expand_stdin_list_strips_line_ends_and_skips_blank_lines(tree):
    lines = ["corpus/spk0/q.wav\r\n", "\n", "   \n", "corpus/spk2/b.wav\n", "corpus/spk1/c.ogg"]
    items = expand(["-"], stdin_lines=lines)
    assert [i.path for i in items] == [
        Path("corpus/spk0/q.wav"),
        Path("corpus/spk2/b.wav"),
        Path("corpus/spk1/c.ogg"),
    ]
    assert [i.rel for i in items] == ["corpus/spk0/q", "corpus/spk2/b", "corpus/spk1/c"]
    assert all(i.path.exists() for i in items)


def test_expand_same_stem_two_suffixes_and_colliding_names(tree):
    make(tree, ["pair/a.wav", "pair/a.flac", "elsewhere/pair/a.wav"])
    items = expand(["pair", "pair/a"])  # "pair/a" (no such file) would take the name of pair/a.flac
    assert [(i.path.name, i.rel) for i in items] == [
        ("a.flac", "pair/a"),
        ("a.wav", "pair/a.wav"),
        ("a", "pair/a~2"),
    ]


def test_expand_a_missing_file_is_kept_a_missing_manifest_is_an_error(tree):
    assert [i.rel for i in expand(["ghost.wav"])] == ["ghost"]
    with pytest.raises(UsageError, match="no such manifest: ghost.jsonl"):
        expand(["ghost.jsonl"])
