"""What a STAMP training step costs beyond the full softmax: the floor set by logits + CE + Adam over the item table.

    .venv/bin/python benchmarks/bench_stamp_softmax_floor.py --items 1000 3000 10000 --steps 200

Per n_items, one thread, batch 128, embedding 100, each variant timed in CPU ms per step, alternated step by step
in one process (so a shared machine slows them alike):
- `mkl+F.ce`: logits = h @ E^T, F.cross_entropy, backward to h and E, fused Adam on E: the products through
  torch's default CPU sgemm, as RecBole's STAMP (and ours before issue 14's speed-up) computes them;
- `ours`: `kernels.full_softmax_ce` (oneDNN products, one autograd node) and fused Adam on E;
- `stamp step`: a whole training step of our STAMP (forward, loss, backward, Adam over every parameter) on random
  sessions of mean length 9 (real data changes T, the clicks per batch, and little else).
`floor share` = ours / stamp step: the part of our step that is the full softmax and Adam over the table.
Multiply by the steps of an epoch (train samples / 128) for seconds per epoch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.tasks.optim import backward_and_step, build_optimizer  # noqa: E402
from workbench.tasks.recommendation.data import SessionBatch  # noqa: E402
from workbench.tasks.recommendation.kernels import full_softmax_ce  # noqa: E402
from workbench.tasks.recommendation.model import STAMP  # noqa: E402

B, D, L = 128, 100, 40


def softmax_step(kind: str, h: torch.Tensor, table: torch.nn.Parameter, target: torch.Tensor, opt) -> None:
    hh = h.detach().requires_grad_()
    loss = F.cross_entropy(hh @ table.T, target) if kind == "mkl+F.ce" else full_softmax_ce(hh, table, target)
    opt.zero_grad()
    loss.backward()
    opt.step()


def random_batch(n_items: int, gen: torch.Generator) -> SessionBatch:
    length = torch.distributions.Geometric(probs=torch.tensor(1 / 9)).sample((B,)).long().clamp(1, L)
    seq = torch.randint(1, n_items, (B, L), generator=gen) * (torch.arange(L) < length.unsqueeze(1))
    return SessionBatch(user=torch.arange(B), item_seq=seq, item_len=length, target=torch.randint(1, n_items, (B,), generator=gen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 3000, 5000, 10000])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| n_items | mkl+F.ce ms/step | ours ms/step | stamp step ms | floor share |\n|---|---|---|---|---|")
    for n in args.items:
        gen = torch.Generator().manual_seed(0)
        h = torch.randn(B, D, generator=gen) * 0.1
        target = torch.randint(1, n, (B,), generator=gen)
        tables = {k: torch.nn.Parameter(torch.randn(n, D, generator=gen) * 0.002) for k in ("mkl+F.ce", "ours")}
        opts = {k: torch.optim.Adam([t], lr=0.005, fused=True) for k, t in tables.items()}
        model = STAMP(n, D, "CE")
        optimizer = build_optimizer("adam", model, 0.005)
        params = list(model.parameters())
        batches = [random_batch(n, gen) for _ in range(16)]
        spent = {"mkl+F.ce": 0.0, "ours": 0.0, "stamp": 0.0}
        for i in range(args.steps + 10):
            timed = i >= 10  # warm-up steps are not counted
            for kind in ("mkl+F.ce", "ours"):
                start = time.process_time()
                softmax_step(kind, h, tables[kind], target, opts[kind])
                spent[kind] += (time.process_time() - start) * timed
            start = time.process_time()
            backward_and_step(model.calculate_loss(batches[i % len(batches)]), optimizer, params)
            spent["stamp"] += (time.process_time() - start) * timed
        ms = {k: v / args.steps * 1e3 for k, v in spent.items()}
        print(f"| {n:,} | {ms['mkl+F.ce']:.2f} | {ms['ours']:.2f} | {ms['stamp']:.2f} | {ms['ours'] / ms['stamp']:.0%} |")


if __name__ == "__main__":
    main()
