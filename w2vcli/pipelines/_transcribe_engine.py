"""The transcription engine: a background thread decodes audio into chunks while the model runs.

B = chunks in a batch, N = samples, T = frames, V = vocabulary. Decoding (libsndfile, soxr) and
torch both release the GIL, so reading file k+1 overlaps the forward pass on file k. The queue
between them is bounded, so memory holds a few chunks, never a whole long file.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from w2vcli.data.audio import SAMPLE_RATE, probe_audio
from w2vcli.data.chunking import Chunk, ChunkPlan, iter_chunks, mean_std, read_blocks
from w2vcli.data.inputs import shown
from w2vcli.errors import W2VError
from w2vcli.model.wav2vec2 import normalize_waveform

PREFETCH_CHUNKS = 8
_DONE = object()


@dataclass
class Event:
    kind: str  # "chunk", "end" (all chunks of the file were sent) or "error"
    index: int  # position of the file in the input list
    chunk: Chunk | None = None
    samples: int = 0  # "end": the file's length at 16 kHz
    message: str = ""  # "error": one line for the user
    stats: tuple[float, float] | None = None  # "chunk": the file's (mean, std) when it needs normalising


def _counted(blocks, counter: list[int]):
    for b in blocks:
        counter[0] += len(b)
        yield b


def _read_file(path, plan: ChunkPlan, index: int, normalize: bool) -> Iterator[Event]:
    """Events for one file. A file longer than one chunk that the model wants normalised is read twice:
    first for its mean and deviation, so every chunk is scaled like the unchunked file would be."""
    counter = [0]
    try:
        stats = None
        if normalize and plan.chunk_frames > 0:
            info = probe_audio(path)
            if info.frames * SAMPLE_RATE / max(info.sample_rate, 1) > plan.end_sample(plan.chunk_frames):
                stats = mean_std(read_blocks(path))
        for chunk in iter_chunks(_counted(read_blocks(path), counter), plan):
            if len(chunk.wav) < plan.field:
                raise W2VError(f"{path}: too short to transcribe ({len(chunk.wav)} samples at 16 kHz)")
            if not np.isfinite(chunk.wav).all():
                raise W2VError(
                    f"{path}: NaN or Inf samples near {chunk.start_frame * plan.frame / SAMPLE_RATE:.2f} s"
                )
            yield Event("chunk", index, chunk, stats=stats)
    except Exception as e:  # noqa: BLE001 - whatever the reader meets is this input's error, never the run's
        known = isinstance(e, (W2VError, OSError, MemoryError, sf.LibsndfileError))
        message = str(e) if known and str(e) else f"{shown(path)}: cannot read ({type(e).__name__}: {e})"
        yield Event("error", index, message=shown(message))
        return
    yield Event("end", index, samples=counter[0])


class Prefetcher:
    """Runs `_read_file` over all paths in a daemon thread; iterate it for events in file order."""

    def __init__(self, paths: list, plan: ChunkPlan, normalize: bool, depth: int = PREFETCH_CHUNKS):
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(paths, plan, normalize), daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, paths, plan, normalize) -> None:
        try:
            for i, path in enumerate(paths):
                for event in _read_file(path, plan, i, normalize):
                    if not self._put(event):
                        return
        finally:
            self._put(_DONE)

    def __iter__(self) -> Iterator[Event]:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            yield item

    def pending(self) -> bool:
        return not self.queue.empty()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _prepared(wav: np.ndarray, normalize: bool, stats) -> torch.Tensor:
    """The model's input for one chunk: normalised by the file's statistics, else by its own."""
    x = torch.from_numpy(np.ascontiguousarray(wav))  # (N,)
    if not normalize:
        return x
    if stats is not None:
        return (x - stats[0]) / stats[1]
    return normalize_waveform(x[None], torch.tensor([len(x)]))[0]


def forward(model, wavs: list[torch.Tensor], device: str, padded: bool) -> list[np.ndarray]:
    """Logits (T_i, V) for each waveform; several at once only when `padded` is allowed."""
    with torch.inference_mode():
        if len(wavs) == 1:
            x = wavs[0][None].to(device)  # (1, N)
            logits, _, _ = model(x)
            return [logits[0].float().cpu().numpy()]
        if not padded:
            raise ValueError("this model is not padding-invariant; run it one input at a time")
        lengths = torch.tensor([len(w) for w in wavs])
        x = torch.zeros(len(wavs), int(lengths.max()))  # (B, N)
        for i, w in enumerate(wavs):
            x[i, : len(w)] = w
        logits, frames, _ = model(x.to(device), lengths.to(device))  # (B, T, V), (B,)
        logits = logits.float().cpu().numpy()
        return [lg[: int(n)] for lg, n in zip(logits, frames.cpu(), strict=True)]


def batches(chunks: list[tuple], batch_samples: int) -> list[list[tuple]]:
    """Sort by length and cut so a batch's padded size (longest x count) stays within batch_samples."""
    out: list[list] = []
    for item in sorted(chunks, key=lambda c: len(c[1].wav)):
        cur = out[-1] if out else None
        if cur is not None and len(item[1].wav) * (len(cur) + 1) <= batch_samples:
            cur.append(item)
        else:
            out.append([item])
    return out


def run_events(
    events: Iterator[Event],
    model,
    device: str,
    batch_samples: int,
    padded: bool,
    more_ready,
    normalize: bool = False,
    reduce=None,
) -> Iterator[tuple[Event, list[tuple[int, object]], float]]:
    """Forward every chunk; yield each "end"/"error" event with that file's pieces and the seconds
    spent on its forward passes. A piece is (first global frame, `reduce(kept logits (n, V))`), in
    frame order: only the chunk's kept frames are held, and `reduce` (the greedy decoder, say) can
    shrink them further, so a long file's memory does not grow with V. Batching collects up to
    batch_samples of chunks first."""
    reduce = reduce or (lambda logits: logits)
    pieces: dict[int, list] = {}
    spent: dict[int, float] = {}
    pending: list[tuple[int, Chunk, tuple | None]] = []
    held: list[Event] = []
    pending_samples = 0

    def flush():
        groups = batches(pending, batch_samples) if batch_samples > 0 and padded else [[c] for c in pending]
        for group in groups:
            t0 = time.perf_counter()
            outs = forward(model, [_prepared(c.wav, normalize, st) for _, c, st in group], device, padded)
            for (i, c, _), lg in zip(group, outs, strict=True):
                lo, hi = c.keep
                piece = reduce(lg[lo : hi if hi >= 0 else len(lg)])
                pieces.setdefault(i, []).append((c.start_frame + lo, piece))
            share = (time.perf_counter() - t0) / len(group)
            for i, _, _ in group:
                spent[i] = spent.get(i, 0.0) + share
        pending.clear()

    def take(i: int) -> list:
        return sorted(pieces.pop(i, []), key=lambda p: p[0])

    for ev in events:
        if ev.kind == "chunk":
            pending.append((ev.index, ev.chunk, ev.stats))
            pending_samples += len(ev.chunk.wav)
        else:
            held.append(ev)
        if pending and (
            batch_samples <= 0 or not padded or pending_samples >= batch_samples or not more_ready()
        ):
            flush()
            pending_samples = 0
        if not pending:
            for h in held:
                yield h, take(h.index), spent.pop(h.index, 0.0)
            held.clear()
    flush()
    for h in held:
        yield h, take(h.index), spent.pop(h.index, 0.0)


def report_progress(events: Iterator[Event], on_progress, frame: int) -> Iterator[Event]:
    """Pass events on; tell `on_progress(audio_seconds)` each chunk's new audio (its kept part)."""
    for ev in events:
        if on_progress is not None and ev.kind == "chunk":
            lo, hi = ev.chunk.keep
            end = hi * frame if hi >= 0 else len(ev.chunk.wav)
            on_progress(max(end - lo * frame, 0) / SAMPLE_RATE)
        yield ev
