"""`w2v prep` re-run after an interrupted or failed run: what it reuses, what it redoes, what it removes.

An interruption is simulated in-process: Ctrl-C (KeyboardInterrupt, cleanup runs), a kill (a
BaseException with the cache's cleanup switched off, so nothing after the kill point reaches the
disk), a torn last line of the journal, and a full disk while writing.
"""

from __future__ import annotations

import errno
import gc
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vcli.data import audio
from w2vcli.pipelines import _prep_cache, _prep_convert
from w2vcli.pipelines._prep_cache import CACHE_FILE
from w2vcli.pipelines.prep import REPORT_FILE, PrepOptions, prepare


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # (N,)


def opts(**kw) -> PrepOptions:
    return PrepOptions(workers=0, valid_percent=0, **kw)


def labelled(tmp_path, n: int = 4):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        sf.write(src / f"u{i}.wav", tone(0.6, 300 + 50 * i), 16000)
        (src / f"u{i}.txt").write_text(f"word {i}")
    return src, tmp_path / "out"


def journal_sources(out) -> list[str]:
    return [
        json.loads(line)["src"].rsplit("/", 1)[-1] for line in (out / CACHE_FILE).read_text().splitlines()
    ]


def interrupt_at(monkeypatch, name: str, exc: BaseException) -> None:
    real = _prep_convert.convert

    def convert(job):
        if job.rel.endswith(name):
            raise exc
        return real(job)

    monkeypatch.setattr(_prep_convert, "convert", convert)


def test_ctrl_c_keeps_the_finished_files_and_the_rerun_converts_only_the_rest(tmp_path, monkeypatch):
    src, out = labelled(tmp_path)
    interrupt_at(monkeypatch, "u2", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        prepare([src], out, opts())
    assert not (out / REPORT_FILE).exists()  # the run never got to its report
    assert journal_sources(out) == ["u0.wav", "u1.wav"]
    assert sorted(p.name for p in (out / "audio/in").iterdir()) == ["u0.flac", "u1.flac"]
    stamp = (out / "audio/in/u0.flac").stat().st_mtime_ns
    monkeypatch.undo()
    report = prepare([src], out, opts())  # the folder is recognised as prep's own, not refused
    assert report.files == {"found": 4, "cached": 2, "converted": 2, "rejected": 0}
    assert (out / "audio/in/u0.flac").stat().st_mtime_ns == stamp
    assert journal_sources(out) == ["u0.wav", "u1.wav", "u2.wav", "u3.wav"]


class Killed(BaseException):
    """kill -9: nothing after this point runs (the cache's cleanup is switched off below)."""


@pytest.mark.parametrize("killed_at", [0, 2])
def test_a_kill_while_a_file_is_written_leaves_a_folder_the_rerun_resumes(tmp_path, monkeypatch, killed_at):
    src, out = labelled(tmp_path, 3)
    real_write, on_disk = _prep_convert.write_audio, []

    def write(path, wav, sample_rate):
        if path.name != f"u{killed_at}.flac":
            return real_write(path, wav, sample_rate)
        on_disk.append((out / CACHE_FILE).read_text() if (out / CACHE_FILE).exists() else None)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(f".{path.name}.999.tmp").write_bytes(b"fLaC\0\0")  # the first bytes, then the kill
        raise Killed

    monkeypatch.setattr(_prep_convert, "write_audio", write)
    monkeypatch.setattr(_prep_cache.ConversionCache, "close", lambda self: None)
    with pytest.raises(Killed):
        prepare([src], out, opts())
    # what the disk held at the kill: the journal exists from the start, each finished file in it
    (journal,) = on_disk
    assert journal is not None
    assert [json.loads(line)["src"].rsplit("/", 1)[-1] for line in journal.splitlines()] == [
        f"u{i}.wav" for i in range(killed_at)
    ]
    gc.collect()  # the killed run's open journal is gone: put the file back as the kill left it
    (out / CACHE_FILE).write_text(journal)
    monkeypatch.undo()
    report = prepare([src], out, opts())
    assert report.files == {"found": 3, "cached": killed_at, "converted": 3 - killed_at, "rejected": 0}
    assert sf.info(str(out / f"audio/in/u{killed_at}.flac")).frames == int(0.6 * 16000)


def test_a_torn_last_journal_line_is_ignored_and_its_file_converted_again(tmp_path):
    src, out = labelled(tmp_path, 3)
    prepare([src], out, opts())
    lines = (out / CACHE_FILE).read_text().splitlines()
    (out / CACHE_FILE).write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    report = prepare([src], out, opts())
    assert report.files == {"found": 3, "cached": 2, "converted": 1, "rejected": 0}
    assert journal_sources(out) == ["u0.wav", "u1.wav", "u2.wav"]


def test_a_failed_write_is_retried_on_the_next_run_not_remembered(tmp_path, monkeypatch):
    src, out = labelled(tmp_path, 2)

    def full_disk(path, *args, **kwargs):  # half a file, then the disk is full
        Path(path).write_bytes(b"fLaC\0\0")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audio.sf, "write", full_disk)
    first = prepare([src], out, opts())
    assert [r["reason"] for r in first.rejected] == ["write failed", "write failed"]
    assert list((out / "audio/in").iterdir()) == []  # no half file, under its name or a temporary one
    monkeypatch.undo()
    again = prepare([src], out, opts())
    assert again.files == {"found": 2, "cached": 0, "converted": 2, "rejected": 0}
    assert again.rejected == []


def test_changed_settings_or_source_redo_the_file_and_remove_outputs_no_longer_made(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sf.write(src / "long.wav", np.concatenate([tone(1.5), np.zeros(1600, np.float32), tone(1.4)]), 16000)
    first = prepare([src], out, opts(min_seconds=0.1, max_seconds=2.0))
    assert sorted(p.name for p in (out / "audio/in").iterdir()) == ["long-000.flac", "long-001.flac"]
    (out / "audio/in/long-001.flac").unlink()  # an output lost since: the file is converted again
    assert prepare([src], out, opts(min_seconds=0.1, max_seconds=2.0)).files["converted"] == 1
    assert (out / "audio/in/long-001.flac").exists()
    again = prepare([src], out, opts(min_seconds=0.1, max_seconds=2.0))
    assert again.files["cached"] == 1 and again.splits == first.splits
    wider = prepare([src], out, opts(min_seconds=0.1, max_seconds=5.0))  # a new --max-seconds
    assert wider.files["converted"] == 1
    assert sorted(p.name for p in (out / "audio/in").iterdir()) == ["long.flac"]  # the two old parts removed
    sf.write(src / "long.wav", tone(1.0), 16000)  # the source itself changed (size and mtime)
    edited = prepare([src], out, opts(min_seconds=0.1, max_seconds=5.0))
    assert edited.files["converted"] == 1 and edited.splits["train"]["seconds"] == 1.0
