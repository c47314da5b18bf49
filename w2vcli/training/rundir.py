"""A training run's directory (RUN) and its checkpoints.

    RUN/train.json                 resolved settings of the latest invocation (TrainConfig + model + data)
    RUN/metrics.jsonl              one JSON line per logging step (and per validation)
    RUN/last                       {"checkpoint": "checkpoints/update-N", "update": N}: the latest complete one
    RUN/checkpoints/update-N/      config.json + model.safetensors (+ vocab.json): a normal checkpoint,
                                   usable by `transcribe`/`finetune --init`, plus trainer.pt (optimizer,
                                   loss scaler, update count, data position, RNG states, best score)
    RUN/best/                      fine-tuning: the checkpoint with the lowest validation WER
    RUN/data/                      `prep` output when DATA was a plain folder of audio

Crash safety: a checkpoint directory is written under a temporary name, fsynced and renamed;
`last` is replaced atomically only after that. A `kill -9` at any moment leaves `last` naming a
complete checkpoint (or a stale-but-complete one); half-written directories are never named.
trainer.pt holds only tensors and plain types and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from w2vcli.checkpoints.native import WEIGHTS_FILE, is_checkpoint, read_safetensors, save_checkpoint
from w2vcli.errors import UsageError, W2VError
from w2vcli.fsutil import atomic_write

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TRAINER_FILE, LAST_FILE, SETTINGS_FILE, METRICS_FILE = "trainer.pt", "last", "train.json", "metrics.jsonl"
_UPDATE_DIR = re.compile(r"^update-(\d+)$")
LOCK_FILE = ".lock"
# Temporary names of checkpoint writes (rundir.save, checkpoint.save_checkpoint, fsutil.atomic_open).
_PARTIAL = re.compile(
    r"^\.(update-\d+\.partial|\.update-\d+\.partial\.tmp-\d+|(best|update-\d+)\.(tmp|old)-\d+"
    r"|(last|train\.json|metrics\.jsonl)\.\d+\.tmp)$"
)


def rng_state() -> dict:
    """Every RNG a run touches, as tensors and plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(pystate), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.best = self.path / "best"
        self.data = self.path / "data"
        self.metrics = self.path / METRICS_FILE
        self.settings = self.path / SETTINGS_FILE
        self.last_file = self.path / LAST_FILE
        self._lock: int | None = None

    def lock(self) -> None:
        """Hold RUN for this process: a second training process on the same RUN is refused in one line.
        The lock is the kernel's (flock), so a process killed with -9 never leaves it stuck."""
        if fcntl is None or self._lock is not None:  # no flock (Windows): unguarded
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(
                f"{self.path} is in use by another w2v process (pid {owner}); wait for it to end "
                "or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def holder(self) -> str | None:
        """The pid of the process training in RUN now (the holder of its lock), else None. Probed with
        a shared lock taken and dropped at once, so nothing is written."""
        if fcntl is None:
            return None
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.read(fd, 64).decode(errors="replace").strip() or "?"
        else:
            return None
        finally:
            os.close(fd)  # and with it the probe's lock

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def remove_partial(self) -> list[Path]:
        """Delete what killed runs left half-written (only while holding the lock): checkpoint and
        best directories under temporary names. Returns what was removed."""
        stale = [
            p
            for d in (self.path, self.checkpoints)
            if d.is_dir()
            for p in d.iterdir()
            if _PARTIAL.match(p.name)
        ]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return stale

    def clear(self) -> None:
        """`--fresh`: forget checkpoints, best and metrics (prepared data in RUN/data is kept)."""
        for d in (self.checkpoints, self.best):
            shutil.rmtree(d, ignore_errors=True)
        for f in (self.last_file, self.metrics, self.settings):
            f.unlink(missing_ok=True)

    def write_settings(self, settings: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.settings, (json.dumps(settings, indent=2, default=str) + "\n").encode(), sync=True)

    def complete(self, ckpt: Path) -> bool:
        return is_checkpoint(ckpt) and (ckpt / TRAINER_FILE).is_file()

    def updates(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m[1]), d) for d in self.checkpoints.iterdir() if (m := _UPDATE_DIR.match(d.name))]
        return sorted((u, d) for u, d in found if self.complete(d))

    def latest(self) -> Path | None:
        """The checkpoint `last` names, or (if `last` is missing or names something gone) the newest complete one."""
        try:
            ckpt = self.path / json.loads(self.last_file.read_text())["checkpoint"]
            if self.complete(ckpt):
                return ckpt
        except (OSError, ValueError, KeyError, TypeError):
            pass
        done = self.updates()
        return done[-1][1] if done else None

    def save(self, model: torch.nn.Module, trainer: dict, update: int, keep: int, vocab=None, **info) -> Path:
        """Checkpoint `update-N` (model + trainer state), point `last` at it, drop all but the newest `keep`."""
        final = self.checkpoints / f"update-{update}"
        tmp = self.checkpoints / f".update-{update}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(model, tmp, vocab, update=update, **info)
        atomic_write(tmp / TRAINER_FILE, _tensor_bytes(trainer), sync=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.checkpoints)
        atomic_write(
            self.last_file,
            json.dumps({"checkpoint": f"checkpoints/{final.name}", "update": update}).encode(),
            sync=True,
        )
        for _, old in self.updates()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def save_best(self, model: torch.nn.Module, vocab=None, **info) -> Path:
        return save_checkpoint(model, self.best, vocab, **info)


def _tensor_bytes(obj: dict) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_trainer_state(ckpt: Path) -> dict:
    try:
        return torch.load(ckpt / TRAINER_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one
        raise W2VError(f"cannot read {ckpt / TRAINER_FILE} ({e}); restart with --fresh") from None


def load_weights(model: torch.nn.Module, ckpt: Path) -> None:
    """Weights of a checkpoint into an existing model of the same architecture (exact tensors)."""
    state = read_safetensors(ckpt / WEIGHTS_FILE)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise W2VError(
            f"{ckpt} does not match this model (missing {missing[:2]}, unexpected {unexpected[:2]}); "
            "use --fresh to start over"
        )


def no_checkpoint_yet(path: str | os.PathLike) -> str | None:
    """For a training run's folder with no complete checkpoint: one line saying so, and whether it is
    being trained now (the first checkpoint comes after --save-every updates). None for anything else."""
    run = RunDir(path)
    marks = (run.settings, run.metrics, run.last_file, run.checkpoints, run.path / LOCK_FILE)
    if not run.path.is_dir() or not any(p.exists() for p in marks) or is_checkpoint(run.best):
        return None
    if run.latest() is not None:
        return None
    pid = run.holder()
    if pid is not None:
        return (
            f"{run.path} is a training run in progress (pid {pid}) with no checkpoint yet: the first "
            "comes after --save-every updates; try again then"
        )
    return (
        f"{run.path} is a training run with no checkpoint yet, and nothing is training it: it stopped "
        "before its first; run its command again to resume it"
    )
