"""CNN feature encoder and feature projection.

Shapes: B batch, N samples, T frames, C conv channels, D model dim.
Attribute names follow Hugging Face (`conv_layers.{i}.conv`, `.layer_norm`) so weights map by key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from w2vcli.config import ModelConfig
from w2vcli.model.dropout import Dropout


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
        self._winograd: tuple | None = None  # (the weight's identity and version, `_winograd_weights`)
        if norm == "group":
            self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, 1, N) -> (B, C_out, 1, N'), channels-last
        if self.conv.in_channels == 1 and self.norm == "group" and not torch.is_grad_enabled():
            return F.gelu(self._conv_group_norm_mono(x[:, 0, 0]))
        if self.conv.in_channels == 1:
            x = self._conv_mono(x[:, 0, 0])
        elif self._winograd_applies(x):
            x = self._conv_k3s2(x)
        else:
            weight = self.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            x = F.conv2d(x, weight, self.conv.bias, stride=(1, self.conv.stride[0]))
        if (
            self.norm == "group"
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            norm = self.layer_norm
            x = _ChannelNorm.apply(x, norm.weight, norm.bias, norm.eps)
        elif self.norm == "group":
            x = self.layer_norm(x)
        elif self.norm == "layer":  # normalise channels per frame: (B, 1, N', C) is contiguous here
            x = self.layer_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)

    def _winograd_applies(self, x: torch.Tensor) -> bool:
        """The kernel-3, stride-2 layers of one utterance at fp32 CPU inference (transcription)."""
        return (
            self.conv.kernel_size[0] == 3
            and self.conv.stride[0] == 2
            and x.shape[0] == 1
            and x.shape[-1] >= 5
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        )

    def _winograd_weights(self) -> tuple[torch.Tensor, ...]:
        """W0, W1, W2 and W0 + W2 of `_conv_k3s2`, each a contiguous (C_in, C_out) matrix: a strided slice
        of the (C_out, C_in, 3) weight would be copied by every matmul. Cached until the weight changes."""
        w = self.conv.weight
        try:
            key = (w.data_ptr(), w._version, w.dtype)
        except RuntimeError:  # inference tensors keep no version counter: nothing to cache against
            key = None
        if key is None or self._winograd is None or self._winograd[0] != key:
            parts = [w[:, :, i].t().contiguous() for i in range(3)]
            parts.append(parts[0] + parts[2])
            if key is None:
                return tuple(parts)
            self._winograd = (key, tuple(parts))
        return self._winograd[1]

    def train(self, mode: bool = True):
        self._winograd = None
        return super().train(mode)

    def _conv_k3s2(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: a kernel-3, stride-2 conv of one utterance in 5 channel matmuls per 2 frames, not 6.

        With e[t] = x[2t] and o[t] = x[2t+1], y[t] = W0 e[t] + W1 o[t] + W2 e[t+1]. The even samples
        shared by neighbouring outputs go through Winograd's F(2,2): for each output pair,
        m1 = W0 (e[2s] - e[2s+1]), m2 = (W0 + W2) e[2s+1], m3 = W2 (e[2s+2] - e[2s+1]) give
        y[2s] = m1 + m2 + W1 o[2s] and y[2s+1] = m2 + m3 + W1 o[2s+1]. Every matmul runs at the CPU's
        GEMM peak on strided views of the channels-last input; the result agrees with the conv to
        float rounding. (1, C_in, 1, N) -> (1, C_out, 1, T), channels-last; `out`, if given, is a
        contiguous (T, C_out) buffer for the result."""
        xs = x[0, :, 0].t()  # (N, C_in), a view of the channels-last memory
        n = xs.shape[0]
        t, pairs = (n - 3) // 2 + 1, ((n - 3) // 2 + 1) // 2
        w0, w1, w2, w02 = self._winograd_weights()
        odd = xs[1 : 2 * t : 2]  # (T, C_in) rows 2C_in apart
        if out is None:
            out = odd.new_empty(t, w1.shape[1])
        y = (
            torch.addmm(self.conv.bias, odd, w1, out=out)
            if self.conv.bias is not None
            else torch.mm(odd, w1, out=out)
        )  # (T, C_out)
        quads = xs[: 4 * pairs].view(pairs, 4, xs.shape[1])  # samples 4s .. 4s+3
        e0, e1, e2 = quads[:, 0], quads[:, 2], xs[4 : 4 * pairs + 4 : 4]  # (S, C_in): e[2s], e[2s+1], e[2s+2]
        pair = y[: 2 * pairs].view(pairs, 2, y.shape[1])  # (S, 2, C_out): y[2s], y[2s+1]
        pair[:, 0].addmm_(e0 - e1, w0)
        pair[:, 1].addmm_(e2 - e1, w2)
        pair.add_((e1 @ w02)[:, None])
        if t % 2:  # the last output has no partner: y[2S] += W0 x[4S] + W2 x[4S+2]
            y[-1].add_(xs[4 * pairs] @ w0 + xs[4 * pairs + 2] @ w2)
        return y.t()[None, :, None]  # (1, C_out, 1, T) over (1, T, C_out) memory

    def _conv_mono(self, wav: torch.Tensor) -> torch.Tensor:
        """The first layer, on the waveform (B, N), as one matmul over its frames: oneDNN gives a
        1-channel input a plain-layout output (and a slow kernel), which the next layer would copy.
        Returns (B, C, 1, N') over (B, N', C) memory, i.e. channels-last."""
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        frames = wav.unfold(-1, k, s)  # (B, N', k), a view
        weight = self.conv.weight[:, 0, :].t()  # (k, C)
        y = (
            frames @ weight
            if self.conv.bias is None
            else torch.addmm(self.conv.bias, frames.reshape(-1, k), weight).view(*frames.shape[:2], -1)
        )  # (B, N', C)
        return y[:, None].permute(0, 3, 1, 2)

    def _conv_group_norm_mono(self, wav: torch.Tensor) -> torch.Tensor:
        """Inference: the first layer's conv and GroupNorm as one matmul (see `_folded_mono`).
        (B, N) -> (B, C, 1, N')."""
        frames, weight, shift = self._folded_mono(wav)
        y = torch.baddbmm(shift[:, None, :], frames, weight)  # (B, N', C)
        return y[:, None].permute(0, 3, 1, 2)

    def _folded_mono(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's conv and GroupNorm folded into one linear map of the frames. Each channel is
        a linear map of the frames, so its mean and variance over time follow from the frames' mean (k,)
        and covariance (k, k), and the norm's per-channel affine folds into per-utterance weights.
        (B, N) -> frames (B, N', k) (a view), weight (B, k, C), shift (B, C); the output is
        frames @ weight + shift."""
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        frames = wav.unfold(-1, k, s)  # (B, N', k)
        f = frames.double()  # the statistics subtract large terms: keep them exact
        mean = f.mean(1)  # (B, k)
        cov = torch.einsum("btk,btl->bkl", f, f) / f.shape[1] - mean[:, :, None] * mean[:, None, :]
        w = self.conv.weight[:, 0, :].double()  # (C, k)
        var = torch.einsum("ck,bkl,cl->bc", w, cov, w)  # (B, C) each channel's variance over time
        scale = self.layer_norm.weight.double() / torch.sqrt(var + self.layer_norm.eps)  # (B, C)
        shift = self.layer_norm.bias.double() - scale * (mean @ w.t())  # (B, C): the conv bias cancels
        weight = (scale[:, :, None] * w).transpose(1, 2).to(wav.dtype)  # (B, k, C)
        return frames, weight, shift.to(wav.dtype)


class _ChannelNorm(torch.autograd.Function):
    """CPU training: GroupNorm with one group per channel (each channel normalised over time) on a
    channels-last (B, C, 1, T) tensor, computed in fp32 and returned in the input's dtype (as CPU
    autocast's group_norm returns it). The forward is PyTorch's own; its CPU backward on this layout
    took 590 ms of a 2.7 s base bf16 pretraining step (50x the forward). Ours is memory-bound
    arithmetic over the (B, T, C) memory in few passes: two reductions give per-channel a, b, c, and
    the input gradient is a dy + b + c x."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        acc = torch.promote_types(x.dtype, torch.float32)  # bf16 -> fp32; float64 stays (gradcheck)
        xa = x.to(acc)
        b, c, _, t = x.shape
        y, mean, rstd = torch.ops.aten.native_group_norm(xa, weight.to(acc), bias.to(acc), b, c, t, c, eps)
        ctx.save_for_backward(xa, weight, mean[:, None], rstd[:, None])  # statistics (B, 1, C)
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
        layers = list(self.conv_layers)
        if self._first_two_fuse(wav):
            x = self._first_two_in_blocks(wav)
            layers = layers[2:]
        else:
            x = wav[:, None, None]  # (B, 1, 1, N)
        for layer in layers:
            x = layer(x)
        return x.squeeze(2)  # (B, C, T), laid out as (B, T, C): transpose(1, 2) is contiguous

    block_frames = 1024  # second-layer frames per block of `_first_two_in_blocks`

    def _first_two_fuse(self, wav: torch.Tensor) -> bool:
        """fp32 CPU inference on one utterance, with the GroupNorm layout (base, large): a first layer with
        GroupNorm, then a kernel-3, stride-2 layer without a norm."""
        if len(self.conv_layers) < 2:
            return False
        first, second = self.conv_layers[0], self.conv_layers[1]
        shortest = first.conv.kernel_size[0] + 2 * first.conv.stride[0]  # 3 first-layer frames: 1 output
        return (
            first.norm == "group"
            and second.norm is None
            and second.conv.kernel_size[0] == 3
            and second.conv.stride[0] == 2
            and wav.shape[0] == 1
            and wav.shape[1] >= shortest
            and wav.device.type == "cpu"
            and wav.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        )

    def _first_two_in_blocks(self, wav: torch.Tensor) -> torch.Tensor:
        """Inference: the first two layers a block of time at a time. The first layer's output (C floats
        every 5 samples, the largest activation in the model) goes through its GELU and into the second
        layer while a block of it is still in cache, instead of being written out whole, read back for
        the GELU and read again by the second layer. (1, N) -> (1, C, 1, T), channels-last."""
        first, second = self.conv_layers[0], self.conv_layers[1]
        frames, weight, shift = first._folded_mono(wav)
        frames, weight, shift = frames[0], weight[0], shift[0]  # (N', k), (k, C), (C,)
        t = (frames.shape[0] - 3) // 2 + 1
        out = frames.new_empty(t, second.conv.out_channels)
        for a in range(0, t, self.block_frames):
            b = min(a + self.block_frames, t)
            h = torch.addmm(shift, frames[2 * a : 2 * b + 1], weight)  # first-layer frames 2a .. 2b
            torch.ops.aten.gelu_(h)
            y = out[a:b]
            second._conv_k3s2(h.t()[None, :, None], out=y)
            torch.ops.aten.gelu_(y)
        return out.t()[None, :, None]


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
