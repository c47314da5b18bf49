"""The resume cache of `w2v prep`: which source file (size, mtime, conversion settings) became
which outputs, so a re-run converts only new or changed files.

An append-only journal (`.prep-cache.jsonl` in DIR), one line per conversion, flushed as it
goes: an interrupted run keeps what it finished; a torn last line is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from w2vcli.data.audio import UNREADABLE
from w2vcli.fsutil import atomic_open
from w2vcli.pipelines._prep_convert import COMMAND_FAILED, DECODER_ERROR, WRITE_ERROR, Job

CACHE_FILE = ".prep-cache.jsonl"
_TRANSIENT = {DECODER_ERROR, WRITE_ERROR, UNREADABLE, COMMAND_FAILED}  # worth retrying on the next run


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ConversionCache:
    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / CACHE_FILE
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["src"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue
        # opened (so created) before any output is written: a run killed at any point leaves a folder
        # that the next run recognises as prep's own and resumes
        self._journal = open(self.path, "a", encoding="utf-8")

    def get(self, job: Job) -> dict | None:
        """The cached result when the source, the settings and every output are unchanged."""
        entry = self.entries.get(job.src)
        if entry is None or entry["stamp"] != _stamp(job.src) or entry["key"] != job.key():
            return None
        result = entry["result"]
        for seg in result.get("segments", ()):
            if not (Path(job.out_root) / seg["audio"]).exists():
                return None
        return result

    def put(self, job: Job, result: dict) -> None:
        """Record a fresh result; outputs of an older conversion of the same source that the new
        one did not rewrite (e.g. after a --max-seconds change) are deleted."""
        old = self.entries.get(job.src)
        keep = {seg["audio"] for seg in result.get("segments", ())}
        if old is not None:
            for seg in old["result"].get("segments", ()):
                if seg["audio"] not in keep:
                    (Path(old["key"]["out_root"]) / seg["audio"]).unlink(missing_ok=True)
        if result.get("reason") in _TRANSIENT:
            self.entries.pop(job.src, None)
            return
        entry = {"src": job.src, "stamp": _stamp(job.src), "key": job.key(), "result": result}
        self.entries[job.src] = entry
        if self._journal is None:
            self._journal = open(self.path, "a", encoding="utf-8")
        self._journal.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._journal.flush()

    def close(self) -> None:
        """Rewrite the journal compactly (one line per source), atomically."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        with atomic_open(self.path) as f:
            for entry in self.entries.values():
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
