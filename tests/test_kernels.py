"""The training fast paths (model/kernels.py) against the plain ops they replace, with the switch
flipped: the first conv, the GroupNorm backward, the CPU dropout (the right drop rate in every position,
seeded by torch, attention dropout on the weights), and whole training steps."""

import pytest
import torch
import torch.nn.functional as F

from w2vcli.model import kernels
from w2vcli.model.config import preset
from w2vcli.model.feature_encoder import ConvBlock
from w2vcli.model.kernels import Dropout, _ChannelNorm, attention, dropout, keep_scale
from w2vcli.model.transformer import Attention
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_keep_scale_drops_p_of_the_elements_in_every_position(p):
    torch.manual_seed(0)
    k = keep_scale((400, 1001), p, torch.float32)  # 400,400 elements: not a multiple of 4
    assert k.unique().tolist() == pytest.approx([0.0, 1 / (1 - p)])
    dropped = (k == 0).flatten().float()
    # each of the four 16-bit lanes of a 64-bit draw, and the whole tensor, drop p of their elements
    for lane in range(4):
        assert dropped[lane::4].mean().item() == pytest.approx(p, abs=0.005)
    assert dropped.mean().item() == pytest.approx(p, abs=0.002)


def test_masks_follow_torch_manual_seed():
    x = torch.randn(50, 64)
    torch.manual_seed(3)
    a = dropout(x, 0.2)
    torch.manual_seed(3)
    b = dropout(x, 0.2)
    torch.manual_seed(4)
    c = dropout(x, 0.2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_dropout_scales_kept_elements_and_their_gradient():
    x = torch.randn(64, 64, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.25)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)


def test_module_is_identity_in_eval_and_at_p_zero():
    x = torch.randn(8, 16)
    m = Dropout(0.3).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert (Dropout(0.3).train()(x) == 0).any()


def test_attention_without_dropout_is_sdpa_with_a_padding_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 30, 16) for _ in range(3))
    mask = torch.ones(2, 1, 1, 30, dtype=torch.bool)
    mask[1, ..., 22:] = False
    torch.testing.assert_close(
        attention(q, k, v, mask, 0.0), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    )


def test_attention_dropout_drops_weights_and_averages_to_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 6, 4) for _ in range(3))
    draws = torch.stack([attention(q, k, v, None, 0.5) for _ in range(4000)])
    # dropout on the weights (not on the output): each output row mixes a random subset of values
    torch.testing.assert_close(draws.mean(0), F.scaled_dot_product_attention(q, k, v), atol=0.06, rtol=0)
    assert draws.std(0).min() > 0.05


def test_the_switch_turns_every_fast_path_off(monkeypatch):
    x = torch.randn(50, 64)
    with kernels.use(False):
        assert not kernels.active()
        torch.manual_seed(3)
        plain = dropout(x, 0.2)
        torch.manual_seed(3)
        assert torch.equal(plain, F.dropout(x, 0.2))  # torch's own mask
    assert kernels.active()
    monkeypatch.setattr(_ChannelNorm, "apply", lambda *a: pytest.fail("fast path taken with the switch off"))
    block = ConvBlock(1, 16, 10, 5, False, "group")
    with kernels.use(False):
        block(torch.randn(2, 1, 1, 400)).sum().backward()


@pytest.mark.parametrize("bias", [True, False])
def test_first_conv_as_a_matmul_equals_the_convolution(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 24, 10, 5, bias=bias)
    x = torch.randn(2, 1, 1, 1003)
    fast = kernels.first_conv(conv, x)
    with kernels.use(False):
        plain = kernels.first_conv(conv, x)
    ref = F.conv1d(x[:, :, 0], conv.weight, conv.bias, stride=5)
    assert fast.shape == plain.shape == (2, 24, 1, 199)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert (fast[:, :, 0] - ref).abs().max() < 1e-5 and (plain[:, :, 0] - ref).abs().max() < 1e-5


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
        with kernels.use(fast), torch.autocast("cpu", torch.bfloat16):
            y = block(wav)
        assert y.dtype == torch.bfloat16
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        grads.append([p.grad.clone() for p in block.parameters()])
    for ours, torchs in zip(*grads, strict=True):
        # measured: the CNN's and the bias's gradients equal, the scale's within 2.0e-7 x its largest
        assert torch.allclose(ours, torchs, rtol=2e-2, atol=2e-2 * torchs.abs().max().item())


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_a_training_step_with_the_fast_paths_equals_the_plain_one(name):
    """Both CNN layouts (LayerNorm: tiny; GroupNorm: base), dropout off so the masks match: the same
    loss and the same gradient for every parameter."""
    config = preset(name).replace(
        conv_dim=(32,) * 4,
        conv_kernel=(10, 3, 3, 2),
        conv_stride=(5, 2, 2, 2),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        activation_dropout=0.0,
        final_dropout=0.0,
        vocab_size=8,
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(config).train()
    wav, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    results = []
    for fast in (True, False):
        model.zero_grad()
        with kernels.use(fast):
            logits, _, _ = model(wav, lengths)
            loss = logits.logsumexp(-1).mean()
            loss.backward()
        results.append(
            (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    (fast_loss, fast_grads), (plain_loss, plain_grads) = results
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-5)
    for n, g in plain_grads.items():
        assert torch.allclose(fast_grads[n], g, rtol=1e-3, atol=1e-4 * g.abs().max().item() + 1e-9), n


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
