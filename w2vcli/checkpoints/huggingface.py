"""Hugging Face interop: import a transformers wav2vec 2.0 directory, export ours to one.

Our module names are Hugging Face's, so the key table is short: the positional conv's weight norm
(`weight_g`/`weight_v`, or `parametrizations.weight.original0/1` in newer files) and the
`wav2vec2.` prefix that bare `Wav2Vec2Model` files lack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from w2vcli.checkpoints.native import (
    CHECKPOINT_FILES,
    HEADS,
    Checkpoint,
    check_vocab,
    head_of,
    load_checkpoint,
    read_safetensors,
    save_checkpoint,
)
from w2vcli.data.audio import SAMPLE_RATE
from w2vcli.data.text import VOCAB_FILE, Vocabulary
from w2vcli.errors import UsageError, W2VError
from w2vcli.fsutil import read_json_object
from w2vcli.model.config import ModelConfig

POS_CONV = "wav2vec2.encoder.pos_conv_embed.conv."
_NEW_WEIGHT_NORM = {
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}
# transformers' Wav2Vec2Config defaults where they differ from ours: used when a config.json omits a field.
_HF_DEFAULTS = {
    "mask_time_prob": 0.05,
    "layerdrop": 0.1,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.1,
    "activation_dropout": 0.1,
    "mask_feature_length": 10,
}
# Options transformers has and we do not: (field, value we support).
_UNSUPPORTED = [
    ("feat_extract_activation", "gelu"),
    ("hidden_act", "gelu"),
    ("add_adapter", False),
    ("adapter_attn_dim", None),
    ("position_embeddings_type", None),
]


def is_hf_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    if not (p / "config.json").is_file():
        return False
    try:
        return "model_type" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False


def config_from_hf(hf: dict, do_normalize: bool | None = None) -> ModelConfig:
    """transformers config.json (+ the feature extractor's do_normalize) -> ModelConfig."""
    if hf.get("model_type") != "wav2vec2":
        raise W2VError(
            f"model_type {hf.get('model_type')!r} is not supported; only 'wav2vec2' models convert"
        )
    for name, supported in _UNSUPPORTED:
        if hf.get(name, supported) != supported:
            raise W2VError(f"config field {name}={hf[name]!r} is not supported (only {supported!r})")
    if hf.get("num_feat_extract_layers", len(hf.get("conv_dim", [0] * 7))) != len(
        hf.get("conv_dim", [0] * 7)
    ):
        raise W2VError("config field num_feat_extract_layers does not match conv_dim")
    fields = {**_HF_DEFAULTS, **hf}
    layer_norm = fields.get("feat_extract_norm", "group") == "layer"
    # transformers' feature extractor normalises unless its preprocessor_config.json says otherwise.
    fields["do_normalize"] = True if do_normalize is None else bool(do_normalize)
    fields.setdefault("feature_penalty_weight", 0.0 if layer_norm else 10.0)
    fields.setdefault("feature_grad_mult", 1.0 if layer_norm else 0.1)
    if fields.get("pad_token_id") is None:
        fields["pad_token_id"] = 0
    return ModelConfig.from_dict(fields)


def config_to_hf(config: ModelConfig, head: str) -> dict:
    d = config.to_dict()
    for ours_only in ("do_normalize", "feature_penalty_weight", "feature_grad_mult", *RPQ_FIELDS):
        d.pop(ours_only)
    # a BEST-RQ head has no transformers class: its backbone goes out as a bare Wav2Vec2Model
    arch = {"ctc": "Wav2Vec2ForCTC", "pretraining": "Wav2Vec2ForPreTraining", "best-rq": "Wav2Vec2Model"}[
        head
    ]
    return {
        **d,
        "model_type": "wav2vec2",
        "architectures": [arch],
        "feat_extract_activation": "gelu",
        "hidden_act": "gelu",
        "num_feat_extract_layers": len(config.conv_dim),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "ctc_zero_infinity": True,
        "ctc_loss_reduction": "sum",
    }


def state_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith(("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed")):
            key = "wav2vec2." + key  # a bare Wav2Vec2Model file
        for new, old in _NEW_WEIGHT_NORM.items():
            if key == POS_CONV + new:
                key = POS_CONV + old
        out[key] = value
    return out


RPQ_FIELDS = frozenset({"rpq_num_codebooks", "rpq_codebook_size", "rpq_codebook_dim"})


def state_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    back = {POS_CONV + old: POS_CONV + new for new, old in _NEW_WEIGHT_NORM.items()}
    return {back.get(k, k): v.contiguous() for k, v in state.items()}


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        return read_safetensors(directory / "model.safetensors")
    if index.is_file():
        return {k: v for shard in _shards(index) for k, v in read_safetensors(shard).items()}
    if (directory / "pytorch_model.bin").is_file():
        return _read_pickle(directory / "pytorch_model.bin")
    raise W2VError(f"{directory}: no model.safetensors or pytorch_model.bin found")


def _shards(index: Path) -> list[Path]:
    """The shard files an index names; each must be a file beside the index (never `../x` or `/etc/x`)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise W2VError(f"cannot read {index}: {e}") from None
    shards = []
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise W2VError(f"{index} names a shard outside its directory ({name!r}); refusing to open it")
        shards.append(index.parent / name)
    return shards


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """weights_only=True: a pickle that holds anything but tensors is refused, never executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's advice (weights_only=False) would run the file's code
        if "weights only" not in str(e).lower():
            raise W2VError(f"{path} is not a readable PyTorch weights file, truncated or damaged") from None
        raise W2VError(
            f"{path} holds Python objects besides tensors: not safe to load. Convert it to safetensors where "
            "you trust its source (transformers: model.save_pretrained(dir, safe_serialization=True))"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise W2VError(f"{path} is not a state dict of tensors")
    return state


def model_from_hf(hf: dict, weights: dict[str, torch.Tensor], do_normalize: bool | None = None):
    """transformers config dict + state dict -> (our model in eval mode, its head name)."""
    config = config_from_hf(hf, do_normalize)
    state = state_from_hf(weights)
    if "lm_head.weight" in state:
        head = "ctc"
        config = config.replace(vocab_size=state["lm_head.weight"].shape[0])
    elif "quantizer.codevectors" in state:
        head = "pretraining"
    else:
        raise W2VError("the weights hold neither a CTC head (lm_head) nor a quantizer: nothing to convert")
    model = HEADS[head](config)
    own = model.state_dict()
    if "wav2vec2.masked_spec_embed" not in state:  # transformers omits it when masking is off
        state["wav2vec2.masked_spec_embed"] = own["wav2vec2.masked_spec_embed"]
    state = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(state))
    if missing:
        raise W2VError(f"weights missing for {len(missing)} tensors, e.g. {missing[0]}")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise W2VError(f"{k} has shape {tuple(v.shape)}, the config implies {tuple(own[k].shape)}")
    model.load_state_dict(state)
    return model.eval(), head


def import_hf(directory: str | os.PathLike) -> Checkpoint:
    """Load a transformers wav2vec 2.0 directory (CTC or pretraining) as our model."""
    directory = Path(directory)
    try:
        hf = json.loads((directory / "config.json").read_text())
        pre = directory / "preprocessor_config.json"
        do_normalize = json.loads(pre.read_text()).get("do_normalize") if pre.is_file() else None
    except (OSError, ValueError) as e:
        raise W2VError(f"cannot read {directory}/config.json: {e}") from None
    try:
        model, head = model_from_hf(hf, _read_hf_weights(directory), do_normalize)
    except W2VError as e:
        raise W2VError(f"{directory}: {e}") from None
    vocab = None
    if (directory / VOCAB_FILE).is_file():
        raw = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        if raw and all(isinstance(v, dict) for v in raw.values()):
            raise W2VError(
                f"{directory}/vocab.json holds per-language vocabularies (adapters): not supported"
            )
        vocab = Vocabulary.load(directory)
    if head == "ctc":
        check_vocab(vocab, model.config, directory)
    return Checkpoint(model, model.config, head, vocab, directory)


def export_hf(ckpt: Checkpoint, out: str | os.PathLike) -> Path:
    """Write a directory that transformers' from_pretrained loads (model, config, vocab, processor files)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    head = head_of(ckpt.model)
    state = {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()}
    if head == "best-rq":  # Wav2Vec2Model's keys have no prefix
        state = {k.removeprefix("wav2vec2."): v for k, v in state.items() if k.startswith("wav2vec2.")}
    state = state_to_hf(state)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config_to_hf(ckpt.config, head), indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "Wav2Vec2FeatureExtractor",
                "feature_size": 1,
                "sampling_rate": SAMPLE_RATE,
                "padding_value": 0.0,
                "padding_side": "right",
                "do_normalize": ckpt.config.do_normalize,
                "return_attention_mask": ckpt.config.feat_extract_norm == "layer",
            },
            indent=2,
        )
        + "\n"
    )
    if ckpt.vocab is not None:
        ckpt.vocab.save(out)
        (out / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": "Wav2Vec2CTCTokenizer",
                    "unk_token": "<unk>",
                    "pad_token": "<pad>",
                    "bos_token": "<s>",
                    "eos_token": "</s>",
                    "word_delimiter_token": "|",
                    "do_lower_case": False,
                },
                indent=2,
            )
            + "\n"
        )
    return out


def load_any(path: str | os.PathLike) -> Checkpoint:
    """Our checkpoint directory or a Hugging Face one."""
    path = Path(path)
    if not path.is_dir():
        raise W2VError(f"model directory {path} does not exist")
    if (path / "config.json").is_file():  # a damaged one is named as such, not as "not a checkpoint"
        read_json_object(path / "config.json", "model config (not valid JSON?)")
    if is_hf_dir(path):
        return import_hf(path)
    return load_checkpoint(path)


def check_destination(dst: str | os.PathLike, overwrite: bool) -> None:
    """A model may be written into a new or empty directory; into one holding files only with
    `overwrite`, and then only the files a checkpoint consists of are replaced or removed."""
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise UsageError(f"DST {dst} is a file; give a directory for the model")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise UsageError(
            f"DST {dst} is not empty; choose a new directory, or pass --overwrite to replace the model "
            "files there (other files are kept)"
        )


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str = "w2v", overwrite: bool = False) -> Path:
    """`w2v convert`: any supported directory -> ours (`to="w2v"`) or transformers' (`to="hf"`)."""
    if to not in ("w2v", "hf"):
        raise UsageError(f"--to must be 'w2v' or 'hf', not {to!r}")
    check_destination(dst, overwrite)
    ckpt = load_any(src)
    if to == "w2v":
        return save_checkpoint(ckpt.model, dst, ckpt.vocab, source=str(src))
    for name in CHECKPOINT_FILES:  # a model written over another must not mix with its leftovers
        (Path(dst) / name).unlink(missing_ok=True)
    return export_hf(ckpt, dst)
