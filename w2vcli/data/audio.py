"""Audio decoding, checking, splitting and writing: soundfile (libsndfile) in, soxr to resample, mono float32.

N is a number of samples, C a number of channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from w2vcli.errors import W2VError

SAMPLE_RATE = 16_000
BLOCK_FRAMES = 1 << 16
CLIP_LEVEL = 0.99  # 8-bit full scale is 127/128, so "at full scale" must sit a little under 1.0
CLIP_RUN = 3  # a flat top of 3+ equal samples at full scale is clipping; a single peak there is just loud

# Rejection reasons: short, stable keys (they group the summary table and `rejected.jsonl`).
EMPTY, NOT_AUDIO, CORRUPT, TRUNCATED, UNREADABLE = (
    "empty file",
    "not audio",
    "corrupt",
    "truncated",
    "unreadable",
)
SILENCE, NONFINITE, CLIPPING = "silence", "nan/inf samples", "clipping"
RAW_SUFFIXES = frozenset({".raw", ".pcm"})  # libsndfile reads these only when told the rate and encoding


class BadAudio(W2VError):
    """A file prep must skip; `reason` is one of the keys above, the message says why in full."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str  # container, e.g. "WAV"
    subtype: str  # encoding, e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any file libsndfile reads into mono float32 at `sample_rate`.  # (N,)"""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise W2VError(f"cannot decode audio {path}: {e}") from None
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def _open_failure(path: Path, e: Exception) -> BadAudio:
    """Turn libsndfile's generic "cannot open" into the reason a user can act on."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except PermissionError:
        return BadAudio(UNREADABLE, f"{path}: permission denied")
    except OSError as oe:
        return BadAudio(UNREADABLE, f"{path}: {oe.strerror or oe}")
    if not head:
        return BadAudio(EMPTY, f"{path}: empty file (0 bytes)")
    msg = str(e).split(": ", 1)[-1] if ": " in str(e) else str(e)
    if "not recognised" in msg:
        kind = "text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "unknown data"
        return BadAudio(NOT_AUDIO, f"{path}: not an audio file ({kind})")
    return BadAudio(CORRUPT, f"{path}: corrupt or truncated ({msg})")


def open_audio(path: Path) -> sf.SoundFile:
    """An open libsndfile handle for reading in blocks; raises BadAudio with the reason it cannot open."""
    if Path(path).suffix.lower() in RAW_SUFFIXES:
        raise BadAudio(
            NOT_AUDIO,
            f"{path}: headerless raw PCM: its sample rate and encoding are unknown; convert it first, "
            f"e.g. `sox -t raw -r 16000 -e signed -b 16 -c 1 {path} {Path(path).with_suffix('.wav')}`",
        )
    try:
        try:
            os.fsencode(path).decode("utf-8")
        except UnicodeDecodeError:  # libsndfile takes UTF-8 names only: hand it the open file instead
            return sf.SoundFile(os.open(path, os.O_RDONLY), closefd=True)
        return sf.SoundFile(str(path))
    except (
        sf.LibsndfileError,
        RuntimeError,
        OSError,
        TypeError,
    ) as e:  # TypeError: a format without a header
        raise _open_failure(path, e) from None


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Header facts without decoding; raises BadAudio for anything libsndfile cannot open."""
    with open_audio(Path(path)) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)


def _header_overstates_length(f: sf.SoundFile) -> bool:
    # libsndfile quietly trims a WAV whose data chunk claims more bytes than the file holds
    return any(line.startswith("data") and "should be" in line for line in f.extra_info.splitlines())


def decode_checked(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, allow_clipping: bool = False
) -> tuple[np.ndarray, AudioInfo]:
    """Decode to mono float32 at `sample_rate` block by block, rejecting truncated, non-finite or
    clipped input. Memory is bounded by the output, not by the source rate and channel count.

    Returns (wav, info) with wav of shape (N,). Raises BadAudio.
    """
    path = Path(path)
    with open_audio(path) as f:
        info = AudioInfo(f.samplerate, f.channels, f.frames, f.format, f.subtype)
        if info.frames == 0:
            raise BadAudio(EMPTY, f"{path}: no audio samples")
        truncated = _header_overstates_length(f)
        stream = soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
        pieces, read, clipped = [], 0, 0
        try:
            for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):  # (n, C)
                if not np.isfinite(block).all():
                    raise BadAudio(
                        NONFINITE, f"{path}: NaN or Inf samples near {read / info.sample_rate:.2f} s"
                    )
                clipped += _clipped_samples(block)
                read += len(block)
                mono = block.mean(axis=1) if info.channels > 1 else block[:, 0]  # (n,)
                pieces.append(stream.resample_chunk(mono) if info.sample_rate != sample_rate else mono)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadAudio(CORRUPT, f"{path}: decoding failed after {read} samples ({e})") from None
    if info.sample_rate != sample_rate:
        pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    if truncated or read < info.frames * 0.99:
        raise BadAudio(
            TRUNCATED, f"{path}: truncated (header promises {info.frames} samples, file holds fewer)"
        )
    if not allow_clipping and clipped > 0.001 * read * info.channels:
        raise BadAudio(
            CLIPPING, f"{path}: clipped ({100 * clipped / (read * info.channels):.2f}% of samples)"
        )
    wav = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)  # (N,)
    peak = float(np.abs(wav).max(initial=0.0))
    if peak > 1.0:  # float sources may exceed full scale; scale down rather than clip on write
        wav = wav * (0.99 / peak)
    return np.ascontiguousarray(wav, dtype=np.float32), info


def _clipped_samples(block: np.ndarray) -> int:
    """Samples in flat runs (equal values) of CLIP_RUN or more at full scale, over all channels.
    Equality matters: a loud low tone lingers near full scale for many samples without clipping.

    block: (n, C)
    """
    flat = (np.abs(block[1:]) >= CLIP_LEVEL) & (np.abs(np.diff(block, axis=0)) < 1e-6)  # (n-1, C)
    run = flat[CLIP_RUN - 2 :].copy()
    for k in range(1, CLIP_RUN - 1):
        run &= flat[CLIP_RUN - 2 - k : len(flat) - k]
    return int(run.sum())


def is_silent(wav: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the loudest sample is below `threshold_db` dBFS (digital silence, dither, hiss)."""
    return wav.size == 0 or float(np.abs(wav).max()) < 10 ** (threshold_db / 20)


def split_points(wav: np.ndarray, sample_rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """Cut a long recording into segments no longer than `max_seconds`, each cut at the quietest
    point (smoothed 10 ms frame energy) between half the limit and the limit; the last two
    segments are balanced so no tiny tail is left. Returns [(start, end)) sample ranges.
    """
    n, limit = len(wav), int(max_seconds * sample_rate)
    if n <= limit:
        return [(0, n)]
    hop = max(1, sample_rate // 100)
    frames = len(wav) // hop
    energy = (wav[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)  # (F,)
    energy = np.convolve(energy, np.ones(5) / 5, mode="same")  # cut inside a pause, not at one quiet frame
    cuts, start = [], 0
    while n - start > limit:
        rest = n - start
        lo, hi = limit // 2, limit
        if rest <= 2 * limit:  # the last cut: both remaining parts must fit and neither be tiny
            lo, hi = max(lo, rest - limit), min(hi, rest - limit // 2)
        f_lo, f_hi = -(-(start + lo) // hop), (start + hi) // hop
        if f_hi <= f_lo:
            cut = start + hi
        else:
            cut = (f_lo + _latest_quietest(energy[f_lo:f_hi])) * hop
        cuts.append((start, cut))
        start = cut
    cuts.append((start, n))
    return cuts


def _latest_quietest(energy: np.ndarray) -> int:
    """Middle of the latest run of (near-)minimal frames: long segments, cut mid-pause."""
    quiet = np.flatnonzero(energy <= energy.min() * 1.01 + 1e-12)
    breaks = np.flatnonzero(np.diff(quiet) > 1)
    start = quiet[breaks[-1] + 1] if len(breaks) else quiet[0]
    return int(start + quiet[-1]) // 2


def write_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono (FLAC or WAV by suffix) atomically: a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # pid: workers never share a temp name
    try:
        sf.write(str(tmp), wav, sample_rate, format=fmt, subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
