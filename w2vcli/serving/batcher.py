"""The one object that owns the model: a bounded queue of decoded uploads and the thread that runs them.

Requests that arrive together share one forward pass. The worker takes the oldest job, waits at most
`max_wait` seconds for others (or until a forward pass's worth of audio is waiting; not at all when
the app holds no other request), and hands the group to `pipelines.transcribe.transcribe_waveforms`,
which sorts the chunks by length and cuts them into padded batches of at most `batch_seconds`
(longest x count), so padding stays bounded. The chunking, engines (ONNX Runtime, PyTorch, int8) and
decoding (greedy, beam, LM) are exactly `w2v transcribe`'s, and so is the batch policy
(`forward_batch_seconds`): layer-norm models on PyTorch batch, by default on CUDA only (on the CPU
one input at a time measured faster); ONNX graphs and group-norm models always run one input at a
time. Then each job is its own group, and the HTTP side (upload, decoding) overlaps with the model.

The queue holds at most `max_queue` jobs; `submit` refuses beyond it (the app answers 503 with
Retry-After) instead of letting memory grow. `stop()` lets the worker finish what is queued, then
ends it. The model is loaded in the worker thread, so the server answers /health (503) while loading.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE

log = logging.getLogger("w2vcli.serving")
_STOP = object()


@dataclass(frozen=True)
class BatchLimits:
    max_queue: int = 16  # jobs waiting or running; beyond it submit() refuses (503)
    max_wait: float = 0.02  # seconds the oldest job waits for company before its batch runs


class Overloaded(Exception):
    """The queue is full; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"queue full, retry after {retry_after} s")
        self.retry_after = retry_after


class NotReady(Exception):
    """The model is still loading, failed to load, or the server is stopping."""


@dataclass
class _Job:
    wav: np.ndarray  # (N,) float32 at 16 kHz
    name: str
    future: Future


class Batcher:
    """`start()` loads the model in the worker thread; `submit(wav, name)` -> Future[Transcription]."""

    def __init__(
        self,
        load: Callable[[], tuple],
        limits: BatchLimits = BatchLimits(),
        model_name: str = "w2v",
        announce=None,
    ):
        """`load()` returns (LoadedModel, TranscribeOptions, BeamOptions); called once, in the worker.
        `model_name` is the id /v1/models gives; `announce(message)` hears when the model is ready."""
        self.limits = limits
        self._load = load
        self._queue: queue.Queue = queue.Queue(maxsize=limits.max_queue)
        self._thread = threading.Thread(target=self._run, name="w2v-batcher", daemon=True)
        self._stopping = threading.Event()
        self.ready = threading.Event()  # the model is loaded
        self.settled = threading.Event()  # loaded, or failed to load (load_error says why)
        self._announce = announce or (lambda message: None)
        self.load_error: str | None = None
        self.model_name = model_name
        self._seconds_per_job = 0.5  # running estimate of the worker's time per job, for Retry-After
        self.in_progress: Callable[[], int] | None = None  # requests the app holds (uploading ... answering)
        self.batches = 0  # forward groups run, and the jobs in them: batching at work, for logs and tests
        self.jobs = 0

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the jobs already queued, then end the worker (at most `timeout` seconds)."""
        self._stopping.set()
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, wav: np.ndarray, name: str) -> Future:
        if self._stopping.is_set() or not self.ready.is_set():
            raise NotReady(
                self.load_error or ("stopping" if self._stopping.is_set() else "loading the model")
            )
        job = _Job(wav, name, Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(self.retry_after()) from None
        return job.future

    def retry_after(self) -> int:
        """Whole seconds until the queue has likely drained: queued jobs x their recent cost, at least 1."""
        return max(1, math.ceil(self._queue.qsize() * self._seconds_per_job))

    def _run(self) -> None:
        try:
            loaded, self._options, self._beam = self._load()
        except BaseException as e:  # noqa: BLE001 - a model that cannot load is reported by /health
            self.load_error = f"the model failed to load: {e}"
            self._announce(self.load_error)
            self.settled.set()
            return
        self._loaded = loaded
        self.ready.set()
        self.settled.set()
        from w2vcli.pipelines.transcribe import forward_batch_seconds

        self._batch_seconds = forward_batch_seconds(loaded, self._options)
        how = f"batches up to {self._batch_seconds:g} s" if self._batch_seconds else "one input at a time"
        self._announce(f"ready: {self.model_name} on {loaded.engine} ({loaded.device}), {how}")
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            group, stop = self._gather(job)
            self._transcribe([j for j in group if j.future.set_running_or_notify_cancel()])
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job and those arriving within max_wait, up to a forward pass's audio; the first
        alone when the model runs one input at a time (its answer then leaves as soon as it is done)."""
        group, samples = [first], len(first.wav)
        deadline = time.monotonic() + self.limits.max_wait
        budget = self._batch_seconds * SAMPLE_RATE
        while samples < budget:
            if self._queue.empty() and self.in_progress is not None and self.in_progress() <= len(group):
                break  # no other request is on its way: waiting would only add latency
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return group, True
            group.append(job)
            samples += len(job.wav)
        return group, False

    def _transcribe(self, group: list[_Job]) -> None:
        if not group:
            return
        from w2vcli.pipelines.transcribe import transcribe_waveforms

        t0, done = time.perf_counter(), set()
        try:
            wavs, names = [j.wav for j in group], [j.name for j in group]
            for result in transcribe_waveforms(wavs, names, self._loaded, self._options, self._beam):
                group[result.index].future.set_result(result)  # answered as soon as it is decoded
                done.add(result.index)
        except Exception as e:  # noqa: BLE001 - each waiting request gets the failure, the worker lives on
            log.exception("transcription failed")
            failure: Exception = e
        else:
            failure = RuntimeError("no result for this input")
        for i, j in enumerate(group):
            if i not in done:
                j.future.set_exception(failure)
        per_job = (time.perf_counter() - t0) / len(group)
        self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * per_job
        self.batches += 1
        self.jobs += len(group)
