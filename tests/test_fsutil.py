"""Atomic writes: the target is the old file or the whole new one, never half of one."""

import pytest

from w2vcli.fsutil import atomic_open, atomic_write


def test_atomic_write_replaces_whole_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    atomic_write(path, "old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left
    assert atomic_write(path, b"\x00\x01", sync=True) == path and path.read_bytes() == b"\x00\x01"
    atomic_write(path, "é\n")
    assert path.read_text(encoding="utf-8") == "é\n"
