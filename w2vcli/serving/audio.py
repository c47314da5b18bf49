"""Uploads decoded in memory: bytes -> mono float32 at 16 kHz (N,), or an ApiError that says why not.

libsndfile reads from a BytesIO, so an upload never becomes a file. Blocks, downmix and soxr
resampling are those of `data/chunking.read_blocks`, so the server hears what `w2v transcribe`
hears. A too-long upload is refused from its header when the header says, else while decoding, as
soon as the limit is passed: a 2-hour file is never decoded whole.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.chunking import BLOCK_SECONDS
from w2vcli.serving.errors import ApiError

FORMATS_HINT = "send WAV, FLAC, OGG (Vorbis/Opus) or MP3"


def shown_name(filename: str | None) -> str:
    """The client's file name, safe to echo in a one-line message."""
    name = "".join(c if c.isprintable() else "?" for c in (filename or "upload"))
    return name if len(name) <= 80 else name[:77] + "..."


def decode_upload(data: bytes, filename: str | None, max_seconds: float) -> np.ndarray:
    name = shown_name(filename)
    if not data:
        raise ApiError(400, f"{name}: empty file (0 bytes)", "empty_file")
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:  # TypeError: a format without a header
        if "not recognised" in str(e) or isinstance(e, TypeError):
            head = data[:512]
            kind = "text" if all(32 <= b < 127 or b in b"\t\r\n" for b in head) else "unknown data"
            raise ApiError(
                415, f"{name}: not an audio file ({kind}); {FORMATS_HINT}", "unsupported_audio_format"
            ) from None
        reason = str(e).split(": ", 1)[-1]
        raise ApiError(400, f"{name}: corrupt audio ({reason})", "invalid_audio") from None
    with f:
        return _decode(f, name, max_seconds)


def _too_long(name: str, seconds: float, max_seconds: float) -> ApiError:
    return ApiError(
        400,
        f"{name}: {seconds:.1f} s of audio is longer than this server's limit of {max_seconds:g} s; "
        "cut it into shorter files",
        "audio_too_long",
    )


def _decode(f: sf.SoundFile, name: str, max_seconds: float) -> np.ndarray:
    sr, frames = f.samplerate, f.frames
    if frames == 0:
        raise ApiError(400, f"{name}: no audio samples (0 s)", "empty_audio")
    if sr > 0 and frames / sr > max_seconds:
        raise _too_long(name, frames / sr, max_seconds)
    # libsndfile quietly trims a WAV whose data chunk claims more bytes than the file holds
    truncated = any(line.startswith("data") and "should be" in line for line in f.extra_info.splitlines())
    stream = (
        soxr.ResampleStream(sr, SAMPLE_RATE, 1, dtype="float32", quality="HQ") if sr != SAMPLE_RATE else None
    )
    pieces, read = [], 0
    try:
        for block in f.blocks(max(1, int(BLOCK_SECONDS * sr)), dtype="float32", always_2d=True):  # (n, C)
            read += len(block)
            if read > max_seconds * sr:
                raise _too_long(name, read / sr, max_seconds)
            if not np.isfinite(block).all():
                raise ApiError(400, f"{name}: NaN or Inf samples near {read / sr:.2f} s", "invalid_audio")
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]  # (n,)
            pieces.append(stream.resample_chunk(mono) if stream is not None else mono)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ApiError(
            400, f"{name}: corrupt or truncated after {read / sr:.2f} s ({e})", "invalid_audio"
        ) from None
    if truncated or read < frames * 0.99:
        raise ApiError(400, f"{name}: truncated (the header promises {frames / sr:.2f} s)", "invalid_audio")
    if stream is not None:
        pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    wav = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)  # (N,)
