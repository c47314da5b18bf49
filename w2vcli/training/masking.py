"""Span masks and negative sampling: pure functions, randomness only through an explicit torch.Generator.

Shapes: B batch, T frames, K negatives. Both outputs use Hugging Face's conventions
(`mask_time_indices` (B, T) bool, `sampled_negative_indices` (B, T, K) indices into the flattened
B*T frames), so the same masks and negatives can be fed to our model and to transformers'.
"""

from __future__ import annotations

import torch


def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    lengths: torch.Tensor | None = None,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Span masking as in wav2vec 2.0: per utterance of L real frames, n = int(mask_prob * L / M + u)
    spans of M frames (u ~ U[0,1), at least `min_masks`, at most L // M) start at distinct positions
    drawn uniformly inside [0, L - M]; spans may overlap, so about half the frames end up masked
    for mask_prob 0.65, M = 10. Returns (B, T) bool."""
    b, t = shape
    lengths = torch.full((b,), t, dtype=torch.long) if lengths is None else lengths.long().cpu()
    mask = torch.zeros(b, t, dtype=torch.bool)
    if mask_prob <= 0 or mask_length < 1:
        return mask
    for i in range(b):
        n_frames = int(lengths[i])
        if n_frames < mask_length:
            continue
        u = float(torch.rand((), generator=generator))
        n = max(min_masks, int(mask_prob * n_frames / mask_length + u))
        n = min(n, n_frames // mask_length)
        if n == 0:
            continue
        starts = torch.randperm(n_frames - mask_length + 1, generator=generator)[:n]  # distinct starts
        span = (starts[:, None] + torch.arange(mask_length)).flatten()  # (n*M,)
        mask[i, span] = True
    return mask


def sample_negative_indices(
    mask: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For each masked frame t of utterance b, K indices of other masked frames of the same utterance,
    drawn uniformly with replacement, never t itself (draw from n-1 and shift those >= t).
    Returns (B, T, K) long indices into the flattened (B*T) frames; rows of unmasked frames point at
    the utterance's first frame and are never read. An utterance with a single masked frame has no
    other frame to use: its negatives are the frame itself and the loss masks them out as duplicates."""
    mask = mask.bool().cpu()
    b, t = mask.shape
    out = torch.zeros(b, t, num_negatives, dtype=torch.long)
    for i in range(b):
        pos = mask[i].nonzero().squeeze(1)  # (n,) masked frames
        n = pos.numel()
        if n == 0:
            out[i] += i * t
            continue
        if n == 1:
            out[i, pos] = pos + i * t
            continue
        draw = torch.randint(0, n - 1, (n, num_negatives), generator=generator)
        draw += (draw >= torch.arange(n)[:, None]).long()  # skip the positive itself
        out[i, pos] = pos[draw]
        out[i] += i * t
    return out


def compute_feature_mask(
    shape: tuple[int, int], mask_prob: float, mask_length: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Channel masking for fine-tuning (SpecAugment along features): (B, C) bool, spans of channels."""
    return compute_mask_indices(shape, mask_prob, mask_length, None, 0, generator)
