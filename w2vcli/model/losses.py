"""Losses: contrastive (InfoNCE over quantized targets), diversity, CTC. Pure functions, fp32 inside.

Shapes: M masked frames, P final projection dim, K negatives, G groups, B batch, T frames, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_logits(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    codes: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cosine similarity of each prediction (M, P) with its target (M, P) and K negatives, given as
    row indices into `targets` (M, K), divided by the temperature. A negative whose code equals the
    positive's (same entry in every group, hence the same vector) gets -inf: it is not a distractor.
    Returns (M, 1 + K) logits, the positive in column 0."""
    pred = F.normalize(predictions.float(), dim=-1, eps=1e-8)
    targ = F.normalize(targets.float(), dim=-1, eps=1e-8)
    pos = (pred * targ).sum(-1, keepdim=True)  # (M, 1)
    neg = torch.einsum("mp,mkp->mk", pred, targ[negatives])  # (M, K)
    logits = torch.cat([pos, neg], dim=1) / temperature
    duplicate = (codes[negatives] == codes[:, None, :]).all(-1)  # (M, K)
    return logits.masked_fill(F.pad(duplicate, (1, 0), value=False), float("-inf"))


def contrastive_loss(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy with the positive as class 0, mean per masked frame, and the accuracy: the
    fraction of frames whose positive beats every negative. A negative that duplicates the positive
    (-inf logit) counts as a tie, not a win, so a collapsed codebook reads as accuracy ~0 instead of
    the perfect score a plain argmax would give it."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits.float(), target, reduction="mean")
    negatives = logits[:, 1:]
    wins = (logits[:, :1] > negatives) & torch.isfinite(negatives)  # (M, K)
    accuracy = wins.all(-1).float().mean()
    return loss, accuracy


def diversity_loss(prob_perplexity: torch.Tensor, num_codevectors: int) -> torch.Tensor:
    """L_d = (G*V - perplexity) / (G*V): 0 when every codevector is used equally."""
    return (num_codevectors - prob_perplexity) / num_codevectors


def ctc_loss(
    logits: torch.Tensor,
    frame_lengths: torch.Tensor,
    labels: torch.Tensor,
    label_lengths: torch.Tensor,
    blank: int = 0,
) -> torch.Tensor:
    """Summed CTC loss in fp32 with zero_infinity (an utterance too short for its labels adds 0).
    logits (B, T, V); labels (B, L) padded (values past label_lengths are ignored)."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    labels = labels.clamp(min=0)
    return F.ctc_loss(
        log_probs, labels, frame_lengths, label_lengths, blank=blank, reduction="sum", zero_infinity=True
    )
