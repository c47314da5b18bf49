"""Training-time augmentation: speed perturbation of items, and audio that sounds like users' audio.

B = utterances in a batch, N = samples (16 kHz).

Speed perturbation (Ko et al. 2015) resamples items before collation. The other augmentations act
on a collated batch, row by row inside each row's length, each applied with probability `prob`, in
the order sound takes from a room to a file:
- `reverb`: a synthetic room (exponentially decaying noise, RT60 0.15-0.8 s, a direct path).
- `babble`: 1-3 other utterances of the batch mixed in at 0-20 dB SNR (speech babble from the corpus).
- `noise`: white, pink or brown noise at 0-20 dB SNR.
- `telephone`: 8 kHz band (300-3400 Hz) and G.711 mu-law 8-bit samples.
- `codec`: a lossy codec round trip (MP3 or Ogg/Vorbis at a low bitrate) through libsndfile.
- `gain`: a level change of -20 to +20 dB, clipped at full scale as a recorder would.

Written here with numpy, soxr and soundfile (already dependencies) rather than taken from a library:
the audio-augmentation libraries pull in scipy, librosa or torchaudio for what is a few FFTs here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
import torch

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.loader import Batch, Item

KINDS = ("reverb", "babble", "noise", "telephone", "codec", "gain")  # the order they are applied in
SNR_DB = (0.0, 20.0)
RT60_S = (0.15, 0.8)
GAIN_DB = (-20.0, 20.0)
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU = 255.0  # G.711 mu-law
CODECS = (("MP3", "MPEG_LAYER_III"), ("OGG", "VORBIS"))
CODEC_LEVEL = (0.6, 0.95)  # libsndfile's compression level, 1 the lowest bitrate (MP3 refuses 1 at 16 kHz)


def perturb_speed(
    items: Sequence[Item], factors: Sequence[float], generator: torch.Generator | None = None
) -> list[Item]:
    """Each item played f times faster, f drawn uniformly from `factors` (speed perturbation, Ko et
    al. 2015): resampling from f x 16 kHz to 16 kHz shifts tempo, pitch and formants together, so
    a few voices sound like more. Labels are unchanged."""
    out = []
    for it in items:
        f = float(factors[int(torch.randint(len(factors), (1,), generator=generator))])
        if f == 1.0:
            out.append(it)
            continue
        wav = soxr.resample(it.wav.numpy(), SAMPLE_RATE * f, SAMPLE_RATE, quality="HQ")
        wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        out.append(Item(it.id, wav, wav.shape[0], it.labels))
    return out


def perturbed_collate(items: Sequence[Item], generator=None, *, collate, factors: Sequence[float]) -> Batch:
    return collate(perturb_speed(items, factors, generator), generator=generator)


@dataclass(frozen=True)
class Augment:
    """Which augmentations a run applies (`--augment`), each to an utterance with probability `prob`."""

    kinds: tuple[str, ...]
    prob: float = 0.2
    keep_clean: bool = False  # keep the waveforms before augmentation as `batch.clean`

    def __call__(self, batch: Batch, rng: np.random.Generator) -> Batch:
        """`batch` with each row augmented in place inside its length; padding stays zero."""
        if self.keep_clean:
            batch.clean = batch.waveforms.clone()
        wav = batch.waveforms.numpy()  # (B, N), shares memory with the batch
        lengths = [int(n) for n in batch.lengths]
        originals = [wav[i, :n].copy() for i, n in enumerate(lengths)] if "babble" in self.kinds else []
        for i, n in enumerate(lengths):
            x = wav[i, :n].astype(np.float64)
            for kind in KINDS:
                if kind in self.kinds and rng.random() < self.prob:
                    if kind == "babble":
                        others = originals[:i] + originals[i + 1 :]
                        x = add_babble(x, others, rng) if others else x
                    else:
                        x = APPLY[kind](x, rng)
            wav[i, :n] = x.astype(np.float32)
        return batch


def augmented_collate(items: Sequence[Item], generator=None, *, collate, augment: Augment) -> Batch:
    """`collate`, then `augment`, seeded from the batch's generator (the same batch augments alike
    whatever the number of loader workers)."""
    batch = collate(items, generator=generator)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return augment(batch, np.random.default_rng(seed))


def parse_kinds(text: str) -> tuple[str, ...]:
    """`all`, or a comma-separated subset of KINDS, as a tuple in KINDS order (empty for `none`)."""
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    if names == {"all"}:
        return KINDS
    if names <= {"none", ""}:
        return ()
    unknown = sorted(names - set(KINDS))
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(unknown)}: choose from all, none, {', '.join(KINDS)}"
        )
    return tuple(k for k in KINDS if k in names)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that RMS(speech) / RMS(noise) is `snr_db` (noise tiled or cut to fit)."""
    if noise.shape[0] < speech.shape[0]:
        noise = np.tile(noise, -(-speech.shape[0] // max(noise.shape[0], 1)))
    noise = noise[: speech.shape[0]]
    s, n = _rms(speech), _rms(noise)
    if s == 0.0 or n == 0.0:
        return speech
    return speech + noise * (s / n / 10 ** (snr_db / 20))


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent: 0 white, 1 pink, 2 brown (shaped in the FFT domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    return np.fft.irfft(spectrum / f ** (exponent / 2), n)


def add_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float | None = None) -> np.ndarray:
    snr = rng.uniform(*SNR_DB) if snr_db is None else snr_db
    return mix_at_snr(x, colored_noise(x.shape[0], float(rng.choice([0.0, 1.0, 2.0])), rng), snr)


def add_babble(x: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """1-3 of `others` at equal level, from random offsets, together at 0-20 dB below `x`."""
    picks = rng.choice(len(others), size=min(len(others), int(rng.integers(1, 4))), replace=False)
    babble = np.zeros_like(x)
    for k in picks:
        o = np.asarray(others[k], dtype=np.float64)
        if o.size == 0 or _rms(o) == 0.0:
            continue
        o = np.roll(np.tile(o, -(-x.shape[0] // o.shape[0]))[: x.shape[0]], int(rng.integers(x.shape[0])))
        babble += o / _rms(o)
    return mix_at_snr(x, babble, rng.uniform(*SNR_DB)) if _rms(babble) else x


def room_impulse(rt60: float, rng: np.random.Generator, direct_db: float = 0.0) -> np.ndarray:
    """A synthetic room: a unit direct path, then noise decaying by 60 dB in `rt60` seconds, whose
    energy is `direct_db` below the direct path's (Schroeder's exponential model)."""
    t = np.arange(max(int(rt60 * SAMPLE_RATE), 2)) / SAMPLE_RATE
    tail = rng.standard_normal(t.shape[0]) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB
    tail[0] = 0.0
    tail *= 10 ** (-direct_db / 20) / max(np.sqrt(np.sum(tail**2)), 1e-12)
    tail[0] = 1.0
    return tail


def add_reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h = room_impulse(rng.uniform(*RT60_S), rng, direct_db=rng.uniform(-6.0, 6.0))
    n = x.shape[0] + h.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.shape[0]]
    peak = np.max(np.abs(y)) if y.size else 0.0
    return y * (np.max(np.abs(x)) / peak) if peak > 0 else y


def telephone(x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """8 kHz sampling, the 300-3400 Hz band and mu-law 8-bit samples (G.711), back at 16 kHz."""
    if x.shape[0] < 64:
        return x
    narrow = soxr.resample(x, SAMPLE_RATE, TELEPHONE_RATE)
    spectrum = np.fft.rfft(narrow)
    f = np.fft.rfftfreq(narrow.shape[0], 1 / TELEPHONE_RATE)
    spectrum[(f < TELEPHONE_BAND_HZ[0]) | (f > TELEPHONE_BAND_HZ[1])] = 0
    narrow = np.clip(np.fft.irfft(spectrum, narrow.shape[0]), -1.0, 1.0)
    companded = np.sign(narrow) * np.log1p(MU * np.abs(narrow)) / np.log1p(MU)
    companded = np.round(companded * 127) / 127  # 8 bits
    narrow = np.sign(companded) * np.expm1(np.abs(companded) * np.log1p(MU)) / MU
    y = soxr.resample(narrow, TELEPHONE_RATE, SAMPLE_RATE)
    return np.pad(y, (0, max(0, x.shape[0] - y.shape[0])))[: x.shape[0]]


def codec(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A round trip through a lossy codec at a low bitrate; the result is cut or padded to x's length.
    An encoder that refuses (another libsndfile build, another setting) leaves x as it was: an
    augmentation must never stop a training run."""
    fmt, subtype = CODECS[int(rng.integers(len(CODECS)))]
    buf = io.BytesIO()
    level = float(rng.uniform(*CODEC_LEVEL))
    try:
        sf.write(
            buf, np.clip(x, -1.0, 1.0), SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=level
        )
        buf.seek(0)
        y, _ = sf.read(buf, dtype="float64")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return x
    return np.pad(y, (0, max(0, x.shape[0] - y.shape[0])))[: x.shape[0]]


def gain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x * 10 ** (rng.uniform(*GAIN_DB) / 20), -1.0, 1.0)


APPLY = {"reverb": add_reverb, "noise": add_noise, "telephone": telephone, "codec": codec, "gain": gain}
