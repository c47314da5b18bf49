"""`w2v transcribe`: audio files -> text, as JSON lines on stdout or files in an output directory."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from w2vcli.cli.common import AudioInputs, CtcModel, Device, Engine, OutputDir

LM_BEAM = 32  # --lm without --beam: a beam of one would give the LM nothing to choose from


def transcribe(
    audio: AudioInputs,
    model: CtcModel = None,
    output_dir: OutputDir = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            help="txt, json, jsonl, tsv, srt, vtt, ctm or textgrid; repeat for several. "
            "Default: jsonl lines on stdout, txt files with --output-dir.",
        ),
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option("--skip-existing", help="Skip inputs whose output files all exist (resume a big job)."),
    ] = False,
    timestamps: Annotated[
        str | None,
        typer.Option("--timestamps", help="word or char: add start/end times (seconds) to results."),
    ] = None,
    chunk_seconds: Annotated[
        float,
        typer.Option("--chunk-seconds", min=0, help="Cut longer audio into chunks this long (0: never)."),
    ] = 30.0,
    stride_seconds: Annotated[
        float,
        typer.Option(
            "--stride-seconds",
            min=0,
            help="Context on each side of a chunk border, dropped after (30 s chunks with 2.5 s compute 1.2x the audio).",
        ),
    ] = 2.5,
    batch_seconds: Annotated[
        float | None,
        typer.Option(
            "--batch-seconds",
            min=0,
            help="Padded audio per batch; 0: one input at a time. "
            "Default: 0 on CPU, 240 on CUDA. Group-norm models always run one at a time.",
        ),
    ] = None,
    beam: Annotated[
        int | None,
        typer.Option(
            "--beam",
            min=1,
            help=f"Prefix beam search width (default 1 = greedy, {LM_BEAM} with --lm or --lexicon).",
        ),
    ] = None,
    lm: Annotated[
        Path | None, typer.Option("--lm", help="Word n-gram LM: ARPA (.arpa, .arpa.gz) or KenLM binary.")
    ] = None,
    lexicon: Annotated[
        Path | None,
        typer.Option(
            "--lexicon",
            help="Spell only these words: a word list (first field per line) or an ARPA file (its "
            "unigrams, e.g. the --lm file). Beam search, with or without --lm.",
        ),
    ] = None,
    lm_weight: Annotated[float, typer.Option("--lm-weight", help="Weight of the LM log-probability.")] = 0.5,
    word_score: Annotated[
        float, typer.Option("--word-score", help="Bonus per word (counters short outputs).")
    ] = 0.0,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="CPU only, faster: the transformer's matrix products in int8 (the CNN and the CTC head "
            "stay fp32). Text may differ slightly.",
        ),
    ] = False,
    vad: Annotated[
        bool,
        typer.Option(
            "--vad",
            help="Cut files at pauses found by voice activity detection (subtitle-sized segments, silence "
            "skipped) instead of fixed --chunk-seconds chunks; needs the listen extra.",
        ),
    ] = False,
    engine: Engine = None,
    device: Device = "auto",
) -> None:
    """Transcribe audio with a CTC model. Exit code 0 when every input worked, 1 when some failed."""
    from w2vcli.decoding.formats import FORMATS
    from w2vcli.errors import UsageError

    formats = formats or (["txt"] if output_dir else [])
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {bad[0]}: expected one of {', '.join(FORMATS)}")
    if timestamps not in (None, "word", "char"):
        raise UsageError(f"--timestamps {timestamps}: expected word or char")
    if vad:
        from w2vcli.serving.vad import silero_path

        silero_path()  # the listen extra, before the model loads
    if skip_existing and output_dir is None:
        raise UsageError("--skip-existing needs --output-dir")
    if "-" in audio and sys.stdin.isatty():
        raise UsageError(
            "- reads paths from stdin, but stdin is a terminal; pipe paths in (find . -name '*.flac' | ...)"
        )

    from w2vcli.checkpoints.resolve import load_model
    from w2vcli.pipelines.transcribe import TranscribeOptions, expand, open_outputs, output_paths
    from w2vcli.pipelines.transcribe import transcribe as run
    from w2vcli.training.runtime import from_env, select_device

    stdin = ()
    if "-" in audio:
        from w2vcli.data.inputs import check_path_list

        stdin = (
            os.fsdecode(line) for line in io.BytesIO(check_path_list(sys.stdin.buffer.read(), "transcribe"))
        )
    items = expand(audio, stdin, skip_dir=output_dir)
    ledger = None
    if output_dir is not None:
        if skip_existing:  # whoever wrote them, existing outputs are left as they are
            items = [it for it in items if not all(p.exists() for p in output_paths(it, output_dir, formats))]
        ledger = open_outputs(items, output_dir, formats)
    dev = str(select_device(device, from_env()))
    options = TranscribeOptions(
        chunk_seconds=chunk_seconds,
        stride_seconds=stride_seconds,
        batch_seconds=batch_seconds,
        timestamps=timestamps,
        beam=beam if beam is not None else (LM_BEAM if lm or lexicon else 1),
        lm=str(lm) if lm else None,
        lexicon=str(lexicon) if lexicon else None,
        lm_weight=lm_weight,
        word_score=word_score,
        vad=vad,
    )
    from w2vcli.console import err

    loaded = load_model(
        model,
        device=dev,
        int8=int8,
        engine=engine,
        announce=lambda m: err.print(m, markup=False),
        audio_seconds=job_audio_seconds(items),
    )
    failed = run_with_progress(
        lambda on_progress: run(items, loaded, options, on_progress),
        items,
        ledger,
        formats,
        engine=engine_line(loaded, int8),
    )
    if failed:
        raise typer.Exit(1)


def _emit(result, items, ledger, formats) -> None:
    from w2vcli.decoding.formats import render
    from w2vcli.pipelines.transcribe import write_outputs

    if ledger is not None:
        if result.error is None:
            write_outputs(result, items[result.index], ledger, formats)
        return
    try:
        if formats:
            for fmt in formats:
                sys.stdout.write(render(result, fmt))
        else:
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()  # one line per file as soon as it is done, so `| jq` streams
    except BrokenPipeError:  # `| head` has read enough: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None


def job_audio_seconds(items, probe_at_most: int = 2000) -> float:
    """The job's audio, from the files' headers (the auto engine weighs an export against it). Past
    `probe_at_most` files the rest are assumed alike; unreadable files count as nothing."""
    from w2vcli.data.audio import probe_audio

    total, probed = 0.0, items[:probe_at_most]
    for it in probed:
        try:
            info = probe_audio(it.path)
        except Exception:  # noqa: BLE001 - the pipeline reports this input's error; here it weighs nothing
            continue
        total += info.frames / max(info.sample_rate, 1)
    return total * len(items) / max(len(probed), 1)


def engine_line(loaded, int8: bool) -> str:
    """How the model runs, for the summary line: "onnx int8 (auto: ...)"."""
    precision = "int8" if int8 else "fp32"
    return f"{loaded.engine} {precision} on {loaded.device} ({loaded.why})" if loaded.why else loaded.engine


def run_with_progress(
    start_pipeline, items, ledger, formats, verb: str = "transcribing", engine: str = ""
) -> int:
    """Drive the pipeline under a progress bar (files, audio, real-time factor); returns the failures,
    counting every input that produced no result as one. `engine` ends the summary line."""
    from rich.progress import TextColumn

    from w2vcli.console import err, error, progress

    done, failed, audio_seconds, fed, start = 0, 0, 0.0, [0.0], time.monotonic()
    bar = progress(TextColumn("{task.fields[audio]:.1f} min audio"), TextColumn("RTF {task.fields[rtf]:.3f}"))
    with bar:
        task = bar.add_task(verb, total=len(items), audio=0.0, rtf=0.0)

        def on_progress(seconds: float) -> None:  # per chunk, so a long file moves the figures too
            fed[0] += seconds
            bar.update(task, audio=fed[0] / 60, rtf=(time.monotonic() - start) / max(fed[0], 1e-9))

        for result in start_pipeline(on_progress):
            if result.error is not None:
                failed += 1
                error(result.error)
            else:
                audio_seconds += result.duration
                done += 1
            _emit(result, items, ledger, formats)
            bar.update(task, advance=1)
    missing = len(items) - done - failed
    if missing:
        error(f"{missing} input(s) produced no result")
    wall = time.monotonic() - start
    rtf = f", RTF {wall / audio_seconds:.3f}" if audio_seconds else ""
    err.print(
        f"{done} {verb.replace('ing', 'ed')}, {failed + missing} failed: {audio_seconds / 60:.1f} min of audio "
        f"in {wall:.1f} s{rtf}" + (f"; engine {engine}" if engine else ""),
        markup=False,
    )
    return failed + missing
