"""Manifests: one JSON object per utterance per line (`train.jsonl`, `valid.jsonl`, ...).

Fields: `id`, `audio` (path relative to the manifest's directory, or absolute), `duration`
(seconds), and `text` when the transcript is known. Unknown fields are kept in `extra`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.fsutil import atomic_open


@dataclass
class Utterance:
    id: str
    audio: str
    duration: float
    text: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"id": self.id, "audio": self.audio, "duration": round(self.duration, 4)}
        if self.text is not None:
            d["text"] = self.text
        d.update(self.extra)
        return d


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSONL manifest; `audio` paths are resolved against the manifest's directory."""
    path = Path(path)
    base = path.parent
    utts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise W2VError(f"cannot read manifest {path}: {e.strerror or e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            audio = d.pop("audio")
            utt = Utterance(
                id=str(d.pop("id", audio)),
                audio=str(base / audio),
                duration=float(d.pop("duration", 0.0)),
                text=d.pop("text", None),
                extra=d,
            )
        except (ValueError, KeyError, TypeError) as e:
            raise W2VError(f"{path}:{n}: not a manifest line ({e}); expected JSON with 'audio'") from None
        utts.append(utt)
    return utts


def write_manifest(path: str | os.PathLike, utts: list[Utterance]) -> None:
    """Write atomically (temporary name, then rename); `audio` is written relative to the manifest."""
    path = Path(path)
    with atomic_open(path, sync=True) as f:
        for u in utts:
            d = u.to_json()
            audio = Path(u.audio)
            if audio.is_absolute():
                try:
                    d["audio"] = str(audio.relative_to(path.parent.resolve()))
                except ValueError:
                    pass
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
