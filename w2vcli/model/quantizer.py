"""Gumbel product quantizer.

Shapes: M frames to quantize, C input dim, G groups, V entries per group, D codevector dim (D/G per group).
Each group picks one of V codevectors (Gumbel softmax, straight-through hard one-hot in training,
argmax in eval); the G choices are concatenated. The softmax runs in fp32 even under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from w2vcli.model.config import ModelConfig


@dataclass
class Quantized:
    vectors: torch.Tensor  # (M, D)
    codes: torch.Tensor  # (M, G) chosen entry per group
    prob_perplexity: (
        torch.Tensor
    )  # perplexity of the averaged softmax (soft in train, hard in eval); feeds L_d
    code_perplexity: torch.Tensor  # perplexity of the argmax codes (no Gumbel noise)


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """sum over groups of exp(entropy of the distribution averaged over frames). probs: (M, G, V)."""
    marginal = probs.mean(dim=0)  # (G, V)
    # p log p with the log clamped: exact for p >= 1e-7, and an unused entry (p = 0, common once the
    # softmax saturates) gets a finite gradient where xlogy's would be -inf and poison the step.
    return torch.exp(-(marginal * marginal.clamp_min(1e-7).log()).sum(-1)).sum()


def gumbel_temperature(update: int, start: float = 2.0, end: float = 0.5, decay: float = 0.999995) -> float:
    """fairseq's schedule: max(start * decay**update, end)."""
    return max(start * decay**update, end)


class GumbelVectorQuantizer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.groups = config.num_codevector_groups
        self.entries = config.num_codevectors_per_group
        self.codevectors = nn.Parameter(
            torch.empty(1, self.groups * self.entries, config.codevector_dim // self.groups)
        )
        self.weight_proj = nn.Linear(config.conv_dim[-1], self.groups * self.entries)
        self.temperature = 2.0  # set by the trainer from gumbel_temperature(update)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 1) logits so early codes are diverse; uniform codevectors (fairseq, Hugging Face)."""
        nn.init.normal_(self.weight_proj.weight, 0.0, 1.0)
        nn.init.zeros_(self.weight_proj.bias)
        nn.init.uniform_(self.codevectors)

    def forward(self, x: torch.Tensor) -> Quantized:
        m = x.shape[0]
        logits = self.weight_proj(x).float().view(m, self.groups, self.entries)  # (M, G, V)
        codes = logits.argmax(dim=-1)  # (M, G)
        hard = F.one_hot(codes, self.entries).to(logits.dtype)
        if self.training:
            onehot = F.gumbel_softmax(logits, tau=self.temperature, hard=True)  # straight-through
            codes = onehot.argmax(dim=-1)
            prob_ppl = perplexity(torch.softmax(logits, dim=-1))
        else:
            onehot = hard
            prob_ppl = perplexity(hard)
        code_ppl = perplexity(hard)  # fairseq's code_perplexity: argmax without Gumbel noise
        onehot = onehot.to(self.codevectors.dtype).view(m, self.groups, self.entries)
        books = self.codevectors.view(self.groups, self.entries, -1)  # (G, V, D/G)
        vectors = torch.einsum("mgv,gvd->mgd", onehot, books).reshape(m, -1)  # (M, D)
        return Quantized(vectors, codes, prob_ppl, code_ppl)
