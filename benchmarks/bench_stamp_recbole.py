"""STAMP: workbench vs RecBole 1.2.1, side by side on the same sessions and hyperparameters, one table per set.

    .venv/bin/python benchmarks/bench_stamp_recbole.py --data sessions.inter            # a file you bring
    .venv/bin/python benchmarks/bench_stamp_recbole.py --set kind=intents,n_items=3000,n_sessions=25000 \
        --set kind=intents,n_items=1000,reclick_prob=0.3 ...                               # generated sets
    .venv/bin/python benchmarks/bench_stamp_recbole.py --kind intents --items 3000 --reclick 0.15   # one set

What it does, per set:
1. a generated set is written once as a RecBole atomic file (.bench/stamp_recbole/sets/<name>.inter); a --data
   file is used as it is; both sides read that file (ours through `source: atomic`, min_item_count 1);
2. creates RecBole's own virtual environment at .bench/recbole-venv if it is missing
   (`pip install torch==2.13.0 recbole "numpy<2" "pandas<3" "setuptools<81"`: without these pins RecBole 1.2.1
   fails on import, on numpy 2 and on torch>=2.6 checkpoint loading) and runs RecBole there with
   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1;
3. trains STAMP on each side in its own fresh process, one after the other, with the same protocol (issue 14:
   leave-one-out valid_and_test, full ranking, CE loss, batch 128, embedding 100, lr 0.005, maxlen 40, 3 epochs,
   no early stopping, test on the best valid MRR@20 checkpoint), and prints CPU time per training epoch and test
   Recall@20 / MRR@20, then one markdown table over all sets.

RecBole's result for a (file contents, protocol) pair is kept in .bench/stamp_recbole/recbole-results/ and reused
(it is deterministic with reproducibility on; `--fresh` reruns it); the table marks reused rows. `--variant` trains
our side once per named model variant (see VARIANTS) to measure one difference to RecBole at a time. With
`--seeds N` / `--recbole-seeds M` (seeds 2020, 2021, ...) it prints every seed's test metrics on both sides and the
difference of the means with its standard error. `check_stamp_recbole.py` compares the two pipelines step by step.

Targets (issue 14): our CPU time per epoch <= 0.25x RecBole's; our test Recall@20 and MRR@20 >= RecBole's - 0.005.
CPU time (process time of the training epochs, all threads) rather than wall time, since the machine is shared.
`--threads 1` by default: with 2 intra-op threads on a busy 2-core machine, OpenMP threads spin waiting for each
other and CPU time measures the contention, not the work.
"""

from __future__ import annotations

import argparse
import hashlib
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


# Model variants of our side, to measure one difference to RecBole at a time: STAMP keyword arguments.
VARIANTS: dict[str, dict] = {
    "default": {},  # what `workbench run` trains
    "zero_pad": {"pad_row": "zero"},  # PAD row zero and out of the softmax (pads add nothing)
    "learned_pad": {"pad_row": "learned"},  # RecBole: PAD row N(0, 0.002), a softmax class, trained by Adam
}


def run_ours(inter: Path, p: dict) -> dict:
    import torch

    import workbench.tasks.recommendation.model as model_module
    import workbench.tasks.recommendation.train as train
    from workbench.config.io import parse_config
    from workbench.runner.context import RunContext
    from workbench.tasks.recommendation.data import load_session_data

    overrides = VARIANTS[p.get("variant", "default")]
    if overrides:
        stamp = model_module.STAMP
        train.build_model = lambda cfg, n_items, n_users: stamp(
            n_items, cfg.embedding_size, cfg.loss_type, **overrides
        )
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


# Generator knobs on the command line -> SyntheticSessions fields (a --set uses the field names directly).
KNOBS = {
    "kind": "kind", "items": "n_items", "sessions": "n_sessions", "mean_length": "mean_length",
    "max_length": "max_length", "length_dist": "length_distribution", "zipf": "zipf_exponent",
    "reclick": "reclick_prob", "follow": "follow_prob", "topics": "n_topics", "successors": "n_successors",
    "switch": "intent_switch_prob", "data_seed": "seed",
}  # fmt: skip


def generated_set(spec_args: dict, label: str = "") -> tuple[str, Path]:
    """Write one generated set as .bench/stamp_recbole/sets/<key>/<key>.inter (kept when it already exists)."""
    from workbench.tasks.recommendation.config import SyntheticSessions
    from workbench.tasks.recommendation.sources import generate_sessions, write_atomic

    spec = SyntheticSessions(**spec_args)
    changed = {k: v for k, v in spec.model_dump().items() if v != SyntheticSessions.model_fields[k].default}
    name = label or ",".join(f"{k}={v}" for k, v in sorted(changed.items())) or "default"
    key = hashlib.sha256(json.dumps(spec.model_dump(), sort_keys=True).encode()).hexdigest()[:10]
    inter = WORK / "sets" / key / f"{key}.inter"
    if not inter.is_file():
        clicks = generate_sessions(spec)
        write_atomic(clicks, inter)
    return name, inter


def parse_set(text: str, base: dict) -> tuple[dict, str]:
    """`[label:]kind=intents,n_items=3000,reclick_prob=0.2` over the knobs given as flags -> (spec, label)."""
    spec = dict(base)
    label, sep, body = text.partition(":")
    if not sep:
        label, body = "", text
    for part in filter(None, body.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--set {text!r}: {part!r} is not key=value")
        spec[KNOBS.get(key.strip(), key.strip())] = value.strip()
    return spec, label


def data_stats(inter: Path) -> str:
    from workbench.tasks.recommendation.sources import read_atomic

    clicks = read_atomic(inter)
    lengths = clicks.groupby("session").size()
    repeats = clicks.duplicated(["session", "item"]).mean()
    return (
        f"{len(clicks):,} clicks, {len(lengths):,} sessions, {clicks['item'].nunique():,} items, "
        f"mean length {lengths.mean():.2f} (max {lengths.max()}), re-clicked {repeats:.1%}"
    )


def file_key(inter: Path, p: dict) -> str:
    digest = hashlib.sha256(inter.read_bytes())
    digest.update(json.dumps({k: v for k, v in p.items() if k != "variant"}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def run_side(python: Path | str, side: str, inter: Path, p: dict, env: dict[str, str] | None = None) -> dict:
    out = WORK / f"{side}.{os.getpid()}.json"  # per driver process: two benchmarks may run at once
    out.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--side", side, "--inter", str(inter), "--protocol", json.dumps(p), "--out", str(out)]
    print(f"running {side} {p.get('variant', '')} ...", flush=True)
    # RecBole writes log/ and log_tensorboard/ into its working directory: keep them under .bench
    proc = subprocess.run(cmd, cwd=WORK, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{side} failed with exit code {proc.returncode}")
    return json.loads(out.read_text())


def run_recbole_cached(inter: Path, p: dict, fresh: bool) -> dict:
    cached = WORK / "recbole-results" / f"{file_key(inter, p)}.json"
    if cached.is_file() and not fresh:
        return {**json.loads(cached.read_text()), "reused": True}
    ensure_recbole_venv()
    result = run_side(VENV_PY, "recbole", inter, p, env=_recbole_env())
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return {**result, "reused": False}


def seeds(count: int) -> list[int]:
    return [2020 + i for i in range(count)]


def combine(runs: list[dict]) -> dict:
    """Several seeds of one side: metrics are means over seeds (with their spread), epoch times pooled."""
    out = {**runs[0], "seeds": len(runs), "reused": all(r.get("reused") for r in runs)}
    for key in ("epoch_cpu_s", "epoch_wall_s"):
        out[key] = [x for r in runs for x in r[key]]
    for key in ("recall@20", "mrr@20"):
        values = [r[key] for r in runs]
        out[key] = statistics.fmean(values)
        out[key + " sd"] = statistics.stdev(values) if len(values) > 1 else float("nan")
        out[key + " runs"] = values
    return out


def diff_se(ours: dict, theirs: dict, key: str) -> float:
    """Standard error of the difference of the two means (Welch: each side's variance over its own seeds);
    nan unless both sides ran at least 2 seeds."""
    a, b = ours[key + " runs"], theirs[key + " runs"]
    if min(len(a), len(b)) < 2:
        return float("nan")
    return (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(name: str, ours: dict[str, dict], theirs: dict, p: dict) -> None:
    reused = " (reused from an earlier run)" if theirs.get("reused") else ""
    print(f"\n== {name}: STAMP, {p['epochs']} epochs, batch {p['train_batch_size']}, lr {p['learning_rate']}, "
          f"d {p['embedding_size']}, maxlen {p['maxlen']}, {p['threads']} thread(s)")  # fmt: skip
    for variant, result in ours.items():
        print(f"samples (train/valid/test): workbench[{variant}] {result['samples']}, RecBole {theirs['samples']}")
    print(f"{'':30}" + "".join(f"{v:>14}" for v in ours) + f"{'RecBole' + ('*' if reused else ''):>12}")
    for label, key in (("train CPU s / epoch (median)", "epoch_cpu_s"), ("train wall s / epoch (median)", "epoch_wall_s")):
        print(f"{label:30}" + "".join(f"{med(r[key]):14.3f}" for r in ours.values()) + f"{med(theirs[key]):12.3f}")
    for key in ("recall@20", "mrr@20"):
        print(f"{'test ' + key:30}" + "".join(f"{r[key]:14.4f}" for r in ours.values()) + f"{theirs[key]:12.4f}")
        print(f"{'  sd over seeds':30}" + "".join(f"{r[key + ' sd']:14.4f}" for r in ours.values()) + f"{theirs[key + ' sd']:12.4f}")
    for variant, result in ours.items():
        for key in ("recall@20", "mrr@20"):
            print(f"per seed {key:9}  [{variant}] " + " ".join(f"{v:.4f}" for v in result[key + " runs"])
                  + "   RecBole " + " ".join(f"{v:.4f}" for v in theirs[key + " runs"]))  # fmt: skip
    print(f"{'seeds':30}" + "".join(f"{r['seeds']:14d}" for r in ours.values()) + f"{theirs['seeds']:12d}")
    if reused:
        print(f"* RecBole{reused}")
    for variant, result in ours.items():
        cpu_ratio = med(result["epoch_cpu_s"]) / med(theirs["epoch_cpu_s"])
        verdicts = [f"CPU/epoch {cpu_ratio:.3f}x ({'PASS' if cpu_ratio <= 0.25 else 'FAIL'} <= 0.25)"]
        for key in ("recall@20", "mrr@20"):
            delta = result[key] - theirs[key]
            se = diff_se(result, theirs, key)
            noise = f", SE {se:.4f}, {delta / se:+.1f} SE" if se > 0 else ""
            verdicts.append(f"{key} {delta:+.4f}{noise} ({'PASS' if delta >= -0.005 else 'FAIL'} >= -0.005)")
        print(f"[{variant}] " + "; ".join(verdicts))


def summary(rows: list[tuple[str, str, str, dict, dict]]) -> None:
    print("\n| set | data | variant | CPU s/epoch ours / RecBole (ratio) | Recall@20 ours / RecBole (diff) "
          "| MRR@20 ours / RecBole (diff) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, stats, variant, ours, theirs in rows:
        a, b = med(ours["epoch_cpu_s"]), med(theirs["epoch_cpu_s"])
        cells = [f"{a:.2f} / {b:.2f} ({a / b:.2f}x)"]
        for key in ("recall@20", "mrr@20"):
            se = diff_se(ours, theirs, key)
            se_note = f" ± {se:.4f}" if se > 0 else ""
            cells.append(f"{ours[key]:.4f} / {theirs[key]:.4f} ({ours[key] - theirs[key]:+.4f}{se_note})")
        seeds_note = f" ({ours['seeds']} vs {theirs['seeds']} seeds)" if max(ours["seeds"], theirs["seeds"]) > 1 else ""
        print(f"| {name} | {stats} | {variant}{seeds_note} | " + " | ".join(cells) + " |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STAMP: workbench vs RecBole 1.2.1")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--embedding", type=int, default=100)
    parser.add_argument("--maxlen", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, action="append", default=[], help="a RecBole .inter file (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="a generated set: knob=value,... (repeatable)")
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="our model variants to train")
    parser.add_argument("--fresh", action="store_true", help="rerun RecBole even where a result is kept")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds of our side (2020, 2021, ...)")
    parser.add_argument("--recbole-seeds", type=int, default=1, help="training seeds of RecBole's side")
    parser.add_argument("--kind", choices=["topics", "intents"], default="intents")
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--sessions", type=int, default=25_000)
    parser.add_argument("--mean-length", type=float, default=9.0)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--length-dist", choices=["geometric", "lognormal", "uniform"], default="geometric")
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--reclick", type=float, default=0.15)
    parser.add_argument("--follow", type=float, default=0.6)
    parser.add_argument("--topics", type=int, default=30)
    parser.add_argument("--successors", type=int, default=4)
    parser.add_argument("--switch", type=float, default=0.05)
    parser.add_argument("--data-seed", type=int, default=7)
    parser.add_argument("--side", choices=["ours", "recbole"], help=argparse.SUPPRESS)
    parser.add_argument("--inter", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser


def base_spec(args: argparse.Namespace) -> dict:
    """The generator knobs given as flags (or their defaults: issue 14's shape), as SyntheticSessions fields."""
    return {field: getattr(args, flag) for flag, field in KNOBS.items()}


def main() -> None:
    args = build_parser().parse_args()
    sys.path.insert(0, str(ROOT))  # children run this file from benchmarks/; the workbench package is at ROOT

    if args.side:  # child process: train one side and write its numbers
        p = json.loads(args.protocol)
        result = run_ours(args.inter, p) if args.side == "ours" else run_recbole(args.inter, p)
        args.out.write_text(json.dumps(result))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    p = protocol(args)
    base = base_spec(args)
    sets = [(path.stem, path.resolve()) for path in args.data]
    sets += [generated_set(*parse_set(text, base)) for text in args.set]
    if not sets:
        sets = [generated_set(base)]
    rows = []
    for name, inter in sets:
        stats = data_stats(inter)
        print(f"\nset {name}: {inter}\n  {stats}", flush=True)
        theirs = combine([run_recbole_cached(inter, {**p, "seed": seed}, args.fresh) for seed in seeds(args.recbole_seeds)])
        ours = {}
        env = {**os.environ, "WORKBENCH_HOME": str(WORK / "home")}
        for variant in args.variant or ["default"]:
            runs = [run_side(sys.executable, "ours", inter, {**p, "variant": variant, "seed": seed}, env=env) for seed in seeds(args.seeds)]
            ours[variant] = combine(runs)
        report(name, ours, theirs, p)
        rows += [(name, stats, variant, result, theirs) for variant, result in ours.items()]
    summary(rows)


if __name__ == "__main__":
    main()
