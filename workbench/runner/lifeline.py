"""Processes that die with their parent: what keeps a run's processes from outliving a killed Ray worker.

Under the ray executor the supervisor is the child of a Ray actor; when Ray's worker process or its node dies, the
run is `lost` and nothing of it may go on training (a worker left behind would keep writing to the store and the
run folder). The actor sets WORKBENCH_DIE_WITH_PARENT to its pid; each process started with it asks Linux for a
SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), checks that the parent did not die before that took hold, and
passes its own pid down, so the chain actor -> supervisor -> torchrun -> ranks (or -> worker) falls as one.
`python -m workbench.runner.lifeline MODULE ARGS...` does this for a module that does not (torchrun, the worker).
The local executor does not set the variable: its processes behave as they always did.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

ENV = "WORKBENCH_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_ORPHANED = 75  # the parent was gone before the death signal was armed


def active() -> bool:
    return bool(os.environ.get(ENV))


def die_with_parent() -> None:
    """Arm the parent-death SIGKILL if ENV asks for it; exit at once if the parent it names is already gone."""
    expected = os.environ.get(ENV)
    if not expected:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(expected):
        print(f"[lifeline] parent {expected} is gone before this process (pid {os.getpid()}) started: exiting", file=sys.stderr, flush=True)
        os._exit(EXIT_ORPHANED)
    os.environ[ENV] = str(os.getpid())  # our children die with us


def wrap(command: list[str]) -> list[str]:
    """`python -m MODULE ARGS` -> `python -m workbench.runner.lifeline MODULE ARGS` when ENV is set."""
    if not active() or command[1:2] != ["-m"]:
        return command
    return [command[0], "-m", "workbench.runner.lifeline", *command[2:]]


def wrap_module_args(args: list[str]) -> list[str]:
    """torchrun's `-m MODULE ARGS` for its ranks -> `-m workbench.runner.lifeline MODULE ARGS` when ENV is set."""
    return ["-m", "workbench.runner.lifeline", *args] if active() else ["-m", *args]


if __name__ == "__main__":
    die_with_parent()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
