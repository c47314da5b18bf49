"""Chunked transcription equals one pass on a model whose context is bounded; frame counts equal the encoder's.

The stand-in in test_chunking makes each frame depend on its own 400 samples only, so a chunk cut
short of its right-hand stride still looks right there. Here a real Wav2Vec2ForCTC is restricted to a
known window: attention's output projection is zeroed (attention adds only its bias, the same for
every frame), and everything else is per frame except the feature encoder (each frame's 400 samples,
LayerNorm per frame) and the positional conv (K = 2 x stride frames, padding K/2, the extra frame
trimmed), so output frame t reads feature frames [t - K/2, t + K/2 - 1]. A chunk that keeps stride
frames of context on each side then reproduces the unchunked logits exactly, up to float rounding;
half the context changes the last kept frames of each chunk by ~0.07.
B = batch, N = samples, T = frames, V = vocabulary.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

import w2vcli.pipelines.transcribe as transcribe_module
from w2vcli.checkpoints.resolve import LoadedModel
from w2vcli.data.chunking import ChunkPlan
from w2vcli.data.text import Vocabulary
from w2vcli.decoding.ctc import Hypothesis
from w2vcli.model.config import ModelConfig
from w2vcli.model.feature_encoder import FeatureEncoder
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC
from w2vcli.pipelines.transcribe import TranscribeOptions, expand, transcribe

CHUNK_SECONDS, STRIDE_SECONDS = 1.0, 0.2  # 50-frame chunks, 10 stride frames each side
STRIDE_FRAMES = 10
# Measured: |chunked - unchunked| <= 9e-8 one chunk at a time, <= 6e-7 in padded batches (the FFT
# positional conv rounds differently per block); with the right-hand context halved, 0.07-0.08.
ATOL = 1e-5


def bounded_model(seed: int = 0) -> LoadedModel:
    """A tiny Wav2Vec2ForCTC whose output frame t depends only on feature frames t - 10 .. t + 9."""
    torch.manual_seed(seed)
    config = ModelConfig(
        conv_dim=(16,) * 7,
        conv_bias=True,
        feat_extract_norm="layer",  # LayerNorm per frame: GroupNorm would normalise over the whole input
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_conv_pos_embeddings=2 * STRIDE_FRAMES,  # reaches K/2 = stride frames left, K/2 - 1 right
        num_conv_pos_embedding_groups=4,
        vocab_size=8,
    )
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        for layer in model.wav2vec2.encoder.layers:
            layer.attention.out_proj.weight.zero_()  # attention output = its bias: no context from it
    vocab = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c"])
    return LoadedModel(model, config, vocab, path=None, normalize=False)


@pytest.fixture(scope="module")
def loaded():
    return bounded_model()


def test_the_stand_in_really_has_the_stated_window(loaded):
    """The premise: changing samples outside frame t's window leaves frame t alone, inside it does not."""
    rng = np.random.default_rng(1)
    wav = torch.from_numpy(rng.standard_normal(16000).astype(np.float32))
    t = 20  # feature frames 10 .. 29 -> samples [3200, 9680)
    with torch.inference_mode():
        base = loaded.model(wav[None])[0][0, t]
        far = wav.clone()
        far[:3200] += 1.0
        far[9680:] += 1.0
        near = [wav.clone(), wav.clone()]
        near[0][3280:3520] += 1.0  # samples that only frame 10, the window's first, sees
        near[1][9360:9600] += 1.0  # samples that only frame 29, the window's last, sees
        assert torch.allclose(loaded.model(far[None])[0][0, t], base, atol=ATOL)
        for x in near:  # measured: output 20 moves by 0.031 and 0.038; outside the window by < 1e-7
            assert not torch.allclose(loaded.model(x[None])[0][0, t], base, atol=1e-3)


def emissions_of(path, loaded, monkeypatch, **options) -> np.ndarray:
    """The (T, V) logits `transcribe` hands to the decoder (beam > 1 decodes the stitched matrix)."""
    seen = []

    def capture(emissions, options=None, blank_id=0, vocab=None):
        seen.append(np.array(emissions))
        return Hypothesis([], [], [], 0.0)

    monkeypatch.setattr(transcribe_module, "decode", capture)
    (result,) = transcribe(expand([str(path)]), loaded, TranscribeOptions(beam=2, **options))
    assert result.error is None, result
    (emissions,) = seen
    return emissions


@pytest.mark.parametrize(
    "n",
    [
        16081,  # one sample more than one chunk (end_sample(50) = 16080): two chunks
        16000 * 3 + 77,
        16000 * 4 + 320 * 7,  # the last chunk ends exactly on a frame boundary
    ],
)
@pytest.mark.parametrize("batch_seconds", [0.0, 4.0])  # one chunk at a time, and padded batches
def test_chunked_logits_equal_unchunked_frame_by_frame(loaded, tmp_path, monkeypatch, n, batch_seconds):
    rng = np.random.default_rng(n)
    wav = (0.3 * rng.standard_normal(n)).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")  # float: the file holds exactly these samples
    with torch.inference_mode():
        whole = loaded.model(torch.from_numpy(wav)[None])[0][0].numpy()  # (T, V) one pass, no pipeline
    assert len(whole) == FeatureEncoder(loaded.config).output_lengths(torch.tensor(n)).item()
    chunked = emissions_of(
        path, loaded, monkeypatch,
        chunk_seconds=CHUNK_SECONDS, stride_seconds=STRIDE_SECONDS, batch_seconds=batch_seconds,
    )  # fmt: skip
    assert chunked.shape == whole.shape  # every frame once, none dropped at the end
    err = np.abs(chunked - whole).max(axis=1)  # (T,)
    assert err.max() < ATOL, f"frame {int(err.argmax())} differs by {err.max():.3g}"
    assert np.abs(whole).max() > 100 * ATOL  # the logits are not trivially small
    unchunked = emissions_of(path, loaded, monkeypatch, chunk_seconds=0, batch_seconds=batch_seconds)
    np.testing.assert_allclose(unchunked, whole, atol=ATOL)


def test_plan_stride_matches_the_stand_in(loaded):
    plan = ChunkPlan.from_seconds(CHUNK_SECONDS, STRIDE_SECONDS, loaded.config)
    assert (plan.chunk_frames, plan.stride_frames) == (50, STRIDE_FRAMES)


LENGTHS = sorted(
    {
        *range(0, 1300),
        *(f * 320 + 400 + d for f in (3, 49, 50, 51, 937) for d in (-1, 0, 1, 319)),
        16000 * 3600 + 17,
    }
)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(conv_dim=(4,) * 7),  # the standard encoder: 400-sample field, 320-sample frames
        ModelConfig(conv_dim=(4,) * 3, conv_kernel=(4, 3, 3), conv_stride=(3, 2, 2)),  # 22 and 12
    ],
    ids=["standard", "odd"],
)
def test_output_frames_equal_the_encoder_and_the_frame_formula(config):
    encoder = FeatureEncoder(config)
    expected = encoder.output_lengths(torch.tensor(LENGTHS)).tolist()
    field, frame = config.receptive_field, config.frame_stride
    formula = [max((n - field) // frame + 1, 0) for n in LENGTHS]  # the config's frame formula
    assert expected == formula
    plans = [ChunkPlan.from_seconds(30.0, 2.5, config)]
    if config.conv_kernel == ModelConfig().conv_kernel:
        plans.append(ChunkPlan(chunk_frames=0, stride_frames=0))  # the defaults without a config
    for plan in plans:
        got = [plan.output_frames(n) for n in LENGTHS]
        bad = [(n, g, e) for n, g, e in zip(LENGTHS, got, expected, strict=True) if g != e]
        assert not bad, f"(samples, output_frames, encoder) first differences: {bad[:5]}"


@pytest.mark.parametrize("n", [400, 401, 719, 720, 721, 1039, 1040, 5000])
def test_output_frames_equal_the_frames_the_convolutions_make(n):
    """The length the convolutions really produce, not a formula: a forward pass on n samples."""
    config = ModelConfig(conv_dim=(2,) * 7, conv_bias=True, feat_extract_norm="layer")
    with torch.inference_mode():
        frames = FeatureEncoder(config)(torch.zeros(1, n)).shape[-1]  # (1, C, T)
    assert ChunkPlan.from_seconds(30.0, 2.5, config).output_frames(n) == frames
    assert ChunkPlan(0, 0).output_frames(n) == frames
