"""Runner lifecycle on a fresh store each, SQLite and PostgreSQL: complete, cancel, SIGKILL, lost, resume, failure,
queue, and checkpoint import."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.waiting import wait_for, wait_status
from workbench import api

pytestmark = pytest.mark.both_backends


def _cfg(**overrides):  # type: ignore[no-untyped-def]
    return api.validate_dict({"task": "linreg", "train_batch_size": 16, "learning_rate": 0.05, **overrides})


def _processes_of(run_id: str) -> list[str]:
    """Command lines of live processes (not zombies) started for this run."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and run_id in " ".join(p.info["cmdline"] or []):
            out.append(" ".join(p.info["cmdline"]))
    return out


def _wait_running_with_steps(run_id: str, steps: int) -> None:
    wait_for(
        lambda: api.get_run(run_id).status == "running" and (api.get_run(run_id).progress_done or 0) >= steps,
        60,
        what=f"{run_id} to pass step {steps}",
    )


def test_run_completes_with_metrics_and_retention(home):
    """Also the PostgreSQL regression: every metric write failed there (SQLite's two-argument MAX in the upserts)
    and the run still completed with 0 points stored."""
    run = api.launch_run(_cfg(epochs=5, keep_ckpt=2), name="lin")
    done = wait_status(run.id, ("completed", "failed"))
    assert done.status == "completed", done.error
    done = wait_for(lambda: (r := api.get_run(run.id)).exit_code is not None and r, 10, what="the exit code")
    assert done.exit_code == 0 and done.exit_signal is None
    keys = api.metric_keys(run.id)
    assert {"train/loss", "train/lr", "valid/loss"} <= set(keys)
    series = api.series(run.id, "train/loss")
    assert series.total_points == 100 and not series.downsampled
    ckpts = [c for c in api.checkpoints(run.id) if c.kind == "checkpoint"]
    # keep_ckpt=2 keeps the last two; the best (lowest valid/loss) is kept too and marked
    assert [c.step for c in ckpts][-2:] == [80, 100]
    assert sum(c.is_best for c in ckpts) == 1
    for c in ckpts:
        assert (api.run_dir(run.id) / c.path).exists()
    files = sorted(p.name for p in (api.run_dir(run.id) / "checkpoints").iterdir())
    assert len(files) == len(ckpts)
    assert done.best_value == pytest.approx(min(c.metrics["valid/loss"] for c in ckpts))
    kinds = [e.kind for e in api.events(run.id)]
    assert kinds[:4] == ["queued", "starting", "running", "completed"]


def test_cancel_ends_cancelled_with_checkpoint(home):
    run = api.launch_run(_cfg(epochs=200, step_sleep_s=0.02))
    _wait_running_with_steps(run.id, 5)
    assert api.cancel_run(run.id) == "cancel requested"
    done = wait_status(run.id, ("cancelled", "failed", "completed"), timeout=60)
    assert done.status == "cancelled", done.error
    ckpts = api.checkpoints(run.id)
    assert ckpts, "a cancelled run saves a checkpoint"
    assert ckpts[-1].step >= 5
    kinds = [e.kind for e in api.events(run.id)]
    assert "cancel requested" in kinds and kinds[-1] == "cancelled"


def test_sigkill_of_worker_ends_failed_with_signal(home):
    run = api.launch_run(_cfg(epochs=200, step_sleep_s=0.02))
    _wait_running_with_steps(run.id, 3)
    worker_pid = api.get_run(run.id).worker_pid
    os.kill(worker_pid, signal.SIGKILL)
    done = wait_status(run.id, ("failed", "lost", "completed"))
    assert done.status == "failed"
    assert done.exit_signal == signal.SIGKILL
    assert "SIGKILL" in done.error


def test_killing_the_whole_group_is_found_lost_by_housekeeping_not_by_reads(home):
    import time

    run = api.launch_run(_cfg(epochs=200, step_sleep_s=0.02))
    _wait_running_with_steps(run.id, 3)
    sup = api.get_run(run.id).supervisor_pid
    os.killpg(os.getpgid(sup), signal.SIGKILL)
    wait_for(lambda: not _processes_of(run.id), 10, what="the supervisor and worker to be gone")
    time.sleep(1.5)  # three missed heartbeats (WORKBENCH_HEARTBEAT_S=0.5 in tests): reads still change nothing
    assert api.get_run(run.id).status == "running"
    assert [r.status for r in api.list_runs()] == ["running"]
    assert api.run_status(run.id) == "running"
    done = api.housekeeping()
    assert done.lost == [run.id] and done.started == []
    lost = api.get_run(run.id)
    assert lost.status == "lost"
    assert "gone" in lost.error


def test_resume_continues_the_step_count(home):
    run = api.launch_run(_cfg(epochs=4, steps_per_epoch=25, step_sleep_s=0.03))
    _wait_running_with_steps(run.id, 30)
    api.cancel_run(run.id)
    stopped = wait_status(run.id, ("cancelled",))
    last_saved = max(c.step for c in api.checkpoints(run.id))
    resumed = api.resume_run(run.id)
    assert resumed.attempt == 2
    done = wait_status(run.id, ("completed", "failed"))
    assert done.status == "completed", done.error
    steps = api.metrics_since(run.id)
    loss_steps = steps[steps.key == "train/loss"].step.tolist()
    # the second attempt starts right after the checkpoint's step; nothing is counted twice past it
    assert max(loss_steps) == 100
    after = [s for s in loss_steps if s > last_saved]
    assert after == sorted(after) and after[0] == last_saved + 1
    assert stopped.progress_done >= 30


def test_failure_stores_traceback(home):
    run = api.launch_run(_cfg(epochs=2, fail_at_step=7))
    done = wait_status(run.id, ("failed", "completed"))
    assert done.status == "failed"
    assert "asked to fail at step 7" in done.error
    assert "Traceback" in done.traceback and "linreg_task.py" in done.traceback
    assert wait_for(lambda: api.get_run(run.id).exit_code, 30, what="the exit code") == 1


def test_queue_respects_max_concurrent_runs(home, monkeypatch):
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_RUNS", "1")
    reset_settings()
    first = api.launch_run(_cfg(epochs=2, step_sleep_s=0.02))
    second = api.launch_run(_cfg(epochs=1))
    assert api.get_run(second.id).status == "queued"
    assert not _processes_of(second.id), "a queued run has no processes"
    wait_status(first.id, ("completed",))
    done = wait_status(second.id, ("completed", "failed"))
    assert done.status == "completed"
    assert done.started_at >= api.get_run(first.id).ended_at - 1.0


def test_cancel_of_queued_run_is_immediate(home, monkeypatch):
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_MAX_CONCURRENT_RUNS", "1")
    reset_settings()
    first = api.launch_run(_cfg(epochs=50, step_sleep_s=0.02))
    second = api.launch_run(_cfg(epochs=1))
    assert api.cancel_run(second.id) == "cancelled"
    assert api.get_run(second.id).status == "cancelled"
    api.cancel_run(first.id)
    wait_status(first.id, ("cancelled",))


def test_nproc_per_node_2_runs_under_torchrun_with_gloo(home):
    run = api.launch_run(_cfg(epochs=2, nproc_per_node=2))
    done = wait_status(run.id, ("completed", "failed", "lost"), timeout=120)
    assert done.status == "completed", (done.error, done.traceback)
    log = (api.run_dir(run.id) / "train.log").read_text()
    assert "world size 2" in log and "[rank 1]" in log
    # only rank 0 writes to the store: one series, not two interleaved
    assert api.series(run.id, "train/loss").total_points == 40


def test_a_run_that_ignores_cancel_is_killed_after_the_grace_period(home, monkeypatch):
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_CANCEL_GRACE_S", "2")
    reset_settings()
    run = api.launch_run(_cfg(epochs=500, step_sleep_s=0.02, ignore_stop=True))
    _wait_running_with_steps(run.id, 3)
    api.cancel_run(run.id)
    done = wait_status(run.id, ("cancelled", "failed"), timeout=30)
    assert done.status == "cancelled"
    assert done.exit_signal == signal.SIGKILL and "SIGKILL" in done.error


def test_a_supervisor_leaves_a_run_that_is_not_its_own(home):
    """A stale or duplicate supervisor (a run not `starting`, another attempt, another supervisor's run) leaves
    without touching the run or starting a worker."""
    import subprocess
    import sys

    from workbench.store import runs as run_store
    from workbench.store.models import RunCreate, RunStatus, RunUpdate

    eng = api.engine()
    run = run_store.create_run(eng, run_in=RunCreate(task="linreg", name="c", config=api.to_dict(_cfg(epochs=1)), monitor_key="valid/loss", monitor_mode="min"))

    def supervise(attempt: int) -> str:
        cmd = [sys.executable, "-m", "workbench.runner.supervisor", run.id, str(attempt)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert "is not this supervisor's" in supervise(1)  # still queued
    run_store.transition(eng, run_id=run.id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED])
    run_store.update_run(eng, run_id=run.id, run_in=RunUpdate(supervisor_pid=1))  # the scheduler started another process for it
    assert "is not this supervisor's" in supervise(1)
    run_store.update_run(eng, run_id=run.id, run_in=RunUpdate(supervisor_pid=None))
    assert "is not this supervisor's" in supervise(2)  # started for another attempt
    after = api.get_run(run.id)
    assert (after.status, after.supervisor_start, after.worker_pid, after.started_at) == ("starting", None, None, None)
    assert not (api.run_dir(run.id) / "train.log").exists(), "no worker was started"
    # the claim itself: once, for the right attempt and pid
    assert not run_store.claim_for_supervisor(eng, run_id=run.id, attempt=2, pid=4242, process_start=1.0)
    assert run_store.claim_for_supervisor(eng, run_id=run.id, attempt=1, pid=4242, process_start=1.0)
    assert not run_store.claim_for_supervisor(eng, run_id=run.id, attempt=1, pid=4242, process_start=1.0)
    assert not run_store.claim_for_supervisor(eng, run_id=run.id, attempt=1, pid=4343, process_start=2.0)


def test_a_cancel_before_the_supervisor_took_its_run_ends_cancelled_without_a_worker(home):
    from workbench.runner import scheduler
    from workbench.settings import get_settings
    from workbench.store import runs as run_store
    from workbench.store.models import RunCreate, RunStatus

    eng = api.engine()
    settings = get_settings()
    run_in = RunCreate(
        task="linreg", name="c", config=api.to_dict(_cfg(epochs=50)), monitor_key="valid/loss", monitor_mode="min", host=settings.host
    )
    run = run_store.create_run(eng, run_in=run_in)
    run_store.transition(eng, run_id=run.id, to=RunStatus.STARTING, expect=[RunStatus.QUEUED])  # what the scheduler does before it spawns
    assert api.cancel_run(run.id) == "cancel requested"  # no supervisor has taken it: the flag only, no signal
    assert "sees it within" in api.events(run.id)[-1].message
    scheduler.start_supervisor(run.id, 1, settings)
    done = wait_status(run.id, ("cancelled", "running", "failed", "completed"), timeout=60)
    assert done.status == "cancelled" and done.worker_pid is None
    assert api.events(run.id)[-1].message == "cancelled before it started"


def test_a_cancel_right_after_the_launch_ends_cancelled(home):
    run = api.launch_run(_cfg(epochs=200, step_sleep_s=0.02))
    assert api.cancel_run(run.id) == "cancel requested"
    done = wait_status(run.id, ("cancelled", "failed", "completed", "lost"), timeout=60)
    assert done.status == "cancelled", done.error


def test_a_launch_that_fails_leaves_no_run_and_no_folder(home, monkeypatch):
    from workbench.store import runs as run_store

    def no_space(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_store, "create_run", no_space)
    with pytest.raises(OSError, match="No space"):
        api.launch_run(_cfg(epochs=1))
    assert api.list_runs() == []
    runs_dir = home / "runs"
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "the folder of a run that was never inserted is removed"


def _checkpoint_bytes(step: int = 7) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": {"weight": torch.ones(1, 4), "bias": torch.zeros(1)}, "step": step}, buf)
    return buf.getvalue()


def test_an_import_is_created_completed_and_never_queued(home, monkeypatch):
    """The file is written before the run exists; the run appears `completed` with its checkpoint at once."""
    from workbench.runner import checkpoints as runner_checkpoints

    seen_while_writing: list[list[str]] = []
    real_save = runner_checkpoints.atomic_torch_save

    def save_and_look(state, target):  # type: ignore[no-untyped-def]
        seen_while_writing.append([r.id for r in api.list_runs()])  # what a scheduler pass would see now
        real_save(state, target)

    monkeypatch.setattr(runner_checkpoints, "atomic_torch_save", save_and_look)
    run = api.import_checkpoint(_cfg(), "elsewhere.pt", _checkpoint_bytes(step=7))
    assert seen_while_writing == [[]]
    assert run.kind == "import" and run.status == api.RunStatus.COMPLETED and run.ended_at is not None
    (ckpt,) = api.checkpoints(run.id)
    assert ckpt.step == 7 and (api.run_dir(run.id) / ckpt.path).is_file()
    assert [e.kind for e in api.events(run.id)] == ["completed"]
    assert api.list_runs(statuses=["queued"]) == []


def test_an_import_whose_file_write_fails_stores_nothing(home, monkeypatch):
    from workbench.runner import checkpoints as runner_checkpoints

    def disk_full(*_args):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner_checkpoints, "atomic_torch_save", disk_full)
    with pytest.raises(OSError, match="No space"):
        api.import_checkpoint(_cfg(), "elsewhere.pt", _checkpoint_bytes())
    assert api.list_runs() == []
    assert not any((home / "runs").iterdir()), "the folder of the failed import is removed"


def test_an_import_whose_insert_fails_leaves_no_row_and_no_folder(home, monkeypatch):
    """The run, its checkpoint row and its event are one transaction: a failure in the last undoes the first."""
    from workbench.store import runs as run_store

    def broken_event(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the store went away")

    monkeypatch.setattr(run_store, "_insert_event", broken_event)
    with pytest.raises(RuntimeError, match="went away"):
        api.import_checkpoint(_cfg(), "elsewhere.pt", _checkpoint_bytes())
    monkeypatch.undo()
    assert api.list_runs() == []
    assert not any((home / "runs").iterdir())
    with api.engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM checkpoint").scalar() == 0
