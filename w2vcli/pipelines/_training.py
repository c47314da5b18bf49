"""What `pretrain` and `finetune` share before the loop starts: device, DDP, RUN, data, resume config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from w2vcli.checkpoints.native import is_checkpoint
from w2vcli.data.augment import Augment
from w2vcli.data.loader import filter_utterances, make_loader
from w2vcli.data.manifest import ManifestIndex
from w2vcli.errors import UsageError, W2VError
from w2vcli.model.config import ModelConfig
from w2vcli.training import runtime as distributed
from w2vcli.training.config import TrainConfig
from w2vcli.training.rundir import RunDir, no_checkpoint_yet
from w2vcli.training.runtime import Dist
from w2vcli.training.task import Event


def setup(cfg: TrainConfig) -> tuple[Dist, torch.device]:
    dist = distributed.from_env()
    device = distributed.select_device(cfg.device, dist)
    distributed.init(dist, device)
    torch.manual_seed(cfg.seed)
    return dist, device


def open_run(run: RunDir, cfg: TrainConfig, dist: Dist, device: torch.device, on_event=None) -> RunDir:
    """Lock RUN for this run (the main process; release with `run.unlock()`), remove what killed runs
    left half-written, and clear it for `--fresh`."""
    if run.path.exists() and not run.path.is_dir():
        raise UsageError(f"--out {run.path} is a file; give a directory for the run")
    refused = None
    if dist.main:
        try:
            run.lock()
        except UsageError as e:
            refused = e
    # every rank stops on a refused lock, so none waits for a main process that has gone
    flag = distributed.all_reduce(torch.tensor([float(refused is not None)], device=device), dist, op="max")
    if refused is not None or flag.item():
        raise refused or UsageError(f"{run.path} is in use by another w2v process")
    if dist.main:
        stale = run.remove_partial()
        if stale and on_event:
            on_event(
                Event(
                    "warning",
                    0,
                    0,
                    message=f"removed {len(stale)} half-written checkpoint(s) "
                    f"of an interrupted run, e.g. {stale[0].name}",
                )
            )
        if cfg.fresh:
            run.clear()
    distributed.barrier(dist)
    return run


def resolve_data(
    data: str | os.PathLike, run: RunDir, dist: Dist, on_prep_progress=None, unlabelled: bool = True
) -> Path:
    """A prep output directory as is; a plain folder of audio is prepared into RUN/data first (rank 0)."""
    data = Path(data)
    if (data / "train.jsonl").is_file():
        return data
    if not data.exists():
        raise UsageError(f"DATA {data} does not exist; give a `w2v prep` output or a folder of audio")
    if not unlabelled:
        raise UsageError(
            f"{data} has no train.jsonl; prepare labelled data with `w2v prep --transcripts ...` first"
        )
    if dist.main:
        from w2vcli.pipelines.prep import PrepOptions, prepare

        prepare([str(data)], run.data, PrepOptions(unlabelled=True), on_progress=on_prep_progress)
    distributed.barrier(dist)
    if not (run.data / "train.jsonl").is_file():
        raise W2VError(f"preparing {data} produced no train.jsonl in {run.data}")
    return run.data


def load_split(
    data_dir: Path,
    split: str,
    min_seconds: float,
    max_seconds: float | None = None,
    require_text: bool = False,
) -> tuple[list, dict]:
    path = data_dir / f"{split}.jsonl"
    if not path.is_file():
        return [], {}
    return filter_utterances(ManifestIndex(path), min_seconds, max_seconds, require_text)


def clean_targets(cfg: TrainConfig) -> bool:
    """Whether pretraining's targets come from the audio before augmentation (BEST-RQ only: the
    contrastive task's targets are the model's own quantised features of its input)."""
    return getattr(cfg, "objective", "") == "best-rq" and getattr(cfg, "clean_targets", False)


def training_loader(utts, cfg: TrainConfig, dist: Dist, device: torch.device, **task):
    """The shuffled, sharded training loader of a run; `task`: vocab= (fine-tuning) or crop_seconds=."""
    return make_loader(
        utts,
        cfg.batch_seconds,
        max_batch_size=cfg.max_batch_size,
        seed=cfg.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        speed_perturb=cfg.speed_perturb,
        augment=Augment(cfg.augment, cfg.augment_prob, keep_clean=clean_targets(cfg))
        if cfg.augment
        else None,
        **task,
    )


def resume_config(run: RunDir, given: ModelConfig, fresh: bool, on_event=None) -> ModelConfig:
    """Resuming keeps the architecture the run was started with, whatever the flags now say."""
    latest = None if fresh else run.latest()
    if latest is None:
        return given
    saved = ModelConfig.load(latest)
    if saved != given and on_event:
        on_event(
            Event(
                "warning",
                0,
                0,
                message=f"resuming {latest} with its own model settings; "
                "flags that change the model need --fresh",
            )
        )
    return saved


def init_source(init: str) -> Path:
    """`--init`: a run directory (its best, else latest checkpoint), a checkpoint, or a Hugging Face dir."""
    path = Path(init)
    if not path.is_dir():
        raise UsageError(
            f"--init {init}: no such directory; give a run, a checkpoint, a Hugging Face model or none"
        )
    run = RunDir(path)
    if is_checkpoint(run.best):
        return run.best
    if run.checkpoints.is_dir() or run.last_file.exists():
        latest = run.latest()
        if latest is None:
            raise W2VError(
                no_checkpoint_yet(path) or f"--init {init}: the run has no complete checkpoint yet"
            )
        return latest
    return path


def resumed_init(run: RunDir, init: str | None) -> str | None:
    """What RUN was started from (train.json's `init`, never rewritten), for a run that resumes.

    A resumed run continues from its own checkpoints, so an `--init` other than the one it was started
    from would be ignored: it is refused in one line. `init` None (pretrain without --init) resumes
    whatever the run was started from. None when RUN records no start (older or unfinished runs)."""
    try:
        started = json.loads(run.settings.read_text())["init"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(started, str):
        return None
    if init is None or _same_start(init, started, run):
        return started
    what = "scratch (--init none)" if started == "none" else f"--init {started}"
    raise UsageError(
        f"{run.path} was started from {what}, and resuming continues from its own checkpoints: "
        f"give that --init to resume it, or add --fresh to start it over from --init {init}"
    )


def _same_start(init: str, started: str, run: RunDir) -> bool:
    """Whether `--init init` names what train.json records: the same text, the same directory, the
    checkpoint it resolves to (fine-tuning runs recorded that), or, from older versions that rewrote
    `init` on resume, a checkpoint inside RUN itself."""
    if init == started:
        return True
    if "none" in (init, started):
        return False
    recorded = Path(started).expanduser().resolve()
    given = {Path(init).expanduser().resolve()}
    try:
        given.add(init_source(init).resolve())
    except W2VError:
        pass
    return recorded in given or recorded.is_relative_to(run.path.resolve())
