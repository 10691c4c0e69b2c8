"""STAMP, BPR-MF and Pop: shapes, the formula (including + m_s), inits, losses, sparse gradients."""

from __future__ import annotations

import pytest
import torch

from workbench.tasks.recommendation.data import SessionBatch
from workbench.tasks.recommendation.model import BPRMF, STAMP, Pop, bpr_loss, emb_loss

B, L, D, N_ITEMS = 3, 5, 8, 20


def _batch(neg: int = 0) -> SessionBatch:
    torch.manual_seed(0)
    item_seq = torch.tensor([[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [5, 6, 7, 8, 9]])
    return SessionBatch(
        user=torch.tensor([0, 1, 2]),
        item_seq=item_seq,
        item_len=torch.tensor([3, 1, 5]),
        target=torch.tensor([4, 5, 10]),
        neg_items=torch.randint(1, N_ITEMS, (B, neg)) if neg else None,
    )


def test_stamp_shapes_and_pad_row():
    torch.manual_seed(0)
    batch = _batch()
    for pad_row in ("learned", "zero"):
        model = STAMP(N_ITEMS, D, "CE", pad_row=pad_row)
        assert model(batch.item_seq, batch.item_len).shape == (B, D)
        assert model.full_sort_predict(batch).shape == (B, N_ITEMS)
        assert model.predict(batch, torch.randint(1, N_ITEMS, (B, 4))).shape == (B, 4)
        assert model.calculate_loss(batch).ndim == 0
        pad_is_zero = torch.count_nonzero(model.item_embedding.weight[0]) == 0
        assert pad_is_zero == (pad_row == "zero")  # learned: RecBole's N(0, 0.002) init reaches the PAD row too
    assert STAMP(N_ITEMS, D, "CE").pad_row == "learned"  # the default is RecBole's semantics


def _recbole_forward(model: STAMP, item_seq: torch.Tensor, item_len: torch.Tensor) -> torch.Tensor:
    """RecBole 1.2.1's STAMP.forward, transcribed: every layer over the padded [B, L, D] block."""
    emb = model.item_embedding.weight[item_seq]  # pads hold the PAD row, whatever it is
    x_t = emb[torch.arange(len(item_seq)), item_len - 1]
    m_s = emb.sum(1) / item_len.unsqueeze(1).float()
    steps = item_seq.size(1)
    res = model.w1(emb) + model.w2(x_t.repeat(1, steps).view(-1, steps, D)) + model.w3(m_s.repeat(1, steps).view(-1, steps, D))
    alpha = model.w0(torch.sigmoid(res + model.b_a)).squeeze(2)
    m_a = torch.matmul(alpha.unsqueeze(1), emb).squeeze(1) + m_s
    return torch.tanh(model.mlp_a(m_a)) * torch.tanh(model.mlp_b(x_t))


@pytest.mark.parametrize("pad_row", ["learned", "zero"])
def test_packed_forward_equals_recboles_padded_forward(pad_row):
    """Pads are handled once per session and scaled by L - len: same output and gradients as the padded block."""
    torch.manual_seed(5)
    model = STAMP(N_ITEMS, D, "CE", pad_row=pad_row)
    with torch.no_grad():
        model.item_embedding.weight[1:].normal_()  # large enough that a missed or doubled pad term shows
        if pad_row == "learned":
            model.item_embedding.weight[0].normal_()
    batch = _batch()
    out = model(batch.item_seq, batch.item_len)
    expected = _recbole_forward(model, batch.item_seq, batch.item_len)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), [model.w1.weight, model.b_a])
    expected_grads = torch.autograd.grad(expected.square().sum(), [model.w1.weight, model.b_a])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_learned_pad_row_is_trained_through_the_softmax_only():
    """RecBole: padding_idx zeroes the lookup's gradient of row 0, but PAD is a column of the CE softmax."""
    torch.manual_seed(6)
    batch = _batch()
    model = STAMP(N_ITEMS, D, "CE")
    with torch.no_grad():
        logits = model.full_sort_predict(batch)
        torch.testing.assert_close(model.calculate_loss(batch), torch.nn.functional.cross_entropy(logits, batch.target))
    model.calculate_loss(batch).backward()
    softmax_only = (torch.softmax(model.full_sort_predict(batch), 1)[:, :1] * model(batch.item_seq, batch.item_len)).sum(0) / B
    torch.testing.assert_close(model.item_embedding.weight.grad[0], softmax_only.detach())
    sparse = STAMP(N_ITEMS, D, "CE", sparse=True)
    sparse.load_state_dict(model.state_dict())
    sparse.calculate_loss(batch).backward()
    torch.testing.assert_close(sparse.item_embedding.weight.grad.to_dense(), model.item_embedding.weight.grad)
    zero = STAMP(N_ITEMS, D, "CE", pad_row="zero")
    zero.calculate_loss(batch).backward()
    assert torch.count_nonzero(zero.item_embedding.weight.grad[0]) == 0


def test_stamp_inits_follow_recbole():
    torch.manual_seed(0)
    model = STAMP(5000, 64, "CE")
    assert model.item_embedding.weight[1:].std().item() == pytest.approx(0.002, rel=0.05)
    assert model.w1.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert torch.count_nonzero(model.mlp_a.bias) == 0
    assert model.w1.bias is None and model.w0.bias is None


def test_stamp_matches_the_formula_including_plus_ms():
    torch.manual_seed(1)
    model = STAMP(N_ITEMS, D, "CE", pad_row="zero")  # pads add nothing: the formula over the real clicks
    batch = _batch()
    with torch.no_grad():
        out = model(batch.item_seq, batch.item_len)
        for row in range(B):
            n = int(batch.item_len[row])
            x = model.item_embedding.weight[batch.item_seq[row, :n]]  # [n, D]
            x_t, m_s = x[-1], x.mean(0)
            alpha = model.w0(torch.sigmoid(model.w1(x) + model.w2(x_t) + model.w3(m_s) + model.b_a)).squeeze(1)  # no softmax
            m_a = (alpha.unsqueeze(1) * x).sum(0) + m_s
            expected = torch.tanh(model.mlp_a(m_a)) * torch.tanh(model.mlp_b(x_t))
            torch.testing.assert_close(out[row], expected)


def test_plus_ms_term_is_present_when_attention_is_zero():
    torch.manual_seed(2)
    model = STAMP(N_ITEMS, D, "CE", pad_row="zero")
    batch = _batch()
    with torch.no_grad():
        model.w0.weight.zero_()  # alpha = 0 -> m_a must equal m_s (not 0)
        model.mlp_a.weight.copy_(torch.eye(D))
        out = model(batch.item_seq, batch.item_len)
        emb = model.item_embedding(batch.item_seq)
        m_s = emb.sum(1) / batch.item_len.unsqueeze(1)
        x_t = emb[torch.arange(B), batch.item_len - 1]
        torch.testing.assert_close(out, torch.tanh(m_s) * torch.tanh(model.mlp_b(x_t)))


def test_ce_loss_is_softmax_over_real_items_only_with_a_zero_pad_row():
    torch.manual_seed(3)
    model = STAMP(N_ITEMS, D, "CE", pad_row="zero")
    batch = _batch()
    with torch.no_grad():
        logits = model.full_sort_predict(batch)[:, 1:]
        expected = torch.nn.functional.cross_entropy(logits, batch.target - 1)
        torch.testing.assert_close(model.calculate_loss(batch), expected)


def test_predict_agrees_with_full_sort():
    torch.manual_seed(4)
    batch = _batch()
    items = torch.tensor([[1, 2], [3, 4], [5, 19]])
    for model in (STAMP(N_ITEMS, D, "BPR"), BPRMF(B, N_ITEMS, D, 0.0, False, sparse=False)):
        with torch.no_grad():
            full = model.full_sort_predict(batch)
            torch.testing.assert_close(model.predict(batch, items), full.gather(1, items))


def test_sparse_tables_get_sparse_gradients_with_bpr_and_ce():
    for loss_type, neg in (("BPR", 2), ("CE", 0)):
        model = STAMP(N_ITEMS, D, loss_type, sparse=True)
        model.calculate_loss(_batch(neg)).backward()
        assert model.item_embedding.weight.grad.is_sparse
        assert not model.w1.weight.grad.is_sparse


def test_bpr_losses_and_regulariser():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    expected = -torch.log(torch.sigmoid(torch.tensor([2.0, 1.0, 0.0, 0.0]))).mean()
    torch.testing.assert_close(bpr_loss(pos, neg), expected)
    u, i = torch.ones(2, 3), torch.full((2, 3), 2.0)
    # require_pow: (||u||^2 + ||i||^2) / batch / 2 = (6 + 24) / 2 / 2
    assert emb_loss(u, i, require_pow=True).item() == pytest.approx(7.5)
    # plain: (||u|| + ||i||) / batch
    assert emb_loss(u, i, require_pow=False).item() == pytest.approx((6**0.5 + 24**0.5) / 2)
    model = BPRMF(B, N_ITEMS, D, reg_weight=0.5, require_pow=True, sparse=False)
    plain = BPRMF(B, N_ITEMS, D, reg_weight=0.0, require_pow=True, sparse=False)
    plain.load_state_dict(model.state_dict())
    batch = _batch(neg=3)
    assert model.calculate_loss(batch).item() > plain.calculate_loss(batch).item()


def test_pop_ranks_by_training_counts():
    model = Pop(5)
    model.fit(torch.tensor([7.0, 1.0, 5.0, 3.0, 0.0]))
    scores = model.full_sort_predict(_batch())
    assert scores.shape == (B, 5)
    assert scores[0].tolist() == [0.0, 1.0, 5.0, 3.0, 0.0]  # PAD count cleared
    assert list(model.parameters()) == []


def test_check_state_reports_what_does_not_fit():
    from workbench.tasks.recommendation.config import RecommendationConfig
    from workbench.tasks.recommendation.model import build_model, check_state

    cfg = RecommendationConfig()
    state = {"model": build_model(cfg, N_ITEMS, 7).state_dict()}
    assert check_state(cfg, state) == []
    wider = RecommendationConfig(embedding_size=cfg.embedding_size * 2)
    assert any("w1.weight" in p for p in check_state(wider, state))
    bpr = RecommendationConfig(model="BPR", loss_type="BPR", train_neg_sample_args={})
    assert any("user_embedding.weight" in p for p in check_state(bpr, state))
