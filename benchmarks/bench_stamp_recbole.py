"""STAMP: workbench vs RecBole 1.2.1, side by side on the same generated sessions and hyperparameters.

    .venv/bin/python benchmarks/bench_stamp_recbole.py [--epochs 8] [--sessions 20000] [--items 1000] [--threads 1]

What it does:
1. generates sessions with the workbench generator and writes them once as a RecBole atomic file
   (.bench/stamp_recbole/synth/synth.inter); both sides read that file (ours through `source: atomic`);
2. creates RecBole's own virtual environment at .bench/recbole-venv if it is missing
   (`pip install torch==2.13.0 recbole "numpy<2" "pandas<3" "setuptools<81"`: without these pins RecBole 1.2.1
   fails on import, on numpy 2 and on torch>=2.6 checkpoint loading) and runs RecBole there with
   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1;
3. trains STAMP on each side in its own fresh process, one after the other, with the same protocol (leave-one-out
   valid_and_test, full ranking, CE loss, same epochs/batch/lr/embedding/maxlen, no early stopping, test on the
   best valid MRR@20 checkpoint), and prints CPU time per training epoch and test Recall@20 / MRR@20.

Targets (issue 2): our CPU time per epoch <= 1/3 of RecBole's; our test Recall@20 and MRR@20 >= RecBole's - 0.005.
CPU time (process time of the training epochs, all threads) rather than wall time, since the machine is shared.
`--threads 1` by default: with 2 intra-op threads on a busy 2-core machine, OpenMP threads spin waiting for each
other and CPU time measures the contention, not the work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
VENV = BENCH / "recbole-venv"
VENV_PY = VENV / "bin" / "python"
WORK = BENCH / "stamp_recbole"
PINS = ["torch==2.13.0", "recbole==1.2.1", "numpy<2", "pandas<3", "setuptools<81"]


# -- shared protocol ----------------------------------------------------------------------------------------


def protocol(args: argparse.Namespace) -> dict:
    return {
        "epochs": args.epochs,
        "train_batch_size": args.batch,
        "eval_batch_size": 1024,
        "learning_rate": args.lr,
        "embedding_size": args.embedding,
        "maxlen": args.maxlen,
        "seed": 2020,
        "threads": args.threads,
    }


# -- our side (runs in this project's venv) -----------------------------------------------------------------


def run_ours(inter: Path, p: dict) -> dict:
    import torch

    import workbench.tasks.recommendation.train as train
    from workbench.config.io import parse_config
    from workbench.runner.context import RunContext
    from workbench.tasks.recommendation.data import load_session_data

    train.cpu_threads = lambda: p["threads"]  # same intra-op threads as the RecBole side
    cfg = parse_config(
        {
            "task": "recommendation",
            "epochs": p["epochs"],
            "train_batch_size": p["train_batch_size"],
            "eval_batch_size": p["eval_batch_size"],
            "learning_rate": p["learning_rate"],
            "embedding_size": p["embedding_size"],
            "stopping_step": 10_000,  # no early stopping: both sides train every epoch
            "valid_metric": "MRR@20",
            "seed": p["seed"],
            "print_freq": 1_000_000,
            "data": {"source": "atomic", "path": str(inter), "min_item_count": 1, "maxlen": p["maxlen"], "cache": False},
        }
    )
    with tempfile.TemporaryDirectory() as run_dir:
        ctx = RunContext.local(run_dir, monitor=(cfg.monitor_key, "max"))
        start = time.perf_counter()
        train.run(cfg, ctx)
        ctx.close()
        total = time.perf_counter() - start
    series = {key: [v for k, _, v, _ in ctx.backend.metrics if k == key] for key in ("train/epoch_cpu_s", "train/epoch_time_s")}
    stats = load_session_data(cfg.data).stats
    test = {k: v for k, _, v, _ in ctx.backend.metrics if k.startswith("test/")}
    return {
        "epoch_cpu_s": series["train/epoch_cpu_s"],
        "epoch_wall_s": series["train/epoch_time_s"],
        "total_s": total,
        "recall@20": test["test/recall@20"],
        "mrr@20": test["test/mrr@20"],
        "samples": [stats["train_samples"], stats["valid_samples"], stats["test_samples"]],
        "torch": torch.__version__,
    }


# -- RecBole side (runs in .bench/recbole-venv; imports nothing from workbench) ------------------------------


def run_recbole(inter: Path, p: dict) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import STAMP
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(p["threads"])
    with tempfile.TemporaryDirectory() as saved:
        config = Config(
            model="STAMP",
            dataset=inter.stem,
            config_dict={
                "data_path": str(inter.parent.parent),
                "USER_ID_FIELD": "session_id",
                "ITEM_ID_FIELD": "item_id",
                "TIME_FIELD": "timestamp",
                "load_col": {"inter": ["session_id", "item_id", "timestamp"]},
                "MAX_ITEM_LIST_LENGTH": p["maxlen"],
                "loss_type": "CE",
                "train_neg_sample_args": None,
                "embedding_size": p["embedding_size"],
                "epochs": p["epochs"],
                "train_batch_size": p["train_batch_size"],
                "eval_batch_size": p["eval_batch_size"],
                "learning_rate": p["learning_rate"],
                "stopping_step": 10_000,
                "topk": [10, 20],
                "metrics": ["Recall", "MRR", "NDCG", "Hit"],
                "valid_metric": "MRR@20",
                "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
                "use_gpu": False,
                "seed": p["seed"],
                "reproducibility": True,
                "show_progress": False,
                "checkpoint_dir": saved,
                "worker": 0,
            },
        )
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        model = STAMP(config, train_data._dataset).to(config["device"])
        trainer = Trainer(config, model)
        cpu: list[float] = []
        wall: list[float] = []
        original = trainer._train_epoch

        def timed_epoch(*a, **kw):
            c, w = time.process_time(), time.perf_counter()
            out = original(*a, **kw)
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
            return out

        trainer._train_epoch = timed_epoch
        start = time.perf_counter()
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        total = time.perf_counter() - start
    return {
        "epoch_cpu_s": cpu,
        "epoch_wall_s": wall,
        "total_s": total,
        "recall@20": float(test["recall@20"]),
        "mrr@20": float(test["mrr@20"]),
        "samples": [len(d._dataset) for d in (train_data, valid_data, test_data)],
        "torch": torch.__version__,
    }


# -- driver -------------------------------------------------------------------------------------------------


def ensure_recbole_venv() -> None:
    probe = [str(VENV_PY), "-c", "import recbole, torch; print(recbole.__version__)"]
    if VENV_PY.exists() and subprocess.run(probe, capture_output=True, env=_recbole_env()).returncode == 0:
        return
    print(f"creating {VENV} and installing {' '.join(PINS)} (a few minutes) ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", *PINS], check=True)
    subprocess.run(probe, check=True, env=_recbole_env())


def _recbole_env() -> dict[str, str]:
    return {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}


def write_data(args: argparse.Namespace) -> Path:
    from workbench.tasks.recommendation.config import SyntheticSessions
    from workbench.tasks.recommendation.sources import generate_sessions, write_atomic

    spec = SyntheticSessions(n_items=args.items, n_sessions=args.sessions, seed=args.data_seed)
    inter = WORK / "synth" / "synth.inter"
    clicks = generate_sessions(spec)
    write_atomic(clicks, inter)
    print(f"data: {len(clicks):,} clicks, {args.sessions:,} sessions, {args.items:,} items -> {inter}")
    return inter


def run_side(python: Path | str, side: str, inter: Path, p: dict, env: dict[str, str] | None = None) -> dict:
    out = WORK / f"{side}.json"
    out.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--side", side, "--inter", str(inter), "--protocol", json.dumps(p), "--out", str(out)]
    print(f"running {side} ...", flush=True)
    # RecBole writes log/ and log_tensorboard/ into its working directory: keep them under .bench
    proc = subprocess.run(cmd, cwd=WORK, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{side} failed with exit code {proc.returncode}")
    return json.loads(out.read_text())


def report(ours: dict, theirs: dict, p: dict) -> None:
    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    rows = [
        ("train CPU s / epoch (median)", med(ours["epoch_cpu_s"]), med(theirs["epoch_cpu_s"])),
        ("train wall s / epoch (median)", med(ours["epoch_wall_s"]), med(theirs["epoch_wall_s"])),
        ("whole fit + test, wall s", ours["total_s"], theirs["total_s"]),
        ("test Recall@20", ours["recall@20"], theirs["recall@20"]),
        ("test MRR@20", ours["mrr@20"], theirs["mrr@20"]),
    ]
    print(f"\nSTAMP, {p['epochs']} epochs, batch {p['train_batch_size']}, lr {p['learning_rate']}, "
          f"d {p['embedding_size']}, maxlen {p['maxlen']}, {p['threads']} thread(s)")  # fmt: skip
    print(f"samples (train/valid/test): workbench {ours['samples']}, RecBole {theirs['samples']}")
    print(f"{'':32}{'workbench':>12}{'RecBole 1.2.1':>15}{'ratio':>9}")
    for name, a, b in rows:
        print(f"{name:32}{a:12.4f}{b:15.4f}{a / b:9.3f}")
    cpu_ratio = med(ours["epoch_cpu_s"]) / med(theirs["epoch_cpu_s"])
    print(f"\nCPU time per epoch: ours / RecBole = {cpu_ratio:.3f} (target <= 0.333): {'PASS' if cpu_ratio <= 1 / 3 else 'FAIL'}")
    for key in ("recall@20", "mrr@20"):
        delta = ours[key] - theirs[key]
        print(f"test {key}: ours - RecBole = {delta:+.4f} (target >= -0.005): {'PASS' if delta >= -0.005 else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description="STAMP: workbench vs RecBole 1.2.1")
    # lr 0.003 / batch 256 / 8 epochs: close to convergence. At RecBole's lr 0.001 after 5 epochs both sides are
    # still taking off and test Recall@20 moved by +-0.1 between seeds on either side.
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--maxlen", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--side", choices=["ours", "recbole"], help=argparse.SUPPRESS)
    parser.add_argument("--inter", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # children run this file from benchmarks/; the workbench package is at ROOT

    if args.side:  # child process: train one side and write its numbers
        p = json.loads(args.protocol)
        result = run_ours(args.inter, p) if args.side == "ours" else run_recbole(args.inter, p)
        args.out.write_text(json.dumps(result))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    p = protocol(args)
    inter = write_data(args)
    ensure_recbole_venv()
    ours = run_side(sys.executable, "ours", inter, p, env={**os.environ, "WORKBENCH_HOME": str(WORK / "home")})
    theirs = run_side(VENV_PY, "recbole", inter, p, env=_recbole_env())
    report(ours, theirs, p)


if __name__ == "__main__":
    main()
