"""Our checkpoint format: a directory with `config.json` + `model.safetensors` (+ `vocab.json` for CTC).

safetensors holds only tensors, so loading a checkpoint never unpickles arbitrary objects.
Keys are Hugging Face's (`wav2vec2.encoder.layers.0...`), with the weight-normalised positional
conv stored as `weight_g` / `weight_v`. `config.json` holds the ModelConfig fields plus a `w2vcli`
block naming the head.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from w2vcli import __version__
from w2vcli.data.text import SPM_FILE, VOCAB_FILE, Vocabulary
from w2vcli.errors import W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.model.best_rq import Wav2Vec2ForBestRQ
from w2vcli.model.config import CONFIG_FILE, ModelConfig

WEIGHTS_FILE = "model.safetensors"
# What a checkpoint directory consists of (ours and Hugging Face's): the only files a command that
# writes a model into an existing directory may replace or remove there.
CHECKPOINT_FILES = frozenset(
    {
        CONFIG_FILE,
        WEIGHTS_FILE,
        VOCAB_FILE,
        SPM_FILE,
        "preprocessor_config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "generation_config.json",
    }
)
HEADS = {"ctc": Wav2Vec2ForCTC, "pretraining": Wav2Vec2ForPreTraining, "best-rq": Wav2Vec2ForBestRQ}


@dataclass
class Checkpoint:
    model: torch.nn.Module
    config: ModelConfig
    head: str  # "ctc", "pretraining" (contrastive) or "best-rq"
    vocab: Vocabulary | None
    path: Path


def head_of(model: torch.nn.Module) -> str:
    for name, cls in HEADS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"not a wav2vec 2.0 head: {type(model).__name__}")


def is_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    if not (p / CONFIG_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
        return False
    try:
        return "w2vcli" in json.loads((p / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False


def save_checkpoint(
    model: torch.nn.Module, directory: str | os.PathLike, vocab: Vocabulary | None = None, **info
) -> Path:
    """Write atomically: into a temporary sibling directory, then rename over `directory`."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    tmp.mkdir(exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    model.config.save(tmp, extra={"w2vcli": {"head": head_of(model), "version": __version__, **info}})
    if vocab is not None:
        vocab.save(tmp)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if not directory.exists():
        os.replace(tmp, directory)
    elif all(f.name in CHECKPOINT_FILES and f.is_file() for f in directory.iterdir()):
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)  # a checkpoint and nothing else: swap the whole directory
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:  # other files live there too: replace ours one by one and leave the rest alone
        for name in CHECKPOINT_FILES:
            if not (tmp / name).exists():
                (directory / name).unlink(missing_ok=True)
        for f in tmp.iterdir():
            os.replace(f, directory / f.name)
        tmp.rmdir()
    return directory


def read_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; an empty, truncated or foreign file is one clear error."""
    try:
        return load_file(str(path), device=device)
    except OSError as e:
        raise W2VError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad headers and sizes
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise W2VError(
            f"{path} is not a readable safetensors file, truncated or damaged ({reason}); "
            "copy or convert the model again"
        ) from None


def read_info(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_FILE
    try:
        return json.loads(path.read_text()).get("w2vcli", {})
    except (OSError, ValueError) as e:
        raise W2VError(f"cannot read {path}: {e}") from None


def load_checkpoint(directory: str | os.PathLike, map_location: str = "cpu") -> Checkpoint:
    directory = Path(directory)
    if not is_checkpoint(directory):
        from w2vcli.training.rundir import no_checkpoint_yet

        raise W2VError(
            no_checkpoint_yet(directory)
            or f"{directory} is not a w2vcli checkpoint (expected config.json + model.safetensors); "
            "import a Hugging Face model with `w2v convert`"
        )
    config = ModelConfig.load(directory)
    head = read_info(directory).get("head", "ctc")
    if head not in HEADS:
        raise W2VError(f"{directory}: unknown head {head!r} in config.json")
    model = HEADS[head](config)
    state = read_safetensors(directory / WEIGHTS_FILE, map_location)
    own = model.state_dict()
    wrong = [k for k in own if k not in state or state[k].shape != own[k].shape] + [
        k for k in state if k not in own
    ]
    if wrong:
        raise W2VError(
            f"{directory}: weights do not match config.json ({len(wrong)} tensors differ, e.g. {wrong[0]})"
        )
    model.load_state_dict(state)
    vocab = Vocabulary.load(directory) if (directory / VOCAB_FILE).is_file() else None
    if head == "ctc":
        check_vocab(vocab, config, directory)
    return Checkpoint(model.eval(), config, head, vocab, directory)


def check_vocab(vocab, config: ModelConfig, where) -> None:
    """A CTC head writes one logit per token: a vocabulary of another size would decode ids it has no
    token for (or never emit some), so the model is refused when it loads, not mid-transcription."""
    if vocab is not None and len(vocab) != config.vocab_size:
        raise W2VError(
            f"{where}: the vocabulary has {len(vocab)} tokens but the CTC head outputs "
            f"{config.vocab_size}; the vocabulary does not belong to this model"
        )


def load_backbone(model: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy the shared `wav2vec2.*` weights of one head into another (pretraining -> CTC)."""
    state = {k: v for k, v in source.state_dict().items() if k.startswith("wav2vec2.")}
    missing, _ = model.load_state_dict(state, strict=False)
    backbone_missing = [k for k in missing if k.startswith("wav2vec2.")]
    if backbone_missing:
        raise W2VError(
            f"initial model lacks {len(backbone_missing)} backbone weights, e.g. {backbone_missing[0]}"
        )
