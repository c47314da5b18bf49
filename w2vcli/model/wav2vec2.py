"""wav2vec 2.0: the backbone and its two heads (pretraining, CTC).

Shapes: B batch, N samples, T frames, C conv channels, D model dim, M masked frames, K negatives,
P final projection dim, V vocabulary. Module names match Hugging Face's `Wav2Vec2ForPreTraining` /
`Wav2Vec2ForCTC`, so a state dict converts by a short key table (see checkpoints/huggingface.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from w2vcli.model.config import ModelConfig
from w2vcli.model.feature_encoder import FeatureEncoder, FeatureProjection, GradMultiply
from w2vcli.model.kernels import Dropout
from w2vcli.model.losses import contrastive_logits, contrastive_loss, diversity_loss
from w2vcli.model.quantizer import GumbelVectorQuantizer
from w2vcli.model.transformer import Encoder, PositionalConvEmbedding


@dataclass
class BackboneOutput:
    last_hidden_state: torch.Tensor  # (B, T, D)
    extract_features: torch.Tensor  # (B, T, C) LayerNorm'd CNN features: the quantizer's input
    frame_lengths: torch.Tensor  # (B,)
    features_pen: torch.Tensor  # mean squared CNN feature (before LayerNorm), real frames only
    hidden_states: list[torch.Tensor] = field(default_factory=list)


def normalize_waveform(wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its real samples; padding stays 0."""
    valid = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]  # (B, N)
    n = lengths.clamp(min=1)[:, None].to(wav.dtype)
    mean = (wav * valid).sum(1, keepdim=True) / n
    var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return ((wav - mean) / torch.sqrt(var + 1e-7)) * valid


class Wav2Vec2Model(nn.Module):
    """Waveform -> feature encoder -> projection -> (span masking) -> transformer."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        self.masked_spec_embed = nn.Parameter(torch.rand(config.hidden_size))  # uniform, as init_weights
        self.encoder = Encoder(config)

    def forward(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        mask_feature_indices: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        """wav (B, N) float; lengths (B,) real samples per item (None: no padding);
        mask_time_indices (B, T) bool frames replaced by the mask embedding;
        mask_feature_indices (B, D) bool channels zeroed (fine-tuning augmentation)."""
        padded = lengths is not None
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
        if self.config.do_normalize:
            wav = normalize_waveform(wav, lengths)
        feats = self._encode(wav).transpose(1, 2)  # (B, T, C)
        t = feats.shape[1]
        frame_lengths = self.feature_extractor.output_lengths(lengths).clamp(max=t)
        valid = torch.arange(t, device=wav.device)[None] < frame_lengths[:, None] if padded else None
        sq = feats.float().pow(2).mean(-1)  # (B, T)
        features_pen = sq[valid].mean() if valid is not None else sq.mean()

        x, normed = self.feature_projection(feats)  # (B, T, D), (B, T, C)
        if mask_time_indices is not None:
            x = torch.where(mask_time_indices[..., None], self.masked_spec_embed.to(x.dtype), x)
        if mask_feature_indices is not None:
            x = x.masked_fill(mask_feature_indices[:, None, :], 0.0)
        x, hidden = self.encoder(x, valid, output_hidden_states)
        return BackboneOutput(x, normed, frame_lengths, features_pen, hidden)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        mult = self.config.feature_grad_mult
        if not self.training or mult == 1.0:
            return self.feature_extractor(wav)
        if mult == 0.0:
            with torch.no_grad():
                return self.feature_extractor(wav)
        return GradMultiply.apply(self.feature_extractor(wav), mult)


@dataclass
class PretrainingOutput:
    loss: torch.Tensor
    contrastive_loss: torch.Tensor  # per masked frame, nats
    diversity_loss: torch.Tensor
    feature_penalty: torch.Tensor
    accuracy: torch.Tensor  # masked frames whose positive scored highest
    prob_perplexity: torch.Tensor
    code_perplexity: torch.Tensor
    num_masked: int
    logits: torch.Tensor  # (M, 1 + K)


class Wav2Vec2ForPreTraining(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.quantizer = GumbelVectorQuantizer(config)
        self.project_hid = nn.Linear(config.hidden_size, config.proj_codevector_dim)
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)
        init_weights(self)

    def forward(
        self,
        wav: torch.Tensor,
        mask_time_indices: torch.Tensor,
        sampled_negative_indices: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> PretrainingOutput:
        """mask_time_indices (B, T) bool; sampled_negative_indices (B, T, K) indices into the flattened
        B*T frames (masking.sample_negative_indices). Only masked frames are quantized and projected."""
        cfg = self.config
        mask = mask_time_indices.bool()
        out = self.wav2vec2(wav, lengths, mask_time_indices=mask)
        b, t, _ = out.last_hidden_state.shape
        flat = mask.reshape(-1)  # (B*T,)
        q = self.quantizer(out.extract_features.reshape(b * t, -1)[flat])  # M frames
        targets = self.project_q(q.vectors.to(self.project_q.weight.dtype))  # (M, P)
        preds = self.project_hid(out.last_hidden_state.reshape(b * t, -1)[flat])  # (M, P)
        row = torch.cumsum(flat.long(), 0) - 1  # flat frame index -> row among masked frames
        k = sampled_negative_indices.shape[-1]
        negatives = row[sampled_negative_indices.reshape(b * t, k)[flat].to(row.device)]  # (M, K)
        logits = contrastive_logits(preds, targets, negatives, q.codes, cfg.contrastive_logits_temperature)
        loss_c, accuracy = contrastive_loss(logits)
        loss_d = diversity_loss(q.prob_perplexity, cfg.num_codevectors)
        loss = loss_c + cfg.diversity_loss_weight * loss_d + cfg.feature_penalty_weight * out.features_pen
        return PretrainingOutput(
            loss,
            loss_c,
            loss_d,
            out.features_pen,
            accuracy,
            q.prob_perplexity,
            q.code_perplexity,
            int(flat.sum()),
            logits,
        )


class Wav2Vec2ForCTC(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout = Dropout(config.final_dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        init_weights(self)

    def forward(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        mask_feature_indices: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, BackboneOutput]:
        """Returns logits (B, T, V), frame lengths (B,) and the backbone output."""
        out = self.wav2vec2(wav, lengths, mask_time_indices, mask_feature_indices, output_hidden_states)
        return self.lm_head(self.dropout(out.last_hidden_state)), out.frame_lengths, out


@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """fairseq / Hugging Face initialisation: BERT-style normal(0.02) linears, Kaiming convs,
    N(0, 1) quantizer logits so early codes are diverse, uniform codevectors."""
    for name, m in model.named_modules():
        if isinstance(m, (GumbelVectorQuantizer, PositionalConvEmbedding)):
            m.reset_parameters()
        elif isinstance(m, FeatureProjection):
            bound = math.sqrt(1 / m.projection.in_features)
            nn.init.uniform_(m.projection.weight, -bound, bound)
            nn.init.uniform_(m.projection.bias, -bound, bound)
        elif isinstance(m, nn.Linear) and "weight_proj" not in name and "projection" not in name:
            if name.split(".")[-1] in ("project_q", "project_hid"):
                m.reset_parameters()
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv1d):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                bound = math.sqrt(m.groups / (m.in_channels * m.kernel_size[0]))
                nn.init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, Wav2Vec2Model):
            nn.init.uniform_(m.masked_spec_embed)
