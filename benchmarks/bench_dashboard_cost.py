"""What watching a run costs it: the same quick STAMP run with no browser, then with Chromium tab(s) on its Dashboard.

    .venv/bin/python benchmarks/bench_dashboard_cost.py [--pairs 2] [--tabs 1 2] [--set epochs=12]

One UI server (`workbench ui`) serves a fresh store the whole time; `train/loss` is pinned (drawn first), as a user
watching it would (`--pin`). Each tab has shown the Dashboard of the run before (the browser's caches hold the app's
scripts and the live view's vega, as those of a user who has watched a run do; `--cold` for a browser that never saw
the app) and loads the new run's Dashboard afresh when it starts. Conditions alternate within each round (no browser, 1 tab, 2 tabs, then the reverse
order in the next round), so drifting machine load hits every condition alike. Every run is the quick recommendation preset (STAMP, fixed seed, 12 epochs, early stopping off) launched
through the CLI, with the worker's default torch threads (WORKBENCH_CPU_THREADS is removed from the environment).

Measured, per run:
- duration: the run's `ended_at - started_at` in the store (worker start to the run recorded completed);
- CPU seconds of the UI server process and of all Chromium processes (psutil, user + system) while the run ran,
  also per minute of watching;
- latency "point logged -> drawn": a page script polls every 100 ms the caption under the `train/loss` chart
  ("N of M points"), which the live view writes in the same update as the chart's data; when M grows, each new point's
  latency is the time the caption first showed it minus the point's wall time in the store (stamped by ctx.log in
  the worker, so it includes the worker's 0.5 s flush interval). Only the first tab is probed.
The load average is printed with each run: compare numbers only from a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's workbench, not whichever one the venv points at
CONFIG = "configs/recommendation/quick.yaml"
OVERRIDES = ["epochs=12", "seed=7", "stopping_step=100"]  # 12 epochs every time: early stopping off
PROBE_KEY = "train/loss"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Runs in the page: every 100 ms, find the caption under the live view's chart titled PROBE_KEY (the live view is a
# same-origin iframe) and record (time, M) whenever its "N of M points" total changes. The chart is scrolled into view
# first if it is not on screen, as a user watching it would: the live view redraws only the charts on screen (their
# captions and the drawing change in the same call), so an off-screen caption would say nothing about drawing.
PROBE_JS = """
key => {
  window.__seen = [];
  let last = null;
  setInterval(() => {
    const frame = document.querySelector('iframe[title*="workbench_live"]');
    const doc = frame && frame.contentDocument;
    if (!doc) return;
    for (const box of doc.querySelectorAll('.chart-box')) {
      const title = box.querySelector('.chart-title'), cap = box.querySelector('.caption');
      if (!title || !cap || title.textContent.trim() !== key) continue;
      if (!box.dataset.probed) { box.scrollIntoView({ block: "nearest" }); box.dataset.probed = "1"; }
      const m = cap.textContent.match(/^[\\d,]+ of ([\\d,]+) points/);
      if (!m) continue;
      const total = parseInt(m[1].replace(/,/g, ''));
      if (total !== last) { window.__seen.push([Date.now() / 1000, total]); last = total; }
    }
  }, 100);
}
"""


@dataclass
class Result:
    tabs: int
    run_id: str
    duration_s: float
    server_cpu_s: float
    browser_cpu_s: float
    load: tuple[float, float]  # 1-min load average at start and end
    latencies: list[float] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)  # the thread cap's changes in the run's log: "12:00:01 -> 1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def chromium_procs() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if "chrom" in p.name().lower()]


def launch(env: dict[str, str]) -> str:
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "run", CONFIG, *sets, "--detach"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return re.search(r"\d{8}-\d{6}-[0-9a-f]{4}", out).group(0)  # type: ignore[union-attr]


def wait_done(run_id: str) -> None:
    from workbench import api

    while api.get_run(run_id).status not in ("completed", "failed", "cancelled", "lost"):
        time.sleep(0.5)
    run = api.get_run(run_id)
    if run.status != "completed":
        raise SystemExit(f"run {run_id} ended {run.status}: {run.error}")


def latencies(run_id: str, seen: list[list[float]]) -> list[float]:
    """Per point of PROBE_KEY drawn after the page's first view: time it first showed - time it was logged."""
    from workbench import api

    points = api.metrics_since(run_id)
    walls = points[points["key"] == PROBE_KEY].sort_values("id")["wall"].tolist()
    out = []
    for (_, before), (shown_at, total) in zip(seen, seen[1:]):
        out.extend(shown_at - walls[i] for i in range(before, min(total, len(walls))))
    return out


def one_run(tabs: int, url: str, server: psutil.Process, env: dict[str, str], playwright, cold: bool) -> Result:  # type: ignore[no-untyped-def]
    from workbench import api

    browser = pages = None
    if tabs:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = [browser.new_page(viewport={"width": 1400, "height": 1000}) for _ in range(tabs)]
        for page in pages:
            page.set_default_timeout(180_000)  # a loaded 2-core machine can take a while to serve a page
            # The renderer is up before the run, so its start-up is not counted. Warm (the default): the tab has
            # shown a Dashboard before (the newest run's; every round starts with or after a run), as a user's has,
            # so the scripts come from the browser's caches; the new run's Dashboard is still loaded afresh when it
            # starts. Cold: a browser that never saw the app.
            page.goto(f"{url}/_stcore/health" if cold else f"{url}/dashboard")
            if not cold:
                page.get_by_role("heading", name="Dashboard").wait_for()
                page.locator('iframe[title*="workbench_live"]').wait_for()
    load0 = os.getloadavg()[0]
    server0, browser0 = cpu_s([server]), cpu_s(chromium_procs())
    run_id = launch(env)
    if pages:
        for page in pages:
            page.goto(f"{url}/dashboard?run={run_id}", wait_until="commit")  # the newest run is also the default
        pages[0].evaluate(PROBE_JS, PROBE_KEY)
    wait_done(run_id)
    server_cpu, browser_cpu = cpu_s([server]) - server0, cpu_s(chromium_procs()) - browser0
    seen = pages[0].evaluate("window.__seen") if pages else []
    if browser:
        browser.close()
    run = api.get_run(run_id)
    result = Result(tabs, run_id, run.ended_at - run.started_at, server_cpu, browser_cpu, (load0, os.getloadavg()[0]))
    result.latencies = latencies(run_id, seen)
    result.threads = thread_changes(run_id)
    return result


def thread_changes(run_id: str) -> list[str]:
    """When the worker's thread cap changed its torch threads (runner/context.py ThreadShare logs each change)."""
    from workbench.settings import get_settings

    log = (get_settings().runs_dir / run_id / "train.log").read_text(errors="replace")
    return [f"{m[1]} -> {m[2]}" for m in re.finditer(r"(\d\d:\d\d:\d\d) INFO .*: (\d+) torch thread\(s\)$", log, re.M)]


def report(results: list[Result], tab_counts: list[int]) -> None:
    print("\nrun                   tabs  duration_s  server_cpu_s  browser_cpu_s  load(start,end)  latency med/max s (n)  thread cap")
    for r in results:
        lat = f"{statistics.median(r.latencies):.2f}/{max(r.latencies):.2f} ({len(r.latencies)})" if r.latencies else "-"
        print(f"{r.run_id}  {r.tabs:4d}  {r.duration_s:10.2f}  {r.server_cpu_s:12.2f}  {r.browser_cpu_s:13.2f}  {r.load[0]:5.2f},{r.load[1]:5.2f}      {lat:20s}  {', '.join(r.threads) or '-'}")
    rounds = max(1, len([r for r in results if r.tabs == 0]))
    base = [r for r in results if r.tabs == 0]
    summary = {}
    for tabs in tab_counts:
        watched = [r for r in results if r.tabs == tabs]
        ratios = [w.duration_s / b.duration_s for w, b in zip(watched, base)]
        minutes = sum(w.duration_s for w in watched) / 60
        lats = [x for w in watched for x in w.latencies]
        summary[tabs] = {
            "duration_ratio_per_round": [round(x, 3) for x in ratios],
            "duration_ratio_median": round(statistics.median(ratios), 3),
            "server_cpu_s_per_min": round(sum(w.server_cpu_s for w in watched) / minutes, 2),
            "browser_cpu_s_per_min": round(sum(w.browser_cpu_s for w in watched) / minutes, 2),
            "latency_s_median": round(statistics.median(lats), 3) if lats else None,
            "latency_s_max": round(max(lats), 3) if lats else None,
            "latency_points": len(lats),
        }
    idle = sum(b.server_cpu_s for b in base) / (sum(b.duration_s for b in base) / 60)
    print(f"\n{rounds} round(s); no browser: durations {[round(b.duration_s, 2) for b in base]}, UI server {idle:.2f} CPU s/min")
    for tabs, s in summary.items():
        print(f"{tabs} tab(s): {json.dumps(s)}")
    print(f"load average now: {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=2, help="rounds; each round runs every condition once")
    ap.add_argument("--tabs", type=int, nargs="+", default=[1, 2], help="tab counts to compare with no browser")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="extra config overrides (key=value)")
    ap.add_argument("--threads", type=int, default=None, help="fix the worker's torch threads (WORKBENCH_CPU_THREADS; "
                    "turns the thread cap off) instead of letting it follow the load")
    ap.add_argument("--cold", action="store_true", help="open the Dashboard in a browser that never loaded the app "
                    "(empty caches) instead of one that has shown the Runs page")
    ap.add_argument("--pin", action="append", default=None, help=f"pinned charts, drawn first on the Dashboard (default: "
                    f"{PROBE_KEY}, the chart the latency is read from, as a user watching it would pin it; --pin none: none)")
    args = ap.parse_args()
    OVERRIDES.extend(args.sets)

    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="bench-dashboard-")
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_CPU_THREADS"}
    if args.threads:
        env["WORKBENCH_CPU_THREADS"] = str(args.threads)
    env.update(WORKBENCH_HOME=home, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    os.environ.update(WORKBENCH_HOME=home)
    os.environ.pop("WORKBENCH_CPU_THREADS", None)
    if args.threads:
        print(f"the worker's torch threads fixed at {args.threads} (no thread cap)")
    from workbench import api

    pins = [k for k in (args.pin or [PROBE_KEY]) if k != "none"]
    api.set_pinned_metrics("recommendation", pins)
    print(f"pinned charts: {', '.join(pins) or 'none'}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(Path(home) / "ui.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ui", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        server = psutil.Process(proc.pid)
        conditions = [0, *args.tabs]
        results = []
        with sync_playwright() as pw:
            for i in range(args.pairs):
                for tabs in conditions if i % 2 == 0 else reversed(conditions):
                    r = one_run(tabs, url, server, env, pw, args.cold)
                    print(f"round {i + 1}: {tabs} tab(s): {r.duration_s:.2f} s, server {r.server_cpu_s:.1f} CPU s, browser {r.browser_cpu_s:.1f} CPU s, load {r.load}", flush=True)
                    results.append(r)
        report(results, args.tabs)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


if __name__ == "__main__":
    main()
