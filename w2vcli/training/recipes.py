"""Recipes: the training settings that work at each model scale, carried by the presets.

A preset names an architecture (`config.PRESETS`) and, here, how to train it: the pretraining
objective (negatives K, codebook size V, span masks, diversity weight), the batch, crop, learning
rate and Gumbel range of pretraining, and the fine-tuning schedule and augmentation. `base` and
`large` follow the paper (Baevski et al. 2020, tables 6 and 7; fairseq's configs); `tiny` carries the
small-scale recipe measured in examples/RESULTS.md: with the paper's K=100, V=320 and 10-frame masks
a 4.9M-parameter model on an hour of audio stays at chance, while K=20, V=64, 5-frame masks, a
diversity weight of 0.5 and a Gumbel temperature falling from 20 learn within minutes.

The command line and library callers get their defaults from the same functions:

    cfg, model = pretrain_settings("tiny", {"max_minutes": 8})
    cfg, overrides = finetune_settings("tiny", {"lr": 1e-3})

Warm-up, hold and the Gumbel annealing are fractions of the budget, so a recipe fits any run length,
whether the budget is in updates or in minutes (training/schedule.py).
"""

from __future__ import annotations

from w2vcli.errors import UsageError
from w2vcli.model.config import PRESETS, ModelConfig, preset
from w2vcli.training.config import FinetuneConfig, PretrainConfig, TrainConfig

# ModelConfig fields that describe the objective, not the architecture: a recipe (or a flag) may set them
# on a model loaded with `--init`; every other field comes from that model.
OBJECTIVE_FIELDS = frozenset(
    {
        "mask_time_prob",
        "mask_time_length",
        "mask_time_min_masks",
        "mask_feature_prob",
        "mask_feature_length",
        "num_negatives",
        "diversity_loss_weight",
        "feature_penalty_weight",
        "feature_grad_mult",
        "contrastive_logits_temperature",
        "hidden_dropout",
        "attention_dropout",
        "activation_dropout",
        "feat_proj_dropout",
        "final_dropout",
        "layerdrop",
    }
)
# The quantizer's shape: from the model when it has a quantizer, from the recipe when it starts fresh.
QUANTIZER_FIELDS = frozenset(
    {
        "num_codevector_groups",
        "num_codevectors_per_group",
        "codevector_dim",
        "proj_codevector_dim",
    }
)

PRETRAIN = {
    # Batches of 8 s in 2 s crops: twice the updates a minute of 16 s / 4 s, which is what a short budget
    # needs (8 minutes on one AVX2 core: 842 updates, 2.5x chance, against 331 updates, 1.9x).
    "tiny": {
        "model": {
            "num_negatives": 20,
            "num_codevectors_per_group": 64,
            "mask_time_prob": 0.3,
            "mask_time_length": 5,
            "diversity_loss_weight": 0.5,
        },
        "train": {
            "max_updates": 10_000,
            "batch_seconds": 8.0,
            "crop_seconds": 2.0,
            "lr": 1e-3,
            "warmup": 0.05,
            "gumbel_start": 20.0,
            "gumbel_end": 0.5,
            "gumbel_anneal": 0.4,
        },
    },
    # The paper: 400k updates, peak lr 5e-4 (BASE) / 3e-4 (LARGE), warm-up 8%, crops of 250k samples,
    # temperature 2 -> 0.5 by x0.999995 per update, which reaches 0.5 after 69% of the updates.
    "base": {
        "model": {},
        "train": {
            "max_updates": 400_000,
            "batch_seconds": 60.0,
            "crop_seconds": 15.6,
            "lr": 5e-4,
            "warmup": 0.08,
            "gumbel_start": 2.0,
            "gumbel_end": 0.5,
            "gumbel_anneal": 0.7,
        },
    },
    "large": {
        "model": {},
        "train": {
            "max_updates": 250_000,
            "batch_seconds": 60.0,
            "crop_seconds": 20.0,
            "lr": 3e-4,
            "warmup": 0.08,
            "gumbel_start": 2.0,
            "gumbel_end": 0.1,
            "gumbel_anneal": 0.7,
        },
    },
}

FINETUNE = {
    # examples/RESULTS.md: small batches, lr 2e-3, light masking. The CNN learns from scratch and stays
    # frozen from a pretrained start (the default, as in the paper): from the shipped start a frozen CNN
    # reads characters better at equal updates and makes each update ~2x cheaper on a CPU.
    "tiny": {
        "model": {
            "mask_time_prob": 0.1,
            "mask_time_length": 5,
            "mask_feature_prob": 0.05,
            "mask_feature_length": 16,
        },
        "train": {
            "max_updates": 2_000,
            "batch_seconds": 10.0,
            "lr": 2e-3,
            "warmup": 0.1,
            "hold": 0.4,
            "valid_every": 0.05,
            "best_by": "cer",
        },
    },
    # The paper's low-resource fine-tuning (fairseq base_10m / base_1h): tri-stage 10/40/50%, masks 0.65 x 10
    # and channel masks 0.25 x 64 (fairseq's 0.5 x 10 per channel span), the CNN frozen.
    "base": {
        "model": {
            "mask_time_prob": 0.65,
            "mask_time_length": 10,
            "mask_feature_prob": 0.25,
            "mask_feature_length": 64,
        },
        "train": {
            "max_updates": 13_000,
            "batch_seconds": 60.0,
            "lr": 5e-5,
            "warmup": 0.1,
            "hold": 0.4,
            "valid_every": 0.02,
        },
    },
}
# LARGE: the same, at lr 3e-5.
FINETUNE["large"] = {
    "model": dict(FINETUNE["base"]["model"]),
    "train": {**FINETUNE["base"]["train"], "lr": 3e-5},
}
# Fine-tuning always uses fairseq's tri-stage schedule and Adam without weight decay: FinetuneConfig's defaults.


def _check(name: str) -> None:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


def _train_config(kind: type[TrainConfig], recipe: dict, train: dict):
    given = {k: v for k, v in train.items() if v is not None}
    merged = {**recipe, **given}
    if "gumbel_decay" in given and "gumbel_anneal" not in given:
        merged["gumbel_anneal"] = None  # a decay rate asked for replaces the recipe's annealing
    if "max_minutes" in given and "max_updates" not in given:
        merged["max_updates"] = None  # a time budget alone: the schedule follows the clock
    return kind(**merged)


def pretrain_settings(
    name: str, train: dict | None = None, model: dict | None = None
) -> tuple[PretrainConfig, ModelConfig]:
    """The preset's architecture with its pretraining recipe; `train` and `model` (PretrainConfig and
    ModelConfig fields, None = not given) override it."""
    _check(name)
    recipe = PRETRAIN[name]
    changes = {**recipe["model"], **{k: v for k, v in (model or {}).items() if v is not None}}
    return _train_config(PretrainConfig, recipe["train"], train or {}), preset(name).replace(**changes)


def finetune_settings(
    name: str, train: dict | None = None, model: dict | None = None
) -> tuple[FinetuneConfig, dict]:
    """The fine-tuning recipe of a preset: its FinetuneConfig and the ModelConfig overrides (masking,
    dropout) applied to the initial model; `train` and `model` override it."""
    _check(name)
    recipe = FINETUNE[name]
    overrides = {**recipe["model"], **{k: v for k, v in (model or {}).items() if v is not None}}
    return _train_config(FinetuneConfig, recipe["train"], train or {}), overrides


def recipe_for(config: ModelConfig) -> str:
    """The preset whose scale a loaded model has (its recipe fits it best): the same width and depth,
    else the nearest width."""
    for name, build in PRESETS.items():
        p = build()
        if (p.hidden_size, p.num_hidden_layers) == (config.hidden_size, config.num_hidden_layers):
            return name
    return min(PRESETS, key=lambda n: abs(PRESETS[n]().hidden_size - config.hidden_size))


def recipe_with_init(init: str, preset: str | None, config: ModelConfig) -> str:
    """The recipe for `--init`'s model (`config`): its size's. A preset names an architecture too, so
    `--preset` of another size contradicts the model and is refused, as any flag that would change it."""
    own = recipe_for(config)
    if preset is None:
        return own
    _check(preset)
    if preset != own:
        raise UsageError(
            f"--preset {preset} contradicts --init {init}, a {own}-size model ({config.num_hidden_layers} "
            f"layers of {config.hidden_size}): the architecture comes from the model; drop --preset "
            f"(the {own} recipe is used) and set single flags such as --lr to change the recipe"
        )
    return preset
