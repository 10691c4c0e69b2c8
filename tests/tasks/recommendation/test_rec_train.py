"""End to end on tiny generated data: run(cfg, RunContext.local(...)) logs, checkpoints, cancels, resumes, forks,
evaluates, and STAMP beats the popularity baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.config.io import parse_config
from workbench.runner.checkpoints import load_checkpoint_file
from workbench.runner.context import RunContext
from workbench.tasks.recommendation.config import RecommendationConfig
from workbench.tasks.recommendation import train as train_module
from workbench.tasks.recommendation.train import evaluate, run

TINY = {
    "task": "recommendation",
    "epochs": 3,
    "train_batch_size": 128,
    "learning_rate": 0.01,
    "embedding_size": 32,
    "valid_metric": "Recall@20",
    "print_freq": 10,
    "data": {"min_item_count": 1, "synthetic": {"n_items": 150, "n_sessions": 1500, "n_topics": 10}},
}


def _cfg(**changes) -> RecommendationConfig:
    data = {**TINY, **changes}
    return parse_config(data)


def _train(cfg: RecommendationConfig, run_dir: Path, ctx_cls: type[RunContext] = RunContext, **ctx_args) -> RunContext:
    ctx = ctx_cls.local(run_dir, monitor=(cfg.monitor_key, "max"), **ctx_args)
    run(cfg, ctx)
    ctx.close()
    return ctx


def _series(ctx: RunContext, key: str) -> list[tuple[int, float]]:
    return ctx.backend.series(key)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A fresh cache folder, and one intra-op thread: these models are tiny, and on a 2-core machine shared with
    other processes two OpenMP threads wait on each other at every op (measured 5-6x slower under load)."""
    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(path))
        mp.setattr(train_module, "cpu_threads", lambda: 1)
        yield path


@pytest.fixture(scope="module")
def reference(home, tmp_path_factory) -> RunContext:
    """One uninterrupted STAMP run shared by the tests below."""
    return _train(_cfg(), tmp_path_factory.mktemp("ref"))


def test_metrics_progress_and_checkpoints(reference):
    keys = {k for k, _, _, _ in reference.backend.metrics}
    for phase in ("valid", "test"):
        for name in ("recall", "mrr", "ndcg", "hit"):
            for k in (10, 20):
                assert f"{phase}/{name}@{k}" in keys
    assert {"train/loss", "train/lr", "train/samples_per_s", "train/epoch_loss"} <= keys
    losses = _series(reference, "train/loss")
    assert losses[0][1] > losses[-1][1]  # it learns
    steps = [s for s, _ in _series(reference, "valid/recall@20")]
    assert len(steps) == 3 and steps == sorted(steps)
    done, total, unit = reference.backend.progress
    assert done == total == steps[-1] and unit == "steps"
    infos = reference.checkpoints.list()
    assert infos and all("valid/recall@20" in c.metrics for c in infos)
    state = load_checkpoint_file(reference.run_dir / infos[-1].path)  # weights_only=True
    assert state["format"] == "workbench.checkpoint/1"
    assert state["step"] == steps[-1] and state["epoch"] == 3
    assert {"model", "optimizer", "scheduler", "rng", "early_stopping"} <= set(state["state"])
    assert state["config"]["task"] == "recommendation"


def test_stamp_beats_pop_on_recall_at_20(reference, tmp_path):
    pop = _train(_cfg(model="Pop"), tmp_path)
    stamp_recall = _series(reference, "test/recall@20")[-1][1]
    pop_recall = _series(pop, "test/recall@20")[-1][1]
    assert stamp_recall > pop_recall + 0.1, (stamp_recall, pop_recall)


class _CancelAt(RunContext):
    """Requests a stop (as SIGTERM does in a real run) once `cancel_at` optimizer steps have run."""

    cancel_at = 0
    checks = 0

    def should_stop(self) -> bool:
        self.checks += 1
        if self.checks >= self.cancel_at:
            self.request_stop()
        return super().should_stop()


def test_cancel_saves_a_checkpoint_and_resume_continues_exactly(reference, tmp_path):
    _CancelAt.cancel_at = 40  # mid-way through epoch 1 of ~35 steps per epoch -> epoch 2
    cancelled = _train(_cfg(), tmp_path / "a", ctx_cls=_CancelAt)
    assert not _series(cancelled, "test/recall@20")  # no test after a cancel
    state = cancelled.checkpoints.latest()
    assert state["step"] == 40 and state["state"]["batch_in_epoch"] > 0

    resumed = _train(_cfg(), tmp_path / "b", resume_state=state)
    first_step = min(s for s, _ in _series(resumed, "train/loss"))
    assert first_step > 40
    final_ref = _series(reference, "test/recall@20")[-1]
    final = _series(resumed, "test/recall@20")[-1]
    assert final[0] == final_ref[0]  # same total step count
    # same batches, negatives, optimizer moments: the resumed run ends where the uninterrupted one did
    assert final[1] == pytest.approx(final_ref[1], abs=1e-6)


def test_request_stop_before_the_first_step_still_checkpoints(home, tmp_path):
    ctx = RunContext.local(tmp_path, monitor=("valid/recall@20", "max"))
    ctx.request_stop()
    run(_cfg(), ctx)
    ctx.close()
    assert [c.step for c in ctx.checkpoints.list()] == [1]


def test_evaluate_and_fork_use_the_best_checkpoint(reference, tmp_path):
    cfg = _cfg()
    best = reference.checkpoints.best()
    metrics = evaluate(cfg, best["state"], None, reference)
    assert metrics["test/recall@20"] == pytest.approx(_series(reference, "test/recall@20")[-1][1])
    # a fork starts from those weights: with a near-zero learning rate its first validation matches the best one
    fork = _train(_cfg(epochs=1, learning_rate=1e-9), tmp_path, init_state=best)
    first_valid = _series(fork, "valid/recall@20")[0][1]
    assert first_valid == pytest.approx(best["state"]["metrics"]["valid/recall@20"], abs=1e-3)
    other = _cfg(data={"min_item_count": 1, "synthetic": {"n_items": 150, "n_sessions": 1500, "seed": 99}})
    with pytest.raises(ValueError, match="other items"):
        evaluate(other, best["state"], None, reference)


def test_bpr_mf_with_sparse_adam_and_dynamic_popularity_negatives(home, tmp_path):
    cfg = _cfg(
        model="BPR", loss_type="BPR", learner="sparse_adam", epochs=1, reg_weight=1e-4, require_pow=True,
        clip_grad_norm={"max_norm": 5.0}, epochs_warmup=1,
        train_neg_sample_args={"distribution": "popularity", "sample_num": 2, "dynamic": True, "candidate_num": 3},
    )  # fmt: skip
    ctx = _train(cfg, tmp_path)
    assert _series(ctx, "test/recall@20")
    assert torch.isfinite(torch.tensor([v for _, v in _series(ctx, "train/loss")])).all()


PRE_ENVELOPE = Path(__file__).resolve().parents[2] / "fixtures" / "pre_envelope" / "recommendation.pt"


def test_a_checkpoint_written_before_the_envelope_evaluates_and_resumes(home, tmp_path):
    flat = torch.load(PRE_ENVELOPE, weights_only=True)  # main's layout: step, epoch, config at the top
    cfg = parse_config({**flat["config"], "epochs": 3})
    metrics = evaluate(cfg, load_checkpoint_file(PRE_ENVELOPE)["state"], None, RunContext.local(tmp_path / "eval"))
    assert 0 < metrics["test/recall@20"] <= 1
    resumed = _train(cfg, tmp_path / "resumed", resume_state=flat)
    assert min(s for s, _ in _series(resumed, "train/loss")) > flat["step"] == 16
    assert resumed.checkpoints.latest()["epoch"] == 3
