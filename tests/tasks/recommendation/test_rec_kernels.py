"""The full-softmax CE node and the oneDNN products behind it compute what F.cross_entropy and `@` compute."""

import pytest
import torch
import torch.nn.functional as F

from workbench.tasks.recommendation.model import STAMP
from workbench.tasks.recommendation.kernels import full_softmax_ce, matmul, onednn_usable


def _inputs(seed: int, batch: int = 16, classes: int = 301, dim: int = 24, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    h = (torch.randn(batch, dim, generator=gen) * scale).requires_grad_()
    table = (torch.randn(classes, dim, generator=gen) * 0.5).requires_grad_()
    target = torch.randint(0, classes, (batch,), generator=gen)
    return h, table, target


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: logits far apart, many target probabilities underflow to 0
def test_full_softmax_ce_equals_cross_entropy_value_and_gradients(first, scale):
    h, table, target = _inputs(first, scale=scale)
    target = target.clamp(min=first) - first  # with first=1: a table view without row 0, as pad_row "zero" uses
    expected = F.cross_entropy(h @ table[first:].T, target)
    want = torch.autograd.grad(3.0 * expected, [h, table])
    got_loss = full_softmax_ce(h, table[first:] if first else table, target)
    got = torch.autograd.grad(3.0 * got_loss, [h, table])
    torch.testing.assert_close(got_loss, expected)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    if first:
        assert torch.count_nonzero(got[1][0]) == 0  # the row outside the view gets no gradient


def test_full_softmax_ce_refuses_a_second_backward():
    h, table, target = _inputs(2)
    loss = full_softmax_ce(h, table, target)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()


@pytest.mark.parametrize("shape", [(128, 100, 997), (7, 3, 5)])
def test_matmul_equals_the_default_product_for_the_layouts_used(shape):
    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    a, table, g = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen), torch.randn(m, n, generator=gen)

    def check(got: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """Within fp32 rounding of the float64 product (the n-long sums may be added in another order)."""
        want = x.double() @ y.double()
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * want.abs().max().item())

    check(matmul(a, table.T), a, table.T)  # logits
    check(matmul(g, table), g, table)  # dL/dh
    check(matmul(a.T, g).T, g.T, a)  # dL/dE, transposed
    check(matmul(a, table[1:].T), a, table[1:].T)  # a view of the table


def test_matmul_falls_back_where_onednn_does_not_apply():
    a = torch.randn(4, 3, dtype=torch.float64)
    assert not onednn_usable(a, a.T)
    torch.testing.assert_close(matmul(a, a.T), a @ a.T)
    x = torch.randn(4, 3, requires_grad=True)
    out = matmul(x, x.T)  # grad enabled and x needs it: the autograd-tracked product
    assert out.grad_fn is not None


def test_a_changed_table_is_read_again():
    """oneDNN must not cache the (packed) weights between calls: Adam changes the table in place every step."""
    a, table = torch.randn(8, 16), torch.randn(50, 16)
    matmul(a, table.T)
    table.mul_(2.0).add_(1.0)
    torch.testing.assert_close(matmul(a, table.T), a @ table.T)


def test_stamp_ce_under_cpu_autocast_takes_the_cross_entropy_path():
    torch.manual_seed(0)
    model = STAMP(40, 8, "CE")
    seq = torch.randint(1, 40, (6, 5))
    lengths = torch.tensor([5, 3, 1, 2, 5, 4])
    from workbench.tasks.recommendation.data import SessionBatch

    batch = SessionBatch(user=torch.arange(6), item_seq=seq, item_len=lengths, target=torch.randint(1, 40, (6,)))
    fp32 = model.calculate_loss(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.calculate_loss(batch)
    bf16.backward()
    assert model.item_embedding.weight.grad is not None
    assert bf16.item() == pytest.approx(fp32.item(), rel=0.05)


def test_full_softmax_ce_off_the_onednn_path():
    """float64 (like any non-CPU-float32 input) takes plain `@` inside the same node: same value and gradients."""
    h, table, target = _inputs(3)
    h = h.detach().double().requires_grad_()
    table = table.detach().double().requires_grad_()
    assert not onednn_usable(h, table)
    expected = torch.autograd.grad(F.cross_entropy(h @ table.T, target), [h, table])
    got = torch.autograd.grad(full_softmax_ce(h, table, target), [h, table])
    for g, w in zip(got, expected):
        torch.testing.assert_close(g, w)
