"""Optimizers stepped without torch._dynamo (workbench/tasks/optim.py: eager_step, skip_dynamo_import).

torch.optim loads torch._dynamo (~1 s of start-up) on an optimizer's first step and first zero_grad/state_dict only
to mark graph breaks for torch.compile. The workbench's tasks never compile, so they step through `eager_step`;
these tests hold it to exactly what `opt.step()` does, and check the import really stays away.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from workbench.tasks.optim import build_optimizer, eager_step


def _model(sparse: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(40, 6, sparse=sparse), nn.Flatten(), nn.Linear(12, 3))


def _train(model: nn.Module, step, learner: str, steps: int = 6) -> dict:  # type: ignore[no-untyped-def]
    opts = build_optimizer(learner, model, 0.01, 0.0 if learner == "sparse_adam" else 1e-4)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opts.zero_grad()
        model(torch.randint(0, 40, (5, 2), generator=gen)).pow(2).mean().backward()
        for opt in opts.optimizers:
            step(opt)
    return opts.state_dict()


@pytest.mark.parametrize("learner", ["adam", "sgd", "adagrad", "rmsprop", "sparse_adam"])
def test_eager_step_matches_torch_step(learner: str) -> None:
    sparse = learner == "sparse_adam"
    ours, theirs = _model(sparse), _model(sparse)
    ours_state = _train(ours, eager_step, learner)
    theirs_state = _train(theirs, lambda opt: opt.step(), learner)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ours_state["optimizers"], theirs_state["optimizers"], strict=True):
        for sa, sb in zip(a["state"].values(), b["state"].values(), strict=True):
            for key in sa:
                assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key


def test_step_hooks_still_run() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    handle = opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    model(torch.randint(0, 40, (5, 2))).sum().backward()
    eager_step(opt)
    handle.remove()
    assert seen == ["post"]


def test_training_never_imports_torch_dynamo() -> None:
    """A fresh process: build, step, zero, save and load every learner's optimizers; torch._dynamo stays unloaded."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        from torch import nn
        from workbench.tasks.optim import build_optimizer
        for learner in ["adam", "sgd", "adagrad", "rmsprop", "sparse_adam"]:
            model = nn.Sequential(nn.Embedding(40, 6, sparse=learner == "sparse_adam"), nn.Flatten(), nn.Linear(12, 3))
            opts = build_optimizer(learner, model, 0.01)
            for _ in range(2):
                opts.zero_grad()
                model(torch.randint(0, 40, (5, 2))).sum().backward()
                opts.step()
            opts.load_state_dict(opts.state_dict())
        print("torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "torch._dynamo was imported: torch.optim's wrappers changed, see tasks/optim.py"
