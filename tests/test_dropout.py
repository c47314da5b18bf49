"""The CPU dropout: the right drop rate in every position, seeded by torch, attention dropout on the weights."""

import pytest
import torch
import torch.nn.functional as F

from w2vcli.model.dropout import Dropout, attention, dropout, keep_scale


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
