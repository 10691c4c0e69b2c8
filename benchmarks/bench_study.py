"""Studies: what pruning saves, and what a trial costs over a bare Optuna loop, on the quick STAMP preset.

1. Pruning: the same 20-trial TPE study (same sampler seed, same space: learning_rate on a log scale,
   embedding_size, train_batch_size, epochs_warmup) with the median pruner and without pruning. Prints the training
   epochs each spent (validations of valid/mrr@20: the quick preset validates every epoch) and the best valid MRR@20
   of each. Goal: pruned <= 60% of the epochs at a best value within 0.005. Also the best trial's MRR@20 against the
   quick preset's own run.
2. Trial start overhead: 10 one-epoch trials through a workbench study (each a run: its own process, the store, the
   journal) against 10 trials of a bare `optuna.Study.optimize` calling the same training function in this process.

    .venv/bin/python benchmarks/bench_study.py [--trials 20] [--parallel 2] [--skip-overhead]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout, not whichever one the venv was installed from
os.environ.setdefault("WORKBENCH_HOME", tempfile.mkdtemp(prefix="wb-bench-study-"))
os.environ.setdefault("WORKBENCH_CPU_THREADS", "1")  # two trials at once on 2 cores: one thread each

QUICK = ROOT / "configs" / "recommendation" / "quick.yaml"
OBJECTIVE = "valid/mrr@20"
SPACE = {
    "learning_rate": {"low": 0.001, "high": 0.03, "log": True},
    "embedding_size": {"choices": [32, 64, 100]},
    "train_batch_size": {"choices": [128, 256, 512]},
    "epochs_warmup": {"low": 0, "high": 2},
}


def wait_study(api, study_id: str) -> None:  # type: ignore[no-untyped-def]
    while (study := api.get_study(study_id)).status == "running":
        if not api.driver_running(study):
            raise SystemExit(f"study {study_id}: its driver died (see {api.run_dir('x').parent.parent}/studies/{study_id}/driver.log)")
        time.sleep(2)
    if study.status != "completed":
        raise SystemExit(f"study {study_id} ended {study.status}: {study.error}")


def epochs_and_best(api, study_id: str) -> tuple[int, float, int]:  # type: ignore[no-untyped-def]
    """(validations over all trials, best completed value, trials) of a finished study."""
    rep = api.study_report(study_id, with_importances=False)
    run_ids = [r for r in rep.trials["run_id"] if isinstance(r, str)]
    summaries = api.metric_summaries(run_ids)
    epochs = int(summaries.loc[summaries["key"] == OBJECTIVE, "count"].sum())
    return epochs, float(rep.best["value"]), len(rep.trials)


def pruning(api, trials: int, parallel: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    base = api.validate_file(QUICK)
    results = {}
    for pruner in ("median", "none"):
        options = api.StudyOptions(n_trials=trials, parallel=parallel, sampler="tpe", pruner=pruner, seed=seed, n_startup_trials=5, n_warmup_steps=1)
        start = time.perf_counter()
        study = api.start_study(base, SPACE, options, name=f"bench {pruner}")
        wait_study(api, study.id)
        results[pruner] = (*epochs_and_best(api, study.id), time.perf_counter() - start)
        epochs, best, n, wall = results[pruner]
        print(f"  pruner {pruner:6s}: {n} trials, {epochs} training epochs, best {OBJECTIVE} {best:.4f}, {wall:.0f} s", flush=True)
    (pe, pb, _, pw), (ue, ub, _, uw) = results["median"], results["none"]
    print(f"  pruned / unpruned: epochs {pe / ue:.2f}x (goal <= 0.60), wall {pw / uw:.2f}x; best {pb - ub:+.4f} (goal >= -0.005)")
    preset = api.launch_run(base, name="bench quick preset")
    while (run := api.get_run(preset.id)).status not in api.ENDED:
        time.sleep(1)
    own = api.metric_summaries([run.id]).set_index("key").loc[OBJECTIVE, "max"]
    print(f"  quick preset's own best {OBJECTIVE} {own:.4f}; the pruned study's best trial {pb:.4f} ({pb - own:+.4f})")


def overhead(api, n: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    import optuna

    from workbench.config.io import config_to_dict, parse_config
    from workbench.runner.context import RunContext
    from workbench.studies.space import apply_params
    from workbench.tasks.recommendation.train import run

    base = api.validate_file(QUICK, ["epochs=1"])
    space = {"learning_rate": SPACE["learning_rate"]}
    options = api.StudyOptions(n_trials=n, parallel=1, sampler="random", pruner="none", seed=seed)
    start = time.perf_counter()
    study = api.start_study(base, space, options, name="bench overhead")
    wait_study(api, study.id)
    workbench_s = time.perf_counter() - start

    base_dict = config_to_dict(base)
    lr = space["learning_rate"]

    def objective(trial: optuna.Trial) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", lr["low"], lr["high"], log=True)}
        cfg = parse_config(apply_params(base_dict, params))
        with tempfile.TemporaryDirectory() as folder:
            ctx = RunContext.local(folder, monitor=(OBJECTIVE, "max"))
            run(cfg, ctx)
            ctx.close()
            return max(v for k, _, v, _ in ctx.backend.metrics if k == OBJECTIVE)  # type: ignore[attr-defined]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bare = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    start = time.perf_counter()
    bare.optimize(objective, n_trials=n)
    bare_s = time.perf_counter() - start
    print(f"  {n} one-epoch trials: workbench study {workbench_s:.1f} s, bare optuna.optimize in-process {bare_s:.1f} s: "
          f"{workbench_s / bare_s:.2f}x ({(workbench_s - bare_s) / n:.1f} s more per trial: a process with torch, the "
          "store and the journal per trial)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--overhead-trials", type=int, default=10)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-pruning", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("WORKBENCH_MAX_CONCURRENT_RUNS", str(max(2, args.parallel)))
    from workbench import api

    print(f"WORKBENCH_HOME={os.environ['WORKBENCH_HOME']}, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_pruning:
        print(f"pruning: {args.trials} trials, {args.parallel} at once, TPE seed {args.seed}, quick STAMP preset")
        pruning(api, args.trials, args.parallel, args.seed)
    if not args.skip_overhead:
        print("trial start overhead")
        overhead(api, args.overhead_trials, args.seed)


if __name__ == "__main__":
    main()
