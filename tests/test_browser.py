"""Real browser: Debian Chromium driven by Playwright against `workbench ui`.

Fills the New run form, launches the quick recommendation preset, watches the chart update live, then downloads
a checkpoint from the Checkpoints page and loads it with torch.load(weights_only=True).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(home, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (the README's test command does)")
    port = _free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    log = open(tmp_path / "streamlit.log", "wb")  # a file, not a pipe: an unread pipe fills and blocks the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "ui", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy in 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _live(page):  # type: ignore[no-untyped-def]
    """The Dashboard's live view (charts, log tail, events): a same-origin iframe with the charts' titles and captions."""
    return page.frame_locator('iframe[title*="workbench_live"]')


def _points_caption(page) -> str:  # type: ignore[no-untyped-def]
    return " | ".join(_live(page).locator(".caption").all_inner_texts())


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until Streamlit finished the rerun (its 'running' widget is gone) so stale elements are removed."""
    page.wait_for_timeout(300)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=30_000)
    page.wait_for_timeout(300)


def test_form_launch_live_chart_and_checkpoint_download(server, tmp_path):
    import torch
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(30_000)
        page.goto(server)
        expect(page.get_by_role("heading", name="New run")).to_be_visible()

        # task and preset
        page.get_by_role("combobox", name="Preset").click()
        page.get_by_role("option", name="quick").click()
        page.get_by_role("button", name="Load preset").click()
        expect(page.get_by_text("Form loaded from: preset quick")).to_be_visible()
        _settle(page)
        expect(page.get_by_label("Run name")).to_have_count(1)  # the previous form's elements are gone
        page.get_by_label("Run name").fill("browser-quick")
        page.get_by_text("Training settings (common to every task)").click()
        lr = page.get_by_role("textbox", name="learning_rate", exact=True)
        lr.fill("0.003")
        # enough epochs that the run is still training when its first chart is drawn (6 can end before that)
        epochs = page.get_by_role("spinbutton", name="epochs", exact=True)
        epochs.fill("30")
        epochs.press("Tab")
        page.get_by_role("button", name="Launch").click()

        # dashboard: status, then a chart whose point count grows while the run trains
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible(timeout=30_000)
        expect(_live(page).locator(".chart-box canvas").first).to_be_visible(timeout=90_000)
        loss = _live(page).locator(".chart-box").filter(has=_live(page).get_by_text("train/loss", exact=True))
        loss.scroll_into_view_if_needed()  # charts are built and drawn when on screen
        expect(loss.locator(".caption")).to_have_text(re.compile(r"^[\d,]+ of [\d,]+ points"), timeout=30_000)
        first = _points_caption(page)
        deadline = time.time() + 120
        while _points_caption(page) == first and time.time() < deadline:
            page.wait_for_timeout(500)
        assert _points_caption(page) != first, "the chart did not update while the run trained"
        expect(_live(page).locator("#log")).to_contain_text("epoch", timeout=30_000)  # the log tail follows too
        try:
            expect(page.get_by_test_id("stMetricValue").filter(has_text="completed").first).to_be_visible(timeout=180_000)  # a rerun briefly shows the old and the new status
            expect(_live(page).locator("#results td").filter(has_text="test/recall@20")).to_have_count(1)  # the test metrics' table
        finally:
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # checkpoints: download the best one and load it safely
        page.get_by_role("link", name="Checkpoints").click()
        expect(page.get_by_role("heading", name="Checkpoints")).to_be_visible()
        _settle(page)
        page.screenshot(path=str(tmp_path / "checkpoints.png"), full_page=True)
        with page.expect_download() as dl:
            # a link to the file route (streamed from disk), not a download button holding the bytes
            page.get_by_role("link", name=re.compile(r"^Download .*\.pt ")).click(timeout=60_000)
        target = tmp_path / "ckpt.pt"
        dl.value.save_as(target)
        state = torch.load(target, weights_only=True)
        assert state["format"] == "workbench.checkpoint/1" and "model" in state["state"] and state["step"] > 0
        browser.close()
    from workbench import api

    (run,) = api.list_runs()
    assert run.name == "browser-quick" and run.config["learning_rate"] == 0.003 and run.config["epochs"] == 30 and run.status == "completed"


def test_compare_two_runs_and_download_a_bundle(server, tmp_path):
    import io
    import zipfile

    from playwright.sync_api import expect, sync_playwright

    from tests.support.waiting import wait_status
    from workbench import api

    runs = []
    for lr in (0.05, 0.01):
        cfg = api.validate_dict({"task": "linreg", "epochs": 2, "train_batch_size": 8, "learning_rate": lr})
        runs.append(wait_status(api.launch_run(cfg, name=f"lr-{lr}").id, ("completed",)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(30_000)
        page.goto(f"{server}/compare")  # a deep link as the server's first request still gets app.py's navigation
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
        expect(page.get_by_role("link", name="New run")).to_be_visible()
        for run in runs:
            page.get_by_role("combobox", name="Runs").click()
            page.get_by_role("option", name=re.compile(run.id)).click()
            _settle(page)
        page.keyboard.press("Escape")
        expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(3, timeout=30_000)  # train/loss, train/lr, valid/loss
        page.get_by_role("tab", name="Config diff").click()
        expect(page.get_by_text("learning_rate", exact=True).first).to_be_attached()  # a canvas grid: text in a11y cells
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        page.get_by_role("link", name="Checkpoints").click()
        expect(page.get_by_role("heading", name="Checkpoints")).to_be_visible()
        _settle(page)
        with page.expect_download() as dl:
            page.get_by_role("link", name="Download run bundle (zip)").click(timeout=60_000)
        target = tmp_path / "bundle.zip"
        dl.value.save_as(target)
        browser.close()
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as zf:
        names = zf.namelist()
    shown = next(n.split("/")[0] for n in names)
    assert shown in {r.id for r in runs}
    assert {f"{shown}/config.yaml", f"{shown}/metrics.csv", f"{shown}/train.log"} <= set(names)
    assert any(n.endswith(".pt") for n in names)


# Per chart of the live view, in page order: [title, on screen, built, last step it holds, last step Vega has drawn].
_DRAWN_JS = """() => [...charts.values()].map((c) => [c.def.id, c.visible, c.view !== null,
  Math.max(...[...c.series.values()].map((s) => s.lastStep)),
  c.view ? Math.max(...c.view.data("points").map((r) => r.step)) : -Infinity])"""


def _off_screen_charts_catch_up(page) -> None:  # type: ignore[no-untyped-def]
    """Charts on screen are built and drawn up to their last point; the last chart, built and drawn once scrolled into
    view (charts off screen are neither built nor redrawn)."""
    frame = next(f for f in page.frames if "workbench_live" in f.url or "/live/" in f.url)
    charts = frame.evaluate(_DRAWN_JS)
    shown = [c for c in charts if c[1]]
    assert shown, charts

    def behind() -> list:  # on-screen charts not built, or not drawn up to their last point (a poll may be under way)
        for _ in range(20):
            late = [c for c in frame.evaluate(_DRAWN_JS) if c[1] and (not c[2] or c[4] < c[3])]
            if not late:
                return []
            page.wait_for_timeout(250)
        return late

    assert not behind()
    title = charts[-1][0]
    frame.locator(".chart-box").filter(has_text=title).first.scroll_into_view_if_needed()
    assert not behind(), f"{title} was not built and drawn up to its last point once on screen"
    row = next(c for c in frame.evaluate(_DRAWN_JS) if c[0] == title)
    assert row[1] and row[2], f"{title} is not on screen and built: {row}"
    page.mouse.wheel(0, -100_000)  # back to the top


def test_dashboard_deep_link_follows_a_live_run(server, tmp_path):
    """Open /dashboard?run=ID of a training run: the chart follows it, search narrows the charts, the URL keeps the run."""
    from playwright.sync_api import expect, sync_playwright

    from tests.support.waiting import wait_status
    from workbench import api

    cfg = api.validate_dict({"task": "linreg", "epochs": 3, "steps_per_epoch": 100, "step_sleep_s": 0.1, "train_batch_size": 8})
    run = api.launch_run(cfg, name="live")
    wait_status(run.id, ("running",))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{server}/dashboard?run={run.id}")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(re.escape(run.id)))
        live = _live(page)
        loss_box = live.locator(".chart-box").filter(has=live.get_by_text("train/loss", exact=True))
        expect(loss_box).to_be_visible(timeout=60_000)  # the chart (a first point alone is a row of the results table)
        loss_caption = loss_box.locator(".caption")
        expect(loss_caption).to_have_text(re.compile(r"^[\d,]+ of [\d,]+ points"))  # the points the chart holds
        first = loss_caption.inner_text()
        deadline = time.time() + 60
        while loss_caption.inner_text() == first and time.time() < deadline:
            page.wait_for_timeout(300)
        assert loss_caption.inner_text() != first, "the chart did not follow the run"
        assert api.get_run(run.id).status == "running", "the update must be seen while the run trains"
        expect(live.locator(".metric-value").first).to_have_text("running")  # the status line follows the poll
        expect(live.locator(".progress-text")).to_contain_text("steps")
        _off_screen_charts_catch_up(page)

        page.get_by_label("Search metrics").fill("loss")
        page.get_by_label("Search metrics").press("Enter")
        expect(live.get_by_text("train/lr", exact=True)).to_have_count(0)
        expect(live.get_by_text("train/loss", exact=True)).to_be_visible()
        page.screenshot(path=str(tmp_path / "dashboard_live.png"))
        assert f"run={run.id}" in page.url, page.url
        browser.close()
    wait_status(run.id, ("completed",))


def test_a_running_studys_page(server, tmp_path):
    """Open /study?study=ID while the study runs: status, charts and the trials table with links to their Dashboards."""
    from playwright.sync_api import expect, sync_playwright

    from tests.support.waiting import wait_for
    from workbench import api

    base = api.validate_dict({"task": "linreg", "epochs": 4, "steps_per_epoch": 20, "step_sleep_s": 0.02, "train_batch_size": 8})
    options = api.StudyOptions(n_trials=4, parallel=2, pruner="none", seed=1)
    study = api.start_study(base, {"learning_rate": {"low": 0.001, "high": 0.1, "log": True}}, options, name="browser study")
    wait_for(lambda: len(api.study_report(study.id, with_importances=False).trials) >= 1, 120, what="a first trial")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(f"{server}/study?study={study.id}")
        expect(page.get_by_role("heading", name="Studies")).to_be_visible()
        expect(page.get_by_test_id("stMetricValue").first).to_have_text(re.compile(r"running|completed"))
        expect(page.get_by_text(re.compile(r"Trials finished"))).to_be_visible()
        wait_for(lambda: api.get_study(study.id).status != "running", 300, what="the study to end")
        expect(page.get_by_test_id("stMetricValue").first).to_have_text("completed", timeout=60_000)
        expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
        assert f"study={study.id}" in page.url, page.url
        browser.close()
