"""Parity with transformers (random weights): our model, through our converter, computes what theirs does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
)
from transformers import Wav2Vec2ForCTC as HFForCTC  # noqa: E402
from transformers import Wav2Vec2ForPreTraining as HFForPreTraining  # noqa: E402

from w2vcli.checkpoints.huggingface import config_to_hf, export_hf, import_hf, model_from_hf  # noqa: E402
from w2vcli.model.config import preset  # noqa: E402
from w2vcli.training.masking import compute_mask_indices, sample_negative_indices  # noqa: E402

TOL = 1e-4
TINY_HF = dict(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    vocab_size=12,
    codevector_dim=32,
    proj_codevector_dim=24,
    num_codevectors_per_group=16,
    num_negatives=20,
)


def hf_config(name: str, head: str = "ctc", **overrides) -> Wav2Vec2Config:
    """transformers config of one of our presets ("tiny-group"/"tiny-layer" are small test models)."""
    if name.startswith("tiny-"):
        layer = name == "tiny-layer"
        fields = dict(
            TINY_HF,
            feat_extract_norm="layer" if layer else "group",
            do_stable_layer_norm=layer,
            conv_bias=layer,
        )
    else:
        fields = config_to_hf(preset(name).replace(vocab_size=32), head)
    return Wav2Vec2Config(**{**fields, **overrides})


def audio(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = [np.arange(n) / 16000 for n in lengths]
    return [
        (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * x) + 0.05 * rng.standard_normal(len(x))).astype(
            np.float32
        )
        for x in t
    ]


def batch(waves: list[np.ndarray], normalize: bool):
    """Our input (padded waveforms + lengths) and transformers' (its feature extractor's output)."""
    fe = Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=True)
    hf_in = fe(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    lengths = torch.tensor([len(w) for w in waves])
    wav = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        wav[i, : len(w)] = torch.from_numpy(w)
    return wav, lengths, hf_in


def ours_from(hf_model, config: Wav2Vec2Config, normalize: bool):
    model, _ = model_from_hf(config.to_dict(), hf_model.state_dict(), normalize)
    return model


def compare_ctc(hf_model, ours, waves, normalize, padded):
    wav, lengths, hf_in = batch(waves, normalize)
    with torch.no_grad():
        ref = hf_model(
            hf_in.input_values,
            attention_mask=hf_in.attention_mask if padded else None,
            output_hidden_states=True,
        )
        feats = hf_model.wav2vec2.feature_extractor(hf_in.input_values)
        logits, frame_lengths, out = ours(wav, lengths if padded else None, output_hidden_states=True)
        our_feats = ours.wav2vec2.feature_extractor(hf_in.input_values)  # same input: isolates the CNN
    valid = torch.arange(logits.shape[1])[None] < frame_lengths[:, None]  # (B, T)
    assert (feats - our_feats).abs().max() < TOL
    assert len(ref.hidden_states) == len(out.hidden_states) == hf_model.config.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(ref.hidden_states, out.hidden_states)):
        assert (a - b)[valid].abs().max() < TOL, f"hidden state {i}"
    assert (ref.logits - logits)[valid].abs().max() < TOL
    return logits, frame_lengths


@pytest.mark.parametrize("name", ["tiny-group", "tiny-layer"])
def test_ctc_parity_tiny_through_files(tmp_path, name):
    torch.manual_seed(0)
    config = hf_config(name)
    hf_model = HFForCTC(config).eval()
    hf_model.save_pretrained(tmp_path)
    layer = name == "tiny-layer"
    Wav2Vec2FeatureExtractor(do_normalize=layer).save_pretrained(tmp_path)
    ckpt = import_hf(tmp_path)
    assert ckpt.head == "ctc" and ckpt.config.do_normalize == layer
    lengths = [24000, 17001, 9000] if layer else [24000]
    compare_ctc(hf_model, ckpt.model, audio(lengths), layer, padded=layer)


@pytest.mark.parametrize("name", ["base", pytest.param("large", marks=pytest.mark.slow)])
def test_ctc_parity_paper_configs(name):
    torch.manual_seed(0)
    config = hf_config(name)
    hf_model = HFForCTC(config).eval()
    normalize = name == "large"
    ours = ours_from(hf_model, config, normalize)
    lengths = [48000, 33000] if name == "large" else [48000]  # large: layer-norm, batched with padding
    compare_ctc(hf_model, ours, audio(lengths, seed=1), normalize, padded=name == "large")


def pretraining_pair(name: str):
    torch.manual_seed(0)
    config = hf_config(name, head="pretraining")
    hf_model = HFForPreTraining(config).eval()
    return hf_model, ours_from(hf_model, config, normalize=False), config


@pytest.mark.parametrize("name", ["tiny-group", "tiny-layer", "base"])
def test_pretraining_losses_match(name):
    hf_model, ours, config = pretraining_pair(name)
    wav, _, hf_in = batch(audio([32000, 32000], seed=2), normalize=False)
    t = int(ours.wav2vec2.feature_extractor.output_lengths(torch.tensor(32000)))
    g = torch.Generator().manual_seed(0)
    mask = compute_mask_indices((2, t), 0.65, 10, min_masks=2, generator=g)
    negatives = sample_negative_indices(mask, config.num_negatives, generator=g)
    with torch.no_grad():
        ref = hf_model(hf_in.input_values, mask_time_indices=mask, sampled_negative_indices=negatives)
        out = ours(wav, mask, negatives)
    m = int(mask.sum())
    assert out.num_masked == m
    # transformers sums over masked frames; we report per masked frame.
    assert abs(ref.contrastive_loss.item() - out.contrastive_loss.item() * m) < TOL * m
    assert abs(ref.diversity_loss.item() - out.diversity_loss.item() * m) < TOL * m
    assert abs(ref.codevector_perplexity.item() - out.prob_perplexity.item()) < TOL


def test_duplicate_negatives_get_minus_inf():
    """With a single-entry codebook every negative equals its positive: all negatives are masked out."""
    hf_model, ours, config = pretraining_pair("tiny-group")
    with torch.no_grad():
        ours.quantizer.weight_proj.weight.zero_()
        ours.quantizer.weight_proj.bias.copy_(torch.arange(ours.quantizer.weight_proj.bias.numel()).float())
        hf_model.quantizer.weight_proj.load_state_dict(ours.quantizer.weight_proj.state_dict())
    wav, _, hf_in = batch(audio([16000], seed=3), normalize=False)
    t = int(ours.wav2vec2.feature_extractor.output_lengths(torch.tensor(16000)))
    g = torch.Generator().manual_seed(0)
    mask = compute_mask_indices((1, t), 0.65, 10, min_masks=2, generator=g)
    negatives = sample_negative_indices(mask, config.num_negatives, generator=g)
    with torch.no_grad():
        out = ours(wav, mask, negatives)
        ref = hf_model(hf_in.input_values, mask_time_indices=mask, sampled_negative_indices=negatives)
    assert torch.isinf(out.logits[:, 1:]).all() and out.contrastive_loss.item() == 0.0
    assert out.accuracy.item() == 0.0  # a collapsed codebook must not look like a perfect model
    assert ref.contrastive_loss.item() == 0.0


def test_export_reloads_in_transformers(tmp_path):
    torch.manual_seed(0)
    config = hf_config("tiny-layer")
    hf_model = HFForCTC(config).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    ckpt = import_hf(tmp_path / "hf")
    export_hf(ckpt, tmp_path / "out")
    again = HFForCTC.from_pretrained(tmp_path / "out").eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path / "out")
    assert fe.do_normalize and fe.return_attention_mask
    waves = audio([20000, 12000], seed=4)
    wav, lengths, hf_in = batch(waves, normalize=True)
    with torch.no_grad():
        ours, frame_lengths, _ = ckpt.model(wav, lengths)
        theirs = again(hf_in.input_values, attention_mask=hf_in.attention_mask).logits
    valid = torch.arange(ours.shape[1])[None] < frame_lengths[:, None]
    assert (ours - theirs)[valid].abs().max() < TOL


def test_export_pretraining_reloads(tmp_path):
    hf_model, ours, config = pretraining_pair("tiny-group")
    from w2vcli.checkpoints.native import Checkpoint

    export_hf(Checkpoint(ours, ours.config, "pretraining", None, tmp_path), tmp_path / "out")
    again = HFForPreTraining.from_pretrained(tmp_path / "out").eval()
    for key, value in hf_model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
