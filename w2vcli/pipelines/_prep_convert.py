"""One file's conversion for `w2v prep`, run in a worker process: decode, check, split, write.

It never raises: whatever goes wrong with one file becomes a rejection, so a broken file (or a
decoder bug) never stops the run. The result is a plain dict, so it can be cached as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from w2vcli.data.audio import (
    SAMPLE_RATE,
    SILENCE,
    BadAudio,
    decode_checked,
    is_silent,
    split_points,
    write_audio,
)

TOO_LONG, DECODER_ERROR, WRITE_ERROR = "too long for its transcript", "decoder error", "write failed"
SUFFIX = ".flac"  # lossless and about half the size of WAV


@dataclass(frozen=True)
class Job:
    src: str  # absolute path of the source file
    out_root: str  # absolute folder the mirror is written into
    rel: str  # mirror path without suffix
    max_seconds: float
    split: bool  # False when the file has a transcript: text cannot be split without an alignment
    allow_clipping: bool = False
    silence_db: float = -60.0

    def key(self) -> dict:
        """What the output depends on besides the source file itself (for the resume cache)."""
        d = asdict(self)
        del d["src"]
        return d


def rejection(reason: str, detail: str, info: dict | None = None) -> dict:
    return {"status": "rejected", "reason": reason, "detail": detail, "info": info}


def convert(job: Job) -> dict:
    """-> {"status": "ok", "info", "segments": [{"audio", "duration"}], "rejected": [...]}
    or {"status": "rejected", "reason", "detail", "info"}."""
    try:
        return _convert(job)
    except BadAudio as e:
        return rejection(e.reason, str(e))
    except OSError as e:
        return rejection(WRITE_ERROR, f"{job.src}: {e}")
    except Exception as e:  # noqa: BLE001 - a decoder bug on one file must not stop the run
        return rejection(DECODER_ERROR, f"{job.src}: {type(e).__name__}: {e}")


def _convert(job: Job) -> dict:
    wav, src_info = decode_checked(job.src, SAMPLE_RATE, allow_clipping=job.allow_clipping)  # (N,)
    info = {
        "sample_rate": src_info.sample_rate,
        "channels": src_info.channels,
        "format": src_info.format,
        "subtype": src_info.subtype,
        "duration": round(len(wav) / SAMPLE_RATE, 4),
    }
    if is_silent(wav, job.silence_db):
        return rejection(SILENCE, f"{job.src}: silent (peak below {job.silence_db:g} dBFS)", info)
    if not job.split and len(wav) > job.max_seconds * SAMPLE_RATE:
        detail = f"{job.src}: {info['duration']:.1f} s > --max-seconds {job.max_seconds:g} with a transcript"
        return rejection(TOO_LONG, detail + "; raise --max-seconds or cut it with its text", info)
    ranges = split_points(wav, SAMPLE_RATE, job.max_seconds) if job.split else [(0, len(wav))]
    segments, rejected = [], []
    for k, (start, end) in enumerate(ranges):
        name = job.rel if len(ranges) == 1 else f"{job.rel}-{k:03d}"
        piece = wav[start:end]  # (n,)
        if len(ranges) > 1 and is_silent(piece, job.silence_db):
            rejected.append({"reason": SILENCE, "detail": f"{job.src} segment {k}: silent", "segment": k})
            continue
        write_audio(Path(job.out_root) / (name + SUFFIX), piece, SAMPLE_RATE)
        segments.append({"audio": name + SUFFIX, "duration": round(len(piece) / SAMPLE_RATE, 4)})
    return {"status": "ok", "info": info, "segments": segments, "rejected": rejected}


def _pool(workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: the parent may hold torch threads (w2v pretrain calls prep), which fork can deadlock
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method))


def convert_all(jobs: list[Job], workers: int, on_result) -> None:
    """Convert `jobs` with `workers` processes (0: in this process), calling `on_result(job, result)`
    as each finishes. A worker that dies (a decoder crash) costs a rejection, not the run."""
    if workers == 0:
        for job in jobs:
            on_result(job, convert(job))
        return
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    todo, finished = iter(jobs), set()
    try:
        with _pool(workers) as pool:
            running = {}
            while True:
                while len(running) < 4 * workers and (job := next(todo, None)) is not None:
                    running[pool.submit(convert, job)] = job
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    on_result(job, _result(future, job))
                    finished.add(job)
    except BrokenProcessPool:
        for job in jobs:  # find the culprit: each unfinished file alone in a fresh process
            if job not in finished:
                on_result(job, _isolated(job))


def _result(future, job: Job) -> dict:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a result that could not be pickled back
        return rejection(DECODER_ERROR, f"{job.src}: {type(e).__name__}: {e}")


def _isolated(job: Job) -> dict:
    from concurrent.futures.process import BrokenProcessPool

    try:
        with _pool(1) as pool:
            return pool.submit(convert, job).result()
    except BrokenProcessPool:
        return rejection(DECODER_ERROR, f"{job.src}: the decoder crashed on this file")
