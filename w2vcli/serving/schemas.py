"""The request fields of `POST /v1/audio/transcriptions` and the answers, shaped as OpenAI's.

Fields (multipart/form-data), as the official clients send them:
- `file` (required): the audio; WAV, FLAC, OGG (Vorbis/Opus), MP3, anything libsndfile reads.
- `model` (required by OpenAI's clients): accepted whatever it names, since a server runs one model;
  `GET /v1/models` says which.
- `response_format`: `json` (default, `{"text"}`), `text`, `srt`, `vtt`, `verbose_json`.
- `timestamp_granularities[]`: `word` and/or `segment`, for `verbose_json` (default: `segment`).
- `language`, `prompt`, `temperature` and the newer OpenAI-only options are accepted and ignored: a
  CTC model has no language switch, no prompt and no sampling. `verbose_json` echoes `language`.
Any other field is refused (400), so a misspelt name is not silently ignored.

The text, SRT and VTT are those `w2v transcribe -f txt|srt|vtt` writes for the same audio; segments
are the subtitle cues (decoding/formats.cues), words are `--timestamps word`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.responses import JSONResponse, PlainTextResponse, Response

from w2vcli.decoding.formats import Transcription, cues, render
from w2vcli.serving.errors import ApiError

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
IGNORED = frozenset(
    {
        "model",
        "language",
        "prompt",
        "temperature",
        "chunking_strategy",
        "include[]",
        "keywords[]",
        "languages[]",
    }
    | {"known_speaker_names[]", "known_speaker_references[]"}
)
KNOWN = (
    frozenset({"file", "response_format", "timestamp_granularities[]", "timestamp_granularities", "stream"})
    | IGNORED
)
TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


@dataclass(frozen=True)
class TranscriptionRequest:
    file: UploadFile
    response_format: str = "json"
    granularities: tuple[str, ...] = ("segment",)  # verbose_json's timestamp_granularities[]
    language: str | None = None  # echoed in verbose_json, otherwise ignored


def _one(form: FormData, key: str) -> str | None:
    values = form.getlist(key)
    if len(values) > 1:
        raise ApiError(400, f"field '{key}' given {len(values)} times; send it once", "duplicate_field")
    if values and not isinstance(values[0], str):
        raise ApiError(400, f"field '{key}' must be a plain value, not a file", "invalid_field")
    return values[0] if values else None


def parse_request(form: FormData) -> TranscriptionRequest:
    """The request's fields checked; every mistake is a 400 that names the field."""
    unknown = sorted({k for k in form.keys() if k not in KNOWN})
    if unknown:
        raise ApiError(
            400, f"unknown field '{unknown[0]}'; expected file, model, response_format, timestamp_granularities[], "
            "language, prompt", "unknown_field",
        )  # fmt: skip
    files = form.getlist("file")
    if not files:
        raise ApiError(
            400, "missing field 'file': send the audio as multipart/form-data field 'file'", "missing_file"
        )
    if len(files) > 1 or not isinstance(files[0], UploadFile):
        raise ApiError(400, "field 'file' must be exactly one uploaded file", "invalid_file")
    fmt = _one(form, "response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format '{fmt[:40]}': expected one of {', '.join(RESPONSE_FORMATS)}",
            "invalid_response_format",
        )
    grains = tuple(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
    bad = [g for g in grains if g not in GRANULARITIES]
    if bad:
        raise ApiError(
            400,
            f"timestamp_granularities[] '{str(bad[0])[:40]}': expected word or segment",
            "invalid_timestamp_granularities",
        )
    if (_one(form, "stream") or "false").lower() not in ("false", "0"):
        raise ApiError(
            400,
            "stream: streamed transcription is not supported; leave stream unset or false",
            "stream_unsupported",
        )
    return TranscriptionRequest(files[0], fmt, grains or ("segment",), _one(form, "language"))  # fmt: skip


def segments(result: Transcription) -> list[dict]:
    """OpenAI's segment objects from the subtitle cues; the Whisper-only scores are neutral constants."""
    spans = cues(result.words) if result.words else [(0.0, float(result.duration or 0.0), result.text or "")]
    return [
        {"id": i, "seek": 0, "start": s, "end": e, "text": text, "tokens": [], "temperature": 0.0,
         "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}
        for i, (s, e, text) in enumerate(spans) if text
    ]  # fmt: skip


def response(result: Transcription, request: TranscriptionRequest) -> Response:
    fmt = request.response_format
    if fmt == "json":
        return JSONResponse({"text": result.text or ""})
    if fmt in TEXT_TYPES:
        body = render(result, "txt" if fmt == "text" else fmt)
        return PlainTextResponse(body, media_type=TEXT_TYPES[fmt])
    out: dict = {
        "task": "transcribe",
        "language": request.language or "unknown",
        "duration": float(result.duration or 0.0),
        "text": result.text or "",
    }
    if "segment" in request.granularities:
        out["segments"] = segments(result)
    if "word" in request.granularities:
        out["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]} for w in result.words]
    return JSONResponse(out)
