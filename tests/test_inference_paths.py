"""The model's fast paths (inference-only ones, and the training GroupNorm's backward) agree with the
plain computation."""

import pytest
import torch
import torch.nn.functional as F

from w2vcli.config import preset
from w2vcli.model.feature_encoder import ConvBlock, FeatureEncoder, _ChannelNorm
from w2vcli.model.transformer import Attention, PositionalConvEmbedding


@pytest.mark.parametrize("samples", [5, 6, 7, 8, 9, 401, 1602])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel3_stride2_conv_by_winograd_equals_the_convolution(samples, bias):
    """Odd and even output counts (the last output of an odd count has no partner), with and without
    bias; training and batches keep the convolution."""
    torch.manual_seed(samples)
    block = ConvBlock(48, 40, 3, 2, bias, None).eval()
    x = torch.randn(1, 48, 1, samples).contiguous(memory_format=torch.channels_last)
    ref = F.gelu(F.conv1d(x[:, :, 0], block.conv.weight, block.conv.bias, stride=2))
    with torch.no_grad():
        assert block._winograd_applies(x)
        fast = block(x)
    assert fast.shape == (1, 40, 1, (samples - 3) // 2 + 1)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert (fast[:, :, 0] - ref).abs().max() < 1e-5
    assert not block._winograd_applies(x)  # autograd on: the convolution
    with torch.no_grad():
        assert not block._winograd_applies(x.expand(2, -1, -1, -1))
        assert not block._winograd_applies(x.contiguous())  # (B, C, 1, N) memory: the convolution


def test_winograd_weights_are_cached_until_the_weight_changes():
    torch.manual_seed(0)
    block = ConvBlock(16, 8, 3, 2, True, None).eval()
    x = torch.randn(1, 16, 1, 41).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        block(x)
        cached = block._winograd_weights()
        assert block._winograd_weights()[0] is cached[0]
        block.conv.weight.mul_(-2.0)  # in place, as load_state_dict and optimizers write
        fast = block(x)
    ref = F.gelu(F.conv1d(x[:, :, 0], block.conv.weight, block.conv.bias, stride=2))
    assert (fast[:, :, 0] - ref).abs().max() < 1e-5


def test_first_layer_group_norm_folded_into_the_matmul_equals_conv_then_norm():
    torch.manual_seed(0)
    block = ConvBlock(1, 64, 10, 5, False, "group").eval()
    torch.nn.init.uniform_(block.layer_norm.weight, 0.5, 2.0)
    torch.nn.init.normal_(block.layer_norm.bias)
    wav = torch.randn(2, 1, 1, 4003) * 0.3 + 0.1
    ref = block(wav)  # autograd on: conv, GroupNorm, GELU
    with torch.no_grad():
        fast = block(wav)
    assert fast.shape == ref.shape == (2, 64, 1, 799)
    assert (fast - ref).abs().max() < 2e-5  # measured 3.8e-6


def test_attention_inference_dtype_is_ignored_in_training():
    torch.manual_seed(0)
    attn = Attention(preset("tiny").replace(attention_dropout=0.0))
    x = torch.randn(2, 30, 256)
    ref = attn(x, None)
    attn.inference_dtype = torch.bfloat16
    assert torch.equal(attn(x, None), ref)  # training mode: fp32 as always
    with torch.no_grad():
        low = attn.eval()(x, None)
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    assert torch.allclose(low, ref, atol=3e-3)  # measured 7.6e-4 (seeds 0-9: at most 8.8e-4)


@pytest.mark.parametrize("kernel,groups,frames", [(16, 4, 37), (15, 4, 200), (128, 16, 499), (16, 4, 3000)])
def test_positional_conv_by_fft_equals_the_convolution(kernel, groups, frames):
    """Inference (no autograd) convolves by FFT in blocks; training keeps the convolution. 3000 frames
    of a 16-tap kernel take more than one batch of blocks."""
    torch.manual_seed(kernel)
    config = preset("tiny").replace(
        hidden_size=64,
        num_attention_heads=4,
        num_conv_pos_embeddings=kernel,
        num_conv_pos_embedding_groups=groups,
    )
    conv = PositionalConvEmbedding(config).eval()
    torch.nn.init.normal_(conv.conv.weight_v, 0.0, 0.1)
    torch.nn.init.uniform_(conv.conv.weight_g, 0.5, 2.0)
    torch.nn.init.normal_(conv.conv.bias)
    x = torch.randn(2, frames, 64)
    with torch.no_grad():
        fast = conv(x)
    ref = conv(x)  # autograd on: the grouped convolution
    assert fast.shape == ref.shape == x.shape
    assert (fast - ref).abs().max() < 5e-6 * ref.abs().max()  # measured at most 4.8e-7 over the four cases
    state = {k: v * 1.5 for k, v in conv.state_dict().items()}
    conv.load_state_dict(state)  # new weights: the cached spectrum must not be used
    with torch.no_grad():
        again = conv(x)
    assert (again - conv(x)).abs().max() < 5e-6 * again.abs().max()  # measured at most 5.3e-7
    assert (again - fast).abs().max() > 1e-2


def test_training_group_norm_backward_equals_torch_and_the_numerical_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 1, 37, dtype=torch.double).contiguous(memory_format=torch.channels_last) * 3 + 1
    w, b = torch.randn(9, dtype=torch.double), torch.randn(9, dtype=torch.double)
    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: _ChannelNorm.apply(*a, 1e-5), inputs)
    # bf16 activations under autocast, as in `--amp` training: fp32 arithmetic, bf16 out like torch's
    block = ConvBlock(1, 64, 10, 5, False, "group")
    torch.nn.init.uniform_(block.layer_norm.weight, 0.5, 2.0)
    wav = torch.randn(2, 1, 1, 4003)
    grads = []
    for fast in (True, False):
        block.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            h = block._conv_mono(wav[:, 0, 0])
            y = (
                _ChannelNorm.apply(h, block.layer_norm.weight, block.layer_norm.bias, 1e-5)
                if fast
                else block.layer_norm(h)
            )
        assert y.dtype == torch.bfloat16
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        grads.append([p.grad.clone() for p in block.parameters()])
    for ours, torchs in zip(*grads, strict=True):
        # measured: the CNN's and the bias's gradients equal, the scale's within 2.0e-7 x its largest
        assert torch.allclose(ours, torchs, rtol=1e-4, atol=1e-5 * torchs.abs().max().item())


@pytest.mark.parametrize("samples,block", [(16000, 1024), (16000, 7), (4003, 2), (40, 1), (45, 1024)])
def test_first_two_layers_in_blocks_equal_the_layers_one_after_the_other(samples, block):
    """The GroupNorm layout (base): blocks of every size, a short last block, the shortest input."""
    torch.manual_seed(samples)
    config = preset("base").replace(conv_dim=[32, 24, 16], conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2])
    encoder = FeatureEncoder(config).eval()
    torch.nn.init.uniform_(encoder.conv_layers[0].layer_norm.weight, 0.5, 2.0)
    torch.nn.init.normal_(encoder.conv_layers[0].layer_norm.bias)
    encoder.block_frames = block
    wav = torch.randn(1, samples) * 0.3 + 0.1
    with torch.no_grad():
        assert encoder._first_two_fuse(wav)
        fast = encoder(wav)
        x = wav[:, None, None]
        for layer in encoder.conv_layers:
            x = layer(x)
    ref = encoder(wav)  # autograd on: conv, GroupNorm, GELU, layer by layer
    assert fast.shape == ref.shape == x.squeeze(2).shape
    assert (fast - x.squeeze(2)).abs().max() < 5e-6  # measured at most 3.6e-7
    assert (fast - ref).abs().max() < 5e-6  # measured at most 7.2e-7
    with torch.no_grad():
        assert not encoder._first_two_fuse(wav.expand(2, -1))
        assert not encoder._first_two_fuse(wav[:, :14])
