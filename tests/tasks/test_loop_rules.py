"""The loop rules every task shares (tasks/optim.py): one early-stopping rule and one RNG capture."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from workbench.tasks.optim import EarlyStopping, LRSchedule, OptimizerSet, improved, rng_state, set_rng_state


def test_a_tie_is_not_an_improvement():
    early = EarlyStopping(patience=2)  # min_delta 0
    assert early.update(0.5)
    assert not early.update(0.5)  # the old tasks/optim.py counted this (>=) as an improvement
    assert not early.update(0.5)
    assert early.should_stop and early.best == 0.5


def test_min_delta_is_the_margin_over_the_best_that_an_improvement_must_exceed():
    early = EarlyStopping(patience=3, min_delta=0.25)
    assert early.update(1.0)
    assert not early.update(1.25)  # exactly best + min_delta: not more than min_delta
    assert not early.update(1.2)
    assert early.update(1.5)  # 0.5 over the best
    assert early.bad_evals == 0 and early.best == 1.5


def test_min_mode_mirrors_max_mode():
    early = EarlyStopping(patience=1, min_delta=0.25, mode="min")
    assert early.update(1.0)
    assert not early.update(0.75)
    assert early.should_stop
    assert improved(0.5, 1.0, 0.25, "min") and not improved(1.0, 1.0, 0.0, "min")
    assert improved(0.0, None, 0.25, "max")  # the first evaluation always improves


def test_reduce_on_plateau_uses_the_same_rule():
    opt = OptimizerSet([torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)])
    schedule = LRSchedule(opt, learning_rate=1.0, steps_per_epoch=1, epochs=10, patience=1, factor=0.5)
    schedule.on_eval(0.5)
    assert schedule.on_eval(0.5)  # a tie is a bad evaluation here too
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def _draws() -> tuple[float, float, float, float]:
    return random.random(), random.gauss(0, 1), float(np.random.standard_normal()), torch.rand(1).item()


def test_rng_state_round_trips_python_numpy_and_torch_through_a_weights_only_file():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    buf = io.BytesIO()
    torch.save({"rng": rng_state()}, buf)
    expected = _draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True)["rng"])
    assert _draws() == expected


def test_a_torch_only_rng_state_of_an_older_checkpoint_still_restores_torch():
    torch.manual_seed(5)
    old = {"torch": torch.get_rng_state()}
    expected = torch.rand(3)
    torch.manual_seed(6)
    set_rng_state(old)
    assert torch.equal(torch.rand(3), expected)
