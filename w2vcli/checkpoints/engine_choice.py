"""`--engine auto` on the CPU: the engine that measured fastest for this model on this CPU, and no
export that a job will not pay back.

Which engine wins depends on the CPU and the model: ONNX Runtime ran base 1.17x transformers on an
AVX2-only EPYC where PyTorch ran 1.03x, and 1.31x against 0.92x on an AVX-512 one (bench/RESULTS.md);
an AMX CPU changes the picture again. So nothing is guessed from the vendor: a calibration times
both engines (in the precision asked for) on CALIBRATION_SECONDS of audio, a warm-up and then the
median of five forward passes each, the engines in turns so that other load hits both alike (one
engine timed after the other swung the fp32 verdict on a quiet machine), and records the seconds of compute per second of audio, the time to
load each, and the time the export took. Records live in `cache_dir()/engines.json`, keyed by the
CPU (model name, the instruction-set flags that pick kernels, core count, torch and onnxruntime
versions) and the model (its export cache key, so a changed model is a new record).

The decision (`decide`) for a job of A seconds of audio, from a record: PyTorch costs
`torch_load + A * torch`, ONNX Runtime `onnx_load + A * onnx`, plus the export when the cache no
longer holds it; the cheaper one runs. A long-lived process (`w2v serve`) compares the rates alone.
Without a record, a job of at least CALIBRATE_AFTER seconds of audio (and a server) calibrates
first: it then runs for minutes, and the record serves every later run. A shorter job runs on
PyTorch at once and pays no export; `w2v info MODEL --engines` calibrates on demand.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from w2vcli.checkpoints import onnx_cache
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.fsutil import atomic_write, flocked

CALIBRATION_FILE = "engines.json"
CALIBRATION_SECONDS = 10.0  # audio per timed pass: a typical utterance, and short enough to be quick
CALIBRATION_REPEATS = 5  # rounds of one pass each, engines in turns
CALIBRATE_AFTER = 600.0  # seconds of audio from which a job without a record calibrates first
_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


@dataclass
class Calibration:
    """One model, one precision, one CPU: what each engine costs."""

    torch: float  # seconds of compute per second of audio on PyTorch
    onnx: float | None  # the same on ONNX Runtime (None: not installed, or the export failed)
    torch_load: float  # seconds to load the model on PyTorch
    onnx_load: float  # seconds to open its export on ONNX Runtime
    export: float | None  # seconds the export took (None: it was already cached when calibrating)
    precision: str  # "fp32" or "int8"
    cpu: str
    model: str
    when: str

    def speedup(self) -> float:
        """How many times faster ONNX Runtime computes than PyTorch (0 without ONNX Runtime)."""
        return self.torch / self.onnx if self.onnx else 0.0

    def costs(self, audio_seconds: float, exported: bool) -> tuple[float, float]:
        """Expected seconds (PyTorch, ONNX Runtime) for a job of `audio_seconds` (inf: long-lived)."""
        if self.onnx is None:
            return 0.0, math.inf
        if math.isinf(audio_seconds):
            return self.torch, self.onnx
        export = 0.0 if exported else (self.export if self.export is not None else math.inf)
        return (
            self.torch_load + audio_seconds * self.torch,
            self.onnx_load + audio_seconds * self.onnx + export,
        )


@dataclass(frozen=True)
class Decision:
    engine: str  # "torch" or "onnx"
    calibrate: bool  # measure first (then decide again from the record)
    why: str  # for the summary line


def cpu_description() -> str:
    """The CPU's model name and the instruction-set flags that decide fp32, bf16 and int8 speed."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    lines = info.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return f"{model!r} flags={','.join(f for f in _FLAGS if f in flags) or 'none'}"


def _cpu_key() -> str:
    try:
        from w2vcli.checkpoints.onnx import import_ort

        ort = import_ort().__version__
    except ImportError:
        ort = "none"
    return f"{cpu_description()} cores={os.cpu_count()} threads={torch.get_num_threads()} torch={torch.__version__} ort={ort}"


def _key(directory: Path, int8: bool) -> str:
    import hashlib

    model = onnx_cache.cache_key(directory, int8)
    return hashlib.sha256(f"{_cpu_key()}\0{model}".encode()).hexdigest()[:32]


def _store() -> Path:
    return onnx_cache.cache_dir() / CALIBRATION_FILE


def _records(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: calibrating again rewrites it
        return {}
    records = data.get("records") if isinstance(data, dict) else None
    return records if isinstance(records, dict) else {}


def lookup(directory: Path, int8: bool) -> Calibration | None:
    """The record for this model, precision and CPU, if one was measured."""
    raw = _records(_store()).get(_key(directory, int8))
    if not isinstance(raw, dict):
        return None
    try:
        return Calibration(**{k: v for k, v in raw.items() if k != "choice"})
    except TypeError:  # written by another version: measure again
        return None


def decide(record: Calibration | None, audio_seconds: float | None, exported: bool) -> Decision:
    """PyTorch or ONNX Runtime for a job of `audio_seconds` (inf: a server; None: unknown, so the
    rates decide where the export exists, and nothing is exported or calibrated) from `record`."""
    if audio_seconds is None:
        if record is None or not exported:
            return Decision("torch", False, "auto: not calibrated and exported here")
        audio_seconds = math.inf
    if record is None:
        if audio_seconds >= CALIBRATE_AFTER:
            return Decision("torch", True, "calibrating")
        return Decision(
            "torch",
            False,
            "auto: not calibrated here; `w2v info MODEL --engines` measures",
        )
    if record.onnx is None:
        return Decision("torch", False, "auto: ONNX Runtime could not run this model")
    torch_cost, onnx_cost = record.costs(audio_seconds, exported)
    ratio = record.speedup()
    rates = f"ONNX Runtime {ratio:.2f}x PyTorch here"
    if onnx_cost < torch_cost:
        return Decision("onnx", False, f"auto: {rates}")
    if ratio > 1 and not exported:
        return Decision("torch", False, f"auto: {rates}, too short a job to pay for the export")
    if ratio > 1:
        return Decision("torch", False, f"auto: {rates}, too short a job to pay for loading it")
    return Decision("torch", False, f"auto: {rates}")


def _alternating(runs: dict, audio_seconds: float) -> dict[str, float]:
    """Median seconds per audio second of each of `runs` (name -> function), after one warm-up each,
    timed in turns so that whatever else slows the machine slows both alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(CALIBRATION_REPEATS):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) / audio_seconds for name, ts in times.items()}


def _on_torch(directory: Path, int8: bool, wav: torch.Tensor):
    """(a function running the model on PyTorch once, seconds it took to load)."""
    from w2vcli.checkpoints.resolve import load_ctc

    t = time.perf_counter()
    ckpt, _ = load_ctc(directory)
    model = ckpt.model.eval().requires_grad_(False)
    if int8:
        from w2vcli.checkpoints.quantize import quantize
        from w2vcli.training.runtime import cpu_has_amx

        model = quantize(model, amx=cpu_has_amx())
    load = time.perf_counter() - t

    def run():
        with torch.inference_mode():
            model(wav)

    return run, load


def calibrate(directory: Path, int8: bool, announce=None) -> Calibration:
    """Time both engines on this model (exporting it into the cache when needed) and record it."""
    from w2vcli.checkpoints.onnx import OnnxCTC

    say = announce or (lambda message: None)
    say(
        f"measuring PyTorch and ONNX Runtime{' (int8)' if int8 else ''} on this model, once for this CPU "
        f"(the result is kept in {_store()})"
    )
    directory = Path(directory)
    wav = torch.from_numpy(
        (np.random.default_rng(0).standard_normal(int(CALIBRATION_SECONDS * SAMPLE_RATE)) * 0.1).astype(
            np.float32
        )
    )[None]
    runs = {}
    onnx_load = export = None
    try:
        exported = onnx_cache.cached_path(directory, int8).is_file()
        t = time.perf_counter()
        path = onnx_cache.cached_export(directory, int8, say, lambda p: p)
        export = None if exported else time.perf_counter() - t
        t = time.perf_counter()
        session, _ = OnnxCTC.open(path)
        onnx_load = time.perf_counter() - t
        runs["onnx"] = lambda: session(wav)
    except ImportError:
        pass
    runs["torch"], torch_load = _on_torch(directory, int8, wav)
    rates = _alternating(runs, CALIBRATION_SECONDS)
    previous = lookup(directory, int8)
    if export is None and previous is not None:
        export = previous.export
    record = Calibration(
        torch=rates["torch"],
        onnx=rates.get("onnx"),
        torch_load=torch_load,
        onnx_load=onnx_load or 0.0,
        export=export,
        precision="int8" if int8 else "fp32",
        cpu=cpu_description(),
        model=str(directory.resolve()),
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        _save(_key(directory, int8), record)
    except OSError as e:  # a read-only or full cache: this job still runs on the winner
        say(f"could not keep the measurement in {_store()} ({e.strerror or e}); it is used for this run only")
    return record


def _save(key: str, record: Calibration) -> None:
    store = _store()
    store.parent.mkdir(parents=True, exist_ok=True)
    with flocked(store.parent / onnx_cache.LOCK_FILE):
        records = _records(store)
        records[key] = asdict(record) | {"choice": "onnx" if record.speedup() > 1 else "torch"}
        atomic_write(store, json.dumps({"format": 1, "records": records}, indent=1) + "\n")
