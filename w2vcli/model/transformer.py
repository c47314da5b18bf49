"""Transformer context network: convolutional relative position embedding + encoder layers.

Shapes: B batch, T frames, D model dim, H heads, G positional conv groups, F frequency bins.
`valid` is a (B, T) bool mask, True on real frames.
Post-LN layers (BASE) normalise after each residual; pre-LN layers (LARGE, `do_stable_layer_norm`)
normalise inside the branch and end with a final LayerNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from w2vcli.model import kernels
from w2vcli.model.config import ModelConfig
from w2vcli.model.kernels import Dropout


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time with weight normalisation over dim 2 (the kernel axis), as in wav2vec 2.0.

    The weight is `weight_g * weight_v / ||weight_v||`, the norm taken over dims (0, 1) for each
    kernel position; the parameters keep the (older) Hugging Face names.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.conv = nn.Module()
        d, k, g = config.hidden_size, config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups
        self.conv.weight_v = nn.Parameter(torch.empty(d, d // g, k))
        self.conv.weight_g = nn.Parameter(torch.empty(1, 1, k))
        self.conv.bias = nn.Parameter(torch.zeros(d))
        self.kernel, self.groups = k, g
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """fairseq's initialisation: normal weights scaled to the fan-in, the norm matching them."""
        std = 2 * math.sqrt(1 / (self.kernel * self.conv.weight_v.shape[0]))
        nn.init.normal_(self.conv.weight_v, 0.0, std)
        self.conv.weight_g.copy_(self.conv.weight_v.norm(dim=(0, 1), keepdim=True))
        nn.init.zeros_(self.conv.bias)

    def weight(self) -> torch.Tensor:
        v, g = self.conv.weight_v, self.conv.weight_g
        return v * (g / v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x = x.transpose(1, 2)  # (B, D, T)
        x = F.conv1d(x, self.weight(), self.conv.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            x = x[:, :, :-1]  # an even kernel with padding k/2 yields one extra frame
        return F.gelu(x).transpose(1, 2)  # (B, T, D)


class Attention(nn.Module):
    """Multi-head self-attention: PyTorch's scaled_dot_product_attention (`kernels.attention` in
    training, for its faster dropout mask on CPUs).

    `inference_dtype` (None: the input's) is the dtype attention itself runs in outside training:
    `--int8` sets bfloat16 on CPUs with AMX, where it halves the attention time at long T. The
    projections around it keep their own precision.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.heads = config.num_attention_heads
        self.dropout = config.attention_dropout
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.inference_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        dtype = self.inference_dtype if not self.training and self.inference_dtype else None
        q, k, v = (
            p(x).view(b, t, self.heads, d // self.heads).transpose(1, 2).to(dtype)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )  # (B, H, T, D/H)
        y = kernels.attention(q, k, v, attn_mask, self.dropout if self.training else 0.0)  # (B, H, T, D/H)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d).to(x.dtype))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.intermediate_dropout = Dropout(config.activation_dropout)
        self.output_dropout = Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pre_ln = config.do_stable_layer_norm
        self.attention = Attention(config)
        self.dropout = Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.dropout(self.attention(self.layer_norm(x), attn_mask))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, attn_mask)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    """(B, T, D) -> (B, T, D), plus (on request) the hidden states entering each layer and leaving
    the last one, before the final LayerNorm of pre-LN models (as Hugging Face's `hidden_states`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pre_ln = config.do_stable_layer_norm
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        # Activation checkpointing (a training option, not architecture): each layer's activations are
        # recomputed in the backward pass instead of kept, trading ~1/3 more compute for memory that no
        # longer grows with the number of layers. Dropout masks repeat: the RNG state is restored.
        self.grad_checkpointing = False

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor | None = None, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        attn_mask = None
        if valid is not None:
            x = x.masked_fill(~valid[..., None], 0.0)  # padded frames must not leak through the conv
            if not bool(valid.all()):
                attn_mask = valid[:, None, None, :]  # (B, 1, 1, T): keys that may be attended to
        x = x + self.pos_conv_embed(x)
        if not self.pre_ln:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden = []
        for layer in self.layers:
            if output_hidden_states:
                hidden.append(x)
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, attn_mask, use_reentrant=False)
            else:
                x = layer(x, attn_mask)
        if output_hidden_states:
            hidden.append(x)
        if self.pre_ln:
            x = self.layer_norm(x)
        return x, hidden
