"""Option aliases shared by several subcommands: one name for one thing everywhere."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

Device = Annotated[
    str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
]
AudioInputs = Annotated[
    list[str],
    typer.Argument(
        help="Audio files, folders (searched recursively), prep manifests (.jsonl), or - for paths on stdin."
    ),
]
CtcModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Fine-tuning run, checkpoint or Hugging Face directory, ONNX file (w2v export), or hub id. "
        "Default: $W2V_MODEL, else facebook/wav2vec2-base-960h from the hub.",
    ),
]
OutputDir = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", "-o", help="Write one file per input and format here, mirroring input paths."
    ),
]
Edges = Annotated[
    bool,
    typer.Option(
        "--edges/--no-edges",
        help="Place word edges next to pauses where the signal's energy says speech starts and stops, and keep "
        "letters out of clear pauses (skipped by itself where speech is not clearly louder than the background); "
        "--no-edges: the model's frames and fixed pads only.",
    ),
]
Engine = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="auto: ONNX Runtime on the CPU (the model is exported once and cached; see `w2v export`), "
        "PyTorch on GPUs; onnx; torch. Default: $W2V_ENGINE, else auto.",
        show_default=False,
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (splits, masks, initialisation).")]
Workers = Annotated[int, typer.Option("--workers", min=0, help="Worker processes for audio decoding.")]
# Training options shared by `pretrain` and `finetune`.
ClipNorm = Annotated[float, typer.Option("--clip-norm", help="Gradient norm clip (0: off).")]
Amp = Annotated[
    bool | None,
    typer.Option(
        "--amp/--no-amp",
        help="Mixed precision. Default: on GPUs (bf16, else fp16), off on CPUs; --amp on a CPU trains in bf16 and needs AMX-BF16 (~1.6-1.9x faster there).",
        show_default=False,
    ),
]
GradCheckpointing = Annotated[
    bool,
    typer.Option(
        "--grad-checkpointing",
        help="Recompute each transformer layer's activations in the backward pass instead of keeping them: "
        "less memory for base and large, about a third more compute per step.",
    ),
]
SaveEvery = Annotated[int, typer.Option("--save-every", help="Checkpoint every N updates.")]
LogEvery = Annotated[int, typer.Option("--log-every", help="metrics.jsonl line every N updates.")]
Fresh = Annotated[bool, typer.Option("--fresh", help="Start over instead of resuming RUN.")]


def _speed_factors(text: str | None) -> tuple[float, ...]:
    """`--speed-perturb 0.9,1,1.1` as a tuple of floats (empty when not given)."""
    if not text:
        return ()
    try:
        return tuple(float(f) for f in text.split(",") if f.strip())
    except ValueError:
        from w2vcli.errors import UsageError

        raise UsageError(
            f"--speed-perturb takes comma-separated numbers such as 0.9,1,1.1, not {text!r}"
        ) from None


# The value reaching the command is the tuple of factors.
SpeedPerturb = Annotated[
    str | None,
    typer.Option(
        "--speed-perturb",
        metavar="F,F,...",
        callback=_speed_factors,
        help="Speed factors drawn per training utterance, e.g. 0.9,1,1.1 (tempo and pitch change together; more voices out of few).",
        show_default=False,
    ),
]


def _augment_kinds(text: str | None) -> tuple[str, ...]:
    """`--augment noise,reverb` (or `all`, `none`) as a tuple of augmentation names."""
    if not text:
        return ()
    from w2vcli.data.augment import parse_kinds
    from w2vcli.errors import UsageError

    try:
        return parse_kinds(text)
    except ValueError as e:
        raise UsageError(f"--augment: {e}") from None


Augment = Annotated[
    str | None,
    typer.Option(
        "--augment",
        metavar="KIND,...",
        callback=_augment_kinds,
        help="Augment training audio: all, or any of reverb,babble,noise,telephone,codec,gain (noise and babble at 0-20 dB SNR, rooms, 8 kHz mu-law, MP3/Vorbis, levels).",
        show_default=False,
    ),
]
AugmentProb = Annotated[
    float,
    typer.Option("--augment-prob", help="Probability of each --augment kind per utterance."),
]


@contextlib.contextmanager
def flag_names(fields: dict[str, str] | None = None) -> Iterator[None]:
    """Settings problems are phrased in field names (`max_updates must be at least 1`); on the command
    line they read as the flags that set them (`--max-updates must be at least 1`). `fields`: model
    fields a command sets under other flag names ({"num_codevectors_per_group": "--codebook-size"})."""
    import dataclasses

    from w2vcli.errors import UsageError
    from w2vcli.training.config import FinetuneConfig, PretrainConfig

    try:
        yield
    except UsageError as e:
        names = {f.name for kind in (PretrainConfig, FinetuneConfig) for f in dataclasses.fields(kind)}
        flags = {name: "--" + name.replace("_", "-") for name in names} | (fields or {})
        pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(flags, key=len, reverse=True)) + r")(?![\w-])")
        message = pattern.sub(lambda m: flags[m.group(1)], str(e))
        raise UsageError(message) from None
