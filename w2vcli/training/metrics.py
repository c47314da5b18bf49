"""metrics.jsonl (one JSON object per logging step) and a terminal chart of its curves.

Records carry `update` and whatever the task reports (`loss`, `accuracy`, `lr`, `wer`, ...).
After a crash, resuming rewinds the file to the resumed update so curves never go back in time.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from w2vcli.fsutil import atomic_write

BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class Window:
    """What the updates since the last log line add up to: the task's loss statistics (summed
    tensors), audio seconds, gradient norms, skipped steps, and when the window began."""

    sums: dict = field(default_factory=dict)
    updates: int = 0
    skipped: int = 0
    grad_norm: float = 0.0
    seconds: float = 0.0
    start: float = field(default_factory=time.monotonic)

    def add(self, stats: dict, seconds: float) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.detach().float()
        self.seconds += seconds


class MetricsLog:
    """Appends records to RUN/metrics.jsonl; a no-op on processes other than the main one."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled

    def rewind(self, update: int) -> None:
        """Drop records past `update` (written after the checkpoint a resumed run restarts from)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if r.get("update", 0) <= update]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept), sync=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All complete records (a torn last line from a killed run is skipped)."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(updates, values) of the records that have a finite `key`."""
    pts = [
        (r["update"], float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "update" in r
    ]
    return [u for u, _ in pts], [v for _, v in pts]


def resample(values: list[float], width: int) -> list[float]:
    """Mean of equal slices so a long curve fits `width` columns (a short one is kept as is)."""
    if len(values) <= width:
        return list(values)
    out = []
    for i in range(width):
        a, b = i * len(values) // width, (i + 1) * len(values) // width
        out.append(sum(values[a:b]) / (b - a))
    return out


def sparkline(values: list[float], width: int = 40) -> str:
    vals = resample(values, width)
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(BLOCKS[1 + round((v - lo) / span * (len(BLOCKS) - 2))] for v in vals)


def chart(values: list[float], width: int = 60, height: int = 8) -> list[str]:
    """A column chart, `height` rows of block characters, highest value at the top; y range on the left."""
    vals = resample(values, width)
    if not vals:
        return []
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    levels = [(v - lo) / span * height * 8 for v in vals]  # eighths of a row
    rows = []
    for row in range(height - 1, -1, -1):
        cells = "".join(BLOCKS[max(0, min(8, round(lvl - row * 8)))] for lvl in levels)
        label = f"{hi:>9.4g} ┤" if row == height - 1 else f"{lo:>9.4g} ┤" if row == 0 else " " * 9 + " │"
        rows.append(label + cells)
    return rows
