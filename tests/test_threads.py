"""Runs share the CPU cores: a run's torch threads follow the number of training processes active."""

from __future__ import annotations

import signal

import torch

from workbench.runner.context import ThreadShare
from workbench.tasks.common import cpu_threads


def test_cpu_threads_divides_the_cores_by_the_processes_sharing_them(monkeypatch):
    monkeypatch.delenv("WORKBENCH_CPU_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    monkeypatch.setenv("WORKBENCH_CPU_SHARE", "3")
    assert cpu_threads() == 2
    monkeypatch.setenv("WORKBENCH_CPU_SHARE", "16")
    assert cpu_threads() == 1  # never 0
    monkeypatch.setenv("WORKBENCH_CPU_THREADS", "5")
    assert cpu_threads() == 5  # a fixed count wins


def test_thread_share_rescales_the_tasks_choice_as_runs_come_and_go(monkeypatch):
    monkeypatch.delenv("WORKBENCH_CPU_THREADS", raising=False)
    monkeypatch.setenv("WORKBENCH_CPU_SHARE", "1")  # the task started alone
    sharing = {"now": 1}
    before = torch.get_num_threads()
    share = ThreadShare(lambda: sharing["now"])

    def threads_when(count: int) -> int:
        sharing["now"] = count
        share.poll()  # the watcher's look at the store
        share.apply()  # on the training thread
        return torch.get_num_threads()

    try:
        torch.set_num_threads(4)  # the task's own choice when it started
        assert threads_when(1) == 4
        assert threads_when(2) == 2  # a second run started
        assert threads_when(5) == 1
        assert threads_when(1) == 4  # the others ended: back to the task's choice, not more
        torch.set_num_threads(3)  # the task changes its own threads (alone): that is the new base
        assert threads_when(3) == 1
        assert threads_when(1) == 3
        monkeypatch.setenv("WORKBENCH_CPU_THREADS", "3")  # fixed by the user: left alone
        assert threads_when(2) == 3
    finally:
        torch.set_num_threads(before)


def test_the_watcher_interrupts_the_main_thread_to_apply_a_change(monkeypatch):
    """A training loop that calls neither ctx.log nor ctx.progress for a while still gets its threads cut."""
    import time

    monkeypatch.delenv("WORKBENCH_CPU_THREADS", raising=False)
    monkeypatch.setenv("WORKBENCH_CPU_SHARE", "1")
    before = torch.get_num_threads()
    sharing = {"now": 1}
    share = ThreadShare(lambda: sharing["now"], interval=0.05)
    try:
        torch.set_num_threads(2)
        share.start()
        time.sleep(0.3)  # the first look: nothing to change
        sharing["now"] = 2
        deadline = time.time() + 5
        while torch.get_num_threads() != 1 and time.time() < deadline:
            sum(i * i for i in range(20_000))  # busy Python on the main thread, no context calls
        assert torch.get_num_threads() == 1
    finally:
        share.stop()
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        torch.set_num_threads(before)
