"""Long audio in bounded memory: stream a file in blocks, cut it into overlapping chunks, stitch frame logits.

N = samples at 16 kHz, T = frames (one per `frame` = 320 samples), V = vocabulary size.
Chunk i keeps global frames [b_i, b_{i+1}) and is run on frames [b_i - stride, b_{i+1} + stride)
(clipped at the file's edges). Because every chunk starts on a frame boundary, its local frame t is
global frame start + t and covers the same samples as in an unchunked run; the stride frames only
give the kept frames context on both sides and are dropped. Concatenating the kept logits gives one
(T, V) emission matrix that is decoded once, so a word crossing a border is neither lost nor doubled
and timestamps need no shifting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from w2vcli.data.audio import SAMPLE_RATE, BadAudio, open_audio
from w2vcli.decoding.ctc import Hypothesis
from w2vcli.errors import UsageError
from w2vcli.model.config import FRAME_STRIDE, RECEPTIVE_FIELD, ModelConfig

BLOCK_SECONDS = 4.0


@dataclass(frozen=True)
class ChunkPlan:
    chunk_frames: int  # frames per chunk, strides included (0: never chunk)
    stride_frames: int  # context frames on each inner side, dropped after the forward
    frame: int = FRAME_STRIDE  # samples per frame (the feature encoder's total stride)
    field: int = RECEPTIVE_FIELD  # samples one frame sees (the feature encoder's receptive field)
    kernels: tuple[int, ...] = ModelConfig.conv_kernel
    strides: tuple[int, ...] = ModelConfig.conv_stride

    @classmethod
    def from_seconds(cls, chunk_seconds: float, stride_seconds: float, config=None) -> ChunkPlan:
        extra = {}
        if config is not None:
            extra = dict(
                frame=config.frame_stride,
                field=config.receptive_field,
                kernels=tuple(config.conv_kernel),
                strides=tuple(config.conv_stride),
            )
        frame = extra.get("frame", FRAME_STRIDE)
        chunk = round(chunk_seconds * SAMPLE_RATE / frame) if chunk_seconds > 0 else 0
        stride = round(stride_seconds * SAMPLE_RATE / frame)
        if chunk and (stride < 1 or chunk - 2 * stride < 1):
            raise UsageError(
                f"--stride-seconds {stride_seconds:g} must be at least {frame / SAMPLE_RATE:g} s and leave "
                f"part of --chunk-seconds {chunk_seconds:g} between the two strides"
            )
        return cls(chunk, stride, **extra)

    def output_frames(self, n: int) -> int:
        """Frames the feature encoder makes from n samples (FeatureEncoder.output_lengths)."""
        for k, s in zip(self.kernels, self.strides, strict=True):
            n = (n - k) // s + 1
        return max(n, 0)

    def end_sample(self, end_frame: int) -> int:
        """Samples needed to compute frames [.., end_frame)."""
        return (end_frame - 1) * self.frame + self.field


@dataclass
class Chunk:
    wav: np.ndarray  # (n,) float32 at 16 kHz
    start_frame: int  # global frame of local frame 0
    keep: tuple[int, int]  # local frames [lo, hi) that belong to this chunk; hi -1 = all to the end
    last: bool  # the file's final chunk


def iter_chunks(blocks: Iterable[np.ndarray], plan: ChunkPlan) -> Iterator[Chunk]:
    """Cut a stream of 16 kHz blocks into chunks; the buffer never holds much more than one chunk."""
    buf = np.zeros(0, np.float32)
    buf_start = 0  # global sample index of buf[0]
    kept = 0  # b_i: first global frame of the next chunk's kept region
    first = True
    for block in blocks:
        buf = np.concatenate((buf, block)) if len(buf) else np.asarray(block, np.float32)
        if plan.chunk_frames <= 0:
            continue
        while True:
            left = 0 if first else plan.stride_frames
            keep_end = kept + plan.chunk_frames - left - plan.stride_frames  # b_{i+1}
            need = plan.end_sample(keep_end + plan.stride_frames)
            if buf_start + len(buf) <= need:  # not sure yet there is more audio after this chunk
                break
            start = (kept - left) * plan.frame
            wav = buf[start - buf_start : need - buf_start]
            yield Chunk(wav, kept - left, (left, left + keep_end - kept), last=False)
            first, kept = False, keep_end
            drop = (kept - plan.stride_frames) * plan.frame - buf_start
            buf, buf_start = buf[drop:], buf_start + drop
    left = 0 if first else plan.stride_frames
    start = (kept - left) * plan.frame
    wav = buf[start - buf_start :]
    if first or plan.output_frames(buf_start + len(buf)) > kept:
        yield Chunk(np.ascontiguousarray(wav), kept - left, (left, -1), last=True)


def stitch(pieces: list[tuple[np.ndarray, tuple[int, int]]]) -> np.ndarray:
    """Concatenate the kept frames of each chunk's logits (T_i, V) into the file's (T, V)."""
    kept = [lg[lo : (hi if hi >= 0 else len(lg))] for lg, (lo, hi) in pieces]
    return np.concatenate(kept) if kept else np.zeros((0, 0), np.float32)


def stitch_greedy(pieces: list[tuple[int, Hypothesis]]) -> Hypothesis:
    """The greedy hypothesis of the whole file from each chunk's greedy hypothesis over its kept frames,
    given as (first global frame, hypothesis in local frames), in frame order. Equals greedy decoding
    of the stitched logits without ever holding them: a token whose run reaches the end of one chunk
    and goes on at the start of the next is one token, as in the unchunked argmax path."""
    ids: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    score = 0.0
    for offset, hyp in pieces:
        score += hyp.score
        for k, (i, a, b) in enumerate(zip(hyp.ids, hyp.starts, hyp.ends, strict=True)):
            if k == 0 and ids and ids[-1] == i and ends[-1] == a + offset:
                ends[-1] = b + offset
                continue
            ids.append(i)
            starts.append(a + offset)
            ends.append(b + offset)
    return Hypothesis(ids, starts, ends, score)


def mean_std(blocks: Iterable[np.ndarray], eps: float = 1e-7) -> tuple[float, float]:
    """Mean and sqrt(variance + eps) of a whole stream, as `normalize_waveform` computes them per input."""
    n, total, squares = 0, 0.0, 0.0
    for b in blocks:
        b = b.astype(np.float64)
        n, total, squares = n + len(b), total + float(b.sum()), squares + float(np.dot(b, b))
    mean = total / max(n, 1)
    return mean, float(np.sqrt(max(squares / max(n, 1) - mean * mean, 0.0) + eps))


def read_blocks(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sample_rate`, decoded and resampled a few seconds at a time. Raises BadAudio."""
    with open_audio(path) as f:
        sr = f.samplerate
        stream = (
            soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ")
            if sr != sample_rate
            else None
        )
        frames = max(1, int(BLOCK_SECONDS * sr))
        read = 0
        try:
            for block in f.blocks(frames, dtype="float32", always_2d=True):  # (n, C)
                read += len(block)
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                yield stream.resample_chunk(mono) if stream is not None else mono
        except (sf.LibsndfileError, RuntimeError) as e:
            raise BadAudio("corrupt", f"{path}: decoding failed after {read} samples ({e})") from None
        if stream is not None:
            yield stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if read == 0:
            raise BadAudio("empty file", f"{path}: no audio samples")
