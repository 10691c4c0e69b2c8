"""Negative sampling: N per positive, never the positive, popularity bias, dynamic = hardest candidate."""

from __future__ import annotations

import pytest
import torch

from workbench.config.common import NegSampleArgs
from workbench.tasks.recommendation.sampler import NegativeSampler


def test_uniform_gives_n_negatives_per_positive_never_the_positive():
    sampler = NegativeSampler(NegSampleArgs(sample_num=4), n_items=6, seed=1)
    pos = torch.randint(1, 6, (5000,))
    neg = sampler.sample(pos)
    assert neg.shape == (5000, 4)
    assert (neg != pos.unsqueeze(1)).all()
    assert neg.min() >= 1 and neg.max() <= 5  # never PAD 0
    # uniform over the 4 other items: each about 25 %
    counts = torch.bincount(neg[pos == 3].flatten(), minlength=6).float()
    share = counts[[1, 2, 4, 5]] / counts.sum()
    assert torch.allclose(share, torch.full((4,), 0.25), atol=0.03)
    assert counts[3] == 0


def test_popularity_follows_counts_to_the_power_alpha():
    counts = torch.tensor([0.0, 1.0, 1.0, 8.0])
    pos = torch.ones(20000, dtype=torch.long)  # positive item 1 -> negatives from {2, 3}
    neg = NegativeSampler(NegSampleArgs(distribution="popularity", alpha=1.0), 4, counts, seed=2).sample(pos)
    assert (neg != 1).all()
    share3 = (neg == 3).float().mean().item()
    assert share3 == pytest.approx(8 / 9, abs=0.02)
    damped = NegativeSampler(NegSampleArgs(distribution="popularity", alpha=0.5), 4, counts, seed=2).sample(pos)
    assert (damped == 3).float().mean().item() == pytest.approx(8**0.5 / (1 + 8**0.5), abs=0.02)


def test_dominant_item_cannot_stall_popularity_sampling():
    counts = torch.tensor([0.0, 1e9, 1.0, 1.0])
    neg = NegativeSampler(NegSampleArgs(distribution="popularity"), 4, counts, seed=3).sample(torch.ones(100, dtype=torch.long))
    assert (neg != 1).all()


def test_dynamic_keeps_the_highest_scoring_candidate():
    args = NegSampleArgs(sample_num=2, dynamic=True, candidate_num=5)
    sampler = NegativeSampler(args, n_items=50, seed=4)
    seen: list[torch.Tensor] = []

    def scorer(candidates: torch.Tensor) -> torch.Tensor:
        seen.append(candidates)
        return candidates.float()  # the score is the item id: the hardest negative is the largest id

    neg = sampler.sample(torch.full((8,), 7), scorer)
    assert neg.shape == (8, 2)
    candidates = seen[0].view(8, 2, 5)
    assert torch.equal(neg, candidates.max(dim=2).values)


def test_state_dict_replays_the_same_draws():
    sampler = NegativeSampler(NegSampleArgs(sample_num=3), n_items=100, seed=5)
    state = sampler.state_dict()
    first = sampler.sample(torch.arange(1, 11))
    sampler.load_state_dict(state)
    assert torch.equal(sampler.sample(torch.arange(1, 11)), first)
