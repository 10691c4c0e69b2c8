"""Helpers that several tasks' training loops share: seeding, device choice, distributed set-up.

Imported only inside worker processes (it imports torch).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, NumPy and torch; each distributed rank gets its own stream (seed + rank)."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` -> CUDA if available else CPU; `cuda` without a GPU is an error with a clear message."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_threads() -> int:
    """Threads for intra-op parallelism.

    `WORKBENCH_CPU_THREADS` wins when set. Otherwise the cores this process may use, split across the training
    processes that share them: `WORKBENCH_CPU_SHARE`, which the worker sets to the processes of all active runs
    when it starts (see runner/worker.py), else this run's local ranks. Oversubscribing is far worse than idling a
    core: torch's threads wait on each other at every op, so two quick STAMP runs with 2 threads each on 2 cores
    took 41.9 s, against 12.8 s with 1 thread each (one alone: 8.3 s with 2 threads).
    """
    forced = os.environ.get("WORKBENCH_CPU_THREADS")
    if forced:
        return max(1, int(forced))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sharing = int(os.environ.get("WORKBENCH_CPU_SHARE") or os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // max(1, sharing))
