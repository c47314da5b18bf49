"""Audio decoding and resampling: soundfile (libsndfile) to read, soxr to resample, mono float32 out."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

from w2vcli.errors import W2VError

SAMPLE_RATE = 16_000


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
