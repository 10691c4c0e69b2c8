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


# --- metric exports and file routes ------------------------------------------------------------------------------

import csv
import hashlib
import http.client
import io
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _store():  # type: ignore[no-untyped-def]
    from workbench.settings import get_settings
    from workbench.store import get_engine

    return get_engine(get_settings().database_url)


def _run_with_points(points_per_key: dict[str, int]) -> str:
    """A run with this many points per key (out-of-order walls, repeated steps: the export must keep them all)."""
    from workbench.store import metrics as metric_store
    from workbench.store import runs as run_store
    from workbench.store.models import RunCreate

    eng = _store()
    config = api.to_dict(api.validate_dict({"task": "linreg"}))
    run = run_store.create_run(eng, run_in=RunCreate(task="linreg", name="export", config=config, monitor_key="valid/loss", monitor_mode="min"))
    for key, n in points_per_key.items():
        for start in range(0, n, 50_000):
            batch = [(key, step // 2, step * 0.1 + 1 / 3, 1_700_000_000.0 - step) for step in range(start, min(n, start + 50_000))]
            metric_store.write_metrics(eng, run_id=run.id, points=batch)
    return run.id


def _store_counts(run_id: str) -> dict[str, int]:
    from sqlalchemy import text

    with _store().connect() as conn:
        rows = conn.execute(text("SELECT key, COUNT(*) FROM metric WHERE run_id = :r GROUP BY key"), {"r": run_id}).all()
    return dict(rows)


def test_export_writes_every_stored_point(home, tmp_path):
    import pyarrow.parquet as pq

    run_id = _run_with_points({"train/loss": 120_000, "valid/loss": 3_000, "valid/auc": 7})  # crosses 50k-row chunks
    counts = _store_counts(run_id)
    assert counts == {"train/loss": 120_000, "valid/loss": 3_000, "valid/auc": 7}

    n = api.export_metrics(run_id, tmp_path / "all.csv", fmt="csv")
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run_id", "key", "step", "value", "wall"]
    assert n == len(rows) - 1 == sum(counts.values())
    assert Counter(r[1] for r in rows[1:]) == counts
    first_valid = next(r for r in rows if r[1] == "valid/auc")
    assert first_valid == [run_id, "valid/auc", "0", repr(1 / 3), repr(1_700_000_000.0)]  # exact values, raw steps

    n = api.export_metrics(run_id, tmp_path / "valid.parquet", fmt="parquet", keys="valid/*")
    table = pq.read_table(tmp_path / "valid.parquet").to_pandas()
    assert n == len(table) == counts["valid/loss"] + counts["valid/auc"]
    assert table.groupby("key").size().to_dict() == {"valid/auc": 7, "valid/loss": 3_000}
    assert table["step"].is_monotonic_increasing or list(table.key.unique()) == ["valid/auc", "valid/loss"]
    assert not list(tmp_path.glob("*.part"))

    with pytest.raises(ValueError, match=r"no metric key of run .* matches 'test/\*'; its keys: train/loss, valid/auc, valid/loss"):
        api.export_metrics(run_id, tmp_path / "none.csv", keys="test/*")
    assert not (tmp_path / "none.csv").exists()


def test_export_memory_stays_flat(home, tmp_path):
    """Chunks of 20k rows: exporting 400k points holds a small part of what the whole run as rows would take."""
    import pyarrow.parquet  # noqa: F401  (its import allocates ~30 MB once; that is not the export's memory)

    run_id = _run_with_points({"train/loss": 400_000})
    for fmt in api.EXPORT_FORMATS:
        tracemalloc.start()
        try:
            assert api.export_metrics(run_id, tmp_path / f"m.{fmt}", fmt=fmt) == 400_000
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # 400k rows as Python objects take ~100 MB; two 20k-row chunks and their Arrow arrays ~12 MB (measured)
        assert peak < 30 * MB, f"{fmt}: peak {peak / MB:.0f} MB"


def test_cli_export_writes_to_the_current_folder(home, tmp_path):
    run_id = _run_with_points({"train/loss": 500, "valid/loss": 20})
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "export", run_id[:10], "--keys", "valid/*"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote 20 points of run {run_id} to {run_id}-metrics.csv"
    assert len((tmp_path / f"{run_id}-metrics.csv").read_text().splitlines()) == 21
    bad = subprocess.run([sys.executable, "-m", "workbench.cli", "export", run_id, "--format", "xlsx"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--format 'xlsx': use one of csv, parquet" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ui_server(home, tmp_path):
    """`workbench ui` as a subprocess: (port, process)."""
    port = _free_port()
    log = open(tmp_path / "ui.log", "wb")  # a file, not a pipe: an unread pipe fills and blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ui", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "WORKBENCH_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def healthy() -> bool:
        try:
            return _get(port, "/_stcore/health")[2] == b"ok"
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=60, what="the UI server to answer /_stcore/health")
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _add_checkpoint(run_id: str, path: str, size: int) -> int:
    from workbench.store import checkpoints as ckpt_store
    from workbench.store.models import CheckpointCreate

    checkpoint_in = CheckpointCreate(path=path, kind="checkpoint", step=1, size_bytes=size, sha256="", created_at=time.time())
    return ckpt_store.add_checkpoint(_store(), run_id=run_id, checkpoint_in=checkpoint_in)


@dataclass
class Streamed:
    headers: dict[str, str]
    received: int
    rss_before: float  # MB
    rss_peak: float  # MB
    first_byte_s: float
    total_s: float

    @property
    def growth(self) -> float:
        return self.rss_peak - self.rss_before


def _stream(port: int, url: str, server_pid: int, sink) -> Streamed:  # type: ignore[no-untyped-def]
    """GET `url` in 1 MB reads into `sink(block)`, sampling the server's RSS every 10 ms from before the request
    until the last byte."""
    server = psutil.Process(server_pid)
    before = peak = server.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        first_byte_s = time.perf_counter() - started
        assert resp.status == 200, resp.read()
        while block := resp.read(MB):
            sink(block)
            received += len(block)
    finally:
        conn.close()
        done.set()
        sampler.join()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return Streamed(headers, received, before / MB, peak / MB, first_byte_s, time.perf_counter() - started)


def test_checkpoint_and_bundle_stream_from_disk_with_range_and_flat_memory(home, ui_server, tmp_path):
    """A 236 MB checkpoint (the Spleeter one that grew the server from 228 MB to ~1 GB through st.download_button)
    downloads in full, alone and in the run's bundle, while the server's RSS grows by less than 64 MB; a Range
    request gets exactly its bytes."""
    port, proc = ui_server
    run_id = _run_with_points({"train/loss": 10})
    folder = home / "runs" / run_id / "checkpoints"
    folder.mkdir(parents=True)
    digest, size = hashlib.sha256(), 236 * MB
    with open(folder / "spleeter.pt", "wb") as f:
        for _ in range(size // MB):
            block = os.urandom(MB)
            digest.update(block)
            f.write(block)
    ckpt_id = _add_checkpoint(run_id, "checkpoints/spleeter.pt", size)
    url = f"/files/runs/{run_id}/checkpoints/{ckpt_id}"

    status, headers, body = _get(port, url, {"Range": "bytes=1000000-1000999"})
    assert status == 206 and headers["content-range"] == f"bytes 1000000-1000999/{size}" and len(body) == 1000
    with open(folder / "spleeter.pt", "rb") as f:
        f.seek(1_000_000)
        assert body == f.read(1000)

    got = hashlib.sha256()
    one = _stream(port, url, proc.pid, got.update)
    print(f"\ncheckpoint: server RSS {one.rss_before:.0f} MB before, {one.rss_peak:.0f} MB at peak (+{one.growth:.1f} MB) "
          f"streaming {size / MB:.0f} MB; first byte after {one.first_byte_s:.3f} s, all in {one.total_s:.1f} s")  # fmt: skip
    assert one.headers["content-length"] == str(size) and one.headers["accept-ranges"] == "bytes"
    assert one.headers["content-disposition"] == f'attachment; filename="{run_id}-spleeter.pt"'
    assert one.received == size and got.hexdigest() == digest.hexdigest()
    assert one.growth < 64, f"the server grew by {one.growth:.0f} MB while streaming a {size / MB:.0f} MB checkpoint"

    with open(tmp_path / "bundle.zip", "wb") as f:
        bundle = _stream(port, f"/files/runs/{run_id}/bundle.zip", proc.pid, f.write)
    print(f"bundle: server RSS {bundle.rss_before:.0f} MB before, {bundle.rss_peak:.0f} MB at peak (+{bundle.growth:.1f} MB) "
          f"zipping and streaming {bundle.received / MB:.0f} MB; first byte after {bundle.first_byte_s:.1f} s, all in {bundle.total_s:.1f} s")  # fmt: skip
    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf, zf.open(f"{run_id}/checkpoints/spleeter.pt") as member:
        inside = hashlib.sha256()
        while block := member.read(MB):
            inside.update(block)
    assert inside.hexdigest() == digest.hexdigest()
    assert bundle.growth < 64, f"the server grew by {bundle.growth:.0f} MB while zipping and streaming a bundle"


def test_routes_answer_missing_refused_and_generated_files(home, ui_server):
    port, _ = ui_server
    run_id = _run_with_points({"train/loss": 1_000, "valid/loss": 10})
    folder = home / "runs" / run_id
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "train.log").write_text("epoch 1 done\n")
    (folder / "config.yaml").write_text("task: linreg\n")
    (folder / "checkpoints" / "gone.pt").write_bytes(b"x")
    gone = _add_checkpoint(run_id, "checkpoints/gone.pt", 1)
    (folder / "checkpoints" / "gone.pt").unlink()  # retention removed it after the page listed it
    outside = _add_checkpoint(run_id, "../../workbench.db", 1)
    (folder / "base").mkdir()
    (folder / "base" / "table.bin").write_bytes(b"\x01" * 5000)
    base = _add_checkpoint(run_id, "base", 5000)

    status, _, body = _get(port, f"/files/runs/{run_id}/checkpoints/{gone}")
    assert status == 404 and body.decode() == f"Not found: checkpoints/gone.pt is no longer in run {run_id} (deleted by retention?)\n"
    status, _, body = _get(port, f"/files/runs/{run_id}/checkpoints/99999")
    assert status == 404 and body.decode() == f"Not found: run {run_id} has no checkpoint #99999\n"
    status, _, body = _get(port, "/files/runs/no-such-run/bundle.zip")
    assert status == 404 and body.decode() == "Not found: no run 'no-such-run'\n"
    status, _, body = _get(port, f"/files/runs/{run_id}/checkpoints/{outside}")
    assert status == 403 and body.startswith(b"Refused: refusing to serve '../../workbench.db'")

    status, headers, body = _get(port, f"/files/runs/{run_id}/checkpoints/{base}")  # a CTR folder output: a zip
    assert status == 200 and headers["content-disposition"] == f'attachment; filename="{run_id}-base.zip"'
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.read("base/table.bin") == b"\x01" * 5000

    status, headers, body = _get(port, f"/files/runs/{run_id}/metrics.csv?keys=valid/*")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"] == f'attachment; filename="{run_id}-metrics.csv"'
    assert len(body.decode().splitlines()) == 1 + 10
    status, _, body = _get(port, f"/files/runs/{run_id}/metrics.parquet")
    import pyarrow.parquet as pq

    assert status == 200 and pq.read_table(io.BytesIO(body)).num_rows == 1_010
    status, _, body = _get(port, f"/files/runs/{run_id}/metrics.xlsx")
    assert status == 400 and body.decode() == "Bad request: unknown export format 'xlsx'; use one of: csv, parquet\n"

    status, _, body = _get(port, f"/files/runs/{run_id}/bundle.zip")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert set(zf.namelist()) == {f"{run_id}/config.yaml", f"{run_id}/metrics.csv", f"{run_id}/train.log"}
        assert len(zf.read(f"{run_id}/metrics.csv").decode().splitlines()) == 1 + 1_010
    (folder / "inference" / "ckpt1-song").mkdir(parents=True)
    (folder / "inference" / "ckpt1-song" / "vocals.wav").write_bytes(b"RIFF" + b"\0" * 100)
    status, headers, body = _get(port, f"/files/runs/{run_id}/inference/ckpt1-song/vocals.wav")
    assert status == 200 and body == b"RIFF" + b"\0" * 100
    assert headers["content-disposition"] == 'attachment; filename="vocals.wav"'
    status, _, body = _get(port, f"/files/runs/{run_id}/inference/ckpt1-song/missing.wav")
    assert status == 404 and body.decode() == f"Not found: inference/ckpt1-song/missing.wav is no longer in run {run_id} (deleted by retention?)\n"
    for escape in ("../../../workbench.db", "..%2F..%2F..%2Fworkbench.db"):
        status, _, body = _get(port, f"/files/runs/{run_id}/inference/{escape}")
        assert status in (400, 403), body[:200]  # Streamlit's path middleware answers 400 before the download guard

    # the zips and exports made for these requests are deleted once sent
    wait_for(lambda: not any((home / "tmp").iterdir()), timeout=30, what="the temporary download files to go")


def test_export_button_links_to_both_formats(home):
    """The helper the Dashboard shows: links to the export route, never the bytes."""
    from streamlit.testing.v1 import AppTest

    def script(run_id: str) -> None:
        from workbench.ui.downloads import export_button

        export_button(run_id)

    run_id = _run_with_points({"train/loss": 5})
    at = AppTest.from_function(script, args=(run_id,), default_timeout=30).run()
    assert not at.exception, at.exception
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    assert links == {"Export metrics (CSV)": f"/files/runs/{run_id}/metrics.csv", "Export metrics (Parquet)": f"/files/runs/{run_id}/metrics.parquet"}


def test_try_it_outputs_link_to_the_inference_route(home):
    """The Try-it preview's outputs are links to their file route, not bytes held by the session."""
    from streamlit.testing.v1 import AppTest

    from workbench.store import runs as run_store
    from workbench.store.models import RunCreate

    def script(run_id: str) -> None:
        from workbench import api
        from workbench.ui.checkpoints import try_it_section

        def fake_infer(run_id: str, checkpoint_id: int, input_path: str) -> dict:  # the model's part is tested elsewhere
            out = api.run_dir(run_id) / "inference" / f"ckpt{checkpoint_id}-song"
            out.mkdir(parents=True, exist_ok=True)
            (out / "vocals.wav").write_bytes(b"RIFF")
            (out / "summary.json").write_text("{}")
            return {"vocals.wav": out / "vocals.wav", "summary.json": out / "summary.json"}

        api.infer = fake_infer
        run = api.get_run(run_id)
        try_it_section(run, api.CheckpointRead(id=7, run_id=run.id, path="checkpoints/x.pt", kind="checkpoint", step=1,
                                               metrics={}, size_bytes=1, sha256="", created_at=0.0))  # fmt: skip

    config = api.to_dict(api.validate_dict({"task": "spleeter"}))
    run = run_store.create_run(_store(), run_in=RunCreate(task="spleeter", name="sep", config=config, monitor_key="valid/loss", monitor_mode="min"))
    song = home / "song.wav"
    song.write_bytes(b"RIFF")
    at = AppTest.from_function(script, args=(run.id,), default_timeout=30).run()
    at.text_input(key=f"infer_path_{run.id}").input(str(song))
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception, at.exception
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    assert links == {
        "Download vocals.wav": f"/files/runs/{run.id}/inference/ckpt7-song/vocals.wav",
        "Download summary.json": f"/files/runs/{run.id}/inference/ckpt7-song/summary.json",
    }
    assert not at.get("download_button")
