"""`w2v transcribe` as a library: audio files in, one Transcription per file out, as soon as it is done.

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe
    loaded = load_model("runs/ft")
    for result in transcribe(expand(["clips/"]), loaded, TranscribeOptions(timestamps="word")):
        print(result.audio, result.text, result.words)

Long files are cut into overlapping chunks (data/chunking.py) whose kept frame logits are stitched and
decoded once, so words at chunk borders are neither lost nor doubled and timestamps stay global.
Greedy decoding runs on each chunk as soon as it is computed and stitches hypotheses instead
(the same result), so a long file's memory does not grow with the vocabulary size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.chunking import ChunkPlan, iter_chunks, mean_std, stitch_greedy
from w2vcli.data.inputs import shown
from w2vcli.decoding.ctc import (
    BeamOptions,
    char_timestamps,
    decode,
    greedy_search,
    to_text,
    word_timestamps,
)
from w2vcli.decoding.formats import Transcription, render
from w2vcli.errors import UsageError
from w2vcli.fsutil import OutputLedger
from w2vcli.pipelines._transcribe_engine import Event, Prefetcher, report_progress, run_events
from w2vcli.pipelines._transcribe_inputs import Item, expand

__all__ = [
    "TranscribeOptions",
    "transcribe",
    "transcribe_waveforms",
    "beam_options",
    "forward_batch_seconds",
    "expand",
    "Item",
    "output_paths",
    "open_outputs",
    "write_outputs",
]

CUDA_BATCH_SECONDS = 240.0  # padded audio per batch on a GPU; on the CPU one at a time was faster


@dataclass
class TranscribeOptions:
    chunk_seconds: float = 30.0  # 0: never chunk (memory then grows with the file)
    stride_seconds: float = 2.5  # context each side of a chunk border: 30 s chunks compute 1.2x the audio
    batch_seconds: float | None = None  # None: auto (0 on CPU, CUDA_BATCH_SECONDS on CUDA)
    timestamps: str | None = None  # "word" or "char": added to each result
    beam: int = 1
    lm: str | None = None  # ARPA or KenLM binary
    lm_weight: float = 0.5
    word_score: float = 0.0
    lexicon: str | None = None  # word list or ARPA file: the beam spells only its words
    vad: bool = False  # cut files at pauses found by voice activity detection instead of fixed chunks


def beam_options(options: TranscribeOptions) -> BeamOptions:
    """The search the options ask for, with its LM and lexicon loaded (once: a server keeps it)."""
    lm = None
    if options.lm:
        from w2vcli.decoding.lm import load_lm

        lm = load_lm(options.lm)
    lexicon = None
    if options.lexicon:
        from w2vcli.decoding.lm import ArpaLM, Lexicon

        same_file = options.lm is not None and Path(options.lexicon).resolve() == Path(options.lm).resolve()
        lexicon = (
            Lexicon.from_arpa(lm) if same_file and isinstance(lm, ArpaLM) else Lexicon.load(options.lexicon)
        )
    return BeamOptions(
        beam=max(1, options.beam),
        lm=lm,
        lm_weight=options.lm_weight,
        word_score=options.word_score,
        lexicon=lexicon,
    )


def transcribe(
    items: list[Item],
    loaded,
    options: TranscribeOptions | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[Transcription]:
    """Yield one Transcription per input, as soon as it is done (in input order for one-at-a-time
    runs); `on_progress(audio_seconds)` after each chunk."""
    options = options or TranscribeOptions()
    if options.vad:
        from w2vcli.pipelines._transcribe_vad import transcribe_vad

        yield from transcribe_vad(items, loaded, options, on_progress)
        return
    plan = ChunkPlan.from_seconds(options.chunk_seconds, options.stride_seconds, loaded.config)
    normalize = getattr(loaded, "normalize", False)
    prefetch = Prefetcher([it.path for it in items], plan, normalize)
    events = report_progress(prefetch, on_progress, plan.frame)
    try:
        yield from _results(events, prefetch.pending, items, loaded, options, plan, beam_options(options))
    finally:
        prefetch.close()


def transcribe_waveforms(
    wavs: list[np.ndarray], names: list[str], loaded, options: TranscribeOptions, beam: BeamOptions
) -> Iterator[Transcription]:
    """Waveforms already in memory (mono float32 at 16 kHz: a server's uploads), chunked, run and decoded
    as `transcribe` does; all are ready at once, so layer-norm models on PyTorch run them in
    length-sorted padded batches of up to `options.batch_seconds`. `beam` from `beam_options(options)`."""
    plan = ChunkPlan.from_seconds(options.chunk_seconds, options.stride_seconds, loaded.config)
    items = [Item(Path(n), n, n) for n in names]
    events = _waveform_events(wavs, plan, getattr(loaded, "normalize", False))
    yield from _results(events, lambda: True, items, loaded, options, plan, beam)


def _waveform_events(wavs: list[np.ndarray], plan: ChunkPlan, normalize: bool) -> Iterator[Event]:
    for i, wav in enumerate(wavs):  # wav: (N,)
        chunks = list(iter_chunks([wav], plan))
        if len(chunks[0].wav) < plan.field:
            yield Event("error", i, message=f"too short to transcribe ({len(wav)} samples at 16 kHz)")
            continue
        long = normalize and plan.chunk_frames > 0 and len(wav) > plan.end_sample(plan.chunk_frames)
        stats = mean_std([wav]) if long else None  # every chunk scaled like the whole waveform
        for chunk in chunks:
            yield Event("chunk", i, chunk, stats=stats)
        yield Event("end", i, samples=len(wav))


def forward_batch_seconds(loaded, options: TranscribeOptions) -> float:
    """Padded audio per forward pass; 0: one input at a time. Group-norm feature encoders normalise over
    time, padding included, and our ONNX graphs take no lengths: never pad-batched. Otherwise
    `options.batch_seconds`, by default CUDA_BATCH_SECONDS on CUDA and 0 on the CPU."""
    if loaded.config.feat_extract_norm != "layer" or getattr(loaded, "engine", "torch") != "torch":
        return 0.0
    if options.batch_seconds is not None:
        return options.batch_seconds
    return CUDA_BATCH_SECONDS if getattr(loaded, "device", "cpu").startswith("cuda") else 0.0


def _results(events, more_ready, items, loaded, options, plan, beam) -> Iterator[Transcription]:
    model, config, vocab = loaded.model, loaded.config, loaded.vocab
    device = getattr(loaded, "device", "cpu")
    batch_samples = int(forward_batch_seconds(loaded, options) * SAMPLE_RATE)
    padded = batch_samples > 0
    frame_seconds = config.frame_stride / SAMPLE_RATE

    greedy = beam.beam <= 1 and beam.lm is None

    def reduce(logits: np.ndarray):  # (n, V) kept frames of one chunk
        return greedy_search(logits, vocab.blank_id) if greedy else logits

    normalize = getattr(loaded, "normalize", False)
    for ev, pieces, spent in run_events(
        events, model, device, batch_samples, padded, more_ready, normalize, reduce
    ):
        item = items[ev.index]
        result = Transcription(audio=item.audio, index=ev.index, id=item.id)
        if ev.kind == "error":
            result.error = ev.message
            yield result
            continue
        t0 = time.perf_counter()
        if greedy:
            hyp = stitch_greedy(pieces)
        else:
            emissions = np.concatenate([lg for _, lg in pieces])  # (T, V)
            hyp = decode(emissions, options=beam, blank_id=vocab.blank_id, vocab=vocab)
        result.text = to_text(hyp, vocab)
        result.duration = round(ev.samples / SAMPLE_RATE, 3)
        result.elapsed = round(spent + time.perf_counter() - t0, 3)
        result.words = word_timestamps(hyp, vocab, frame_stride=frame_seconds)
        result.show_words = options.timestamps == "word"
        if options.timestamps == "char":
            result.chars = char_timestamps(hyp, vocab, frame_stride=frame_seconds)
        yield result


def output_paths(item: Item, out_dir: str | os.PathLike, formats: list[str]) -> list[Path]:
    return [Path(out_dir) / f"{item.rel}.{fmt}" for fmt in formats]


def open_outputs(items: list[Item], out_dir: str | os.PathLike, formats: list[str]) -> OutputLedger:
    """The ledger of `out_dir`, after checking that no output would leave the folder or replace a file
    that transcription did not write there (an input, a reference transcript, a user's file)."""
    ledger = OutputLedger(out_dir)
    bad = ledger.conflicts(p for it in items for p in output_paths(it, out_dir, formats))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(
            f"--output-dir {shown(out_dir)}: writing {shown(bad[0])}{more} would replace a file that w2v did "
            "not write or that changed since; choose another --output-dir"
        )
    return ledger


def write_outputs(result: Transcription, item: Item, ledger: OutputLedger, formats: list[str]) -> list[Path]:
    """One file per format, each written atomically (temporary name, then rename) and recorded."""
    paths = output_paths(item, ledger.root, formats)
    for fmt, path in zip(formats, paths, strict=True):
        ledger.write(path, render(result, fmt))
    return paths
