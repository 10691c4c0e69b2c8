"""`profiling: true` in every task: a trace that loads as JSON, and a summary with operator names and phase shares.

Tiny runs (a few steps on generated data) through each task's real loop; the summary's numbers are measured, so
the tests check their shape and consistency, never a timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench.config.io import parse_config
from workbench.runner.context import RunContext
from workbench.tasks import profiling
from workbench.tasks.profiling import NO_PROFILER, PHASES, StepProfiler, read_summary, step_profiler

PROFILE = {"profiling": True, "profiling_wait": 1, "profiling_warmup": 1, "profiling_active": 2}


@pytest.fixture(autouse=True)
def _home(monkeypatch, tmp_path):
    from workbench.settings import reset_settings

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))  # the recommendation data cache goes there
    reset_settings()
    yield
    reset_settings()


def _check(run_dir: Path, ctx: RunContext, *, phases: set[str]) -> dict:
    summary = read_summary(run_dir)
    assert summary is not None and "error" not in summary, summary
    assert summary["recorded_steps"] == 2 and summary["steps"] == [3, 4]
    trace = json.loads(Path(summary["trace"]).read_text())  # chrome://tracing's format
    assert trace["traceEvents"], "an empty trace"
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert {f"workbench/{p}" for p in phases} <= names
    ops = [row["name"] for row in summary["ops"]]
    assert ops and any(name.startswith("aten::") for name in ops), ops
    assert all(not name.startswith(("workbench/", "ProfilerStep")) for name in ops)
    assert set(summary["phase_share"]) == phases | {"other"}
    assert sum(summary["phase_share"].values()) == pytest.approx(1.0, abs=0.02)
    assert all(0 <= v <= 1.0 for v in summary["phase_share"].values())
    assert summary["step_ms"] > 0
    assert any(kind == "profile" for kind, _ in ctx.backend.events)
    return summary


def test_recommendation_profiled_and_steps_per_epoch_caps_each_epoch(tmp_path):
    from workbench.tasks.recommendation.train import run

    cfg = parse_config({"task": "recommendation", "epochs": 2, "batch_size": 64, "embed_dim": 16, "maxlen": 10,
                        "steps_per_epoch": 3, "valid_metric": "Recall@20", "print_freq": 1,
                        "data": {"min_item_count": 1, "synthetic": {"n_items": 60, "n_sessions": 400, "n_topics": 4}},
                        **PROFILE})
    assert cfg.embedding_size == 16 and cfg.data.maxlen == 10
    ctx = RunContext.local(tmp_path / "run", monitor=(cfg.monitor_key, "max"))
    run(cfg, ctx)
    ctx.close()
    steps = [s for s, _ in ctx.backend.series("train/loss")]
    assert steps == [1, 2, 3, 4, 5, 6]  # 3 steps an epoch, though 400 sessions give far more batches of 64
    assert [s for s, _ in ctx.backend.series("train/epoch")] == [3, 6]
    _check(tmp_path / "run", ctx, phases=set(PHASES))


def test_spleeter_profiled(tmp_path):
    from workbench.tasks.spleeter import MONITOR
    from workbench.tasks.spleeter.config import SpleeterConfig
    from workbench.tasks.spleeter.train import run

    cfg = SpleeterConfig(train_manifest="", synthetic={"songs": 2, "valid_songs": 1, "duration": 4.0},
                         sample_rate=8000, frame_length=256, frame_step=64, F=64, T=64, chunk_duration=2.5,
                         n_chunks_per_song=2, batch_size=1, num_workers=0, epochs=2, lr=1e-3, mode="process_data",
                         cache_dir=str(tmp_path / "cache"), valid_max_duration=2.0, **PROFILE)
    ctx = RunContext.local(tmp_path / "run", monitor=MONITOR)
    run(cfg, ctx)
    ctx.close()
    summary = _check(tmp_path / "run", ctx, phases=set(PHASES))
    assert any("convolution" in row["name"] for row in summary["ops"])  # the U-Net is where the time goes


def test_ctr_stream_profiled_into_profiling_dump_path(tmp_path):
    from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream
    from workbench.tasks.ctr_stream.synth import generate_stream
    from workbench.tasks.ctr_stream.train import run

    stream = tmp_path / "stream"
    generate_stream(stream, slots=[2, 3], days=["20190720"], split_interval=720,
                    settings=SyntheticStream(examples_per_slice=200, vocab_size=100))
    cfg = CtrStreamConfig(start_day="20190720", end_day="20190720", split_interval=720, split_per_pass=1,
                          slot_num=2, layer_sizes=[8], train_batch_size=64, train_thread_num=1,
                          train_data_dir=str(stream), profiling_dump_path=str(tmp_path / "dump"), **PROFILE)
    ctx = RunContext.local(tmp_path / "run", monitor=("infer/auc", "max"), run_id="ctr-run")
    run(cfg, ctx)
    ctx.close()
    summary = _check(tmp_path / "run", ctx, phases={"forward", "backward", "optimizer"})
    assert Path(summary["trace"]) == (tmp_path / "dump" / "ctr-run" / "trace.json").resolve()
    assert (tmp_path / "dump" / "ctr-run" / "summary.json").is_file()
    assert not (tmp_path / "run" / "profile" / "trace.json").exists()


def test_a_run_shorter_than_the_window_says_so(tmp_path):
    ctx = RunContext.local(tmp_path / "run")
    cfg = parse_config({"task": "recommendation", **PROFILE, "profiling_wait": 5})
    profiler = step_profiler(cfg, ctx, torch.device("cpu"))
    assert isinstance(profiler, StepProfiler)
    for _ in range(2):
        with profiler.phase("forward"):
            torch.ones(3).sum()
        profiler.step()
    profiler.close()
    summary = read_summary(tmp_path / "run")
    assert summary is not None and "nothing was recorded" in summary["error"]
    assert any(kind == "profile" and "no profile" in message for kind, message in ctx.backend.events)


def test_profiling_off_builds_nothing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a profiler was built with profiling off")

    monkeypatch.setattr(torch.profiler, "profile", refuse)
    monkeypatch.setattr(torch.profiler, "record_function", refuse)
    ctx = RunContext.local(tmp_path / "run")
    profiler = step_profiler(parse_config({"task": "recommendation"}), ctx, torch.device("cpu"))
    assert profiler is NO_PROFILER
    loader = [1, 2]
    assert profiler.batches(loader) is loader
    with profiler.phase("forward"):
        pass
    profiler.mark("backward")
    profiler.step()
    profiler.close()
    assert read_summary(tmp_path / "run") is None
    assert not (tmp_path / "run" / profiling.RUN_SUBDIR).exists()
