"""Live audio sources for `w2v listen`: raw PCM from a pipe or FIFO, an audio file, or a microphone.

Each source is an iterator of mono float32 blocks at 16 kHz (N,), small enough (~32-100 ms) that the
stream loop sees speech as it arrives. Raw PCM is read with `read1`, which returns whatever the pipe
holds instead of waiting for a full block; other rates are resampled with soxr's streaming
resampler, as `data/chunking.read_blocks` does for files.
"""

from __future__ import annotations

import os
import queue
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

from w2vcli.data.audio import RAW_SUFFIXES, SAMPLE_RATE
from w2vcli.errors import UsageError, W2VError

SAMPLE_FORMATS = {"s16le": ("<i2", 32768.0), "f32le": ("<f4", 1.0)}  # dtype, full scale
READ_SECONDS = 0.032  # what one read asks a pipe for: one VAD frame at 16 kHz
MIC_QUEUE_BLOCKS = 1000  # ~30 s of audio between the microphone's callback and the stream loop
MIC_EXTRA = "--mic needs sounddevice: pip install 'w2vcli[listen]'"


@dataclass(frozen=True)
class PcmFormat:
    rate: int = SAMPLE_RATE
    channels: int = 1
    sample_format: str = "s16le"

    def check(self) -> PcmFormat:
        if self.sample_format not in SAMPLE_FORMATS:
            raise UsageError(
                f"--sample-format {self.sample_format}: expected one of {', '.join(SAMPLE_FORMATS)}"
            )
        if not 1000 <= self.rate <= 384_000:
            raise UsageError(f"--rate {self.rate}: expected a sample rate in Hz between 1000 and 384000")
        if not 1 <= self.channels <= 64:
            raise UsageError(f"--channels {self.channels}: expected 1 to 64")
        return self

    @property
    def frame_bytes(self) -> int:
        return np.dtype(SAMPLE_FORMATS[self.sample_format][0]).itemsize * self.channels

    def describe(self) -> str:
        return f"{self.sample_format}, {self.rate} Hz, {self.channels} channel{'s' * (self.channels > 1)}"


class _To16k:
    """Downmix (n, C) -> (n,) and resample to 16 kHz, block by block."""

    def __init__(self, rate: int):
        self.stream = (
            soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            if rate != SAMPLE_RATE
            else None
        )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:  # (n, C)
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        return self.stream.resample_chunk(mono, last=last) if self.stream is not None else mono


def raw_blocks(stream: BinaryIO, fmt: PcmFormat) -> Iterator[np.ndarray]:
    """Raw interleaved PCM from a pipe, FIFO or file until end of file."""
    dtype, scale = SAMPLE_FORMATS[fmt.sample_format]
    to16k = _To16k(fmt.rate)
    want = max(1, int(READ_SECONDS * fmt.rate)) * fmt.frame_bytes
    read = getattr(stream, "read1", stream.read)
    rest = b""
    while True:
        data = read(want)
        if not data:
            break
        data = rest + data
        n = len(data) // fmt.frame_bytes * fmt.frame_bytes
        rest = data[n:]
        if n:
            x = np.frombuffer(data[:n], dtype=dtype).reshape(-1, fmt.channels).astype(np.float32) / scale
            yield to16k(x)  # (n, C) -> (n',)
    if to16k.stream is not None:
        yield to16k(np.zeros((0, 1), np.float32), last=True)


def is_raw(path: Path) -> bool:
    """A FIFO, character device or .raw/.pcm file holds bare PCM; anything else is an audio file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise W2VError(f"{path}: {e.strerror or e}") from None
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or path.suffix.lower() in RAW_SUFFIXES


def path_blocks(path: Path, fmt: PcmFormat) -> Iterator[np.ndarray]:
    """A FIFO or raw file as PCM in `fmt`; an audio file (WAV, FLAC, ...) decoded at its own rate."""
    if is_raw(path):
        with open(path, "rb", buffering=0) as f:
            yield from raw_blocks(f, fmt)
        return
    from w2vcli.data.chunking import read_blocks

    yield from read_blocks(path)


def open_mic(device: str | None, stop) -> Iterator[np.ndarray]:
    """The microphone (sounddevice/PortAudio) at 16 kHz mono if it allows, else resampled; `stop` is a
    threading.Event. Checks the library and the device at once (a one-line error), then returns the
    blocks. The callback never blocks: blocks beyond MIC_QUEUE_BLOCKS are dropped."""
    sd = import_sounddevice()
    dev = int(device) if device and device.isdigit() else (device or None)
    try:
        info = sd.query_devices(dev, "input")
    except (ValueError, sd.PortAudioError) as e:
        raise W2VError(
            f"--mic {device or '(default)'}: no such input device ({e}); list them with: python -m sounddevice"
        ) from None
    rate = SAMPLE_RATE
    try:
        sd.check_input_settings(dev, channels=1, samplerate=rate, dtype="float32")
    except (ValueError, sd.PortAudioError):
        rate = int(info["default_samplerate"])
    return _mic_blocks(sd, dev, rate, stop)


def _mic_blocks(sd, dev, rate: int, stop) -> Iterator[np.ndarray]:
    to16k = _To16k(rate)
    blocks: queue.Queue = queue.Queue(maxsize=MIC_QUEUE_BLOCKS)

    def callback(indata, frames, time, status):  # PortAudio's thread: copy and return at once
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            pass

    with sd.InputStream(dev, rate, int(READ_SECONDS * rate), channels=1, dtype="float32", callback=callback):
        while not stop.is_set():
            try:
                yield to16k(blocks.get(timeout=0.1))  # (n, 1) -> (n',)
            except queue.Empty:
                continue


def import_sounddevice():
    """sounddevice, or a one-line error when the package or the PortAudio library is missing."""
    try:
        import sounddevice
    except ImportError:
        raise W2VError(MIC_EXTRA) from None
    except OSError as e:  # the package is there, libportaudio is not
        raise W2VError(f"--mic needs the PortAudio library (apt install libportaudio2): {e}") from None
    return sounddevice
