"""Negative sampling for loss_type BPR: uniform / popularity^alpha, N negatives per positive, optional dynamic
(hard) negatives. Vectorised with torch, driven by its own generator so a resumed run draws the same stream.

Unlike RecBole (`sample_num: N` repeats each positive row N times with one negative each, RecBole#1746), a batch
of B positives gets a [B, N] matrix of negatives. A negative is never the sample's own positive item; like
RecBole's RepeatableSampler for sequential data, other items of the session may be drawn.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from workbench.config.common import NegSampleArgs

# Rejection rounds for popularity draws before falling back to a uniform non-positive item (a degenerate
# distribution where one item holds nearly all the mass would otherwise loop for a long time).
_MAX_REDRAWS = 20


class NegativeSampler:
    def __init__(
        self,
        args: NegSampleArgs,
        n_items: int,
        item_counts: torch.Tensor | None = None,
        seed: int = 0,
    ):
        """`n_items` includes PAD 0, so real items are 1..n_items-1. `item_counts` [n_items] for popularity."""
        if n_items < 3:
            raise ValueError(f"negative sampling needs at least 2 real items, the data has {n_items - 1}")
        self.args = args
        self.n_items = n_items
        self.generator = torch.Generator().manual_seed(seed)
        self.cdf: torch.Tensor | None = None
        if args.distribution == "popularity":
            if item_counts is None:
                raise ValueError("popularity sampling needs item counts")
            weights = item_counts.double().clamp(min=0) ** args.alpha
            weights[0] = 0.0  # never PAD
            if weights.sum() <= 0:
                raise ValueError("popularity sampling: every item count is zero")
            self.cdf = torch.cumsum(weights, 0) / weights.sum()  # [n_items], searchsorted target

    def sample(
        self, pos: torch.Tensor, scorer: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Negatives for positives `pos` [B] -> [B, N].

        With `dynamic`, `scorer(candidates [B, N*C]) -> scores [B, N*C]` rates candidate_num draws per slot and
        the highest-scoring (hardest) one is kept, as RecBole's dynamic sampling does.
        """
        n = self.args.sample_num
        if not self.args.dynamic:
            return self.draw(pos, n)
        c = self.args.candidate_num
        if scorer is None:
            raise ValueError("dynamic negative sampling needs a scorer")
        candidates = self.draw(pos, n * c)  # [B, N*C]
        with torch.no_grad():
            scores = scorer(candidates).float().view(len(pos), n, c)  # [B, N, C]
        best = scores.argmax(dim=2, keepdim=True)  # [B, N, 1]
        return candidates.view(len(pos), n, c).gather(2, best).squeeze(2)  # [B, N]

    def draw(self, pos: torch.Tensor, k: int) -> torch.Tensor:
        """k static negatives per positive: [B] -> [B, k], none equal to its row's positive."""
        pos = pos.cpu().unsqueeze(1)  # [B, 1]
        if self.cdf is None:
            return self._uniform_except(pos.expand(-1, k))
        neg = self._popularity((len(pos), k))
        for _ in range(_MAX_REDRAWS):
            clash = neg == pos
            if not clash.any():
                return neg
            neg[clash] = self._popularity((int(clash.sum()),))
        clash = neg == pos
        neg[clash] = self._uniform_except(pos.expand_as(neg)[clash])
        return neg

    def _uniform_except(self, pos: torch.Tensor) -> torch.Tensor:
        """Uniform over the M = n_items-1 real items minus `pos`, exactly, without rejection:
        shift the positive by a random offset in 1..M-1 around the ring of items 1..M."""
        m = self.n_items - 1
        offset = torch.randint(1, m, pos.shape, generator=self.generator)
        return (pos - 1 + offset) % m + 1

    def _popularity(self, shape: tuple[int, ...]) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return torch.searchsorted(self.cdf, u, right=True).clamp_(1, self.n_items - 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
