"""Checkpoint files: atomic saves, retention that keeps the best, and the download guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from workbench import api
from workbench.runner.checkpoints import as_envelope, atomic_torch_save, load_checkpoint_file
from workbench.runner.context import RunContext


def test_retention_keeps_last_n_and_the_best(tmp_path):
    ctx = RunContext.local(tmp_path, monitor=("valid/auc", "max"), keep_ckpt=2)
    values = [0.5, 0.9, 0.6, 0.7, 0.65]
    for step, v in enumerate(values, start=1):
        ctx.checkpoints.save({"w": torch.ones(2) * step}, step=step, config={}, metrics={"valid/auc": v})
    kept = [c.step for c in ctx.checkpoints.list()]
    assert kept == [2, 4, 5]  # best (0.9 at step 2) + last two
    on_disk = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert on_disk == ["checkpoint-step000000002.pt", "checkpoint-step000000004.pt", "checkpoint-step000000005.pt"]
    assert ctx.checkpoints.best()["step"] == 2 and ctx.checkpoints.latest()["step"] == 5
    assert ctx.checkpoints.best()["state"]["w"].sum() == 4


def test_retention_tolerates_files_already_gone(tmp_path):
    ctx = RunContext.local(tmp_path, monitor=("valid/loss", "min"), keep_ckpt=1)
    ctx.checkpoints.save({}, step=1, config={}, metrics={"valid/loss": 1.0})
    ctx.checkpoints.save({}, step=2, config={}, metrics={"valid/loss": 0.5})
    (tmp_path / "checkpoints" / "checkpoint-step000000002.pt").unlink()
    ctx.checkpoints.save({}, step=3, config={}, metrics={"valid/loss": 0.7})
    ctx.checkpoints.save({}, step=4, config={}, metrics={"valid/loss": 0.8})
    assert [c.step for c in ctx.checkpoints.list()] == [2, 4]  # best row kept, even with its file gone
    assert ctx.checkpoints.latest()["step"] == 4


def test_failed_save_leaves_nothing_listed(tmp_path):
    class Boom:
        def __reduce__(self):  # torch.save pickles it and fails half way through the file
            raise OSError("No space left on device")

    ctx = RunContext.local(tmp_path)
    with pytest.raises(OSError, match="No space"):
        ctx.checkpoints.save({"w": torch.zeros(1000), "bad": Boom()}, step=1, config={})
    assert ctx.checkpoints.list() == []
    assert list((tmp_path / "checkpoints").iterdir()) == []  # the temp file is removed too


def test_atomic_save_replaces_whole_files(tmp_path):
    target = tmp_path / "c.pt"
    atomic_torch_save({"a": torch.ones(3)}, target)
    atomic_torch_save({"a": torch.zeros(3)}, target)
    assert torch.load(target, weights_only=True)["a"].sum() == 0


def test_download_guard_refuses_paths_outside_home(home, tmp_path):
    run_dir = home / "runs" / "r1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ok.pt").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    os.symlink(secret, run_dir / "checkpoints" / "link.pt")
    assert api.safe_run_file("r1", "checkpoints/ok.pt").read_bytes() == b"x"
    for bad in ("../../secret.txt", str(secret), "checkpoints/link.pt", "checkpoints/../../r2/x"):
        with pytest.raises(api.UnsafePath):
            api.safe_run_file("r1", bad)
    with pytest.raises(api.UnsafePath):
        api.safe_run_file("../..", "secret.txt")


FIXTURES = Path(__file__).parent / "fixtures" / "pre_envelope"


def test_save_writes_the_envelope_and_the_context_hands_the_task_its_state(tmp_path):
    ctx = RunContext.local(tmp_path)
    info = ctx.checkpoints.save({"model": {"w": torch.ones(2)}}, step=7, epoch=2, config={"task": "linreg"})
    raw = torch.load(tmp_path / info.path, weights_only=True)
    assert {k: v for k, v in raw.items() if k != "state"} == {
        "format": "workbench.checkpoint/1", "step": 7, "epoch": 2, "config": {"task": "linreg"}}
    assert list(raw["state"]) == ["model"] and torch.equal(raw["state"]["model"]["w"], torch.ones(2))
    resumed = RunContext.local(tmp_path, resume_state=ctx.checkpoints.latest())
    assert torch.equal(resumed.resume_state["model"]["w"], torch.ones(2))
    assert resumed.resume_checkpoint["step"] == 7 and resumed.init_state is None and resumed.init_checkpoint is None


@pytest.mark.parametrize(("name", "step", "epoch", "task"), [
    ("linreg", 10, 1, None), ("recommendation", 16, 2, "recommendation"), ("ctr_stream", 4, None, "ctr_stream")])
def test_a_checkpoint_written_before_the_envelope_is_wrapped(name, step, epoch, task):
    envelope = load_checkpoint_file(FIXTURES / f"{name}.pt")
    flat = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    assert envelope["format"] == "workbench.checkpoint/1" and envelope["state"].keys() == flat.keys()
    assert (envelope["step"], envelope["epoch"]) == (step, epoch)
    assert (envelope["config"] or {}).get("task") == task


def test_spleeter_kept_its_step_in_the_loop_and_other_files_have_none():
    spleeter = as_envelope({"model": {}, "loop": {"step": 12, "epoch": 3, "epoch_batches": 0}})
    assert (spleeter["step"], spleeter["epoch"]) == (12, 3)
    external = as_envelope({"model": {"w": torch.zeros(1)}})
    assert (external["step"], external["epoch"], external["config"]) == (0, None, None)


def test_unreadable_envelopes_fail_with_a_reason():
    with pytest.raises(ValueError, match="workbench.checkpoint/2"):
        as_envelope({"format": "workbench.checkpoint/2", "step": 1, "epoch": None, "config": {}, "state": {}})
    with pytest.raises(ValueError, match="damaged"):
        as_envelope({"format": "workbench.checkpoint/1", "step": 1})
    with pytest.raises(ValueError, match="not a dict"):
        as_envelope([torch.zeros(1)])
