"""Full-ranking evaluation: Recall / MRR / NDCG / Hit at every K, over all items.

One target per sample (the next click), so with r its 1-based rank:
  Hit@K = Recall@K = [r <= K],  MRR@K = [r <= K] / r,  NDCG@K = [r <= K] / log2(r + 1)
averaged over samples (RecBole's definitions). The PAD column is set to -inf; for user-item models (BPR) items
seen in training are set to -inf too. Ties are broken by item id, which is what a stable top-k would return.
Keys are lower case: `recall@20`, `mrr@10`, ... (the dashboard's and RecBole's spelling).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist

from workbench.tasks.optim import autocast
from workbench.tasks.recommendation.data import SessionData


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's target item: scores [B, n_items], target [B] -> float [B] (inf if masked).

    Counting items that beat the target is O(B x n_items) like top-k, but exact for any K and needs no sort.
    """
    t = scores.gather(1, target.unsqueeze(1))  # [B, 1]
    ids = torch.arange(scores.size(1), device=scores.device)
    ahead = (scores > t) | ((scores == t) & (ids < target.unsqueeze(1)))  # [B, n_items]
    rank = ahead.sum(dim=1).double() + 1.0
    return torch.where(t.squeeze(1) == float("-inf"), torch.full_like(rank, math.inf), rank)


def metric_sums(rank: torch.Tensor, metrics: Iterable[str], topk: Iterable[int]) -> dict[str, float]:
    """Sums (not means) over the batch, so batches and ranks can be added up before dividing."""
    out: dict[str, float] = {}
    for k in topk:
        hit = rank <= k
        for name in metrics:
            key = f"{name.lower()}@{k}"
            if name in ("Recall", "Hit"):
                value = hit.double().sum()
            elif name == "MRR":
                value = torch.where(hit, 1.0 / rank, 0.0).sum()
            elif name == "NDCG":
                value = torch.where(hit, 1.0 / torch.log2(rank + 1.0), 0.0).sum()
            else:
                raise ValueError(f"unknown metric {name!r}")
            out[key] = float(value)
    return out


class RankingAccumulator:
    """Adds up metric sums over batches (and over ranks in DDP) and returns means."""

    def __init__(self, metrics: list[str], topk: list[int]):
        self.metrics = metrics
        self.topk = topk
        self.sums: dict[str, float] = {f"{m.lower()}@{k}": 0.0 for k in topk for m in metrics}
        self.count = 0

    def add(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        for key, value in metric_sums(target_ranks(scores, target), self.metrics, self.topk).items():
            self.sums[key] += value
        self.count += len(target)

    def result(self) -> dict[str, float]:
        keys = list(self.sums)
        totals = torch.tensor([self.sums[k] for k in keys] + [float(self.count)], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():  # every rank scored its own shard of the samples
            backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            totals = totals.to(backend_device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        count = max(totals[-1].item(), 1.0)
        return {k: totals[i].item() / count for i, k in enumerate(keys)}


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    data: SessionData,
    split: str,
    *,
    metrics: list[str],
    topk: list[int],
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """Rank all items for every sample of `split`; returns {"recall@10": ..., ...}. Sharded across DDP ranks."""
    was_training = model.training
    model.eval()
    acc = RankingAccumulator(metrics, topk)
    positions = torch.arange(rank, len(data.splits[split]), world_size)
    for idx in positions.split(batch_size):
        batch = data.batch(split, idx).to(device)
        with autocast(device, amp):
            scores = model.full_sort_predict(batch)
        scores = scores.float().clone()  # [B, n_items]; clone: Pop returns an expanded (shared) view
        scores[:, 0] = float("-inf")  # PAD is never a recommendation
        if model.masks_seen_items:
            rows, items = data.seen_items(batch.user.cpu())
            scores[rows.to(device), items.to(device)] = float("-inf")
        acc.add(scores, batch.target)
    model.train(was_training)
    return acc.result()
