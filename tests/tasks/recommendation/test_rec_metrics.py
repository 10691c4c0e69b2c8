"""Ranking metrics on tiny hand-computed arrays."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.tasks.recommendation.data import Samples, SessionData
from workbench.tasks.recommendation.metrics import RankingAccumulator, evaluate_split, metric_sums, target_ranks


def test_ranks_count_items_ahead_and_break_ties_by_item_id():
    scores = torch.tensor(
        [
            [0.0, 0.9, 0.5, 0.7, 0.1],  # target 2 (0.5): items 1 and 3 ahead -> rank 3
            [0.0, 0.3, 0.3, 0.3, 0.9],  # target 3 (0.3): item 4 ahead, tie with 1 and 2 (lower ids) -> rank 4
            [0.0, 0.3, 0.3, 0.3, 0.9],  # target 1 (0.3): only item 4 ahead -> rank 2
        ]
    )
    ranks = target_ranks(scores, torch.tensor([2, 3, 1]))
    assert ranks.tolist() == [3.0, 4.0, 2.0]


def test_masked_target_never_counts():
    scores = torch.tensor([[float("-inf"), float("-inf"), 0.2]])
    assert math.isinf(target_ranks(scores, torch.tensor([1])).item())


def test_metric_values_match_hand_computation():
    ranks = torch.tensor([1.0, 3.0, 11.0, math.inf])
    sums = metric_sums(ranks, ["Recall", "MRR", "NDCG", "Hit"], [1, 10])
    assert sums["recall@1"] == 1.0
    assert sums["hit@10"] == sums["recall@10"] == 2.0
    assert sums["mrr@10"] == pytest.approx(1.0 + 1 / 3)
    assert sums["mrr@1"] == pytest.approx(1.0)
    assert sums["ndcg@10"] == pytest.approx(1.0 + 1 / math.log2(4))


def test_accumulator_averages_over_all_batches():
    acc = RankingAccumulator(["Recall", "MRR"], [2])
    acc.add(torch.tensor([[0.0, 1.0, 0.5, 0.2]]), torch.tensor([1]))  # rank 1
    acc.add(torch.tensor([[0.0, 1.0, 0.5, 0.2], [0.0, 1.0, 0.5, 0.2]]), torch.tensor([3, 2]))  # ranks 3, 2
    result = acc.result()
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["mrr@2"] == pytest.approx((1 + 0 + 1 / 2) / 3)


def _toy_data() -> SessionData:
    # two sessions: [1, 2, 3] and [3, 1]; test samples: (1,2 -> 3) and (3 -> 1); train clicks: 1, 2 and 3
    items = torch.tensor([1, 2, 3, 3, 1])
    offsets = torch.tensor([0, 3, 5])
    target_index = torch.tensor([2, 4])
    test = Samples(target_index=target_index, length=torch.tensor([2, 1]), user=torch.tensor([0, 1]))
    empty = Samples(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    return SessionData(
        items=items, offsets=offsets, train_end=torch.tensor([2, 4]), splits={"train": empty, "valid": empty, "test": test},
        n_items=4, item_tokens=["a", "b", "c"], fingerprint="toy", maxlen=5, stats={},
    )  # fmt: skip


class _FixedScores(torch.nn.Module):
    """Gives PAD the highest score and item 3 the next: evaluation must ignore PAD (and seen items if asked)."""

    def __init__(self, masks_seen_items: bool):
        super().__init__()
        self.masks_seen_items = masks_seen_items

    def full_sort_predict(self, batch):
        return torch.tensor([[9.0, 1.0, 2.0, 3.0]]).expand(len(batch), -1)


def test_evaluation_ignores_pad_and_masks_seen_items_for_user_item_models():
    data = _toy_data()
    plain = evaluate_split(_FixedScores(False), data, "test", metrics=["MRR"], topk=[3], batch_size=1, device=torch.device("cpu"))
    # targets 3 (rank 1) and 1 (rank 3): PAD's 9.0 is ignored
    assert plain["mrr@3"] == pytest.approx((1 + 1 / 3) / 2)
    masked = evaluate_split(_FixedScores(True), data, "test", metrics=["MRR"], topk=[3], batch_size=2, device=torch.device("cpu"))
    # session 0 saw 1, 2 in training -> target 3 rank 1; session 1 saw 3 -> target 1 rank 2
    assert masked["mrr@3"] == pytest.approx((1 + 1 / 2) / 2)
