"""CNN feature encoder and feature projection.

Shapes: B batch, N samples, T frames, C conv channels, D model dim.
Attribute names follow Hugging Face (`conv_layers.{i}.conv`, `.layer_norm`) so weights map by key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from w2vcli.model import kernels
from w2vcli.model.config import ModelConfig
from w2vcli.model.kernels import Dropout


class ConvBlock(nn.Module):
    """Conv1d -> optional norm -> GELU. `norm` is "group" (GroupNorm with one group per channel,
    which normalises each channel over time), "layer" (LayerNorm over channels per frame) or None.

    Runs as a 2-D convolution over (B, C, 1, N) in channels-last memory, i.e. (B, N, C) in memory:
    oneDNN convolves that layout natively, LayerNorm over channels reads it without a transpose, and
    GELU and its gradient stay on dense memory. The usual (B, C, N) layout costs a transposed copy
    around every LayerNorm and a strided GELU backward: about half of a pretraining step.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=kernel, stride=stride, bias=bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, 1, N) -> (B, C_out, 1, N'), channels-last
        if self.conv.in_channels == 1:
            x = kernels.first_conv(self.conv, x)
        else:
            weight = self.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            x = F.conv2d(x, weight, self.conv.bias, stride=(1, self.conv.stride[0]))
        if self.norm == "group":
            x = kernels.group_norm(self.layer_norm, x)
        elif self.norm == "layer":  # normalise channels per frame: (B, 1, N', C) is contiguous here
            x = self.layer_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Raw waveform (B, N) -> features (B, C, T). fairseq: `feature_extractor` / ConvFeatureExtractionModel."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.kernels, self.strides = config.conv_kernel, config.conv_stride
        layers = []
        c_in = 1
        for i, (c, k, s) in enumerate(zip(config.conv_dim, config.conv_kernel, config.conv_stride)):
            if config.feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            layers.append(ConvBlock(c_in, c, k, s, config.conv_bias, norm))
            c_in = c
        self.conv_layers = nn.ModuleList(layers)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced from `lengths` samples: L -> floor((L - k) / s) + 1 per conv, floored at 0."""
        for k, s in zip(self.kernels, self.strides):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav[:, None, None]  # (B, 1, 1, N)
        for layer in self.conv_layers:
            x = layer(x)
        return x.squeeze(2)  # (B, C, T), laid out as (B, T, C): transpose(1, 2) is contiguous


class FeatureProjection(nn.Module):
    """LayerNorm(C) -> Linear(C, D) -> dropout. Returns the projection and the normalised features,
    which are the quantizer's input (the pretraining targets)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config.conv_dim[-1]
        self.layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.projection = nn.Linear(c, config.hidden_size)
        self.dropout = Dropout(config.feat_proj_dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, T, C)
        normed = self.layer_norm(features)
        return self.dropout(self.projection(normed)), normed  # (B, T, D), (B, T, C)


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient scaled by `scale` backward (fairseq's feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None
