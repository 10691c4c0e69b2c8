"""Profile what one rerun of the Dashboard costs the UI server, for a run already in the store.

    WORKBENCH_HOME=... python benchmarks/profile_dashboard_rerun.py RUN_ID [--reruns 5] [--top 25]

Drives the real Dashboard page headless with Streamlit's AppTest (the same script a browser session runs), and per
rerun reports: wall and CPU time, SQL statements sent, the bytes of the ForwardMsgs that would go to the browser,
the charts sent, and a cProfile of the last rerun grouped into the stages named in docs/dashboard.md (queries,
DataFrame building, Altair spec building and validation, Arrow/protobuf serialisation). A full page rerun is a
slight upper bound on a fragment rerun: it also draws the widgets above the live panel (a few ms).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's workbench, not whichever one the venv points at
APP = str(ROOT / "app.py")

# cumulative time of these functions (by file fragment, function) = one stage of the rerun
STAGES = {
    "SQL (sqlalchemy execute)": ("sqlalchemy/engine/base.py", "execute"),
    "Altair to_dict + jsonschema validation": ("altair/vegalite/v6/api.py", "to_dict"),
    "Arrow serialisation of chart data": ("streamlit/dataframe_util.py", "convert_pandas_df_to_arrow_bytes"),
    "st.altair_chart total": ("streamlit/elements/vega_charts.py", "altair_chart"),
    "st.vega_lite_chart total": ("streamlit/elements/vega_charts.py", "vega_lite_chart"),
    "workbench chart building (ui/charts.py)": ("workbench/ui/charts.py", "metric_chart"),
    "workbench chart spec (ui/charts.py)": ("workbench/ui/charts.py", "chart_spec"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_id")
    ap.add_argument("--reruns", type=int, default=5)
    ap.add_argument("--top", type=int, default=0, help="also print the N most expensive functions (cumulative)")
    args = ap.parse_args()

    from sqlalchemy import event
    from streamlit.runtime.scriptrunner.script_runner import ScriptRunner
    from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext
    from streamlit.testing.v1 import AppTest

    from workbench import api

    sent = {"bytes": 0, "msgs": 0, "charts": 0}
    original_enqueue = ScriptRunContext.enqueue

    def counting_enqueue(self, msg):  # type: ignore[no-untyped-def]
        sent["bytes"] += msg.ByteSize()
        sent["msgs"] += 1
        if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
            sent["charts"] += msg.delta.new_element.WhichOneof("type") in ("arrow_vega_lite_chart", "vega_lite_chart")
        return original_enqueue(self, msg)

    ScriptRunContext.enqueue = counting_enqueue  # type: ignore[method-assign]
    queries = {"n": 0}
    event.listen(api.engine(), "before_cursor_execute", lambda *a, **k: queries.__setitem__("n", queries["n"] + 1))

    # AppTest runs the script on its own thread, and cProfile sees only the thread that enables it
    profiler = cProfile.Profile()
    profiling = {"on": False}
    original_run_script = ScriptRunner._run_script

    def profiled_run_script(self, rerun_data):  # type: ignore[no-untyped-def]
        if not profiling["on"]:
            return original_run_script(self, rerun_data)
        profiler.enable()
        try:
            return original_run_script(self, rerun_data)
        finally:
            profiler.disable()

    ScriptRunner._run_script = profiled_run_script  # type: ignore[method-assign]

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["selected_run"] = args.run_id
    at.run()
    at.switch_page("pages/dashboard.py").run()
    assert not at.exception, at.exception
    rows = []
    for i in range(args.reruns):
        sent.update(bytes=0, msgs=0, charts=0)
        queries["n"] = 0
        last = i == args.reruns - 1
        t0, c0 = time.perf_counter(), time.process_time()
        profiling["on"] = last
        at.run()
        rows.append((time.perf_counter() - t0, time.process_time() - c0, queries["n"], sent["bytes"], sent["msgs"], sent["charts"]))
        assert not at.exception, at.exception
    print(f"run {args.run_id}: {len(api.metric_keys(args.run_id))} metric keys")
    print("rerun  wall_ms  cpu_ms  sql  bytes_to_browser  msgs  charts")
    for i, (w, c, q, b, m, ch) in enumerate(rows):
        print(f"{i:5d}  {w * 1000:7.1f}  {c * 1000:6.1f}  {q:3d}  {b:16,d}  {m:4d}  {ch:6d}")
    stats = pstats.Stats(profiler)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\nprofiled rerun (cProfile inflates Python-heavy stages): {total * 1000:.0f} ms")
    for stage, (file_part, func) in STAGES.items():
        cum = sum(v[3] for (f, _line, name), v in stats.stats.items() if file_part in f and name == func)  # type: ignore[attr-defined]
        if cum:
            print(f"  {stage:45s} {cum * 1000:7.1f} ms")
    if args.top:
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
