"""`w2v listen`: live speech to text: partial results on stderr while a person speaks, one final result
per utterance on stdout."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import CtcModel, Device, Engine

LISTEN_FORMATS = ("jsonl", "text", "srt", "vtt")


def listen(
    source: Annotated[
        str | None,
        typer.Argument(
            help="- for raw PCM on stdin, a FIFO or .raw/.pcm file (raw PCM), or an audio file; "
            "with --mic, the input device's number or name (default: the system's)."
        ),
    ] = None,
    model: CtcModel = None,
    mic: Annotated[
        bool, typer.Option("--mic", help="Listen to a microphone (needs the listen extra).")
    ] = False,
    rate: Annotated[int, typer.Option("--rate", help="Raw PCM: samples per second.")] = 16000,
    channels: Annotated[
        int, typer.Option("--channels", help="Raw PCM: interleaved channels (mixed to mono).")
    ] = 1,
    sample_format: Annotated[str, typer.Option("--sample-format", help="Raw PCM: s16le or f32le.")] = "s16le",
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="Final results on stdout: jsonl, text, srt or vtt.")
    ] = "jsonl",
    step: Annotated[
        float, typer.Option("--step", min=0, help="Seconds of new speech between partial results (0: none).")
    ] = 0.3,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Cut longer utterances at their quietest point.")
    ] = 15.0,
    min_silence: Annotated[
        float, typer.Option("--min-silence", min=0.05, help="Seconds of silence that end an utterance.")
    ] = 0.5,
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0.2, max=0.95, help="Speech probability that starts an utterance."),
    ] = 0.5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No partial results on stderr.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="CPU only: int8 matrix products (faster).")] = False,
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Transcribe live audio, cut into utterances by voice activity detection.

    Example: arecord -q -t raw -f S16_LE -r 16000 -c 1 | w2v listen - --model runs/ft
    """
    from w2vcli.errors import UsageError
    from w2vcli.serving.sources import PcmFormat

    if fmt not in LISTEN_FORMATS:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(LISTEN_FORMATS)}")
    pcm = PcmFormat(rate, channels, sample_format).check()
    if source is None and not mic:
        raise UsageError("give a SOURCE (- for raw PCM on stdin, a FIFO or an audio file) or --mic")
    if source == "-" and not mic and sys.stdin.isatty():
        raise UsageError(
            "- reads raw PCM from stdin, but stdin is a terminal; pipe audio in (arecord ... | w2v listen -)"
        )
    if source not in (None, "-") and not mic and not Path(source).exists():
        raise UsageError(f"{source}: no such file or FIFO")

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.console import err
    from w2vcli.serving.listen import Listener, ListenOptions
    from w2vcli.serving.vad import SileroVad, VadOptions
    from w2vcli.training.runtime import from_env, select_device

    vad = SileroVad()  # before the model: a missing extra is said at once
    source_stop = threading.Event()
    blocks, what = _open_source(source, mic, pcm, source_stop)
    dev = str(select_device(device, from_env()))
    loaded = load_model(
        model, device=dev, int8=int8, engine=engine, announce=lambda m: err.print(m, markup=False)
    )
    vad_options = VadOptions(threshold=threshold, min_silence=min_silence, max_seconds=max_seconds)
    listener = Listener(loaded, ListenOptions(step=0 if quiet else step, vad=vad_options), vad=vad)
    listener.warm_up()
    err.print(f"listening to {what}; Ctrl-C to stop", markup=False)
    _run(listener, blocks, Renderer(fmt), source_stop)


def _open_source(source, mic, pcm, stop):
    from w2vcli.serving.sources import open_mic, path_blocks, raw_blocks

    if mic:
        return open_mic(source, stop), f"microphone {source or '(default)'}"
    if source == "-":
        return raw_blocks(sys.stdin.buffer, pcm), f"stdin ({pcm.describe()})"
    return path_blocks(Path(source), pcm), source


def _run(listener, blocks, render: Renderer, source_stop) -> None:
    """Drive the loop: Ctrl-C (or SIGTERM) stops reading and flushes the last utterance, then exits 0;
    a second Ctrl-C exits at once (130)."""
    from w2vcli.serving.listen import Heard

    line = PartialLine(sys.stderr)

    def on_stop(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: exit now
        source_stop.set()
        listener.stop()

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    listener.start(blocks)
    try:
        for ev in listener.events():
            if isinstance(ev, Heard):
                line.clear()
                _write(render(ev))
            else:
                line.show(ev.text)
    finally:
        line.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.stop()


class Renderer:
    """A final result as stdout text; SRT cue numbers and the WebVTT header run across utterances."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.cues = 0

    def __call__(self, heard) -> str:
        from w2vcli.decoding.formats import cues, srt_cue, vtt_cue

        if self.fmt == "jsonl":
            return json.dumps(heard.to_dict(), ensure_ascii=False) + "\n"
        if self.fmt == "text":
            return heard.text + "\n"
        parts = cues(heard.words) or ([(heard.start, heard.end, heard.text)] if heard.text else [])
        head = "WEBVTT\n\n" if self.fmt == "vtt" and self.cues == 0 else ""
        out = []
        for s, e, text in parts:
            self.cues += 1
            out.append((srt_cue(self.cues, s, e, text) if self.fmt == "srt" else vtt_cue(s, e, text)) + "\n")
        return head + "".join(out)


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()  # each utterance as soon as it is heard
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None


class PartialLine:
    """The partial text on stderr: one line rewritten in place on a terminal, plain lines otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.dirty = False

    def show(self, text: str) -> None:
        if not self.tty:
            self.stream.write(f"partial: {text}\n")
        else:
            import shutil

            width = max(shutil.get_terminal_size().columns - 1, 10)
            shown = text if len(text) <= width - 2 else "…" + text[-(width - 3) :]
            self.stream.write(f"\r\x1b[2K\x1b[2m{shown}\x1b[0m")
            self.dirty = True
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self.dirty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.dirty = False
