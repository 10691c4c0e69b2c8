"""Shared training helpers (workbench/tasks/optim.py): schedules, early stopping, optimizers, clipping, AMP."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from workbench.tasks.optim import (
    EarlyStopping,
    LRSchedule,
    OptimizerSet,
    backward_and_step,
    build_optimizer,
    clip_grad_norm,
    make_grad_scaler,
)


def _opt(lr: float = 1.0) -> OptimizerSet:
    return OptimizerSet([torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)])


def _lrs(schedule: LRSchedule, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.step()
    return out


def test_warmup_then_ending_are_linear():
    opt = _opt()
    schedule = LRSchedule(opt, learning_rate=1.0, steps_per_epoch=2, epochs=5, epochs_warmup=2, epochs_ending=1)
    # warm-up over 4 steps: 1/4 .. 1; flat; ending over the last 2 steps: 2/2, 1/2
    assert _lrs(schedule, 10) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5])


def test_plateau_reduces_after_patience_evaluations_without_min_delta_gain():
    opt = _opt()
    schedule = LRSchedule(opt, learning_rate=1.0, steps_per_epoch=1, epochs=100, patience=2, factor=0.5, threshold=0.01)
    assert not schedule.on_eval(0.30)
    assert not schedule.on_eval(0.305)  # +0.005 < threshold: a bad evaluation
    assert schedule.on_eval(0.30)  # second bad one: reduce
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert not schedule.on_eval(0.40)
    state = schedule.state_dict()
    again = LRSchedule(_opt(), learning_rate=1.0, steps_per_epoch=1, epochs=100, patience=2, factor=0.5)
    again.load_state_dict(state)
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(0.5) and again.best == pytest.approx(0.40)


def test_factor_one_disables_plateau():
    schedule = LRSchedule(_opt(), learning_rate=1.0, steps_per_epoch=1, epochs=10, patience=1, factor=1.0)
    for value in (0.5, 0.4, 0.3, 0.2):
        schedule.on_eval(value)
    assert schedule.lr == 1.0


def test_early_stopping_needs_min_delta_to_improve():
    early = EarlyStopping(patience=2, min_delta=0.01)
    assert early.update(0.50)
    assert not early.update(0.505)  # better, but by less than min_delta
    assert not early.should_stop
    assert early.update(0.52)  # beats best (0.50) by more than 0.01
    assert not early.update(0.52) and not early.update(0.40)
    assert early.should_stop
    restored = EarlyStopping(patience=2, min_delta=0.01)
    restored.load_state_dict(early.state_dict())
    assert restored.should_stop and restored.best == 0.52


class _Tables(nn.Module):
    def __init__(self, sparse: bool):
        super().__init__()
        self.emb = nn.Embedding(10, 4, sparse=sparse)
        self.lin = nn.Linear(4, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin(self.emb(idx)).sum()


def test_sparse_adam_splits_sparse_tables_from_dense_parameters():
    model = _Tables(sparse=True)
    opt = build_optimizer("sparse_adam", model, 0.01)
    assert [type(o).__name__ for o in opt.optimizers] == ["SparseAdam", "Adam"]
    before = model.emb.weight.detach().clone()
    backward_and_step(model(torch.tensor([1, 2])), opt, list(model.parameters()))
    changed = (model.emb.weight != before).any(dim=1)
    assert changed.tolist() == [False, True, True] + [False] * 7  # only looked-up rows move
    with pytest.raises(ValueError, match="sparse_adam"):
        build_optimizer("adam", _Tables(sparse=True), 0.01)
    with pytest.raises(ValueError, match="sparse embedding"):
        build_optimizer("sparse_adam", _Tables(sparse=False), 0.01)


def test_optimizer_state_round_trips():
    model = _Tables(sparse=True)
    opt = build_optimizer("sparse_adam", model, 0.01)
    backward_and_step(model(torch.tensor([1])), opt, list(model.parameters()))
    other = build_optimizer("sparse_adam", model, 0.01)
    other.load_state_dict(opt.state_dict())
    assert other.state_dict()["optimizers"][1]["state"].keys() == opt.state_dict()["optimizers"][1]["state"].keys()
    with pytest.raises(ValueError, match="learner"):
        build_optimizer("adam", _Tables(sparse=False), 0.01).load_state_dict(opt.state_dict())


def test_clip_handles_sparse_gradients_like_dense_ones():
    sparse, dense = _Tables(sparse=True), _Tables(sparse=False)
    dense.load_state_dict(sparse.state_dict())
    idx = torch.tensor([1, 1, 3])  # a repeated row: the sparse gradient is uncoalesced
    (sparse(idx) * 100).backward()
    (dense(idx) * 100).backward()
    n_sparse = clip_grad_norm(list(sparse.parameters()), max_norm=1.0)
    n_dense = clip_grad_norm(list(dense.parameters()), max_norm=1.0)
    assert n_sparse.item() == pytest.approx(n_dense.item(), rel=1e-5)
    torch.testing.assert_close(sparse.emb.weight.grad.to_dense(), dense.emb.weight.grad)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in dense.parameters()]))
    assert total.item() == pytest.approx(1.0, rel=1e-4)


def test_scaler_on_cpu_is_ignored_with_one_warning(caplog):
    logger = logging.getLogger("test_rec_optim")
    with caplog.at_level(logging.WARNING, logger="test_rec_optim"):
        assert make_grad_scaler(torch.device("cpu"), True, logger) is None
        assert make_grad_scaler(torch.device("cpu"), False, logger) is None
    assert len([r for r in caplog.records if "enable_scaler" in r.message]) == 1
