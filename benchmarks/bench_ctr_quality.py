"""ctr_stream quality on the synthetic stream: infer AUC of the second day against its Bayes-optimal AUC.

    .venv/bin/python benchmarks/bench_ctr_quality.py [--examples-per-slice 10000] [--baseline]

Two synthetic days (48 half-hour slices each, 26 slots), trained with the default config (PaddleRec's 30-minute
slices, 2 slices per pass). `infer/day_auc` of day 2 is the AUC of every day-2 prediction made before the model
trained on that pass; the Bayes-optimal AUC is that of the generator's true click probabilities on the same clicks
(from `_synth.json`). Target: ratio >= 0.97. `--baseline` also trains the bare PyTorch loop of the throughput
benchmark (EmbeddingBag + Adagrad, no table semantics) on the same passes, for reference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workbench.runner.context import RunContext
from workbench.tasks.common import cpu_threads
from workbench.tasks.ctr_stream.config import CtrStreamConfig, SyntheticStream
from workbench.tasks.ctr_stream.data import PassLoader, PassReader, plan_passes
from workbench.tasks.ctr_stream.metrics import CtrMetrics
from workbench.tasks.ctr_stream.model import SlotDNN, log_loss
from workbench.tasks.ctr_stream.synth import generate_stream
from workbench.tasks.ctr_stream.train import run

DAYS = ["20190720", "20190721"]
warnings.filterwarnings("ignore", message="Sparse invariant checks")  # torch's notice on sparse Adagrad


def baseline_day2_auc(cfg: CtrStreamConfig, data_dir: Path) -> float:
    """Bare EmbeddingBag loop over the same passes: infer then train per pass; AUC of day 2's infer predictions."""
    plan = plan_passes(cfg)
    loader = PassLoader(cfg, data_dir, PassReader(cfg), threading.Event())
    passes = [loader.load(spec) for spec in plan]
    all_keys = np.unique(np.concatenate([p.keys for p in passes]))
    torch.manual_seed(cfg.seed)
    emb = nn.EmbeddingBag(all_keys.size, cfg.pull_dim, mode="sum", sparse=True)
    nn.init.uniform_(emb.weight, -1e-4, 1e-4)
    net = SlotDNN(len(cfg.slots), cfg.pull_dim, list(cfg.layer_sizes), cfg.dnn_init_range, cvm=False)
    dense_opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sparse_opt = torch.optim.Adagrad(emb.parameters(), lr=0.05)
    width = len(cfg.slots) * cfg.pull_dim
    day2 = CtrMetrics()
    for spec, p in zip(plan, passes):
        ids = np.searchsorted(all_keys, p.keys)
        batches = [(torch.from_numpy(ids[b.uniq][b.inverse]), torch.from_numpy(b.bag_offsets), b.labels) for b in p.batches]
        with torch.no_grad():
            for tokens, offsets, labels in batches:
                prob = torch.sigmoid(torch.clamp(net.mlp(emb(tokens, offsets).reshape(-1, width)).squeeze(1), -15, 15))
                if spec.day == DAYS[1]:
                    day2.add(prob.numpy(), labels)
        for tokens, offsets, labels in batches:
            prob = torch.sigmoid(torch.clamp(net.mlp(emb(tokens, offsets).reshape(-1, width)).squeeze(1), -15, 15))
            loss = log_loss(prob, torch.from_numpy(labels))
            dense_opt.zero_grad()
            sparse_opt.zero_grad()
            loss.backward()
            dense_opt.step()
            sparse_opt.step()
    return day2.compute("x")["x/auc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples-per-slice", type=int, default=10000)
    parser.add_argument("--baseline", action="store_true", help="also train the bare PyTorch loop for reference")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and run folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ctr_quality_"))
    data_dir = work / "data"
    t0 = time.perf_counter()
    summary = generate_stream(data_dir, slots=list(range(2, 28)), days=DAYS, split_interval=30,
                              settings=SyntheticStream(examples_per_slice=args.examples_per_slice))
    generated = time.perf_counter() - t0
    cfg = CtrStreamConfig(train_data_dir=str(data_dir), start_day=DAYS[0], end_day=DAYS[1], data_donefile="data.done",
                          checkpoint_per_pass=1000, save_delta_frequency=1000)
    ctx = RunContext.local(work / "run", monitor=("infer/auc", "max"))
    t0 = time.perf_counter()
    run(cfg, ctx)
    trained = time.perf_counter() - t0
    ctx.close()
    day_auc = [v for _, v in ctx.backend.series("infer/day_auc")]
    bayes = summary["days"][DAYS[1]]["bayes_auc"]
    print(f"data: 2 days x 48 slices x {args.examples_per_slice} impressions, 26 slots (generated in {generated:.0f} s); "
          f"trained in {trained:.0f} s with {cfg.torch_threads(cpu_threads())} torch thread(s)")
    print(f"day 1: infer AUC {day_auc[0]:.4f}   Bayes-optimal {summary['days'][DAYS[0]]['bayes_auc']:.4f}")
    print(f"day 2: infer AUC {day_auc[1]:.4f}   Bayes-optimal {bayes:.4f}   ratio {day_auc[1] / bayes:.4f} (target >= 0.97)")
    if args.baseline:
        torch.set_num_threads(cfg.torch_threads(cpu_threads()))
        base = baseline_day2_auc(cfg, data_dir)
        print(f"day 2: bare PyTorch loop (EmbeddingBag + Adagrad) infer AUC {base:.4f}   ratio {base / bayes:.4f}")
    print(json.dumps({"day2_infer_auc": day_auc[1], "bayes_auc": bayes, "ratio": day_auc[1] / bayes}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
