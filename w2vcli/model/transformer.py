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

from w2vcli.config import ModelConfig
from w2vcli.model.dropout import Dropout, attention

FFT_MAX_BLOCKS = 64  # overlap-save blocks transformed at once: bounds memory on unchunked long inputs


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time with weight normalisation over dim 2 (the kernel axis), as in wav2vec 2.0.

    The weight is `weight_g * weight_v / ||weight_v||`, the norm taken over dims (0, 1) for each
    kernel position; the parameters keep the (older) Hugging Face names.

    Inference on the CPU (eval mode, no autograd) convolves by FFT instead: oneDNN runs the 128-tap
    grouped conv at half its matmul speed (64 ms per 10 s of audio for BASE, plus 33 ms of weight
    norm), the FFT route costs ~8 ms and agrees to ~1e-6. The weight's spectrum is cached until the
    weights change or train() is called.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.conv = nn.Module()
        d, k, g = config.hidden_size, config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups
        self.conv.weight_v = nn.Parameter(torch.empty(d, d // g, k))
        self.conv.weight_g = nn.Parameter(torch.empty(1, 1, k))
        self.conv.bias = nn.Parameter(torch.zeros(d))
        self.kernel, self.groups = k, g
        self.fft_size = 1 << (2 * k - 1).bit_length()  # >= 2K: each block yields more than K frames
        self._spectrum: tuple | None = None  # (weights' identity and version, spectrum)
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

    def train(self, mode: bool = True):
        self._spectrum = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        if not self.training and not torch.is_grad_enabled() and x.device.type == "cpu":
            y = fft_conv(x.float(), self.spectrum(), self.conv.bias.float(), self.kernel, self.fft_size)
            return F.gelu(y).to(x.dtype)
        x = x.transpose(1, 2)  # (B, D, T)
        x = F.conv1d(x, self.weight(), self.conv.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            x = x[:, :, :-1]  # an even kernel with padding k/2 yields one extra frame
        return F.gelu(x).transpose(1, 2)  # (B, T, D)

    def spectrum(self) -> torch.Tensor:
        """(G, F, D/G in, D/G out) conjugate spectrum of the weight, F = fft_size // 2 + 1."""
        v, g = self.conv.weight_v, self.conv.weight_g
        try:
            key = (v.data_ptr(), g.data_ptr(), v._version, g._version, v.device, v.dtype)
        except RuntimeError:  # inference tensors keep no version counter: nothing to cache against
            key = None
        if key is None or self._spectrum is None or self._spectrum[0] != key:
            w = torch.fft.rfft(self.weight().float(), self.fft_size).conj()  # (D, D/G, F)
            d, di, f = w.shape
            w = w.view(self.groups, d // self.groups, di, f).permute(0, 3, 2, 1).contiguous()
            if key is None:
                return w
            self._spectrum = (key, w)
        return self._spectrum[1]


def fft_conv(
    x: torch.Tensor, spectrum: torch.Tensor, bias: torch.Tensor, kernel: int, n: int
) -> torch.Tensor:
    """`F.conv1d(x, w, bias, padding=kernel // 2, groups=G)` over time for x (B, T, D), trimmed to T
    frames, by overlap-save: blocks of n padded frames overlap by kernel - 1, and each block's
    circular correlation with w is exact on its first n - kernel + 1 frames."""
    b, t, d = x.shape
    g, f, di, do = spectrum.shape
    pad, step = kernel // 2, n - kernel + 1
    blocks = -(-t // step)
    xp = F.pad(x.transpose(1, 2), (pad, blocks * step + kernel - 1 - t - pad))  # (B, D, blocks*step + K - 1)
    seg = xp.unfold(2, n, step)  # (B, D, blocks, n), a view
    out = []
    for j in range(0, blocks, FFT_MAX_BLOCKS):
        part = seg[:, :, j : j + FFT_MAX_BLOCKS]
        k = part.shape[2]
        z = torch.fft.rfft(part, n)  # (B, D, k, F)
        z = z.view(b, g, di, k, f).permute(1, 4, 0, 3, 2).reshape(g, f, b * k, di)  # (G, F, B*k, D/G)
        z = torch.matmul(z, spectrum)  # (G, F, B*k, D/G): mixes channels within each group, per frequency
        z = z.view(g, f, b, k, do).permute(2, 0, 4, 3, 1).reshape(b, d, k, f)
        out.append(torch.fft.irfft(z, n)[..., :step].reshape(b, d, k * step))  # (B, D, k*step)
    y = torch.cat(out, dim=2)[:, :, :t] if len(out) > 1 else out[0][:, :, :t]
    return y.transpose(1, 2) + bias  # (B, T, D)


class Attention(nn.Module):
    """Multi-head self-attention through PyTorch's fused scaled_dot_product_attention; in training on
    a CPU with attention dropout, through `dropout.attention` (SDPA's unfused dropout path is slow there).

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
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            y = attention(
                q, k, v, attn_mask, self.dropout
            )  # SDPA's dropout is slow on CPUs (model/dropout.py)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )  # (B, H, T, D/H), laid out as (B, T, H, D/H): the reshape below is free
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d).to(x.dtype))


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.intermediate_dropout = Dropout(config.activation_dropout)
        self.output_dropout = Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and not self.training:  # inference: the GELU in place
            return self.output_dense(torch.ops.aten.gelu_(self.intermediate_dense(x)))
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
        if not torch.is_grad_enabled() and not self.training:  # inference: residuals added in place
            if self.pre_ln:
                x = self.attention(self.layer_norm(x), attn_mask).add_(x)
                return self.feed_forward(self.final_layer_norm(x)).add_(x)
            x = self.layer_norm(self.attention(x, attn_mask).add_(x))
            return self.final_layer_norm(self.feed_forward(x).add_(x))
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
            x = layer(x, attn_mask)
        if output_hidden_states:
            hidden.append(x)
        if self.pre_ln:
            x = self.layer_norm(x)
        return x, hidden
