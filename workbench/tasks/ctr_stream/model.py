"""slot_dnn (PaddleRec BenchmarkDNNLayer): per-slot sum-pooled sparse embeddings, concatenated, then an MLP.

The embeddings are not a torch parameter: the sparse table pulls the batch's distinct features into a leaf tensor
`emb` [U, P] (P = 1 + embedx_dim, or 3 + embedx_dim with CtrCommonAccessor's show/click), the network pools it, and
`emb.grad` is pushed back to the table. Everything after the pooling is an ordinary torch MLP.

Two optional terms go straight into the output logit next to the MLP's (docs/ctr_stream.md, "Quality against a
linear baseline"):
- `wide` (default on): the sum of every feature's embed_w. PaddleRec's accessor keeps that 1-dim embed_w next to
  the embedx vector, but slot_dnn only feeds it to the MLP; added to the logit it is exactly a per-id logistic
  regression trained by the table's AdaGrad, so a new id is useful after its first pushes, before the MLP has
  learnt what its embedding means.
- `fm` (default off): a factorization machine over the slots' pooled embedx (DeepFM's FM part).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.metrics import LOG_LOSS_EPS

LOGIT_CLIP = 15.0  # slot_dnn clips the logit to [-15, 15] before the sigmoid


class SlotDNN(nn.Module):
    def __init__(self, num_slots: int, pull_dim: int, layer_sizes: list[int], init_range: float, cvm: bool,
                 wide: bool = False, fm: bool = False):
        super().__init__()
        self.num_slots = num_slots
        self.pull_dim = pull_dim
        self.cvm = cvm  # CtrCommonAccessor: columns 0, 1 of the pooled values are show and click counts
        self.embed_col = 2 if cvm else 0  # the column of embed_w in the pulled values
        self.wide = wide
        self.fm = fm
        sizes = [num_slots * pull_dim, *layer_sizes, 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            linear = nn.Linear(sizes[i], sizes[i + 1])
            # slot_dnn: Normal(0, 0.2 / sqrt(fan_in)) weights, zero bias
            nn.init.normal_(linear.weight, std=init_range / math.sqrt(sizes[i]))
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def pool(self, emb: torch.Tensor, inverse: torch.Tensor, bag_offsets: torch.Tensor) -> torch.Tensor:
        """Sum-pool per (impression, slot): emb [U, P], inverse [T], bag_offsets [B*S] -> [B, S*P]."""
        pooled = F.embedding_bag(inverse, emb, bag_offsets, mode="sum")  # [B*S, P]
        if self.cvm:  # Paddle's continuous_value_model op on the pooled show/click
            show = torch.log1p(pooled[:, :1])
            click = torch.log1p(pooled[:, 1:2]) - show
            pooled = torch.cat([show, click, pooled[:, 2:]], dim=1)
        return pooled.reshape(-1, self.num_slots * self.pull_dim)

    def forward(
        self, emb: torch.Tensor, inverse: torch.Tensor, bag_offsets: torch.Tensor, keep: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Click probabilities [B]; with keep=True also the named intermediates (concat, fc_0, fc_1, ...)."""
        x = self.pool(emb, inverse, bag_offsets)
        kept: dict[str, torch.Tensor] = {"concat": x} if keep else {}
        per_slot = x.view(-1, self.num_slots, self.pull_dim)  # [B, S, P]
        extra = []  # terms added to the MLP's logit, each [B]
        if self.wide:  # the sum of every feature's embed_w: a per-id logistic regression
            extra.append(per_slot[:, :, self.embed_col].sum(1))
        if self.fm:  # factorization machine: sum over slot pairs of <embedx_a, embedx_b> = (|sum|^2 - sum |.|^2) / 2
            v = per_slot[:, :, self.embed_col + 1 :]  # [B, S, D]
            extra.append(0.5 * (v.sum(1).square().sum(1) - v.square().sum((1, 2))))
        hidden = 0
        for layer in self.mlp:
            x = layer(x)
            if keep and isinstance(layer, nn.ReLU):
                kept[f"fc_{hidden}"] = x
                hidden += 1
        logit = x.squeeze(1)
        for term in extra:
            logit = logit + term
        prob = torch.sigmoid(torch.clamp(logit, -LOGIT_CLIP, LOGIT_CLIP))
        return prob, kept


def log_loss(prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """paddle.nn.functional.log_loss (epsilon 1e-4), averaged over the batch."""
    return -(label * torch.log(prob + LOG_LOSS_EPS) + (1 - label) * torch.log(1 - prob + LOG_LOSS_EPS)).mean()


class DAdamD2Sum(torch.optim.Optimizer):
    """PaddleRec's dense rule for `adam_d2sum` (ps/table/depends/dense.h), per element:

        d2sum = d2sum * ada_decay + 1
        g2sum = g2sum * ada_decay + g^2
        scale = sqrt((d2sum + eps * d2sum) / (g2sum + eps * d2sum))
        mom   = (mom - g) * mom_decay + g
        w    -= lr * mom * scale
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, mom_decay: float = 0.99,
                 ada_decay: float = 0.9999, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, mom_decay=mom_decay, ada_decay=ada_decay, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["mom"] = torch.zeros_like(p)
                    state["g2sum"] = torch.zeros_like(p)
                    state["d2sum"] = torch.zeros_like(p)
                d2sum, g2sum, mom = state["d2sum"], state["g2sum"], state["mom"]
                d2sum.mul_(group["ada_decay"]).add_(1)
                g2sum.mul_(group["ada_decay"]).addcmul_(g, g)
                scale = torch.sqrt(d2sum * (1 + group["eps"]) / (g2sum + group["eps"] * d2sum))
                mom.sub_(g).mul_(group["mom_decay"]).add_(g)
                p.sub_(group["lr"] * mom * scale)
        return None


def build_model(cfg: CtrStreamConfig) -> SlotDNN:
    return SlotDNN(len(cfg.slots), cfg.pull_dim, list(cfg.layer_sizes), cfg.dnn_init_range,
                   cvm=cfg.accessor_class == "CtrCommonAccessor", wide=cfg.wide, fm=cfg.fm)


def build_dense_optimizer(cfg: CtrStreamConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = list(model.parameters())
    lr, wd = cfg.learning_rate, cfg.weight_decay
    if cfg.learner == "adam":
        if cfg.adam_d2sum:
            return DAdamD2Sum(params, lr=lr, weight_decay=wd)
        # fused: one kernel for all tensors instead of ~10 small ops per tensor; with the small batches a stream
        # trains on, the per-step optimizer overhead is a large share of a step (0.15 vs 0.5 ms on one CPU thread)
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)
    if cfg.learner == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if cfg.learner == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if cfg.learner == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError(f"learner {cfg.learner!r} cannot train the dense part of ctr_stream; use adam, sgd, adagrad or rmsprop")
