"""The real CLI end to end, on SQLite and PostgreSQL: quick presets train, list/show/eval/validate answer, exit codes
mean something."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.both_backends]


def wb(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def _show(run_id: str, home: Path) -> dict:
    out = wb("show", run_id, "--json", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_recommendation_quick_beats_popularity_and_eval_reproduces_test(home):
    stamp = wb("run", "configs/recommendation/quick.yaml", "--wait", "--name", "stamp-quick", home=home)
    assert stamp.returncode == 0, stamp.stdout[-3000:] + stamp.stderr[-3000:]
    assert "completed" in stamp.stdout
    pop = wb("run", "configs/recommendation/quick.yaml", "--set", "model=Pop", "--wait", "--name", "pop", home=home)
    assert pop.returncode == 0, pop.stdout[-3000:] + pop.stderr[-3000:]

    runs = json.loads(wb("list", "--json", home=home).stdout)
    by_name = {r["name"]: r for r in runs}
    assert set(by_name) == {"stamp-quick", "pop"} and all(r["status"] == "completed" for r in runs)
    stamp_run, pop_run = _show(by_name["stamp-quick"]["id"], home), _show(by_name["pop"]["id"], home)
    stamp_recall = stamp_run["metrics"]["test/recall@20"]["last"]
    pop_recall = pop_run["metrics"]["test/recall@20"]["last"]
    assert stamp_recall > pop_recall + 0.05, (stamp_recall, pop_recall)
    assert any(c["kind"] == "checkpoint" for c in stamp_run["checkpoints"])

    # evaluating the best checkpoint on the test split reproduces the test metrics the run logged
    ev = wb("eval", stamp_run["id"], "--json", home=home)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)["metrics"]
    for key in ("test/recall@20", "test/mrr@20"):
        assert result[key] == pytest.approx(stamp_run["metrics"][key]["last"], abs=1e-6)


def test_validate_reports_field_errors_with_exit_code(home, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: recommendation\nlearning_rate: -3\nloss_type: CE\ntrain_neg_sample_args: {sample_num: 2}\nnot_a_setting: 1\n")
    out = wb("validate", str(bad), home=home)
    assert out.returncode == 2
    for expected in ("learning_rate (line 2)", "not_a_setting (line 5)", "unknown setting"):
        assert expected in out.stderr, out.stderr
    ok = wb("validate", "configs/recommendation/default.yaml", home=home)
    assert ok.returncode == 0 and "valid recommendation config" in ok.stdout


def test_failed_run_exits_nonzero_with_the_file_in_the_error(home, tmp_path):
    missing = tmp_path / "nope" / "sessions.inter"
    out = wb("run", "configs/recommendation/quick.yaml", "--set", "data.source=atomic", "--set", f"data.path={missing}", "--wait", home=home)
    assert out.returncode == 1
    assert "failed" in out.stdout and str(missing) in out.stderr + out.stdout


def test_config_prints_commented_defaults(home):
    out = wb("config", "recommendation", home=home)
    assert out.returncode == 0 and "# The number of training epochs." in out.stdout and "task: recommendation" in out.stdout


def test_spleeter_quick_beats_the_mixture_and_separates_a_song(home, tmp_path):
    out = wb("run", "configs/spleeter/quick.yaml", "--wait", "--name", "spl-quick", home=home, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run,) = json.loads(wb("list", "--json", home=home).stdout)
    shown = _show(run["id"], home)
    metrics = {k: v["last"] for k, v in shown["metrics"].items()}
    assert metrics["valid/si_sdr_vocals"] > metrics["valid/si_sdr_vocals_mixture"] + 1.0, metrics
    assert run["owner"] == getpass.getuser()  # `trainer` (default: the user running the workbench) is the owner

    songs = tmp_path / "songs"
    gen = wb("data", "synth-songs", str(songs), "--songs", "1", "--duration", "4", "--sample-rate", "8000", "--seed", "9", home=home)
    assert gen.returncode == 0, gen.stderr
    mixture = next(songs.rglob("mixture.wav"))

    from workbench import api  # the `home` fixture points this process at the same store

    best = next(c for c in api.checkpoints(run["id"]) if c.is_best)
    files = api.infer(run["id"], best.id, mixture)
    assert {"mixture.wav", "vocals.wav", "accompaniment.wav", "vocals.png"} <= set(files)
    assert all(p.stat().st_size > 1000 for p in files.values())


def test_list_prints_readable_rows(home):
    """Local times to the minute, durations like 1m05s, `-` where a value is missing: no nanoseconds, no NaN."""
    import re
    import time

    from workbench import api
    from workbench.settings import get_settings
    from workbench.store import get_engine
    from workbench.store import metrics as metric_store
    from workbench.store import runs as run_store

    eng = get_engine(get_settings().database_url)
    config = api.to_dict(api.validate_dict({"task": "linreg"}))
    from workbench.store.models import RunCreate, RunStatus, RunUpdate

    def create(name: str, tags: list[str]) -> api.RunRead:
        run_in = RunCreate(task="linreg", name=name, config=config, monitor_key="valid/loss", monitor_mode="min", tags=tags)
        return run_store.create_run(eng, run_in=run_in)

    waiting, done = create("waiting", []), create("done", ["a", "b"])
    start = time.time() - 600
    run_store.transition(eng, run_id=done.id, to=RunStatus.STARTING)
    run_store.transition(eng, run_id=done.id, to=RunStatus.RUNNING, run_in=RunUpdate(started_at=start))
    run_store.transition(eng, run_id=done.id, to=RunStatus.COMPLETED, run_in=RunUpdate(ended_at=start + 65.4))
    metric_store.write_metrics(eng, run_id=done.id, points=[("valid/loss", 1, 0.5, start), ("valid/loss", 2, 0.123456, start + 60)])

    out = wb("list", home=home)
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    assert header.split() == ["id", "name", "task", "kind", "status", "started", "duration", "best", "metric", "tags", "owner", "attempt"]
    rows = {line.split()[1]: line for line in lines}
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(start))
    assert re.search(rf"done\s+linreg\s+train\s+completed\s+{started}\s+1m05s\s+0\.1235\s+valid/loss\s+a, b\s", rows["done"])
    assert re.search(r"waiting\s+linreg\s+train\s+queued\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+-\s+-\s+valid/loss\s+-\s", rows["waiting"])
    assert "NaN" not in out.stdout and "None" not in out.stdout and not re.search(r"\d\d:\d\d:\d\d", out.stdout)
    assert json.loads(wb("list", "--json", home=home).stdout)[0]["id"] in {waiting.id, done.id}  # --json unchanged
