"""`w2v transcribe --vad`: files cut at pauses by voice activity detection instead of in fixed chunks.

Each file is read in blocks (data/chunking.read_blocks) through the detector and segmenter of
`w2v listen` (serving/vad.py); each utterance, silence padded on both sides and at most
`VadOptions.max_seconds` long, is transcribed alone by `transcribe_waveforms` (the same engines and
decoding), and the results are joined with their word times made absolute. Silence between
utterances is never run through the model, and a subtitle cue never spans two utterances. The
result's `segments` lists the utterances: `{"start", "end", "text"}` in seconds. Memory holds one
utterance, whatever the file's length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import soundfile as sf

from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.chunking import read_blocks
from w2vcli.data.inputs import shown
from w2vcli.decoding.formats import Transcription
from w2vcli.errors import W2VError


def transcribe_vad(
    items, loaded, options, on_progress: Callable[[float], None] | None = None, vad_options=None
) -> Iterator[Transcription]:
    """One Transcription per input, in input order; `on_progress(audio_seconds)` after each utterance."""
    from w2vcli.pipelines.transcribe import beam_options
    from w2vcli.serving.vad import SileroVad

    vad = SileroVad()
    beam = beam_options(options)
    for index, item in enumerate(items):
        vad.reset()
        yield _one(item, index, loaded, options, beam, vad, vad_options, on_progress)


def _one(item, index, loaded, options, beam, vad, vad_options, on_progress) -> Transcription:
    from w2vcli.pipelines.transcribe import transcribe_waveforms
    from w2vcli.serving.vad import segment

    result = Transcription(audio=item.audio, index=index, id=item.id)
    t0 = time.perf_counter()
    read = [0]  # samples read so far
    reported = 0
    texts, words, chars, segments = [], [], [], []

    def counted(blocks):
        for b in blocks:
            read[0] += len(b)
            yield b

    try:
        for u in segment(counted(read_blocks(item.path)), vad, vad_options):
            part = next(transcribe_waveforms([u.audio], [item.audio], loaded, options, beam))
            offset = u.start / SAMPLE_RATE
            if part.error is None and part.text:
                texts.append(part.text)
                words += [_shifted(w, offset) for w in part.words]
                chars += [_shifted(c, offset) for c in part.chars or []]
            segments.append(
                {"start": round(offset, 3), "end": round(u.end / SAMPLE_RATE, 3), "text": part.text or ""}
            )
            if on_progress is not None:
                on_progress((min(u.end, read[0]) - reported) / SAMPLE_RATE)
                reported = min(u.end, read[0])
    except (W2VError, OSError, MemoryError, sf.LibsndfileError) as e:
        result.error = shown(str(e) or f"{item.audio}: cannot read ({type(e).__name__})")
        return result
    result.text = " ".join(texts)
    result.duration = round(read[0] / SAMPLE_RATE, 3)
    result.elapsed = round(time.perf_counter() - t0, 3)
    result.words = words
    result.show_words = options.timestamps == "word"
    if options.timestamps == "char":
        result.chars = chars
    result.segments = segments
    return result


def _shifted(entry: dict, offset: float) -> dict:
    return entry | {"start": round(entry["start"] + offset, 3), "end": round(entry["end"] + offset, 3)}
