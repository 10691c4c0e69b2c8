"""A tiny but real task for platform tests: linear regression trained with SGD, honouring the RunContext.

Registered in worker processes through WORKBENCH_TASK_MODULES=tests.support.linreg_task, so runner tests can
exercise launch, cancel, kill, resume and retention in seconds instead of minutes.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from workbench.config.common import CommonTrainingSettings
from workbench.tasks.spec import TaskSpec


class LinRegConfig(CommonTrainingSettings):
    task: Literal["linreg"] = Field("linreg", description="Task: linear regression.")
    epochs: int = Field(5, ge=1, description="Epochs over the synthetic data.")
    steps_per_epoch: int = Field(20, ge=1, description="Optimizer steps per epoch.")
    step_sleep_s: float = Field(0.0, ge=0, description="Sleep per step (to make runs last long enough to cancel).")
    fail_at_step: int | None = Field(None, description="Raise an error at this global step (failure tests).")
    n_features: int = Field(4, ge=1, description="Input features.")
    ignore_stop: bool = Field(False, description="Never look at should_stop() (tests the SIGKILL after the grace period).")


def run(cfg: LinRegConfig, ctx) -> None:  # type: ignore[no-untyped-def]
    import torch

    from workbench.tasks.profiling import step_profiler

    torch.manual_seed(cfg.seed)
    true_w = torch.arange(1, cfg.n_features + 1, dtype=torch.float32)
    model = torch.nn.Linear(cfg.n_features, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    step = 0
    if ctx.resume_state is not None:
        model.load_state_dict(ctx.resume_state["model"])
        opt.load_state_dict(ctx.resume_state["optimizer"])
        step = int(ctx.resume_state["step"])
    elif ctx.init_state is not None:
        model.load_state_dict(ctx.init_state["model"])
    total = cfg.epochs * cfg.steps_per_epoch

    def state(epoch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": epoch}

    profiler = step_profiler(cfg, ctx, torch.device("cpu"))
    for epoch in range(step // cfg.steps_per_epoch, cfg.epochs):
        for _ in range(step - epoch * cfg.steps_per_epoch, cfg.steps_per_epoch):  # resume may land mid-epoch
            if cfg.fail_at_step is not None and step == cfg.fail_at_step:
                raise ValueError(f"asked to fail at step {step}")
            profiler.mark("data")
            x = torch.randn(cfg.train_batch_size, cfg.n_features)
            y = x @ true_w + 0.01 * torch.randn(cfg.train_batch_size)
            profiler.mark("forward")
            loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), y)
            profiler.mark("backward")
            opt.zero_grad()
            loss.backward()
            profiler.mark("optimizer")
            opt.step()
            profiler.step()
            step += 1
            ctx.log({"train/loss": loss.item(), "train/lr": cfg.learning_rate}, step)
            ctx.progress(step, total, "steps")
            if cfg.step_sleep_s:
                time.sleep(cfg.step_sleep_s)
            if ctx.should_stop() and not cfg.ignore_stop:
                profiler.close()
                ctx.checkpoints.save(state(epoch), step=step, epoch=epoch, config=cfg.model_dump(mode="json"))
                return
        with torch.no_grad():
            x = torch.randn(256, cfg.n_features)
            valid = torch.nn.functional.mse_loss(model(x).squeeze(-1), x @ true_w).item()
        ctx.log({"valid/loss": valid}, step)
        ctx.checkpoints.save(state(epoch), step=step, epoch=epoch, config=cfg.model_dump(mode="json"),
                             metrics={"valid/loss": valid})
    profiler.close()


def evaluate(cfg: LinRegConfig, state: dict, data_path: str | None, ctx) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """MSE of the checkpoint on 1,000 fresh points (seeded by cfg.seed, or by the integer in `data_path`)."""
    import torch

    seed = int(open(data_path).read()) if data_path else cfg.seed
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(cfg.n_features, 1)
    model.load_state_dict(state["model"])
    x = torch.randn(1000, cfg.n_features, generator=gen)
    true_w = torch.arange(1, cfg.n_features + 1, dtype=torch.float32)
    with torch.no_grad():
        return {"test/loss": torch.nn.functional.mse_loss(model(x).squeeze(-1), x @ true_w).item()}


def check_state(cfg: LinRegConfig, state: dict) -> list[str]:
    import torch

    from workbench.runner.checkpoints import state_mismatches

    return state_mismatches(torch.nn.Linear(cfg.n_features, 1).state_dict(), state["model"])


SPEC = TaskSpec(
    name="linreg",
    title="Linear regression (test task)",
    description="Platform test task.",
    config_cls=LinRegConfig,
    run_target="tests.support.linreg_task:run",
    monitor=lambda cfg: ("valid/loss", "min"),
    evaluate_target="tests.support.linreg_task:evaluate",
    check_target="tests.support.linreg_task:check_state",
)
