"""Word edges next to a pause, placed where the signal says speech starts and stops.

CTC marks a letter somewhere inside its sound, so the path alone puts a word's outer edges tens of
milliseconds inside the word, and a weak model can put a short first or last word anywhere in the
pause next to it (a path that places a letter on a silent frame pays little for it). Where the
aligner leaves a pause between two words, the audio itself knows better: speech is louder than the
pause. So the signal's energy, every 10 ms, is split into speech and pause:

- the pause level is a low percentile of the file's energy (its background; digital silence, as
  between synthesised words, left out), the speech level a high one; a file whose speech is not clearly louder than its background (`min_contrast` dB: loud
  noise, music) is left to the fixed pads, as is any edge with no pause beside it;
- a 10 ms step is speech when it is `margin` dB above the pause level; dips shorter than `bridge`
  (a stop's closure, a breath between syllables) join the speech around them, and bursts shorter
  than `min_speech` (a click) do not count; then each region widens while the energy stays `tail`
  dB above the pause level (speech fades in and out: a Schmitt trigger's two thresholds).

Then each word edge that faces a pause of at least `min_gap` moves to the edge of the speech the
word lies in: a start to where the first speech region that the word overlaps begins, an end to
where the last one ends, never past the neighbouring word. A word that the path put wholly in a
pause moves into the nearest speech between its neighbours, which is what its letters must have
been. Written here (rather than taken from a VAD library) because it works on the aligner's own
words and frames, costs a few milliseconds for an hour, and needs nothing but numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOP = 160  # samples per energy step: 10 ms at 16 kHz
SILENT = -90.0  # dB (full scale 0): below this a step is digital silence, not a recording's background


@dataclass(frozen=True)
class EdgeOptions:
    margin: float = 6.0  # dB above the pause level that counts as speech
    tail: float = 3.0  # dB above the pause level that a region's edges still reach (hysteresis)
    reach: float = 0.3  # seconds: how far they reach at most
    min_contrast: float = 20.0  # dB between the speech and the pause levels, else no refinement
    bridge: float = 0.1  # seconds: shorter dips inside speech are speech
    min_speech: float = 0.03  # seconds: shorter bursts are not
    min_gap: float = 0.1  # seconds of pause (between the path's words) before an edge is refined
    floor_percentile: float = 10.0
    level_percentile: float = 95.0
    # The path itself: a letter on a frame deep inside a pause (one of at least `min_pause`, farther
    # than `guard` from speech) costs `letter_in_pause` nats more, so a weak model cannot hang the
    # first or last word of a sentence in the silence beside it.
    letter_in_pause: float = 5.0
    min_pause: float = 0.2
    guard: float = 0.03
    # Edges in running speech (no pause in the signal) keep the path's edge moved out by these pads
    # (at most a share of the gap to the neighbour): measured on word-level truth (festival's own
    # phone times, bench/bench_confidence.py), the path's starts lie ~20 ms late and its ends ~0-10 ms
    # early there; AlignOptions' pads serve only when the signal cannot place the pauses.
    start_pad: float = 0.08
    end_pad: float = 0.06


def energy_db(wav: np.ndarray) -> np.ndarray:
    """Mean-square energy in dB of each 10 ms step of `wav` (a partial last step counts)."""
    n = len(wav)
    if n == 0:
        return np.zeros(0, np.float32)
    pad = (-n) % HOP
    x = np.pad(wav.astype(np.float32), (0, pad)).reshape(-1, HOP)
    power = (x * x).mean(axis=1)
    if pad:
        power[-1] *= HOP / (HOP - pad)
    return (10 * np.log10(power + 1e-10)).astype(np.float32)


def speech_regions(db: np.ndarray, options: EdgeOptions = EdgeOptions()) -> np.ndarray | None:
    """(R, 2) start and end steps [start, end) of the speech regions, or None when the file's speech is
    not clearly louder than its pauses (nothing to go by)."""
    audible = db[db > SILENT]  # digital silence (exact zeros between synthesised words) is no background
    if len(audible) < 10:
        return None
    floor = float(np.percentile(audible, options.floor_percentile))
    level = float(np.percentile(audible, options.level_percentile))
    if level - floor < options.min_contrast:
        return None
    loud = db >= floor + options.margin
    regions = _runs(loud)
    bridge, shortest = round(options.bridge * 100), round(options.min_speech * 100)
    merged: list[list[int]] = []
    for s, e in regions:
        if merged and s - merged[-1][1] < bridge:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    kept = [r for r in merged if r[1] - r[0] >= shortest]
    # Hysteresis: speech fades in and out below the margin; each region widens while the energy
    # stays `tail` dB above the pause level, up to `reach` and never into the next region.
    low, reach = floor + options.tail, round(options.reach * 100)
    for k, r in enumerate(kept):
        stop = max(r[0] - reach, kept[k - 1][1] if k else 0)
        while r[0] > stop and db[r[0] - 1] >= low:
            r[0] -= 1
        stop = min(r[1] + reach, kept[k + 1][0] if k + 1 < len(kept) else len(db))
        while r[1] < stop and db[r[1]] >= low:
            r[1] += 1
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def quiet_seconds(regions: np.ndarray | None, start: float, end: float) -> float:
    """The longest stretch of [start, end] (seconds) outside every speech region; with no regions
    (nothing to go by) the whole of it."""
    if regions is None or end <= start:
        return max(end - start, 0.0)
    hop = HOP / 16000
    inside = [
        (max(s * hop, start), min(e * hop, end))
        for s, e in regions.tolist()
        if s * hop < end and e * hop > start
    ]
    longest, at = 0.0, start
    for lo, hi in inside:
        longest, at = max(longest, lo - at), max(at, hi)
    return max(longest, end - at)


def pause_frames(regions: np.ndarray, frames: int, frame_seconds: float, options: EdgeOptions) -> np.ndarray:
    """(frames,) bool: model frames that lie deep inside a pause (see `letter_in_pause`)."""
    hop = HOP / 16000
    bounds = [0.0, *(regions.astype(np.float64) * hop).ravel().tolist(), frames * frame_seconds]
    centres = (np.arange(frames) + 0.5) * frame_seconds
    quiet = np.zeros(frames, bool)
    for lo, hi in zip(bounds[::2], bounds[1::2], strict=True):  # the pauses: before, between, after
        if hi - lo >= options.min_pause - 1e-9:
            quiet |= (centres > lo + options.guard) & (centres < hi - options.guard)
    return quiet


def snap_to_speech(
    timed: list[dict], regions: np.ndarray, duration: float, options: EdgeOptions = EdgeOptions()
) -> list[tuple[bool, bool]]:
    """Move the outer edges of `timed` words (dicts with "start"/"end" in seconds, in order, as the
    path placed them) that face a pause to the edges of the speech regions; returns, per word,
    whether its start and its end were placed so (the others keep the path's times and get pads)."""
    hop = HOP / 16000
    starts, ends = regions[:, 0] * hop, regions[:, 1] * hop
    done = []
    for i, w in enumerate(timed):
        lo = timed[i - 1]["end"] if i else 0.0  # the neighbours, as the path placed them
        hi = timed[i + 1]["start"] if i + 1 < len(timed) else max(duration, w["end"])
        open_before = w["start"] - lo >= options.min_gap
        open_after = hi - w["end"] >= options.min_gap
        if not (open_before or open_after) or len(regions) == 0:
            done.append((False, False))
            continue
        over = np.flatnonzero((starts < w["end"]) & (ends > w["start"]))
        inside = len(over) > 0
        if not inside:  # the path put the whole word in a pause: the nearest speech between neighbours
            near = np.flatnonzero((starts < hi) & (ends > lo))
            if len(near) == 0:
                done.append((False, False))
                continue
            middle = (w["start"] + w["end"]) / 2
            over = near[[np.argmin(np.minimum(abs(starts[near] - middle), abs(ends[near] - middle)))]]
        first, last = over[0], over[-1]
        # An edge moves only where the signal has a pause in the gap too: a gap in the path alone
        # (CTC leaves blanks between words of running speech) keeps the path's edge and its pad.
        move_start = not inside or (open_before and (i == 0 or float(starts[first]) > lo))
        move_end = not inside or (open_after and (i + 1 == len(timed) or float(ends[last]) < hi))
        start = round(max(float(starts[first]), lo), 3) if move_start else w["start"]
        end = round(min(float(ends[last]), hi), 3) if move_end else w["end"]
        if end <= start:  # the regions and the path disagree beyond repair: keep the path's times
            done.append((False, False))
            continue
        w["start"], w["end"] = start, end
        done.append((move_start, move_end))
    return done
