"""Dropout for training on the CPU, where PyTorch's own is slow.

PyTorch draws a CPU dropout mask one Bernoulli sample per element (~7 ns each): 12% of a `tiny`
pretraining step and 15% of a fine-tuning step. Here one 64-bit draw from the same generator gives
four 16-bit uniforms, a quarter of the time, and keep probabilities are exact to 1/65536. The draws
come from torch's default generator, so `torch.manual_seed` still fixes every mask. GPUs keep
PyTorch's fused dropout.

Attention dropout: with dropout on, `scaled_dot_product_attention` on the CPU leaves its fused
kernel for an unfused path that draws the same slow mask; `attention` below is that path written
out with the fast mask, 2x faster for a training step's attention (forward and backward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def keep_scale(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
    """The dropout multiplier: 0 with probability p (to 1/65536), else 1 / (1 - p); from torch's generator."""
    n = math.prod(shape)
    words = torch.empty(-(-n // 4), dtype=torch.int64).random_(-(2**63), 2**63 - 1)  # 4 x 16 random bits
    bits = words.view(torch.int16)[:n].view(shape)  # uniform on [-2^15, 2^15)
    return (bits >= round(p * 65536) - 32768).to(dtype).mul_(1.0 / (1.0 - p))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with the fast mask on the CPU."""
    if not training or p == 0.0 or p >= 1.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    return x * keep_scale(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout with the fast CPU mask (same attribute `p`, no parameters, no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, p: float
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) with dropout p, times v: q, k, v (B, H, T, D/H), attn_mask a
    bool (B, 1, 1, T) of keys that may be attended to. What SDPA computes, for training on CPUs."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = dropout(scores.softmax(-1), p)
    return torch.matmul(weights.to(v.dtype), v)  # (B, H, T, D/H)
