"""One rank of a ctr_stream test job: `python ctr_dist_rank.py RANK WORLD JOB.json` (tests/tasks/ctr_stream/
test_ctr_dist.py starts WORLD of them). Joins a gloo group through a file store, then, by the job's `mode`
(under torchrun, `ctr_dist_rank.py env env JOB.json`: rank and world from torchrun's environment, the group
through its rendezvous, as the worker joins it):
- "run": ctr_stream's run(cfg, ctx) with ctx for this rank (resuming from `resume` when given);
- "load": builds the trainer and loads `init_model_path` (a saved folder) or `state` (a resumable .pt) only.
Writes `{out}/rank-{RANK}.pt`: this rank's table state, the metrics and checkpoint rows its context recorded, its
metric sums before the ranks' reduction, and the error message when it failed. Test hooks: `fail_rank` raises on that rank in its pass `fail_at_pass`;
`stop_rank` requests a stop on that rank after `stop_after_steps` training steps; `hang_rank` sleeps
`hang_s` seconds in its pass `hang_at_pass` (then raises), and writes `hang-woke.json` recording whether the other
ranks' results were already there when it woke; `no_all_to_all` makes all_to_all_single raise, as on a backend
without it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's workbench, not an installed one


def main(rank: int, world: int, job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    if rank < 0:  # under torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT come from its rendezvous
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        dist.init_process_group("gloo", init_method=f"file://{job['store']}", rank=rank, world_size=world)
    from workbench.runner.checkpoints import load_checkpoint_file
    from workbench.runner.context import MemoryBackend, RunContext
    from workbench.tasks.ctr_stream import train as ctr_train
    from workbench.tasks.ctr_stream import trainer as ctr_trainer
    from workbench.tasks.ctr_stream.config import CtrStreamConfig
    from workbench.tasks.ctr_stream.ps import Dist, rank_error_dir

    cfg = CtrStreamConfig.model_validate(job["config"])
    resume = load_checkpoint_file(job["resume"]) if job.get("resume") else None
    backend = MemoryBackend()
    ctx = RunContext(run_id="dist-test", run_dir=Path(job["run_dir"]), backend=backend, monitor=("infer/auc", "max"),
                     keep_ckpt=50, rank=rank, world_size=world, resume_state=resume)
    result: dict = {"error": None}
    trainer_box: list = []
    original_init = ctr_trainer.CtrTrainer.__init__

    def keep_trainer(self, *args, **kwargs):  # the test reads the trainer's table at the end
        original_init(self, *args, **kwargs)
        trainer_box.append(self)

    ctr_trainer.CtrTrainer.__init__ = keep_trainer
    ctr_train.CtrTrainer = ctr_trainer.CtrTrainer
    local_stats: list = []  # this rank's metric sums before they are reduced: infer, then train, per pass
    reduce = ctr_train.reduce_metrics

    def keep_local(metrics, all_sum):
        local_stats.append(metrics.state())
        return reduce(metrics, all_sum)

    ctr_train.reduce_metrics = keep_local
    _install_hooks(job, rank, ctx, ctr_trainer)
    if job.get("no_all_to_all"):  # a backend without all_to_all_single

        def missing(*args, **kwargs):
            raise RuntimeError("ProcessGroupGloo does not support alltoall")

        dist.all_to_all_single = missing
    try:
        if job["mode"] == "run":
            ctr_train.run(cfg, ctx)
        else:
            trainer = ctr_trainer.CtrTrainer(cfg, torch.device("cpu"),
                                             Dist.setup(rank, world, cfg.shard_num, rank_error_dir(ctx.run_dir)))
            if job.get("state"):
                trainer.load_state_dict(load_checkpoint_file(job["state"])["state"])
            else:
                ctr_train._warm_start(cfg, ctx, trainer)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        ctx.close()
    if trainer_box:
        result["table"] = trainer_box[-1].table.state_dict()
    result["metrics"] = backend.metrics
    result["local_stats"] = local_stats
    result["checkpoints"] = [c.path for c in backend.checkpoints]
    torch.save(result, Path(job["out"]) / f"rank-{rank}.pt")
    return 1 if result["error"] else 0


def _install_hooks(job: dict, rank: int, ctx, ctr_trainer) -> None:
    original_train = ctr_trainer.CtrTrainer.train
    calls = {"n": 0}

    def train(self, data, steps, metrics, start, should_stop, on_step, dump=None):
        calls["n"] += 1
        if job.get("fail_rank") == rank and calls["n"] == job.get("fail_at_pass", 1):
            raise ValueError(f"boom on rank {rank}")
        if job.get("hang_rank") == rank and calls["n"] == job.get("hang_at_pass", 1):
            time.sleep(job["hang_s"])  # the others' next collective waits for this rank
            out = Path(job["out"])
            others = [r for r in range(job["world"]) if r != rank]
            (out / "hang-woke.json").write_text(json.dumps(
                {"others_done": all((out / f"rank-{r}.pt").exists() for r in others)}))
            raise ValueError(f"woke up on rank {rank}")
        if job.get("stop_rank") == rank:
            def stepped(step: int, loss: float) -> None:
                on_step(step, loss)
                if step >= job["stop_after_steps"]:
                    ctx.request_stop()  # as SIGTERM does, on this rank only
            return original_train(self, data, steps, metrics, start, should_stop, stepped, dump)
        return original_train(self, data, steps, metrics, start, should_stop, on_step, dump)

    ctr_trainer.CtrTrainer.train = train


if __name__ == "__main__":
    env = sys.argv[1] == "env"
    sys.exit(main(-1 if env else int(sys.argv[1]), -1 if env else int(sys.argv[2]), sys.argv[3]))
