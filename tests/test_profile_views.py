"""A profiled run through the real launcher: `workbench show --json`, the trace download and the Dashboard section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from starlette.requests import Request
from streamlit.testing.v1 import AppTest

from tests.support.waiting import wait_status
from workbench import api
from workbench.ui import files

ROOT = Path(__file__).resolve().parents[1]


def _profiled_run(**settings) -> api.RunRead:
    cfg = api.validate_dict({"task": "linreg", "epochs": 1, "steps_per_epoch": 8, "train_batch_size": 8,
                             "profiling": True, "profiling_wait": 1, "profiling_warmup": 1, "profiling_active": 3,
                             **settings})
    run = api.launch_run(cfg, name="profiled")
    done = wait_status(run.id, ("completed", "failed"))
    assert done.status == "completed", api.log_tail(run.id)
    return done


def test_show_json_download_and_dashboard_section(home):
    run = _profiled_run()
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "show", run.id, "--json"], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    profile = json.loads(out.stdout)["profile"]
    assert profile["recorded_steps"] == 3 and profile["steps"] == [3, 5]
    assert any(row["name"] == "aten::addmm" or row["name"].startswith("aten::") for row in profile["ops"])
    assert set(profile["phase_share"]) == {"data", "forward", "backward", "optimizer", "other"}
    assert profile["trace_in_run_dir"] is True
    text = subprocess.run([sys.executable, "-m", "workbench.cli", "show", run.id], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert text.returncode == 0 and "profile: 3 steps" in text.stdout and "forward" in text.stdout, text.stdout

    download = api.profile_trace_download(run.id[:8])
    assert download.name == f"{run.id}-trace.json" and not download.temporary
    assert json.loads(download.path.read_text())["traceEvents"]
    route = next(r for r in files.routes() if r.path.endswith("/profile/trace.json"))
    response = route.endpoint(Request({"type": "http", "path_params": {"run_id": run.id}}))
    assert response.status_code == 200 and Path(response.path) == download.path  # streamed from disk
    missing = route.endpoint(Request({"type": "http", "path_params": {"run_id": "no-such-run"}}))
    assert missing.status_code == 404

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["selected_run"] = run.id
    at.run()
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception, at.exception
    assert any(h.value == "profile" for h in at.subheader)
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    assert links[next(k for k in links if k.startswith("Download the Chrome trace"))] == \
        f"/files/runs/{run.id}/profile/trace.json"
    shown = [frame.value for frame in at.dataframe]
    assert any("phase" in f.columns and set(f["phase"]) >= {"forward", "backward"} for f in shown)
    assert any("self_cpu_ms" in f.columns and len(f) > 0 for f in shown)


def test_unprofiled_run_has_no_profile_and_a_dump_path_trace_is_not_served(home, tmp_path):
    plain = api.validate_dict({"task": "linreg", "epochs": 1, "steps_per_epoch": 2, "train_batch_size": 4})
    run = wait_status(api.launch_run(plain).id, ("completed", "failed"))
    assert api.profile_summary(run.id) is None

    elsewhere = _profiled_run(profiling_dump_path=str(tmp_path / "dump"))
    summary = api.profile_summary(elsewhere.id)
    assert summary["trace"] == str((tmp_path / "dump" / elsewhere.id / "trace.json").resolve())
    assert summary["trace_in_run_dir"] is False
    try:
        api.profile_trace_download(elsewhere.id)
    except FileNotFoundError as exc:
        assert "profiling_dump_path" in str(exc) and str(tmp_path / "dump") in str(exc)
    else:
        raise AssertionError("a trace outside the run folder was offered for download")
