"""Properties of the model that would fail if the code were wrong."""

from __future__ import annotations

import math

import pytest
import torch

from w2vcli.errors import W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.model.config import ModelConfig, preset
from w2vcli.model.losses import diversity_loss
from w2vcli.model.quantizer import GumbelVectorQuantizer, gumbel_temperature, perplexity
from w2vcli.training.masking import compute_mask_indices, sample_negative_indices


def small(**changes) -> ModelConfig:
    return preset("tiny").replace(
        conv_dim=(32,) * 7,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        codevector_dim=16,
        proj_codevector_dim=16,
        num_codevectors_per_group=8,
        num_negatives=10,
        vocab_size=10,
        **changes,
    )


@pytest.mark.parametrize("n", [400, 401, 719, 720, 16000, 16399, 48123])
def test_output_length_formula_equals_real_conv_output(n):
    model = Wav2Vec2ForCTC(small()).eval()
    with torch.no_grad():
        feats = model.wav2vec2.feature_extractor(torch.randn(1, n))
    assert int(model.wav2vec2.feature_extractor.output_lengths(torch.tensor(n))) == feats.shape[-1]
    assert small().receptive_field == 400 and small().frame_stride == 320


def test_layer_norm_model_is_padding_invariant():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(small()).eval()
    lengths = [16000, 11111, 4000]
    items = [torch.randn(n) for n in lengths]
    wav = torch.zeros(3, max(lengths))
    for i, x in enumerate(items):
        wav[i, : len(x)] = x
    with torch.no_grad():
        logits, frame_lengths, _ = model(wav, torch.tensor(lengths))
        for i, x in enumerate(items):
            alone, n, _ = model(x[None])
            assert int(frame_lengths[i]) == alone.shape[1] == int(n[0])
            assert (logits[i, : alone.shape[1]] - alone[0]).abs().max() < 1e-5


def test_group_norm_model_is_not_padding_invariant():
    """Why pretraining crops instead of padding: GroupNorm normalises each channel over time."""
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(small(feat_extract_norm="group", conv_bias=False)).eval()
    x = torch.randn(8000)
    with torch.no_grad():
        alone, _, _ = model(x[None])
        padded, _, _ = model(torch.cat([x, torch.zeros(8000)])[None], torch.tensor([8000]))
    assert (padded[0, : alone.shape[1]] - alone[0]).abs().max() > 1e-3


def test_quantizer_one_hot_in_eval_gradients_in_train():
    torch.manual_seed(0)
    cfg = small()
    q = GumbelVectorQuantizer(cfg)
    x = torch.randn(50, cfg.conv_dim[-1], requires_grad=True)
    q.eval()
    out = q(x)
    books = q.codevectors.view(cfg.num_codevector_groups, cfg.num_codevectors_per_group, -1)
    expected = torch.cat([books[g, out.codes[:, g]] for g in range(cfg.num_codevector_groups)], dim=-1)
    assert torch.equal(out.vectors, expected)  # exactly one codevector per group
    assert out.codes.shape == (50, cfg.num_codevector_groups)
    q.train()
    out = q(x)
    (out.vectors.sum() + out.prob_perplexity).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # straight-through reaches the input
    assert q.codevectors.grad.abs().sum() > 0 and q.weight_proj.weight.grad.abs().sum() > 0


def test_diversity_loss_zero_for_uniform_code_use():
    g, v = 2, 8
    probs = torch.eye(v).repeat(3, 1)[:, None, :].expand(-1, g, -1)  # every entry used equally
    assert math.isclose(perplexity(probs).item(), g * v, rel_tol=1e-6)
    assert abs(diversity_loss(perplexity(probs), g * v).item()) < 1e-6
    collapsed = torch.zeros(24, g, v)
    collapsed[..., 0] = 1
    assert math.isclose(perplexity(collapsed).item(), g, rel_tol=1e-6)  # collapse: perplexity = G


def test_negatives_come_from_masked_frames_of_same_utterance_never_the_positive():
    g = torch.Generator().manual_seed(0)
    b, t, k = 3, 120, 50
    lengths = torch.tensor([120, 90, 40])
    mask = compute_mask_indices((b, t), 0.65, 10, lengths=lengths, min_masks=2, generator=g)
    neg = sample_negative_indices(mask, k, generator=g)
    assert neg.shape == (b, t, k)
    for i in range(b):
        masked = set((mask[i].nonzero().squeeze(1) + i * t).tolist())
        for f in mask[i].nonzero().squeeze(1).tolist():
            drawn = set(neg[i, f].tolist())
            assert drawn <= masked and (i * t + f) not in drawn
    # uniform over the other masked frames: with many draws every one shows up
    many = sample_negative_indices(mask[:1], 2000, generator=g)
    first = mask[0].nonzero().squeeze(1)
    assert set(many[0, first[0]].tolist()) == set((first[1:]).tolist())


def test_span_masks_start_inside_real_length_and_cover_about_half():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([500, 300, 60])
    mask = compute_mask_indices((3, 500), 0.65, 10, lengths=lengths, min_masks=2, generator=g)
    for i, n in enumerate(lengths.tolist()):
        assert not mask[i, n:].any()
    big = compute_mask_indices((64, 500), 0.65, 10, min_masks=2, generator=g)
    assert 0.4 < big.float().mean().item() < 0.6  # ~1 - exp(-0.65) with overlaps
    same = compute_mask_indices((64, 500), 0.65, 10, min_masks=2, generator=torch.Generator().manual_seed(1))
    again = compute_mask_indices((64, 500), 0.65, 10, min_masks=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, again)


def test_gumbel_temperature_schedule():
    assert gumbel_temperature(0) == 2.0
    assert math.isclose(gumbel_temperature(100_000), 2.0 * 0.999995**100_000)
    assert gumbel_temperature(10**7) == 0.5


def test_feature_grad_mult_scales_encoder_gradient():
    torch.manual_seed(0)
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(0)
        model = Wav2Vec2ForCTC(
            small(feature_grad_mult=mult, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0)
        ).train()
        logits, _, _ = model(torch.randn(1, 8000, generator=torch.Generator().manual_seed(0)))
        logits.sum().backward()
        grads[mult] = model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad.clone()
    scale = grads[0.1].abs().max()  # oneDNN's blocking reorders sums: compare against the scale
    assert torch.allclose(grads[0.1], grads[1.0] * 0.1, rtol=1e-4, atol=1e-5 * scale)


def test_pretraining_step_reduces_loss_and_reports_metrics():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(small(mask_time_length=4))
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 16000, generator=g)
    t = int(model.wav2vec2.feature_extractor.output_lengths(torch.tensor(16000)))
    mask = compute_mask_indices((2, t), 0.65, 4, min_masks=2, generator=g)
    neg = sample_negative_indices(mask, 10, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.eval()
    first = model(wav, mask, neg).loss.item()
    for _ in range(10):
        model.train()
        out = model(wav, mask, neg)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    last = model(wav, mask, neg)
    assert last.loss.item() < first
    assert 0.0 <= last.accuracy.item() <= 1.0 and last.num_masked == int(mask.sum())
    assert 1.0 <= last.code_perplexity.item() <= 16


def test_parameter_counts_match_reference():
    """transformers' Wav2Vec2ForPreTraining: base 95,044,608 and large 317,390,592 parameters."""
    counts = {}
    for name in ("base", "large"):
        with torch.device("meta"):  # shapes only, no memory
            model = Wav2Vec2ForPreTraining(preset(name))
        counts[name] = sum(p.numel() for p in model.parameters())
    assert counts == {"base": 95_044_608, "large": 317_390_592}


def test_config_roundtrip_and_validation(tmp_path):
    cfg = preset("large")
    cfg.save(tmp_path)
    assert ModelConfig.load(tmp_path) == cfg
    with pytest.raises(W2VError, match="feat_extract_norm"):
        cfg.replace(feat_extract_norm="batch")
    with pytest.raises(W2VError, match="unknown preset"):
        preset("huge")


def test_collapsed_codebook_still_gives_finite_gradients():
    """Unused entries have probability exactly 0 once the softmax saturates; the step must stay finite."""
    torch.manual_seed(0)
    cfg = small()
    q = GumbelVectorQuantizer(cfg).train()
    with torch.no_grad():
        q.weight_proj.bias.zero_()
        q.weight_proj.bias[0] = q.weight_proj.bias[cfg.num_codevectors_per_group] = 1e4  # saturate
    x = torch.randn(20, cfg.conv_dim[-1], requires_grad=True)
    out = q(x)
    diversity_loss(out.prob_perplexity, cfg.num_codevectors).backward()
    assert abs(out.prob_perplexity.item() - cfg.num_codevector_groups) < 1e-4
    assert torch.isfinite(x.grad).all() and torch.isfinite(q.weight_proj.weight.grad).all()
