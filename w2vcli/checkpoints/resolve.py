"""Which model `w2v transcribe` runs: `--model`, else `W2V_MODEL`, else the English model from the hub.

`--model` may name a fine-tuning run directory (its best checkpoint), one of our checkpoint
directories, a Hugging Face wav2vec 2.0 CTC directory (converted on the fly), an ONNX file written
by `w2v export`, or a hub id (`owner/name`, when `huggingface_hub` is installed and the hub
reachable or cached).

The engine: on the CPU, ONNX Runtime (measured faster than PyTorch's eager mode on base, in fp32 and
int8: bench/RESULTS.md), with the model exported once and cached; on GPUs, PyTorch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import UsageError, W2VError

ENV_VAR = "W2V_MODEL"
ENGINE_ENV = "W2V_ENGINE"
ENGINES = ("auto", "onnx", "torch")
DEFAULT_HUB_MODEL = "facebook/wav2vec2-base-960h"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_HUB_FILES = [
    "config.json",
    "preprocessor_config.json",
    "vocab.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "spm.model",
]
NO_MODEL = (
    "no model: pass --model (a fine-tuning run, checkpoint or Hugging Face directory), set W2V_MODEL, "
    f"or `pip install huggingface_hub` with network access to download {DEFAULT_HUB_MODEL}"
)


@dataclass
class LoadedModel:
    model: object  # Wav2Vec2ForCTC in eval mode, or OnnxCTC: called alike
    config: object  # ModelConfig
    vocab: object  # Vocabulary or SentencePieceVocabulary
    path: Path
    normalize: bool = False  # inputs must be normalised by the caller (the model's own step is off)
    engine: str = "torch"  # "torch" (model is a Wav2Vec2ForCTC) or "onnx" (an OnnxCTC on ONNX Runtime)
    device: str = "cpu"
    why: str = ""  # how the engine was chosen, for the summary line ("--engine onnx", "auto: ...")


def _is_model_dir(path: Path) -> bool:
    from w2vcli.checkpoints.huggingface import is_hf_dir
    from w2vcli.checkpoints.native import is_checkpoint

    return is_checkpoint(path) or is_hf_dir(path)


def run_checkpoint(run: Path) -> Path | None:
    """The checkpoint a training run directory stands for (layout in `w2vcli.training.rundir`): `best/`, else
    the checkpoint `last` names, else the newest complete one. None when `run` holds none."""
    if _is_model_dir(run / "best"):
        return run / "best"
    from w2vcli.training.rundir import RunDir

    return RunDir(run).latest()


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise W2VError(
            f"{repo_id} is not a local directory and huggingface_hub is not installed; {NO_MODEL}"
        ) from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as e:  # offline, unknown repo, auth: all end the same way for the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise W2VError(
            f"cannot get {repo_id} from the Hugging Face hub ({reason[:160]}); {NO_MODEL}"
        ) from None


def resolve_model(spec: str | None, given_as: str = "--model") -> Path:
    """A local model directory for `--model` (None: W2V_MODEL, then the default hub model). `given_as`:
    how the user gave `spec`, for messages (`w2v export` takes it as its MODEL argument)."""
    if not spec:
        spec = os.environ.get(ENV_VAR) or None
    if not spec:
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            raise W2VError(NO_MODEL) from None
        return _from_hub(DEFAULT_HUB_MODEL)
    path = Path(spec).expanduser()
    if path.is_dir():
        if _is_model_dir(path):
            return path
        found = run_checkpoint(path)
        if found is None:
            from w2vcli.training.rundir import no_checkpoint_yet

            raise W2VError(
                no_checkpoint_yet(path)
                or f"{spec} is neither a checkpoint, a Hugging Face model nor a fine-tuning run with a checkpoint"
            )
        return found
    if path.exists():
        also = " or an .onnx file" if given_as == "--model" else ""
        raise W2VError(f"{given_as} {spec} is a file; pass the model's directory{also}")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _from_hub(spec)
    raise W2VError(f"model not found: {spec}")


def load_model(
    spec: str | None,
    device: str = "cpu",
    int8: bool = False,
    engine: str | None = None,
    announce=None,
    audio_seconds: float | None = None,
) -> LoadedModel:
    """Resolve, load (converting Hugging Face weights), check it is a CTC model with a vocabulary, and
    put it on its engine: `engine` "auto" (None: $W2V_ENGINE, else auto) is, on the CPU, whichever
    of PyTorch and ONNX Runtime this model's calibration on this CPU says is cheaper for a job of
    `audio_seconds` (math.inf: a server; None: unknown, so no export or calibration is started for it;
    checkpoints/engine_choice.py), PyTorch elsewhere. An ONNX
    export is cached (`announce(msg)` is told when one is made, or a calibration runs); a cached one
    is used without loading the weights. Where `auto` cannot write the cache (read-only, full), it
    runs on PyTorch and says so."""
    if spec and Path(spec).suffix == ".onnx" and Path(spec).is_file():  # $W2V_ENGINE does not apply
        return _load_onnx_file(Path(spec), device, int8, _engine_choice(engine, environment=False)[0])
    engine, source = _engine_choice(engine)
    path = resolve_model(spec)
    auto = engine == "auto"
    why = source
    if auto:
        engine, why = _auto_engine(path, device, int8, audio_seconds, announce)
    if engine == "onnx":
        if device != "cpu":
            raise UsageError(f"{source} runs on the CPU; add --device cpu or use --engine torch")
        from w2vcli.checkpoints.onnx_cache import CacheUnwritable, cached_export

        try:
            loaded = cached_export(path, int8, announce, lambda p: _load_onnx_file(p, device, int8, "onnx"))
        except CacheUnwritable as e:
            if not auto:
                raise
            if announce:
                announce(
                    f"the ONNX cache {e.root} cannot be written ({e.reason}): running on PyTorch; "
                    "set W2V_CACHE to a writable folder for ONNX Runtime"
                )
        else:
            loaded.path, loaded.why = path, why
            return loaded
        why = "auto: the ONNX cache cannot be written"
    ckpt, vocab = load_ctc(path)
    model = ckpt.model.eval().requires_grad_(False)
    normalize = ckpt.config.do_normalize
    if int8:
        if device != "cpu":
            raise W2VError("--int8 runs on the CPU only; add --device cpu or drop --int8")
        from w2vcli.checkpoints.quantize import quantize
        from w2vcli.training.runtime import cpu_has_amx

        model = quantize(model, amx=cpu_has_amx())
    if normalize:  # chunks of a long file must share the whole file's statistics: the caller normalises
        model.wav2vec2.config = ckpt.config.replace(do_normalize=False)
    return LoadedModel(model.to(device), ckpt.config, vocab, path, normalize, "torch", device, why)


def _auto_engine(
    path: Path, device: str, int8: bool, audio_seconds: float | None, announce
) -> tuple[str, str]:
    """(engine, why) for `--engine auto`: PyTorch off the CPU or without onnxruntime; on the CPU what
    this model's calibration says, calibrating first when the job is long (engine_choice.decide)."""
    if device != "cpu":
        return "torch", f"auto: PyTorch on {device}"
    if not _has_onnxruntime():
        return "torch", "auto: onnxruntime is not installed"
    from w2vcli.checkpoints import engine_choice
    from w2vcli.checkpoints.onnx_cache import CacheUnwritable, cached_path

    exported = cached_path(path, int8).is_file()
    decision = engine_choice.decide(engine_choice.lookup(path, int8), audio_seconds, exported)
    if decision.calibrate:
        try:
            record = engine_choice.calibrate(path, int8, announce)
        except CacheUnwritable as e:
            if announce:
                announce(
                    f"the ONNX cache {e.root} cannot be written ({e.reason}): running on PyTorch; "
                    "set W2V_CACHE to a writable folder for ONNX Runtime"
                )
            return "torch", "auto: the ONNX cache cannot be written"
        decision = engine_choice.decide(record, audio_seconds, cached_path(path, int8).is_file())
    return decision.engine, decision.why


def load_ctc(path: Path):
    """The checkpoint at `path` (ours or Hugging Face's) and its vocabulary, checked to be a CTC model
    whose outputs the vocabulary can name."""
    from w2vcli.checkpoints.huggingface import load_any
    from w2vcli.checkpoints.native import check_vocab
    from w2vcli.data.text import SPM_FILE, load_vocabulary

    ckpt = load_any(path)
    if ckpt.head != "ctc":
        raise W2VError(f"{path} is a pretrained model without a CTC head; fine-tune it first (w2v finetune)")
    vocab = ckpt.vocab
    if (path / SPM_FILE).is_file():
        vocab = load_vocabulary(path / SPM_FILE)
    if vocab is None:
        raise W2VError(f"{path} has no vocab.json or spm.model: cannot turn its outputs into text")
    check_vocab(vocab, ckpt.config, path)
    return ckpt, vocab


def _engine_choice(engine: str | None, environment: bool = True) -> tuple[str, str]:
    """The engine (`--engine`, else $W2V_ENGINE when `environment`, else auto), in any case, and how
    the user chose it, for messages: ("onnx", "W2V_ENGINE=ONNX") or ("torch", "--engine torch")."""
    if engine:
        source = f"--engine {engine}"
    elif environment and os.environ.get(ENGINE_ENV):
        engine = os.environ[ENGINE_ENV]
        source = f"{ENGINE_ENV}={engine}"
    else:
        return "auto", "--engine auto"
    choice = engine.strip().lower()
    if choice not in ENGINES:
        raise UsageError(f"{source}: expected one of {', '.join(ENGINES)}")
    return choice, source


def _has_onnxruntime() -> bool:
    try:
        from w2vcli.checkpoints.onnx import import_ort

        import_ort()
    except ImportError:
        return False
    return True


def _load_onnx_file(path: Path, device: str, int8: bool, engine: str) -> LoadedModel:
    """An ONNX file written by `w2v export`: its metadata carries the config and the vocabulary."""
    from w2vcli.checkpoints.onnx import OnnxCTC

    if engine == "torch":
        raise UsageError(f"{path} is an ONNX model: it runs on --engine onnx (or auto), not torch")
    if device != "cpu":
        raise UsageError(f"{path} is an ONNX model, which runs on the CPU; add --device cpu")
    model, info = OnnxCTC.open(path)
    if int8 and not info.int8:
        raise UsageError(
            f"{path} is an fp32 ONNX model; export an int8 one (w2v export --int8) or drop --int8"
        )
    return LoadedModel(model, info.config, info.vocab, path, info.normalize, "onnx", why="an ONNX file")
