"""Architecture description: one dataclass of plain values, presets, JSON load/save.

Field names follow Hugging Face's `Wav2Vec2Config` so that config.json files map one to one;
fairseq-only options (`feature_grad_mult`, `feature_penalty_weight`) keep fairseq's names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.fsutil import atomic_write, read_json_object

CONFIG_FILE = "config.json"


@dataclass
class ModelConfig:
    # Feature encoder (CNN): 320x downsampling, 20 ms per frame at 16 kHz.
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = (
        "group"  # "group": GroupNorm after conv 0 only; "layer": LayerNorm in every block
    )
    do_normalize: bool = False  # zero mean / unit variance per utterance (LARGE)
    # Transformer context network.
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    do_stable_layer_norm: bool = False  # pre-LN + final LN (LARGE); post-LN otherwise (BASE)
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    # Regularisation.
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.1
    final_dropout: float = 0.0
    layerdrop: float = 0.05
    # Span masking: mask_time_prob is p x M (spans of M frames start with probability p), see masking.py.
    mask_time_prob: float = 0.65
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 64
    # Quantizer and pretraining objective.
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 320
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    contrastive_logits_temperature: float = 0.1
    num_negatives: int = 100
    diversity_loss_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    feature_grad_mult: float = 0.1
    # BEST-RQ (model/best_rq.py, `pretrain --objective best-rq`): frozen random-projection targets.
    rpq_num_codebooks: int = 1
    rpq_codebook_size: int = 1024
    rpq_codebook_dim: int = 16
    # CTC head.
    vocab_size: int = 32
    pad_token_id: int = 0  # the CTC blank

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if problems:  # sizes are checked only once they are numbers at all
            raise W2VError("invalid model config: " + "; ".join(problems))
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            setattr(self, name, tuple(getattr(self, name)))
        problems = [
            f"{name} must be at least {low}, not {getattr(self, name)}"
            for name, low in _MINIMUM.items()
            if getattr(self, name) < low
        ]
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                problems.append(f"{name} must be a non-empty list of positive integers")
        if not 0 <= self.pad_token_id < self.vocab_size:
            problems.append(f"pad_token_id {self.pad_token_id} must be below vocab_size {self.vocab_size}")
        if problems:  # the ratios below divide by these sizes
            raise W2VError("invalid model config: " + "; ".join(problems))
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            problems.append("conv_dim, conv_kernel and conv_stride must have the same length")
        if self.feat_extract_norm not in ("group", "layer"):
            problems.append(f"feat_extract_norm must be 'group' or 'layer', not {self.feat_extract_norm!r}")
        if self.hidden_size % self.num_attention_heads:
            problems.append("hidden_size must be divisible by num_attention_heads")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            problems.append("hidden_size must be divisible by num_conv_pos_embedding_groups")
        if self.codevector_dim % self.num_codevector_groups:
            problems.append("codevector_dim must be divisible by num_codevector_groups")
        if self.diversity_loss_weight < 0 or self.num_negatives < 1 or self.num_codevectors_per_group < 2:
            problems.append(
                "need diversity_loss_weight >= 0, num_negatives >= 1, num_codevectors_per_group >= 2"
            )
        rates = (
            "hidden_dropout",
            "attention_dropout",
            "activation_dropout",
            "feat_proj_dropout",
            "final_dropout",
            "layerdrop",
            "mask_time_prob",
            "mask_feature_prob",
        )
        if any(not 0 <= getattr(self, name) < 1 for name in rates):
            problems.append("dropout, layerdrop and mask probabilities must lie in [0, 1)")
        if problems:
            raise W2VError("invalid model config: " + "; ".join(problems))
        need, have = 4 * self.parameter_count(), _memory_bytes()
        if have and need > have:
            raise W2VError(
                f"invalid model config: {self.parameter_count():,} parameters need {need / 2**30:.1f} GiB "
                f"in fp32, more than this machine's {have / 2**30:.1f} GiB of memory"
            )

    def parameter_count(self) -> int:
        """Parameters of the largest head (pretraining or CTC), from the sizes alone: checked before
        anything is allocated, so an absurd config.json fails in one line instead of running out of memory."""
        h, i, c = self.hidden_size, self.intermediate_size, self.conv_dim[-1]
        cnn = sum(a * b * k + 3 * b for a, b, k in zip((1, *self.conv_dim), self.conv_dim, self.conv_kernel))
        projection = c * h + h + 2 * c
        pos_conv = h * (h // self.num_conv_pos_embedding_groups) * self.num_conv_pos_embeddings + 2 * h
        layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
        quantizer = c * self.num_codevectors + self.num_codevectors * (
            1 + self.codevector_dim // self.num_codevector_groups
        )
        heads = (self.codevector_dim + h + 2) * self.proj_codevector_dim + (h + 1) * self.vocab_size
        return cnn + projection + pos_conv + self.num_hidden_layers * layer + quantizer + heads + 3 * h

    @property
    def num_codevectors(self) -> int:
        return self.num_codevector_groups * self.num_codevectors_per_group

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame (400 for the standard encoder)."""
        field_, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            field_ += (k - 1) * jump
            jump *= s
        return field_

    @property
    def frame_stride(self) -> int:
        """Samples between output frames (320 for the standard encoder)."""
        stride = 1
        for s in self.conv_stride:
            stride *= s
        return stride

    def replace(self, **changes) -> ModelConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise W2VError(f"unknown model config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        path = Path(directory) / CONFIG_FILE
        return atomic_write(path, json.dumps({**self.to_dict(), **(extra or {})}, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ModelConfig:
        path = Path(directory) / CONFIG_FILE
        raw = read_json_object(path, "model config")
        try:
            return cls.from_dict(raw)
        except W2VError as e:
            raise W2VError(f"{path}: {e}") from None


# Smallest allowed value of each integer size (tuples are checked apart).
_MINIMUM = {
    "rpq_num_codebooks": 1,
    "rpq_codebook_size": 2,
    "rpq_codebook_dim": 1,
    "hidden_size": 1,
    "num_hidden_layers": 0,
    "num_attention_heads": 1,
    "intermediate_size": 1,
    "num_conv_pos_embeddings": 1,
    "num_conv_pos_embedding_groups": 1,
    "mask_time_length": 1,
    "mask_time_min_masks": 0,
    "mask_feature_length": 1,
    "num_codevector_groups": 1,
    "codevector_dim": 1,
    "proj_codevector_dim": 1,
    "vocab_size": 1,
    "layer_norm_eps": 1e-12,
    "contrastive_logits_temperature": 1e-6,
}


def _type_problems(config) -> list[str]:
    """Each field against its annotation: JSON gives 1e9 as a float and "12" as a string; neither is a size."""
    problems = []
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), str(f.type)
        if kind.startswith("tuple"):
            ok = isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            want = "a list of integers"
        elif kind == "int":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
        elif kind == "bool":
            ok, want = isinstance(value, bool), "true or false"
        else:
            ok, want = isinstance(value, str), "a string"
        if not ok:
            problems.append(f"{f.name} must be {want}, not {value!r}"[:160])
    return problems


def _memory_bytes() -> int:
    """This machine's physical memory (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def _base() -> ModelConfig:
    return ModelConfig()


def _large() -> ModelConfig:
    # LV-60k: layer-norm encoder with conv bias, waveform normalisation, pre-LN transformer.
    return ModelConfig(
        conv_bias=True,
        feat_extract_norm="layer",
        do_normalize=True,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        do_stable_layer_norm=True,
        codevector_dim=768,
        proj_codevector_dim=768,
        feature_penalty_weight=0.0,
        feature_grad_mult=1.0,
        layerdrop=0.0,
    )


def _tiny() -> ModelConfig:
    # CPU-friendly: layer-norm encoder (padding-invariant, so fine-tuning batches can pad), pre-LN.
    return ModelConfig(
        conv_dim=(128,) * 7,  # the CNN is most of a CPU step: 128 channels train ~2x faster than 256
        conv_bias=True,
        feat_extract_norm="layer",
        do_normalize=True,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        codevector_dim=256,
        proj_codevector_dim=128,
        feature_penalty_weight=0.0,
        feature_grad_mult=1.0,
        layerdrop=0.0,
    )


PRESETS = {"tiny": _tiny, "base": _base, "large": _large}
# The standard feature encoder's geometry (every preset's), for code that has no model at hand:
# derived from the conv layout above, never restated.
FRAME_STRIDE = ModelConfig().frame_stride  # samples between output frames
RECEPTIVE_FIELD = ModelConfig().receptive_field  # samples one frame sees


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise W2VError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
