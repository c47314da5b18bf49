"""BEST-RQ (Chiu et al. 2022): self-supervised learning with a random-projection quantizer.

Shapes: B batch, N samples, F log-mel frames (10 ms), T model frames (20 ms), S stacked features,
E codebook dim, C codebooks, V codes per codebook, M masked frames, D model dim.

Targets come from the signal, not from the model: normalised log-mel frames, two stacked per 20 ms
model frame, are projected by a frozen random matrix and matched to the nearest entry of a frozen
random codebook (cosine). The model sees the waveform with spans of its frames masked (the same
masking as the contrastive task) and predicts the code of each masked frame with a softmax over V.
Nothing is learned in the quantizer, so it cannot collapse, and there are no negatives to draw.
The backbone is the one of `Wav2Vec2ForPreTraining` (`wav2vec2.*`): fine-tuning, export to
transformers and ONNX work on it unchanged.

The log-mel front end is written here (a Hann-windowed STFT and HTK mel triangles) rather than taken
from torchaudio, which this project does not use (see the README); it only makes targets, so it needs
no parity with any other implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from w2vcli.model.config import ModelConfig
from w2vcli.model.wav2vec2 import Wav2Vec2Model, init_weights

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms: two log-mel frames per 20 ms model frame
MEL_BINS = 80
STACK = 2


def mel_filterbank(
    n_fft: int = WINDOW, n_mels: int = MEL_BINS, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters evenly spaced on the HTK mel scale, 0 Hz to Nyquist."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    edges_mel = torch.linspace(0.0, mel(sample_rate / 2), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)  # (n_mels + 2,) Hz
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lo) / (mid - lo)
    falling = (hi - freqs[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel(wav: torch.Tensor, filterbank: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, F, MEL_BINS) log power mel frames, 25 ms Hann windows every 10 ms, no centring."""
    spec = torch.stft(
        wav.float(),
        n_fft=WINDOW,
        hop_length=HOP,
        window=torch.hann_window(WINDOW, device=wav.device),
        center=False,
        return_complex=True,
    )  # (B, WINDOW // 2 + 1, F)
    power = spec.real.square() + spec.imag.square()
    return torch.log(power.transpose(1, 2) @ filterbank + 1e-6)  # (B, F, MEL_BINS)


def stacked_features(wav: torch.Tensor, frames: int, filterbank: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, T, S): for model frame t (samples 320t .. 320t + 400) the log-mel frames 2t and
    2t + 1, each normalised to zero mean and unit variance per utterance and mel bin."""
    wav = F.pad(wav, (0, HOP))  # frame 2T - 1 may reach 160 samples past the last model frame's end
    mel = log_mel(wav, filterbank)[:, : STACK * frames]  # (B, 2T, MEL_BINS)
    mel = (mel - mel.mean(1, keepdim=True)) / (mel.std(1, keepdim=True) + 1e-5)
    b, f, m = mel.shape
    return mel.reshape(b, f // STACK, STACK * m)  # (B, T, S)


class RandomProjectionQuantizer(nn.Module):
    """Frozen random projection (S, E) and C codebooks (C, V, E) of unit vectors: buffers, saved with
    the model so that a resumed or copied run keeps its targets."""

    def __init__(self, config: ModelConfig, generator: torch.Generator | None = None):
        super().__init__()
        c, v, e = config.rpq_num_codebooks, config.rpq_codebook_size, config.rpq_codebook_dim
        s = STACK * MEL_BINS
        projection = torch.empty(s, e)
        nn.init.xavier_normal_(projection, generator=generator)
        codebooks = F.normalize(torch.randn(c, v, e, generator=generator), dim=-1)
        self.register_buffer("projection", projection)
        self.register_buffer("codebooks", codebooks)
        self.register_buffer("filterbank", mel_filterbank(), persistent=False)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, N) waveform -> (B, T, C) code indices."""
        x = F.normalize(stacked_features(wav, frames, self.filterbank) @ self.projection, dim=-1)  # (B, T, E)
        similarity = torch.einsum("bte,cve->btcv", x, self.codebooks)  # (B, T, C, V)
        return similarity.argmax(-1)  # unit vectors: the largest cosine is the nearest in L2


@dataclass
class BestRQOutput:
    loss: torch.Tensor  # cross-entropy per masked frame, nats (mean over codebooks) + feature penalty
    cross_entropy: torch.Tensor
    accuracy: torch.Tensor  # masked frames x codebooks whose code was predicted
    feature_penalty: torch.Tensor
    num_masked: int
    logits: torch.Tensor  # (M, C, V)


class Wav2Vec2ForBestRQ(nn.Module):
    """The wav2vec 2.0 backbone with a BEST-RQ head: `classifier` maps each frame to C x V logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.quantizer = RandomProjectionQuantizer(config)
        self.classifier = nn.Linear(config.hidden_size, config.rpq_num_codebooks * config.rpq_codebook_size)
        init_weights(self)

    def forward(
        self,
        wav: torch.Tensor,
        mask_time_indices: torch.Tensor,
        lengths: torch.Tensor | None = None,
        target_wav: torch.Tensor | None = None,
    ) -> BestRQOutput:
        """wav (B, N) equal-length crops (lengths None) or padded with `lengths`; mask_time_indices
        (B, T) bool: the frames to predict; target_wav (B, N): the audio the targets come from, when
        not `wav` (the clean audio of an augmented input: the model learns to hear through the noise,
        as WavLM's denoising task)."""
        mask = mask_time_indices.bool()
        out = self.wav2vec2(wav, lengths, mask_time_indices=mask)
        b, t, _ = out.last_hidden_state.shape
        targets = self.quantizer(wav if target_wav is None else target_wav, t)[mask]  # (M, C)
        c, v = self.config.rpq_num_codebooks, self.config.rpq_codebook_size
        logits = self.classifier(out.last_hidden_state[mask]).float().reshape(-1, c, v)  # (M, C, V)
        ce = F.cross_entropy(logits.reshape(-1, v), targets.reshape(-1)) if targets.numel() else logits.sum()
        accuracy = (logits.argmax(-1) == targets).float().mean() if targets.numel() else logits.sum()
        loss = ce + self.config.feature_penalty_weight * out.features_pen
        return BestRQOutput(loss, ce, accuracy, out.features_pen, int(mask.sum()), logits)
