"""Fast paths for training on the CPU, kept apart from the architecture behind one switch.

Each one computes what a plain PyTorch op computes, faster where PyTorch's CPU kernel is slow in
training; the model calls them only while `active()` (the default; `W2V_KERNELS=0` in the
environment, or `with kernels.use(False):`, runs the plain ops instead). `tests/test_kernels.py`
flips the switch and compares. The measured gains are in bench/RESULTS.md.

- `first_conv`: the first CNN layer, on the one-channel waveform, as one matmul over its frames.
  oneDNN gives a one-channel input a plain-layout output (and a slow kernel), which the next
  layer, in channels-last memory, would then copy.
- `group_norm`: the first CNN layer's GroupNorm (one group per channel) in training, with our own
  backward. PyTorch's CPU backward on the channels-last activations took 590 ms of a 2.7 s base
  bf16 pretraining step, 50x its forward.
- `Dropout`, `dropout`, `attention`: PyTorch draws a CPU dropout mask one Bernoulli sample per
  element (~7 ns each: 12% of a `tiny` pretraining step, 15% of a fine-tuning step). One 64-bit draw
  from the same generator gives four 16-bit uniforms instead, a quarter of the time, with keep
  probabilities exact to 1/65536; `torch.manual_seed` still fixes every mask. With dropout on,
  `scaled_dot_product_attention` leaves its fused CPU kernel for an unfused path that draws the
  same slow mask; `attention` is that path written out with the fast mask.

Inference has no fast path here: on the CPU it runs on ONNX Runtime (checkpoints/onnx.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_active = os.environ.get("W2V_KERNELS", "1") != "0"


def active() -> bool:
    """Whether the model takes the fast paths (on by default; W2V_KERNELS=0 turns them off)."""
    return _active


@contextmanager
def use(on: bool) -> Iterator[None]:
    """Take the fast paths (True) or the plain ops (False) inside the block."""
    global _active
    before, _active = _active, on
    try:
        yield
    finally:
        _active = before


def first_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """conv (C_in = 1) on x (B, 1, 1, N) -> (B, C, 1, N'), channels-last."""
    k, s = conv.kernel_size[0], conv.stride[0]
    if not _active:
        return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, s))
    frames = x[:, 0, 0].unfold(-1, k, s)  # (B, N', k), a view
    weight = conv.weight[:, 0, :].t()  # (k, C)
    if conv.bias is None:
        y = frames @ weight
    else:
        y = torch.addmm(conv.bias, frames.reshape(-1, k), weight).view(*frames.shape[:2], -1)  # (B, N', C)
    return y[:, None].permute(0, 3, 1, 2)


def group_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """norm(x) for x (B, C, 1, T) with one group per channel."""
    if (
        _active
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return _ChannelNorm.apply(x, norm.weight, norm.bias, norm.eps)
    return norm(x)


class _ChannelNorm(torch.autograd.Function):
    """GroupNorm with one group per channel on a channels-last (B, C, 1, T) tensor, computed in fp32
    and returned in the input's dtype (as CPU autocast's group_norm returns it). The forward is
    `F.group_norm`; the input gradient is a dy + b + c x with per-channel a, b, c from two
    reductions over the (B, T, C) memory, a few memory-bound passes."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        acc = torch.promote_types(x.dtype, torch.float32)  # bf16 -> fp32; float64 stays (gradcheck)
        xa = x.to(acc)
        xt = xa[:, :, 0].transpose(1, 2)  # (B, T, C)
        var, mean = torch.var_mean(xt, dim=1, correction=0, keepdim=True)  # (B, 1, C)
        rstd = torch.rsqrt(var + eps)
        y = F.group_norm(xa, x.shape[1], weight.to(acc), bias.to(acc), eps)
        ctx.save_for_backward(xa, weight, mean, rstd)
        ctx.in_dtype = x.dtype
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        xa, weight, mean, rstd = ctx.saved_tensors
        xt = xa[:, :, 0].transpose(1, 2)  # (B, T, C)
        dy = grad[:, :, 0].transpose(1, 2).to(xa.dtype).contiguous()  # a copy only if not channels-last
        n = xt.shape[1]
        dy_mean = dy.sum(1, keepdim=True) / n  # (B, 1, C)
        k = rstd * (torch.linalg.vecdot(dy, xt, dim=1).unsqueeze(1) / n - mean * dy_mean)  # mean(dy * xhat)
        scale = rstd * weight.to(xa.dtype)
        dx = torch.addcmul(scale * (k * rstd * mean - dy_mean), -scale * k * rstd, xt)
        dx.addcmul_(scale, dy)
        dweight = (k * n).sum((0, 1)).to(weight.dtype)
        dbias = (dy_mean * n).sum((0, 1)).to(weight.dtype)
        return dx.to(ctx.in_dtype).transpose(1, 2)[:, :, None], dweight, dbias, None


def keep_scale(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
    """The dropout multiplier: 0 with probability p (to 1/65536), else 1 / (1 - p); from torch's generator."""
    n = math.prod(shape)
    words = torch.empty(-(-n // 4), dtype=torch.int64).random_(-(2**63), 2**63 - 1)  # 4 x 16 random bits
    bits = words.view(torch.int16)[:n].view(shape)  # uniform on [-2^15, 2^15)
    return (bits >= round(p * 65536) - 32768).to(dtype).mul_(1.0 / (1.0 - p))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with the fast mask on the CPU."""
    if not _active or not training or p == 0.0 or p >= 1.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    return x * keep_scale(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout with the fast CPU mask (same attribute `p`, no parameters, no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, p: float
) -> torch.Tensor:
    """SDPA with dropout p: q, k, v (B, H, T, D/H), attn_mask a bool (B, 1, 1, T) of keys that may be
    attended to. The fast mask on CPUs in training, else `F.scaled_dot_product_attention`."""
    if not _active or p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = dropout(scores.softmax(-1), p)
    return torch.matmul(weights.to(v.dtype), v)  # (B, H, T, D/H)
