"""Which model `w2v transcribe` runs: `--model`, else `W2V_MODEL`, else the English model from the hub.

`--model` may name a fine-tuning run directory (its best checkpoint), one of our checkpoint
directories, a Hugging Face wav2vec 2.0 CTC directory (converted on the fly), or a hub id
(`owner/name`, when `huggingface_hub` is installed and the hub reachable or cached).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import W2VError

ENV_VAR = "W2V_MODEL"
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
    model: object  # Wav2Vec2ForCTC in eval mode
    config: object  # ModelConfig
    vocab: object  # Vocabulary or SentencePieceVocabulary
    path: Path
    normalize: bool = False  # inputs must be normalised by the caller (the model's own step is off)


def _is_model_dir(path: Path) -> bool:
    from w2vcli.checkpoint import is_checkpoint
    from w2vcli.convert import is_hf_dir

    return is_checkpoint(path) or is_hf_dir(path)


def run_checkpoint(run: Path) -> Path | None:
    """The checkpoint a training run directory stands for (layout in `w2vcli.rundir`): `best/`, else
    the checkpoint `last` names, else the newest complete one. None when `run` holds none."""
    if _is_model_dir(run / "best"):
        return run / "best"
    from w2vcli.rundir import RunDir

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


def resolve_model(spec: str | None) -> Path:
    """A local model directory for `--model` (None: W2V_MODEL, then the default hub model)."""
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
            raise W2VError(
                f"{spec} is neither a checkpoint, a Hugging Face model nor a fine-tuning run with a checkpoint"
            )
        return found
    if path.exists():
        raise W2VError(f"--model {spec} is a file; pass the model's directory")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _from_hub(spec)
    raise W2VError(f"model not found: {spec}")


def load_model(spec: str | None, device: str = "cpu", int8: bool = False) -> LoadedModel:
    """Resolve, load (converting Hugging Face weights), check it is a CTC model with a vocabulary."""

    from w2vcli.checkpoint import check_vocab
    from w2vcli.convert import load_any
    from w2vcli.distributed import cpu_has_amx
    from w2vcli.text import SPM_FILE, load_vocabulary

    path = resolve_model(spec)
    ckpt = load_any(path)
    if ckpt.head != "ctc":
        raise W2VError(f"{path} is a pretrained model without a CTC head; fine-tune it first (w2v finetune)")
    vocab = ckpt.vocab
    if (path / SPM_FILE).is_file():
        vocab = load_vocabulary(path / SPM_FILE)
    if vocab is None:
        raise W2VError(f"{path} has no vocab.json or spm.model: cannot turn its outputs into text")
    check_vocab(vocab, ckpt.config, path)
    model = ckpt.model.eval().requires_grad_(False)
    if int8:
        if device != "cpu":
            raise W2VError("--int8 runs on the CPU only; add --device cpu or drop --int8")
        model = quantize(model, amx=cpu_has_amx())
    normalize = ckpt.config.do_normalize
    if normalize:  # chunks of a long file must share the whole file's statistics: the caller normalises
        model.wav2vec2.config = ckpt.config.replace(do_normalize=False)
    return LoadedModel(model.to(device), ckpt.config, vocab, path, normalize)


def quantize(model, amx: bool = False):
    """`--int8`: the transformer's linear layers (~60% of a CPU forward) in dynamic int8 with
    per-channel weight scales. The CNN input projection and the CTC head stay in fp32: they are
    cheap, and quantizing them doubled the logits' error.

    With `amx` (the CPU has AMX tiles) the weights are packed for oneDNN, whose int8 kernels run on
    AMX (~2.5x fbgemm's; the packed weights keep their engine whatever the global one is), and the
    CNN (most of the rest) runs under bfloat16 autocast and attention in bfloat16.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    from w2vcli.model.transformer import Attention

    engine = torch.backends.quantized.engine
    if amx and "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"
    try:
        with warnings.catch_warnings():  # torch announces a move to torchao; the API works as documented
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            model = torch.ao.quantization.quantize_dynamic(
                model, {"wav2vec2.encoder": per_channel_dynamic_qconfig}, dtype=torch.qint8
            )
    finally:
        torch.backends.quantized.engine = engine
    if amx:
        cnn = model.wav2vec2.feature_extractor
        cnn.forward = _autocast_bf16(cnn.forward)
        for m in model.modules():
            if isinstance(m, Attention):
                m.inference_dtype = torch.bfloat16
    return model


def _autocast_bf16(forward):
    """`forward` run under CPU bfloat16 autocast, its output back in float32 for the int8 layers."""
    import torch

    def run(*args):
        with torch.autocast("cpu", torch.bfloat16):
            return forward(*args).float()

    return run
