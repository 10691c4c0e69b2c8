"""slot_dnn's output: the MLP, the wide (per-id embed_w) term and the FM term, on tiny hand-made batches."""

from __future__ import annotations

import itertools

import pytest
import torch

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.model import SlotDNN, build_dense_optimizer, build_model, log_loss

# 2 impressions x 3 slots; impression 0: slot 0 holds features 0 and 1, slot 1 feature 2, slot 2 nothing;
# impression 1: slot 0 feature 1, slot 1 feature 3, slot 2 feature 0
INVERSE = torch.tensor([0, 1, 2, 1, 3, 0])
BAGS = torch.tensor([0, 2, 3, 3, 4, 5])
EMBEDX_DIM = 2


def _emb(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 1 + EMBEDX_DIM, generator=torch.Generator().manual_seed(seed))  # [U, 1 + D]


def _pooled(emb: torch.Tensor) -> torch.Tensor:
    """[B, S, P] by hand, from INVERSE and BAGS above."""
    bags = [[0, 1], [2], [], [1], [3], [0]]
    return torch.stack([torch.stack([emb[b].sum(0) if b else torch.zeros(emb.shape[1]) for b in bags[i * 3 : i * 3 + 3]])
                        for i in range(2)])


def _silent_mlp(model: SlotDNN, bias: float) -> None:
    """Make the MLP output the constant `bias`, so that only the wide/FM terms move the logit."""
    with torch.no_grad():
        for p in model.mlp.parameters():
            p.zero_()
        model.mlp[-1].bias.fill_(bias)


def test_wide_term_adds_every_features_embed_w_to_the_logit():
    model = SlotDNN(3, 1 + EMBEDX_DIM, [4], 0.2, cvm=False, wide=True)
    _silent_mlp(model, -1.0)
    emb = _emb()
    prob, _ = model(emb, INVERSE, BAGS)
    expected = torch.sigmoid(-1.0 + _pooled(emb)[:, :, 0].sum(1))
    assert torch.allclose(prob, expected, atol=1e-6)


def test_wide_gradient_of_embed_w_is_the_logistic_regression_gradient():
    """d loss / d embed_w of a feature = sum over its occurrences of (p - y) / B: what an LR weight gets."""
    model = SlotDNN(3, 1 + EMBEDX_DIM, [4], 0.2, cvm=False, wide=True)
    _silent_mlp(model, 0.3)
    emb = _emb(1).requires_grad_(True)
    label = torch.tensor([1.0, 0.0])
    prob, _ = model(emb, INVERSE, BAGS)
    torch.nn.functional.binary_cross_entropy(prob, label).backward()
    residual = (prob - label).detach() / 2
    occurrences = {0: [0, 1], 1: [0, 1], 2: [0], 3: [1]}  # impressions each feature occurs in
    for feature, rows in occurrences.items():
        assert emb.grad[feature, 0].item() == pytest.approx(float(sum(residual[r] for r in rows)), abs=1e-6)


def test_without_wide_the_silent_mlp_ignores_embed_w():
    model = SlotDNN(3, 1 + EMBEDX_DIM, [4], 0.2, cvm=False, wide=False)
    _silent_mlp(model, 0.5)
    prob, _ = model(_emb(2), INVERSE, BAGS)
    assert torch.allclose(prob, torch.sigmoid(torch.tensor([0.5, 0.5])))


def test_fm_term_is_the_sum_of_slot_pair_dot_products_of_embedx():
    model = SlotDNN(3, 1 + EMBEDX_DIM, [4], 0.2, cvm=False, wide=False, fm=True)
    _silent_mlp(model, 0.0)
    emb = _emb(3)
    prob, _ = model(emb, INVERSE, BAGS)
    v = _pooled(emb)[:, :, 1:]  # [B, S, D]
    pairs = sum(v[:, a] * v[:, b] for a, b in itertools.combinations(range(3), 2)).sum(1)
    assert torch.allclose(prob, torch.sigmoid(pairs), atol=1e-6)


def test_wide_reads_embed_w_after_the_show_click_columns_with_ctr_common_accessor():
    model = SlotDNN(3, 3 + EMBEDX_DIM, [4], 0.2, cvm=True, wide=True)
    _silent_mlp(model, 0.0)
    emb = torch.cat([torch.full((4, 2), 5.0), _emb(4)], dim=1)  # show, click, embed_w, embedx
    prob, _ = model(emb, INVERSE, BAGS)
    assert torch.allclose(prob, torch.sigmoid(_pooled(_emb(4))[:, :, 0].sum(1)), atol=1e-6)


def test_default_model_learns_a_per_id_signal_quickly():
    """A few hundred Adam steps on 'feature 0 clicks, feature 1 does not' separate them: the default config trains."""
    cfg = CtrStreamConfig(slot_num=1, layer_sizes=[8])
    model = build_model(cfg)
    optimizer = build_dense_optimizer(cfg, model)
    emb = torch.zeros(2, cfg.pull_dim, requires_grad=True)
    sparse = torch.optim.Adagrad([emb], lr=0.05)
    inverse, bags, label = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([1.0, 0.0])
    for _ in range(200):
        prob, _ = model(emb, inverse, bags)
        loss = log_loss(prob, label)
        optimizer.zero_grad()
        sparse.zero_grad()
        loss.backward()
        optimizer.step()
        sparse.step()
    prob, _ = model(emb, inverse, bags)
    assert prob[0] > 0.9 and prob[1] < 0.1
