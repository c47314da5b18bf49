"""The live-stream loop of `w2v listen`: audio blocks in, partial and final transcripts out.

One `Listener` owns the model, the voice activity detector, the segmenter and a bounded queue of
16 kHz blocks. `start(blocks)` runs a reader thread that moves blocks from a source
(serving/sources.py) into the queue; iterating `events()` in the caller's thread scores each 32 ms
frame with the VAD, feeds the segmenter (serving/vad.py) and yields:
- `Partial` while a person speaks: the utterance so far, re-decoded each time `step` seconds more
  speech have arrived, and only when the loop has caught up with the queue, so a slow model skips
  partials instead of falling ever further behind;
- `Heard` when an utterance ends (`min_silence` of silence, `max_seconds` reached, end of input, or
  `stop()`): its absolute start and end, text and word times.
`stop()` (Ctrl-C, from a signal handler or another thread) ends the reader; `events()` then decodes
what is queued, flushes the open utterance and returns. Every wait has a timeout.

Decoding is `pipelines.transcribe.transcribe_waveforms`, the same chunking, engines and CTC decoding
as `w2v transcribe`, so a final text equals `w2v transcribe` on the same stretch of audio.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.errors import W2VError
from w2vcli.serving.vad import FRAME, Segmenter, SileroVad, Utterance, VadOptions

QUEUE_BLOCKS = 256  # blocks between the reader and the loop (~8 s of 32 ms reads): a full queue
# makes the reader wait, which fills the pipe, which makes the writer wait
WAIT_SECONDS = 0.1  # the loop's longest sleep on an empty queue, so stop() is seen at once
_END = object()


@dataclass(frozen=True)
class ListenOptions:
    step: float = 0.3  # seconds of new speech between partial results (0: no partials)
    vad: VadOptions = field(default_factory=VadOptions)


@dataclass
class Partial:
    start: float  # seconds from the start of the stream
    text: str


@dataclass
class Heard:
    """One finished utterance; times in seconds from the start of the stream."""

    start: float
    end: float
    text: str
    words: list[dict]  # {"word", "start", "end"}, absolute
    index: int = 0  # 0, 1, 2, ... in the order heard
    elapsed: float = 0.0  # seconds spent decoding it

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text, "words": self.words}


class Listener:
    def __init__(self, loaded, options: ListenOptions | None = None, vad=None, transcribe_options=None):
        from w2vcli.pipelines.transcribe import TranscribeOptions, beam_options

        self.loaded = loaded
        self.options = options or ListenOptions()
        self.vad = vad if vad is not None else SileroVad()
        self.decode_options = transcribe_options or TranscribeOptions()
        self.beam = beam_options(self.decode_options)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.heard = 0

    def warm_up(self) -> None:
        """One decode of a second of silence, so the first partial does not pay for lazy set-up."""
        self.decode(np.zeros(SAMPLE_RATE, np.float32))
        self.vad.reset()

    def start(self, blocks: Iterable[np.ndarray]) -> None:
        self.thread = threading.Thread(
            target=self._read, args=(blocks,), daemon=True, name="w2v-listen-reader"
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop reading; `events()` finishes what is queued and flushes the open utterance."""
        self.stopping.set()

    def join(self, timeout: float = 2.0) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _read(self, blocks: Iterable[np.ndarray]) -> None:
        it = iter(blocks)
        try:
            for block in it:
                if not self._put(block):
                    return
        except W2VError as e:
            self._put(e)
        except OSError as e:
            self._put(W2VError(f"reading the audio failed: {e.strerror or e}"))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            self._put(_END, force=True)

    def _put(self, item, force: bool = False) -> bool:
        while force or not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=WAIT_SECONDS)
                return True
            except queue.Full:
                if force and self.stopping.is_set():
                    return False
        return False

    def events(self) -> Iterator[Partial | Heard]:
        """Partial and final results until the input ends or `stop()`; the open utterance is flushed."""
        seg = Segmenter(self.options.vad)
        rest = np.zeros(0, np.float32)
        shown = (-1, 0)  # (utterance start, speech end) of the last partial
        while True:
            try:
                item = self.queue.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                if self.stopping.is_set():
                    break
                continue
            if item is _END:
                break
            if isinstance(item, W2VError):
                raise item
            buf = np.concatenate((rest, item))
            n = len(buf) // FRAME * FRAME
            frames, rest = buf[:n].reshape(-1, FRAME), buf[n:]  # (F, FRAME)
            probs = self.vad(frames) if len(frames) else []
            for frame, prob in zip(frames, probs, strict=True):
                for u in seg.push(frame, float(prob)):
                    yield self.final(u)
            partial = self._partial(seg, shown)
            if partial is not None:
                shown = partial[1]
                yield partial[0]
        if len(rest):  # the last part-frame, padded
            frame = np.concatenate((rest, np.zeros(FRAME - len(rest), np.float32)))
            for u in seg.push(frame, float(self.vad(frame[None])[0])):
                yield self.final(u)
        for u in seg.flush():
            yield self.final(u)

    def _partial(self, seg: Segmenter, shown: tuple[int, int]):
        """A Partial when step seconds more speech arrived since the last one and nothing is queued."""
        u = seg.current
        if u is None or self.options.step <= 0 or not self.queue.empty():
            return None
        speech_end = u.speech[1]
        since = speech_end - (shown[1] if shown[0] == u.start else u.speech[0])
        if since < self.options.step * SAMPLE_RATE:
            return None
        text = self.decode(u.audio[: speech_end - u.start]).text or ""
        return Partial(round(u.start / SAMPLE_RATE, 3), text), (u.start, speech_end)

    def final(self, u: Utterance) -> Heard:
        t0 = time.perf_counter()
        result = self.decode(u.audio)
        offset = u.start / SAMPLE_RATE
        words = [
            {"word": w["word"], "start": round(w["start"] + offset, 3), "end": round(w["end"] + offset, 3)}
            for w in result.words
        ]
        heard = Heard(
            round(offset, 3),
            round(u.end / SAMPLE_RATE, 3),
            result.text or "",
            words,
            self.heard,
            round(time.perf_counter() - t0, 3),
        )
        self.heard += 1
        return heard

    def decode(self, wav: np.ndarray):
        """One waveform through `w2v transcribe`'s pipeline; a Transcription (text, relative word times)."""
        from w2vcli.decoding.formats import Transcription
        from w2vcli.pipelines.transcribe import transcribe_waveforms

        if len(wav) < self.loaded.config.receptive_field:
            return Transcription(audio="-", index=0, text="")
        results = transcribe_waveforms([wav], ["-"], self.loaded, self.decode_options, self.beam)
        return next(iter(results))
