"""What `ctx.log` + `ctx.progress` cost the training loop, per step: memory backend vs the store backend.

Two loops: with no work between calls (the calls' own cost, µs per step), and with a small torch step (~0.3 ms,
one thread) between them (throughput relative to the memory backend: what the background threads take away).
The store is a fresh SQLite file. Run it on one tree and on another to compare two store backends:

    .venv/bin/python benchmarks/bench_journal_log.py                        # this tree (journal first)
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/bench_journal_log.py
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import time
from pathlib import Path


def _context(kind: str, home: Path):  # type: ignore[no-untyped-def]
    from workbench.runner.context import MemoryBackend, RunContext

    if kind == "memory":
        backend = MemoryBackend()
    else:
        from workbench.runner import store_backend
        from workbench.store import get_engine, runs
        from workbench.store.models import RunCreate

        engine = get_engine(f"sqlite:///{home / 'workbench.db'}")
        run = runs.create_run(engine, run_in=RunCreate(task="linreg", name="bench", monitor_key="valid/loss", monitor_mode="min"))
        params = inspect.signature(store_backend.StoreBackend).parameters
        if "run_dir" in params:
            backend = store_backend.StoreBackend(engine, run.id, home / run.id)
        else:  # the store backend before the journal
            backend = store_backend.StoreBackend(engine, run.id)
    return RunContext(run_id="bench", run_dir=home / "run", backend=backend, monitor=("valid/loss", "min"), keep_ckpt=2)


def _loop(kind: str, steps: int, work: bool) -> tuple[float, float]:
    """(seconds in the loop, seconds in close()) for `steps` steps."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(192, 192)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(kind, Path(tmp))
        start = time.perf_counter()
        for step in range(1, steps + 1):
            if work:
                a = torch.tanh(a @ a.T * 0.01)
            ctx.log({"train/loss": 1.0 / step, "train/lr": 0.01}, step)
            ctx.progress(step, steps, "steps")
        loop_s = time.perf_counter() - start
        start = time.perf_counter()
        ctx.close()
        return loop_s, time.perf_counter() - start


def main() -> None:
    import statistics

    import workbench

    print(f"workbench from {Path(workbench.__file__).parent}, python {sys.version.split()[0]}")
    _loop("memory", 2000, True)  # warm-up: torch, SQLAlchemy, the file system cache
    for work, steps, repeats in ((False, 20_000, 5), (True, 3_000, 5)):
        times: dict[str, list[float]] = {"memory": [], "store": []}
        closes: dict[str, list[float]] = {"memory": [], "store": []}
        for _ in range(repeats):  # interleaved: the machine is shared, its load drifts
            for kind in ("memory", "store"):
                loop_s, close_s = _loop(kind, steps, work)
                times[kind].append(loop_s / steps * 1e6)
                closes[kind].append(close_s * 1000)
        label = "with a small torch step" if work else "calls only"
        memory, store = statistics.median(times["memory"]), statistics.median(times["store"])
        print(
            f"{label}: memory {memory:.1f} µs/step, store {store:.1f} µs/step (medians of {repeats} x {steps} steps; "
            f"store/memory throughput {memory / store:.3f}x); store close() median {statistics.median(closes['store']):.0f} ms"
        )


if __name__ == "__main__":
    main()
