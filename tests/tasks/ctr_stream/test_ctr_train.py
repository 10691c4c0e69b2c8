"""The streaming loop end to end: the quick preset, outputs, resume, cancel, waiting for live data, evaluate, dump."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from workbench.config.io import load_config_file
from workbench.runner.checkpoints import load_checkpoint_file
from workbench.runner.context import RunContext
from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream
from workbench.tasks.ctr_stream.synth import generate_stream
from workbench.tasks.ctr_stream.predict import check_state, infer
from workbench.tasks.ctr_stream.train import _warm_start, evaluate, run
from workbench.tasks.ctr_stream.trainer import CtrTrainer

QUICK = Path(__file__).resolve().parents[3] / "configs" / "ctr_stream" / "quick.yaml"
SMALL = dict(start_day="20190720", end_day="20190721", split_interval=360, split_per_pass=1, slot_num=4,
             layer_sizes=[16], train_batch_size=64, checkpoint_per_pass=2, save_delta_frequency=2, print_freq=1,
             data_donefile="data.done", data_sleep_second=0.05, keep_ckpt=20, train_thread_num=1)
SYNTH = SyntheticStream(examples_per_slice=300, vocab_size=200)


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stream")
    generate_stream(root, slots=[2, 3, 4, 5], days=["20190720", "20190721"], split_interval=360, settings=SYNTH)
    return root


def small(stream: Path, **kw) -> CtrStreamConfig:
    return CtrStreamConfig(**{**SMALL, "train_data_dir": str(stream), **kw})


def local(path: Path, **kw) -> RunContext:
    return RunContext.local(path, monitor=("infer/auc", "max"), keep_ckpt=20, **kw)


def pass_metrics(ctx: RunContext, key: str) -> dict[int, float]:
    """{global pass number: value} of a per-pass metric."""
    steps = dict(ctx.backend.series("pass/global"))
    return {int(steps[s]): v for s, v in ctx.backend.series(key) if s in steps}


def test_quick_preset_learns_on_its_own_synthetic_stream(tmp_path):
    cfg = load_config_file(QUICK)
    ctx = local(tmp_path)
    run(cfg, ctx)
    ctx.close()
    infer = ctx.backend.series("infer/auc")
    assert len(infer) == 12 and infer[-1][1] > 0.65, infer  # well above chance on the last passes
    assert max(v for _, v in ctx.backend.series("train/auc")) > 0.65
    assert ctx.backend.progress == (12, 12, "passes")
    keys = {k for k, _, _, _ in ctx.backend.metrics}
    for key in ("infer/copc", "train/bucket_error", "train/logloss", "table/rows", "table/rows_with_embedx",
                "table/created", "table/deleted", "table/memory_mb", "pass", "day", "train/loss"):
        assert key in keys, key
    kinds = {(c.kind, c.path) for c in ctx.backend.checkpoints}
    for kind, path in [("checkpoint", "model/20190720/3"), ("delta", "model/20190720/delta-3"),
                       ("delta", "model/20190720/delta-6"), ("base", "model/20190721/base"),
                       ("batch", "model/20190721/0"), ("batch", "model/20190722/0")]:
        assert (kind, path) in kinds
    assert any(c.path.endswith(".pt") for c in ctx.backend.checkpoints)
    donefile = (tmp_path / "model" / "donefile.txt").read_text().splitlines()
    assert [line.split("\t")[3] for line in donefile] == ["3", "-1", "3", "-1"]
    assert json.loads((tmp_path / "model" / "base_donefile.txt").read_text().splitlines()[0])["input"].endswith("base/000")
    assert (tmp_path / "synthetic_data" / "_synth.json").exists()


def test_resume_from_a_mid_day_checkpoint_continues_with_the_next_pass(stream, tmp_path):
    full = local(tmp_path / "full")
    run(small(stream), full)
    full.close()
    first_state = next(c for c in full.backend.checkpoints if c.path.endswith(".pt"))
    state = load_checkpoint_file(tmp_path / "full" / first_state.path)  # saved after pass 2 of day 1
    assert state["state"]["progress"]["last_done"] == ["20190720", 2] and state["epoch"] is None

    # donefile.txt names each checkpoint pass's own folder (checkpoint_per_pass == save_delta_frequency once
    # made the delta folder's path land on the checkpoint's line) and each day's batch model
    donefile = [line.split("\t") for line in (tmp_path / "full" / "model" / "donefile.txt").read_text().splitlines()]
    root = tmp_path / "full" / "model"
    assert [(day, path, pass_id) for day, _, path, pass_id, _ in donefile] == [
        ("20190720", str(root / "20190720" / "2"), "2"), ("20190721", str(root / "20190721" / "0"), "-1"),
        ("20190721", str(root / "20190721" / "2"), "2"), ("20190722", str(root / "20190722" / "0"), "-1")]

    resumed = local(tmp_path / "resumed", resume_state=state)
    run(small(stream), resumed)
    resumed.close()
    done = pass_metrics(resumed, "infer/auc")
    assert sorted(done) == [3, 4, 5, 6, 7, 8]  # passes 1-2 were not run again
    expected = pass_metrics(full, "infer/auc")
    assert all(done[p] == pytest.approx(expected[p], abs=1e-6) for p in done)
    assert resumed.backend.progress == (8, 8, "passes")


def test_cancel_mid_pass_then_resume_matches_an_uninterrupted_run(stream, tmp_path):
    full = local(tmp_path / "full")
    run(small(stream), full)
    full.close()

    cut = local(tmp_path / "cut")
    log = cut.log

    def log_and_stop(metrics, step):  # stop request in the middle of pass 3 (5 steps per pass)
        log(metrics, step)
        if "train/loss" in metrics and step == 12:
            cut.request_stop()

    cut.log = log_and_stop  # type: ignore[method-assign]
    run(small(stream), cut)
    cut.close()
    state = cut.checkpoints.latest()
    assert state["state"]["progress"]["partial"]["pass_id"] == 3 and state["step"] == 12
    assert any(kind == "cancelled" for kind, _ in cut.backend.events)

    resumed = local(tmp_path / "resumed", resume_state=state)
    run(small(stream), resumed)
    resumed.close()
    for key in ("train/auc", "infer/auc", "table/rows"):
        got, want = pass_metrics(resumed, key), pass_metrics(full, key)
        assert sorted(got) == [3, 4, 5, 6, 7, 8]
        assert all(got[p] == pytest.approx(want[p], abs=1e-6) for p in got), key
    # the day-level AUCs cover the passes before the cut too (their statistics travel in the state)
    want_days = [v for _, v in full.backend.series("infer/day_auc")]
    assert [v for _, v in resumed.backend.series("infer/day_auc")] == pytest.approx(want_days, abs=1e-9)


def test_a_run_waits_for_slices_written_while_it_runs(tmp_path):
    live = tmp_path / "live"
    writer = threading.Thread(target=generate_stream, args=(live,), kwargs=dict(
        slots=[2, 3, 4, 5], days=["20190720"], split_interval=360, settings=SYNTH, live_seconds=0.4))
    cfg = CtrStreamConfig(**{**SMALL, "end_day": "20190720", "train_data_dir": str(live)})
    ctx = local(tmp_path / "run")
    phases: list[str | None] = []
    set_phase = ctx.backend.set_phase
    ctx.backend.set_phase = lambda text: (phases.append(text), set_phase(text))  # type: ignore[method-assign]
    writer.start()
    run(cfg, ctx)
    writer.join()
    ctx.close()
    assert "waiting for data: 20190720/1800" in phases
    assert len(ctx.backend.series("infer/auc")) == 4


def test_evaluate_and_dump(stream, tmp_path):
    cfg = small(stream, end_day="20190720", dump_fields=["click", "predict", "fc_0"], dump_param=["mlp.0.bias"])
    ctx = local(tmp_path)
    run(cfg, ctx)
    ctx.close()
    lines = (tmp_path / "dump" / "20190720" / "1" / "part-00000").read_text().splitlines()
    assert len(lines) == 300
    ins_id, click, predict, fc0 = lines[0].split("\t")
    assert ins_id.startswith("20190720") and click.startswith("click:1:") and fc0.startswith("fc_0:16:")
    assert (tmp_path / "dump" / "20190720" / "1" / "params.txt").read_text().startswith("mlp.0.bias:16:")
    metrics = evaluate(cfg, ctx.checkpoints.latest()["state"], str(stream / "20190721"), ctx)
    assert 0.5 < metrics["test/auc"] < 1 and metrics["test/examples"] == 1200
    # without a data path: the config's last day; for a synthetic stream only that day is generated, identically
    synthetic = CtrStreamConfig(**{**SMALL, "synthetic": SYNTH.model_dump()})
    again = evaluate(synthetic, ctx.checkpoints.latest()["state"], None, local(tmp_path / "eval"))
    assert again == pytest.approx(metrics)
    assert sorted(p.name for p in (tmp_path / "eval" / "synthetic_data").iterdir() if p.is_dir()) == ["20190721"]


def test_init_model_path_starts_from_a_saved_batch_model(stream, tmp_path):
    first = local(tmp_path / "first")
    run(small(stream, end_day="20190720"), first)
    first.close()
    batch = tmp_path / "first" / "model" / "20190721" / "0"
    saved = json.loads((batch / "meta.json").read_text())["features"]
    cfg = small(stream, start_day="20190721", end_day="20190721", init_model_path=str(batch))
    trainer = CtrTrainer(cfg, torch.device("cpu"))
    _warm_start(cfg, local(tmp_path / "probe"), trainer)
    assert trainer.table.n == saved and trainer.table.mf_n == saved  # embedx_threshold 0: every line has embedx
    dense = torch.load(batch / "dense.pt", weights_only=True)["model"]
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in dense.items())
    assert (trainer.table.unseen_days[: trainer.table.n] == 0).all()  # written before the batch model's ageing

    second = local(tmp_path / "second")
    run(cfg, second)
    second.close()
    assert second.backend.series("table/rows")[0][1] >= saved


def test_checkpoint_hooks_check_the_state_and_predict_a_file(stream, tmp_path):
    cfg = small(stream, end_day="20190720")
    ctx = local(tmp_path / "run")
    run(cfg, ctx)
    ctx.close()
    state = ctx.checkpoints.latest()["state"]
    assert check_state(cfg, state) == []
    problems = check_state(small(stream, embedx_dim=4, layer_sizes=[8]), state)
    assert any("embedx_w has width 8" in p for p in problems) and any("shape" in p for p in problems)
    files = infer(state, cfg.model_dump(mode="json"), stream / "20190721" / "0000" / "part-00000", tmp_path / "try")
    lines = files["predictions.tsv"].read_text().splitlines()
    assert lines[0] == "ins_id\tclick\tpredicted_ctr" and len(lines) == 301
    assert 0 < float(lines[1].split("\t")[2]) < 1
    assert json.loads(files["metrics.json"].read_text())["examples"] == 300


def test_an_existing_base_of_the_next_day_is_kept_and_no_batch_model_is_written(stream, tmp_path):
    cfg = small(stream, end_day="20190720")
    plain = local(tmp_path / "plain")
    run(cfg, plain)
    plain.close()
    base = tmp_path / "rerun" / "model" / "20190721" / "base"
    base.mkdir(parents=True)
    (base / "from-an-earlier-run").write_text("kept")
    rerun = local(tmp_path / "rerun")
    run(cfg, rerun)
    rerun.close()
    model = tmp_path / "rerun" / "model"
    assert not (model / "20190721" / "0").exists()  # PaddleRec writes base and batch model together or neither
    assert sorted(p.name for p in base.iterdir()) == ["from-an-earlier-run"]
    assert [line.split("\t")[3] for line in (model / "donefile.txt").read_text().splitlines()] == ["2"]
    assert not (model / "base_donefile.txt").exists()
    assert {c.kind for c in rerun.backend.checkpoints} == {"checkpoint", "delta"}
    # the table took both saves' after-save updates all the same: the stream trains as if they were written
    want, got = plain.checkpoints.latest()["state"]["table"], rerun.checkpoints.latest()["state"]["table"]
    for column in ("unseen_days", "delta_score", "keys"):
        assert torch.equal(want[column]["tensor"], got[column]["tensor"]), column


def test_a_state_written_before_the_envelope_resumes_and_evaluates(tmp_path):
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "pre_envelope" / "ctr_stream.pt"
    flat = torch.load(fixture, weights_only=True)  # main's layout: format ctr_stream/1, step, config at the top
    assert flat["progress"]["last_done"] == ["20190720", 2]
    cfg = CtrStreamConfig(**{**flat["config"], "end_day": "20190721"})
    assert check_state(cfg, load_checkpoint_file(fixture)["state"]) == []
    resumed = local(tmp_path, resume_state=flat)
    run(cfg, resumed)
    resumed.close()
    assert sorted(pass_metrics(resumed, "infer/auc")) == [3, 4]  # only the second day's two passes
    assert resumed.checkpoints.latest()["step"] > flat["step"] == 4
    metrics = evaluate(cfg, load_checkpoint_file(fixture)["state"], None, local(tmp_path / "eval"))
    assert metrics["test/examples"] == 200
