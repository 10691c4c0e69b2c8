"""Comparing runs, bundles and forks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from tests.support.waiting import wait_status
from workbench import api
from workbench.compare import config_diff, flatten

ROOT = Path(__file__).resolve().parents[1]


def test_flatten_and_diff_nested_configs():
    a = {"lr": 0.1, "neg": {"distribution": "uniform", "sample_num": 1}, "topk": [10, 20], "clip": None}
    b = {"lr": 0.1, "neg": {"distribution": "popularity", "sample_num": 1}, "topk": [10], "extra": 3, "clip": None}
    assert flatten(a) == {"lr": 0.1, "neg.distribution": "uniform", "neg.sample_num": 1, "topk": [10, 20], "clip": None}
    diff = config_diff({"A": a, "B": b})
    assert diff["setting"].tolist() == ["extra", "neg.distribution", "topk"]
    assert diff.set_index("setting").loc["extra"].tolist() == ["—", "3"]
    assert diff.set_index("setting").loc["topk"].tolist() == ["[10, 20]", "[10]"]
    full = config_diff({"A": a, "B": b}, only_differing=False)
    assert len(full) == 6


def _run(**overrides) -> api.RunRead:  # type: ignore[no-untyped-def]
    cfg = api.validate_dict({"task": "linreg", "train_batch_size": 8, "epochs": 2, **overrides})
    run = api.launch_run(cfg, name=f"lr{cfg.learning_rate}")
    return wait_status(run.id, ("completed", "failed"))


def test_compare_tables_cli_and_page(home):
    a, b = _run(learning_rate=0.05), _run(learning_rate=0.01)
    assert api.compare_keys([a.id, b.id]) == ["train/loss", "train/lr", "valid/loss"]
    frame = api.compare_series([a.id, b.id], "train/loss")
    assert set(frame.run) == {a.id, b.id} and len(frame) == 80
    table = api.compare_summary([a.id, b.id]).set_index("run")
    assert table.loc[a.id, "train/lr last"] == 0.05
    assert table.loc[b.id, "valid/loss best"] == api.get_run(b.id).best_value
    diff = api.compare_configs([a.id, b.id])
    assert diff["setting"].tolist() == ["learning_rate"]

    out = subprocess.run([sys.executable, "-m", "workbench.cli", "compare", a.id, b.id, "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
    data = json.loads(out.stdout)
    assert data["config_diff"][0]["setting"] == "learning_rate" and len(data["summary"]) == 2

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["compare_runs"] = [a.id, b.id]
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) == 3
    assert any("learning_rate" in df.value.to_string() for df in at.dataframe)


def test_bundle_has_config_metrics_log_and_checkpoints(home):
    run = _run(epochs=4, keep_ckpt=1)
    bundle = api.bundle_download(run.id)
    assert bundle.name == f"{run.id}-bundle.zip" and bundle.temporary
    with zipfile.ZipFile(bundle.path) as zf:
        names = set(zf.namelist())
        assert {f"{run.id}/config.yaml", f"{run.id}/metrics.csv", f"{run.id}/train.log"} <= names
        ckpts = [n for n in names if n.endswith(".pt")]
        assert 1 <= len(ckpts) <= 2  # best and latest (the same file when the last one is the best)
        state = torch.load(io.BytesIO(zf.read(ckpts[0])), weights_only=True)
        assert state["format"] == "workbench.checkpoint/1" and "model" in state["state"]
        metrics_csv = zf.read(f"{run.id}/metrics.csv").decode().splitlines()
    assert metrics_csv[0] == "run_id,key,step,value,wall"
    assert len(metrics_csv) - 1 == api.metric_summaries([run.id])["count"].sum()  # every point, not a downsampled view
    bundle.path.unlink()


def test_fork_records_lineage_and_starts_from_the_checkpoint(home):
    parent = _run(epochs=3, learning_rate=0.05)
    ckpt = next(c for c in api.checkpoints(parent.id) if c.is_best)
    cfg = api.run_config(parent.id).model_copy(update={"learning_rate": 0.001, "epochs": 1})
    child = api.fork_run(parent.id, ckpt.id, cfg, name="child")
    assert child.parent_run_id == parent.id and child.parent_checkpoint_id == ckpt.id
    done = wait_status(child.id, ("completed", "failed"))
    assert done.status == "completed", done.error
    # it started from trained weights: its first loss is already near the parent's final loss, not the initial one
    first_child = api.series(child.id, "train/loss").frame.value.iloc[0]
    first_parent = api.series(parent.id, "train/loss").frame.value.iloc[0]
    assert first_child < first_parent / 10
    assert [f.id for f in api.forks_of(parent.id)] == [child.id]


def test_evaluate_job_through_the_cli(home, tmp_path):
    run = _run(epochs=2, learning_rate=0.05)
    seed_file = tmp_path / "seed.txt"
    seed_file.write_text("123")
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "eval", run.id, "--data", str(seed_file), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    best = next(c for c in api.checkpoints(run.id) if c.is_best)
    assert result["checkpoint"] == best.id
    assert 0 <= result["metrics"]["test/loss"] < 0.1
    (job,) = api.evaluations_of(run.id)
    assert job.kind == "evaluate" and job.status == "completed" and job.eval_data == str(seed_file)
    assert api.forks_of(run.id) == []


def test_checkpoint_tensor_diff_and_import(home):
    run = _run(epochs=3, learning_rate=0.05, keep_ckpt=5)
    ckpts = [c for c in api.checkpoints(run.id) if c.kind == "checkpoint"]
    diffs = api.compare_checkpoint_tensors(ckpts[0].id, ckpts[-1].id).set_index("tensor")
    assert set(diffs.index) == {"weight", "bias"}
    assert diffs.loc["weight", "l2_distance"] > 0 and diffs.loc["weight", "shape"] == "(1, 4)"
    same = api.compare_checkpoint_tensors(ckpts[0].id, ckpts[0].id)
    assert (same.l2_distance == 0).all()
    metrics = api.compare_checkpoint_metrics([c.id for c in ckpts])
    assert metrics["valid/loss"].notna().all()

    good = api.checkpoint_download(run.id, ckpts[-1].id).path.read_bytes()
    imported = api.import_checkpoint(api.run_config(run.id), "elsewhere.pt", good)
    assert imported.kind == "import" and imported.status == "completed"
    (ic,) = api.checkpoints(imported.id)
    assert api.compare_checkpoint_tensors(ic.id, ckpts[-1].id).l2_distance.max() == 0

    wrong = io.BytesIO()
    torch.save({"model": {"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}}, wrong)
    with __import__("pytest").raises(ValueError, match=r"shape \(1, 7\).*\(1, 4\)"):
        api.import_checkpoint(api.run_config(run.id), "wrong.pt", wrong.getvalue())
    for data, sentence in [
        (b"not a checkpoint", "junk.pt is not a PyTorch checkpoint: it is not a file written by torch.save."),
        (good[: len(good) // 2], "junk.pt is not a PyTorch checkpoint: it is a damaged zip archive (cut short, or changed after saving)."),
    ]:  # fmt: skip
        with __import__("pytest").raises(ValueError) as bad:
            api.import_checkpoint(api.run_config(run.id), "junk.pt", data)
        assert str(bad.value) == sentence  # one plain sentence, not PyTorch's advice to set weights_only=False
    whole_model = io.BytesIO()
    torch.save(torch.nn.Linear(4, 1), whole_model)
    with __import__("pytest").raises(ValueError) as bad:
        api.import_checkpoint(api.run_config(run.id), "model.pt", whole_model.getvalue())
    assert str(bad.value).startswith("model.pt is not a plain checkpoint: it holds a pickled Python object (torch.nn")
    assert "weights_only" not in str(bad.value)


def test_epoch_alignment_interpolates_the_epoch_series(home):
    from workbench.settings import get_settings
    from workbench.store import get_engine
    from workbench.store import metrics as m
    from workbench.store import runs as run_store

    eng = get_engine(get_settings().database_url)
    from workbench.store.models import RunCreate

    r = run_store.create_run(eng, run_in=RunCreate(task="linreg", name="e", monitor_key="valid/loss", monitor_mode="min"))
    m.write_metrics(eng, run_id=r.id, points=[("train/loss", s, 1.0 / s, 0.0) for s in range(1, 41)])
    m.write_metrics(eng, run_id=r.id, points=[("train/epoch", 20, 1.0, 0.0), ("train/epoch", 40, 2.0, 0.0)])
    frame = api.compare_series([r.id], "train/loss").set_index("step")
    assert frame.loc[10, "epoch"] == 0.5 and frame.loc[20, "epoch"] == 1.0 and frame.loc[30, "epoch"] == 1.5


def test_a_checkpoint_written_before_the_envelope_evaluates_forks_compares_and_downloads(home):
    """tests/fixtures/pre_envelope/linreg.pt is a flat file from main (step 10, epoch 1), put in place of the
    run's own step-10 checkpoint."""
    import shutil

    run = _run(epochs=2, steps_per_epoch=5, learning_rate=0.05, keep_ckpt=5)
    old, new = sorted((c for c in api.checkpoints(run.id) if c.kind == "checkpoint"), key=lambda c: c.step)[::-1]
    assert old.step == 10
    shutil.copy(ROOT / "tests" / "fixtures" / "pre_envelope" / "linreg.pt", api.run_dir(run.id) / old.path)

    assert set(api.compare_checkpoint_tensors(old.id, new.id).tensor) == {"weight", "bias"}
    job = api.evaluate_checkpoint(run.id, old.id)
    done = wait_status(job.id, ("completed", "failed"))
    assert done.status == "completed", done.error
    (point,) = api.metrics_since(job.id).itertuples()
    assert point.key == "test/loss" and point.step == 10  # the step the old file kept at its top level

    cfg = api.run_config(run.id).model_copy(update={"epochs": 1})
    child = wait_status(api.fork_run(run.id, old.id, cfg).id, ("completed", "failed"))
    assert child.status == "completed", child.error

    data = api.checkpoint_download(run.id, old.id).path.read_bytes()
    assert "model" in torch.load(io.BytesIO(data), weights_only=True)  # served as it is on disk
    bundle = api.bundle_download(run.id)
    with zipfile.ZipFile(bundle.path) as zf:
        assert f"{run.id}/{old.path}" in zf.namelist()
    bundle.path.unlink()
    imported = api.import_checkpoint(cfg, "old.pt", data)  # an old file imports as an envelope with its step
    (ic,) = api.checkpoints(imported.id)
    assert ic.step == 10 and api.compare_checkpoint_tensors(ic.id, old.id).l2_distance.max() == 0
