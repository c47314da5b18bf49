"""`w2v serve`: an OpenAI-compatible transcription server. Parses flags and starts serving/; nothing more."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import Device, Engine

API_KEY_ENV = "W2V_API_KEY"


def serve(
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="MODEL",
            help="Fine-tuning run, checkpoint or Hugging Face directory, ONNX file, or hub id. "
            "Default: $W2V_MODEL, else facebook/wav2vec2-base-960h from the hub.",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8080,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=API_KEY_ENV,
            show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on every route but /health.",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload (MiB), refused early (413).")
    ] = 25.0,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=0.1, help="Longest audio per request, in seconds (400).")
    ] = 600.0,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue", min=1, help="Requests in progress at once; more get 503 with Retry-After."
        ),
    ] = 16,
    max_wait_ms: Annotated[
        float,
        typer.Option("--max-wait-ms", min=0, help="How long a request waits for others to share its batch."),
    ] = 20.0,
    batch_seconds: Annotated[
        float | None,
        typer.Option(
            "--batch-seconds",
            min=0,
            help="Padded audio per forward pass; 0: one input at a time. Default: 240 on CUDA, 0 on the "
            "CPU (as w2v transcribe). Group-norm and ONNX models always run one input at a time.",
            show_default=False,
        ),
    ] = None,
    beam: Annotated[
        int | None, typer.Option("--beam", min=1, help="Prefix beam search width (default 1, 32 with --lm).")
    ] = None,
    lm: Annotated[Path | None, typer.Option("--lm", help="Word n-gram LM: ARPA or KenLM binary.")] = None,
    lexicon: Annotated[
        Path | None, typer.Option("--lexicon", help="Spell only these words (word list or ARPA).")
    ] = None,
    lm_weight: Annotated[float, typer.Option("--lm-weight", help="Weight of the LM log-probability.")] = 0.5,
    word_score: Annotated[float, typer.Option("--word-score", help="Bonus per word.")] = 0.0,
    int8: Annotated[
        bool, typer.Option("--int8", help="CPU only: int8 matrix products in the transformer.")
    ] = False,
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Serve a CTC model over HTTP, as OpenAI's transcription API. Stop with Ctrl-C or SIGTERM
    (requests in progress finish first).

    Example: w2v serve runs/ft --port 8080, then
    curl localhost:8080/v1/audio/transcriptions -F file=@clip.wav -F model=w2v
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from w2vcli.errors import UsageError

        raise UsageError("w2v serve needs its extra: pip install 'w2vcli[serve]'") from None
    from w2vcli.checkpoints.resolve import load_model, resolve_model
    from w2vcli.cli.transcribe import LM_BEAM
    from w2vcli.console import err
    from w2vcli.pipelines.transcribe import TranscribeOptions, beam_options
    from w2vcli.serving.app import ServeLimits
    from w2vcli.serving.batcher import Batcher, BatchLimits
    from w2vcli.serving.server import Service
    from w2vcli.training.runtime import from_env, select_device

    def say(message: str) -> None:
        err.print(message, markup=False)

    for flag, path in (("--lm", lm), ("--lexicon", lexicon)):
        if path is not None and not path.is_file():
            from w2vcli.errors import UsageError

            raise UsageError(f"{flag} {path}: no such file")
    is_onnx = model is not None and model.endswith(".onnx") and os.path.isfile(model)
    spec = model if is_onnx else str(resolve_model(model))  # a bad MODEL fails now, before listening
    dev = str(select_device(device, from_env()))
    options = TranscribeOptions(
        batch_seconds=batch_seconds,
        beam=beam if beam is not None else (LM_BEAM if lm or lexicon else 1),
        lm=str(lm) if lm else None,
        lexicon=str(lexicon) if lexicon else None,
        lm_weight=lm_weight,
        word_score=word_score,
    )

    def load():
        loaded = load_model(spec, device=dev, int8=int8, engine=engine, announce=say, audio_seconds=math.inf)
        return loaded, options, beam_options(options)

    limits = BatchLimits(max_queue=max_queue, max_wait=max_wait_ms / 1000)
    batcher = Batcher(load, limits, model_name=model or Path(spec).name, announce=say)
    serve_limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_seconds=max_seconds)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        say(f"warning: listening on {host} without --api-key: anyone who can reach it can use it")
    code = Service(batcher, host, port, serve_limits, api_key).run(announce=say)
    if code:
        raise typer.Exit(code)
