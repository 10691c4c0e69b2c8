"""Quality: how far a preset (default: configs/spleeter/default.yaml) gets on generated songs, and how long it takes.

Runs the real task loop (`run(cfg, RunContext.local(...))`) in a thread, prints one line per evaluation with the
wall time since launch (song generation included), and stops at --max-minutes with a checkpoint, as a cancel would.
The target from the issue: validation SI-SDR improvement over the mixture (valid/si_sdri_vocals) >= +8 dB.

    .venv/bin/python benchmarks/bench_spleeter_quality.py [--config PATH] [--max-minutes 60] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from workbench.config.io import load_config_file
from workbench.runner.context import RunContext
from workbench.tasks.spleeter import MONITOR
from workbench.tasks.spleeter.train import run

ROOT = Path(__file__).resolve().parents[1]
TARGET_DB = 8.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "spleeter" / "default.yaml"))
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--set", action="append", default=[], help="override, e.g. epochs=4")
    args = parser.parse_args()
    overrides = [f"cache_dir={ROOT / '.bench' / 'spleeter-cache'}", *args.set]
    cfg = load_config_file(args.config, overrides)
    run_dir = Path(tempfile.mkdtemp(prefix="spl-quality-"))
    ctx = RunContext.local(run_dir, monitor=MONITOR, keep_ckpt=cfg.keep_ckpt)
    start = time.perf_counter()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run(cfg, ctx)
        except BaseException as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    print(f"config {args.config} {' '.join(args.set)}; run dir {run_dir}")
    print(f"{'minutes':>8} {'step':>6} {'si_sdr_voc':>10} {'mixture':>8} {'si_sdri':>8} {'irm':>6} {'sdr_voc':>8}")
    seen, rows, reached = 0, [], None
    while thread.is_alive():
        thread.join(timeout=5.0)
        ctx.flush()
        evals = sorted({s for k, s, _, _ in ctx.backend.metrics if k == "valid/si_sdri_vocals"})
        for step in evals[seen:]:
            m = {k: v for k, s, v, _ in ctx.backend.metrics if s == step and k.startswith("valid/")}
            minutes = (time.perf_counter() - start) / 60
            rows.append({"minutes": round(minutes, 2), "step": step, **m})
            print(f"{minutes:8.1f} {step:6d} {m['valid/si_sdr_vocals']:10.2f} {m['valid/si_sdr_vocals_mixture']:8.2f} "
                  f"{m['valid/si_sdri_vocals']:8.2f} {m['valid/si_sdr_vocals_irm']:6.2f} {m['valid/sdr_vocals']:8.2f}",
                  flush=True)
            if reached is None and m["valid/si_sdri_vocals"] >= TARGET_DB:
                reached = (minutes, step)
        seen = len(evals)
        if (time.perf_counter() - start) / 60 > args.max_minutes and not ctx.should_stop():
            print(f"time limit of {args.max_minutes} min reached: stopping (checkpoint is saved)", flush=True)
            ctx.request_stop()
    ctx.close()
    if errors:
        raise errors[0]
    total = (time.perf_counter() - start) / 60
    best = max((r["valid/si_sdri_vocals"] for r in rows), default=float("nan"))
    print(f"\ntotal {total:.1f} min; best valid/si_sdri_vocals {best:+.2f} dB; target +{TARGET_DB} dB "
          + (f"reached after {reached[0]:.1f} min (step {reached[1]})" if reached else "NOT reached"))
    out = ROOT / ".bench" / "spleeter_quality.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "overrides": args.set, "rows": rows, "total_min": total,
                               "reached": reached}, indent=1))


if __name__ == "__main__":
    main()
