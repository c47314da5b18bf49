"""One file's conversion for `w2v prep`, run in a worker process: decode, check, split, write.

It never raises: whatever goes wrong with one file becomes a rejection, so a broken file (or a
decoder bug) never stops the run. The result is a plain dict, so it can be cached as JSON.
A job with `cuts` (Kaldi segments, NeMo offsets) decodes its recording once and writes each cut.
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
OUTSIDE, COMMAND_FAILED = "segment outside its recording", "command failed"
SUFFIX = ".flac"  # lossless and about half the size of WAV
CUT_SLACK = 0.1  # seconds a cut may end past its recording (toolkits round times): trimmed, not rejected
COMMAND_TIMEOUT = 600.0  # seconds a wav.scp command may run


@dataclass(frozen=True)
class Job:
    src: str  # absolute path of the source file
    out_root: str  # absolute folder the mirror is written into
    rel: str  # mirror path without suffix
    max_seconds: float
    split: bool  # False when the file has a transcript: text cannot be split without an alignment
    allow_clipping: bool = False
    silence_db: float = -60.0
    cuts: tuple = ()  # ((output name, start s, end s or None), ...): utterances cut from `src`
    command: tuple = ()  # argv writing the audio to stdout; `src` is then the command line

    def key(self) -> dict:
        """What the output depends on besides the source file itself (for the resume cache)."""
        d = asdict(self)
        del d["src"]
        for name in ("cuts", "command"):  # absent when unused, so older caches still match
            d[name] = [list(c) if isinstance(c, tuple) else c for c in d[name]]
            if not d[name]:
                del d[name]
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
    wav, src_info = _decode(job)  # (N,)
    info = {
        "sample_rate": src_info.sample_rate,
        "channels": src_info.channels,
        "format": src_info.format,
        "subtype": src_info.subtype,
        "duration": round(len(wav) / SAMPLE_RATE, 4),
    }
    if job.cuts:
        return _cut(job, wav, info)
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


def _decode(job: Job):
    if not job.command:
        return decode_checked(job.src, SAMPLE_RATE, allow_clipping=job.allow_clipping)
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="w2v-prep-") as tmp:
        path = Path(tmp) / "audio"
        try:
            with open(path, "wb") as f:  # no shell: argv as shlex split it
                proc = subprocess.run(job.command, stdout=f, stderr=subprocess.PIPE, timeout=COMMAND_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BadAudio(COMMAND_FAILED, f"{job.src}: {e}") from None
        if proc.returncode != 0:
            why = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise BadAudio(COMMAND_FAILED, f"{job.src}: exit status {proc.returncode} {why[0]}".strip())
        try:
            return decode_checked(path, SAMPLE_RATE, allow_clipping=job.allow_clipping)
        except BadAudio as e:
            raise BadAudio(e.reason, str(e).replace(str(path), job.src)) from None


def _cut(job: Job, wav, info: dict) -> dict:
    """Each cut of one decoded recording, checked and written like a file of its own."""
    segments, rejected = [], []
    for name, start, end in job.cuts:
        a = round(start * SAMPLE_RATE)
        b = len(wav) if end is None else round(end * SAMPLE_RATE)
        where = f"{job.src} [{start:g}-{'end' if end is None else f'{end:g}'} s] ({name})"
        if b > len(wav) + CUT_SLACK * SAMPLE_RATE or b <= a or a >= len(wav):
            detail = f"{where}: the recording lasts {info['duration']:.2f} s"
            rejected.append({"reason": OUTSIDE, "detail": detail, "segment": name})
            continue
        piece = wav[a : min(b, len(wav))]  # (n,)
        if is_silent(piece, job.silence_db):
            rejected.append({"reason": SILENCE, "detail": f"{where}: silent", "segment": name})
            continue
        if not job.split and len(piece) > job.max_seconds * SAMPLE_RATE:
            detail = f"{where}: {len(piece) / SAMPLE_RATE:.1f} s > --max-seconds {job.max_seconds:g}"
            rejected.append({"reason": TOO_LONG, "detail": detail, "segment": name})
            continue
        ranges = split_points(piece, SAMPLE_RATE, job.max_seconds) if job.split else [(0, len(piece))]
        for k, (s, e) in enumerate(ranges):
            out = name if len(ranges) == 1 else f"{name}-{k:03d}"
            write_audio(Path(job.out_root) / (out + SUFFIX), piece[s:e], SAMPLE_RATE)
            segments.append({"audio": out + SUFFIX, "duration": round((e - s) / SAMPLE_RATE, 4), "cut": name})
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
