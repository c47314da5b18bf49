"""Three properties the mutation run (bench/mutants.py) found unguarded: the CTC loss is a sum over
utterances of -log P(labels | audio), the LM weight scales the end-of-sentence score too, and span
masking gives every utterance at least `min_masks` spans."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from w2vcli.decoding.lm import EOS, PrefixTrie
from w2vcli.model.losses import ctc_loss


def brute_force_ctc(log_probs: np.ndarray, labels: list[int], blank: int = 0) -> float:
    """-log P(labels) by summing over every frame path that collapses to them (T small enough to enumerate)."""
    t, v = log_probs.shape
    total = -math.inf
    for path in itertools.product(range(v), repeat=t):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == labels:
            total = np.logaddexp(total, sum(log_probs[i, c] for i, c in enumerate(path)))
    return -float(total)


def test_ctc_loss_is_the_sum_of_each_utterances_negative_log_likelihood():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.standard_normal((2, 6, 3)).astype(np.float32))  # (B, T, V)
    frames = torch.tensor([6, 5])
    labels = torch.tensor([[1, 2], [2, 2]])  # the second needs a blank between its two 2s
    lengths = torch.tensor([2, 2])
    got = float(ctc_loss(logits, frames, labels, lengths))
    log_probs = torch.log_softmax(logits, dim=-1).numpy()
    want = brute_force_ctc(log_probs[0, :6], [1, 2]) + brute_force_ctc(log_probs[1, :5], [2, 2])
    assert abs(got - want) < 1e-4  # measured: 1e-6


class FixedLM:
    """Every word costs -1 nat, the end of the sentence -3."""

    def initial_state(self):
        return ()

    def score(self, state, word):
        return (-3.0 if word == EOS else -1.0), state + (word,)


def test_the_lm_weight_scales_the_end_of_sentence_score_too():
    table = [None, ("a", True)]  # token 1 starts the word "a"
    for weight, word_score in [(0.5, 0.0), (2.0, 1.5)]:
        trie = PrefixTrie(table, FixedLM(), weight, word_score)
        node = trie.node(trie.key(0, 1))
        assert trie.final_bonus(node) == weight * (-1.0 + -3.0) + word_score


def test_every_utterance_gets_at_least_min_masks_spans():
    from w2vcli.training.masking import compute_mask_indices

    g = torch.Generator().manual_seed(0)
    # 0.01 x 50 / 5 + u < 2: without the floor most rows would get 0 or 1 span of 5 frames
    mask = compute_mask_indices((64, 50), 0.01, 5, None, min_masks=2, generator=g)
    assert int(mask.sum(dim=1).min()) >= 6  # two distinct starts: at least 6 frames
    short = compute_mask_indices((8, 7), 0.01, 5, None, min_masks=2, generator=g)
    assert (short.sum(dim=1) == 5).all()  # capped at length // M = 1 span
