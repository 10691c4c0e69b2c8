"""STAMP: is our pipeline RecBole 1.2.1's, step by step, on one session file? (issue 14)

    .venv/bin/python benchmarks/check_stamp_recbole.py \
        --set "short-reclick:n_items=1000,mean_length=5,length_distribution=lognormal,reclick_prob=0.35"
    .venv/bin/python benchmarks/check_stamp_recbole.py --data sessions.inter --steps 1000

Three checks, each side in its own process and venv (RecBole's: bench_stamp_recbole.py builds it):
1. samples: RecBole's train / valid / test samples (prefix -> target, as item tokens, after its augmentation,
   LS valid_and_test split and MAX_ITEM_LIST_LENGTH truncation) against ours, as multisets per split;
2. evaluation: our weights after `--steps` training steps, with the item table permuted into RecBole's item ids,
   scored by RecBole's own `Trainer.evaluate` on its valid and test loaders, against our `evaluate_split`;
3. training: RecBole's STAMP.calculate_loss + torch.optim.Adam (RecBole's learner) replaying our batches from our
   initial weights, loss per step against ours; and, as the yardstick for float rounding, our model with
   torch's for-loop Adam instead of the fused one (the same math, other rounding). Training STAMP amplifies
   rounding differences once it takes off, so the trajectories agree to float precision for the first hundred or so
   steps and then drift apart like different seeds: the question is whether RecBole drifts from ours earlier or
   further than our own rounding control does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench_stamp_recbole import (
    VENV_PY,
    WORK,
    _recbole_env,
    base_spec,
    build_parser,
    ensure_recbole_venv,
    generated_set,
    parse_set,
)

METRICS = ("recall@20", "mrr@20", "recall@10", "ndcg@20")


def ours(inter: Path, out: Path, steps: int, seed: int) -> None:
    """Our side: samples, K training steps (fused Adam and, as a rounding control, for-loop Adam), metrics."""
    import torch

    from workbench.tasks.common import seed_everything
    from workbench.tasks.optim import build_optimizer
    from workbench.tasks.recommendation.config import RecommendationData
    from workbench.tasks.recommendation.data import load_session_data
    from workbench.tasks.recommendation.metrics import evaluate_split
    from workbench.tasks.recommendation.model import STAMP

    torch.set_num_threads(1)
    settings = RecommendationData(source="atomic", path=str(inter), min_item_count=1, maxlen=40, cache=False)
    data = load_session_data(settings)
    tokens = ["[PAD]"] + data.item_tokens
    samples = {}
    for split in ("train", "valid", "test"):
        b = data.batch(split, torch.arange(len(data.splits[split])))
        rows = zip(b.item_seq.tolist(), b.item_len.tolist(), b.target.tolist())
        samples[split] = [[[tokens[i] for i in s[:n]], tokens[t]] for s, n, t in rows]
    seed_everything(seed)
    init = {k: v.clone() for k, v in STAMP(data.n_items, 100, "CE").state_dict().items()}
    n = len(data.splits["train"])
    epochs = range(steps * 128 // n + 1)
    order = torch.cat([torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + e)) for e in epochs])
    batches = [data.batch("train", idx) for idx in order.split(128)[:steps]]
    runs = {}
    for optimizer in ("fused", "loop"):
        model = STAMP(data.n_items, 100, "CE")
        model.load_state_dict(init)
        if optimizer == "fused":
            opt = build_optimizer("adam", model, 0.005)  # what `workbench run` uses
        else:
            opt = torch.optim.Adam(model.parameters(), lr=0.005, foreach=False)
        losses = []
        for batch in batches:
            loss = model.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        metrics = {
            s: evaluate_split(model, data, s, metrics=["Recall", "MRR", "NDCG"], topk=[10, 20], batch_size=1024,
                              device=torch.device("cpu"))
            for s in ("valid", "test")
        }  # fmt: skip
        runs[optimizer] = {"losses": losses, "metrics": metrics, "trained": model.state_dict()}
    torch.save({"init": init, "tokens": tokens, "samples": samples, "runs": runs,
                "batches": [(b.item_seq, b.item_len, b.target) for b in batches]}, out)  # fmt: skip


def recbole(inter: Path, ours_file: Path, out: Path) -> None:
    """RecBole's side: its samples, its evaluation of our trained weights, its training on our batches."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.model.sequential_recommender import STAMP
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(1)
    config = Config(
        model="STAMP",
        dataset=inter.stem,
        config_dict={
            "data_path": str(inter.parent.parent), "USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp", "load_col": {"inter": ["session_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": 40, "loss_type": "CE", "train_neg_sample_args": None, "embedding_size": 100,
            "eval_batch_size": 1024, "topk": [10, 20], "metrics": ["Recall", "MRR", "NDCG"], "valid_metric": "MRR@20",
            "metric_decimal_place": 7, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
            "use_gpu": False, "seed": 2020, "reproducibility": True, "show_progress": False, "worker": 0,
            "checkpoint_dir": tempfile.mkdtemp(),
        },
    )  # fmt: skip
    init_seed(2020, True)
    dataset = create_dataset(config)
    loaders = dict(zip(("train", "valid", "test"), data_preparation(config, dataset)))
    item_tokens = [str(t) for t in dataset.field2id_token["item_id"]]
    samples = {}
    for split, loader in loaders.items():
        feat = loader._dataset.inter_feat
        rows = zip(feat["item_id_list"].tolist(), feat["item_length"].tolist(), feat["item_id"].tolist())
        samples[split] = [[[item_tokens[i] for i in s[:n]], item_tokens[t]] for s, n, t in rows]

    theirs = torch.load(ours_file, weights_only=False)
    our_id = {t: i for i, t in enumerate(theirs["tokens"])}
    perm = torch.tensor([our_id[t] for t in item_tokens])  # RecBole item id -> our item id (PAD 0 -> 0)
    to_recbole = torch.empty_like(perm)
    to_recbole[perm] = torch.arange(len(perm))  # our item id -> RecBole's

    def in_recbole_ids(state: dict) -> dict:
        return {**state, "item_embedding.weight": state["item_embedding.weight"][perm]}

    def evaluate(model: STAMP) -> dict:
        trainer = Trainer(config, model)
        out = {}
        for split in ("valid", "test"):
            result = trainer.evaluate(loaders[split], load_best_model=False, show_progress=False)
            out[split] = {k: float(v) for k, v in result.items()}
        return out

    model = STAMP(config, loaders["train"]._dataset)
    model.load_state_dict(in_recbole_ids(theirs["runs"]["fused"]["trained"]))
    eval_of_ours = evaluate(model)

    model = STAMP(config, loaders["train"]._dataset)
    model.load_state_dict(in_recbole_ids(theirs["init"]))
    opt = torch.optim.Adam(model.parameters(), lr=0.005)  # Trainer._build_optimizer for learner adam
    model.train()
    losses = []
    for seq, length, target in theirs["batches"]:
        batch = {"item_id_list": to_recbole[seq], "item_length": length, "item_id": to_recbole[target]}
        loss = model.calculate_loss(Interaction(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    result = {"samples": samples, "eval_of_ours": eval_of_ours, "losses": losses, "metrics": evaluate(model)}
    out.write_text(json.dumps(result))


def compare(ours_file: Path, recbole_file: Path) -> None:
    import torch

    mine = torch.load(ours_file, weights_only=False)
    theirs = json.loads(recbole_file.read_text())
    print("1. samples (prefix tokens -> target token), multisets per split:")
    for split in ("train", "valid", "test"):
        a = Counter((tuple(p), t) for p, t in mine["samples"][split])
        b = Counter((tuple(p), t) for p, t in theirs["samples"][split])
        print(f"   {split:5}: ours {sum(a.values()):,}, RecBole {sum(b.values()):,}, only ours {sum((a - b).values())}, "
              f"only RecBole {sum((b - a).values())} -> {'identical' if a == b else 'DIFFERENT'}")  # fmt: skip
    steps = len(mine["batches"])
    print(f"2. our weights after {steps} steps, evaluated by each side:")
    for split in ("valid", "test"):
        ours_m, rb = mine["runs"]["fused"]["metrics"][split], theirs["eval_of_ours"][split]
        print(f"   {split:5}: " + "  ".join(f"{k} {ours_m[k]:.6f} / {rb[k]:.6f}" for k in METRICS))
    fused, loop, rb = mine["runs"]["fused"]["losses"], mine["runs"]["loop"]["losses"], theirs["losses"]

    def first_over(a: list[float], b: list[float], tol: float) -> str:
        return next((str(i) for i, (x, y) in enumerate(zip(a, b)) if abs(x - y) > tol), "none")

    print(f"3. training loss per step from the same weights and batches: ours (fused Adam) vs RecBole, and vs ours "
          f"with for-loop Adam (rounding control)")  # fmt: skip
    for tol in (1e-5, 1e-3, 1e-2):
        print(f"   first step with |diff| > {tol:g}: RecBole {first_over(fused, rb, tol)}, "
              f"for-loop Adam {first_over(fused, loop, tol)}")  # fmt: skip
    for s in sorted({0, 50, 100, 150, 200, 300, 500, steps - 1}):
        if s < steps:
            print(f"   step {s:5d}: loss ours {fused[s]:.6f}; minus ours: RecBole {rb[s] - fused[s]:+.2e}, "
                  f"for-loop Adam {loop[s] - fused[s]:+.2e}")  # fmt: skip
    test = {"ours": mine["runs"]["fused"]["metrics"]["test"], "RecBole": theirs["metrics"]["test"],
            "for-loop Adam": mine["runs"]["loop"]["metrics"]["test"]}  # fmt: skip
    print(f"   test recall@20 / mrr@20 after {steps} steps: "
          + ", ".join(f"{name} {m['recall@20']:.4f} / {m['mrr@20']:.4f}" for name, m in test.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description="STAMP: our pipeline vs RecBole 1.2.1, step by step")
    parser.add_argument("--data", type=Path, help="a RecBole .inter file")
    parser.add_argument("--set", help="a generated set: [label:]knob=value,... (bench_stamp_recbole.py's --set)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (batches of 128) to compare")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--side", choices=["ours", "recbole"], help=argparse.SUPPRESS)
    parser.add_argument("--inter", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ours-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    if args.side == "ours":
        return ours(args.inter, args.out, args.steps, args.seed)
    if args.side == "recbole":
        return recbole(args.inter, args.ours_file, args.out)

    if args.data:
        inter = args.data.resolve()
    else:
        # over the benchmark's default knobs, so the same --set names the same file as in bench_stamp_recbole.py
        inter = generated_set(*parse_set(args.set or "", base_spec(build_parser().parse_args([]))))[1]
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_recbole_venv()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        ours_file, recbole_file = Path(tmp) / "ours.pt", Path(tmp) / "recbole.json"
        me = [sys.executable, __file__, "--inter", str(inter), "--steps", str(args.steps), "--seed", str(args.seed)]
        print(f"{inter}: our side ...", flush=True)
        subprocess.run([*me, "--side", "ours", "--out", str(ours_file)], check=True)
        print("RecBole's side ...", flush=True)
        cmd = [str(VENV_PY), __file__, "--side", "recbole", "--inter", str(inter), "--ours-file", str(ours_file),
               "--out", str(recbole_file)]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=WORK, env=_recbole_env(), stdout=subprocess.DEVNULL)  # RecBole logs a lot
        compare(ours_file, recbole_file)


if __name__ == "__main__":
    main()
