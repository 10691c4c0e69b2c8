"""Runs share the CPU cores: a run's torch threads follow the number of training processes active."""

from __future__ import annotations

import signal

import pytest
import torch

from workbench.runner import cpu_load
from workbench.runner.context import ThreadShare
from workbench.tasks.common import cpu_threads


class NoNeighbours(cpu_load.CoreReserve):
    """Other processes never busy (the machine running the tests may well be)."""

    def __init__(self, cap: int | None = None):
        super().__init__(cores=2)
        self.cap = cap

    def threads_cap(self) -> int | None:
        return self.cap


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
    share = ThreadShare(lambda: sharing["now"], reserve=NoNeighbours())

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
    share = ThreadShare(lambda: sharing["now"], interval=0.05, reserve=NoNeighbours())
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


@pytest.fixture()
def cpu_clock(monkeypatch):
    """A fake /proc/stat and clock: run(reserve, seconds, own, others) looks every 0.25 s and returns the caps seen."""
    clock = {"t": 0.0, "machine": 0.0, "own": 0.0}
    monkeypatch.setattr(cpu_load, "_machine_busy_s", lambda: clock["machine"])
    monkeypatch.setattr(cpu_load, "_own_busy_s", lambda: clock["own"])
    monkeypatch.setattr(cpu_load.time, "monotonic", lambda: clock["t"])

    def run(reserve: cpu_load.CoreReserve, seconds: float, own_cores: float, others_cores: float) -> list[int | None]:
        out = []
        for _ in range(round(seconds / 0.25)):
            clock["t"] += 0.25
            clock["own"] += own_cores * 0.25
            clock["machine"] += (own_cores + others_cores) * 0.25
            out.append(reserve.threads_cap())
        return out

    return run


def test_core_reserve_leaves_a_core_at_once_in_a_burst_and_takes_it_back_after_a_quiet_while(cpu_clock):
    reserve = cpu_load.CoreReserve(cores=2)  # enter over 0.6 core in the last 1 s, release under 0.3 over 2 s

    def caps(seconds: float, own_cores: float, others_cores: float) -> list[int | None]:
        return cpu_clock(reserve, seconds, own_cores, others_cores)

    assert reserve.threads_cap() is None  # the first look has nothing to compare with
    assert caps(2, 2.0, 0.05) == [2] * 8  # the worker alone uses both cores
    assert caps(4, 1.8, 0.2) == [2] * 16  # a live dashboard between updates: 2 threads do as well as 1 beside it
    assert caps(0.5, 1.4, 0.6) + caps(4.5, 1.8, 0.2) == [2] * 20  # the status redraw: half a second at 0.6 core
    assert caps(0.25, 1.0, 1.0) == [2]  # a page load: not yet at the first look...
    assert caps(0.5, 1.0, 1.0)[-1] == 1  # ... but a core is left within the second
    assert caps(1, 1.0, 0.1) == [1] * 4  # a quiet second is not enough to take it back (no flapping)
    assert caps(1, 1.0, 0.1)[-1] == 2  # quiet over the last 2 s: taken back
    assert caps(1, 1.8, 0.5) == [2] * 4  # steady at 0.5: not a burst
    assert caps(1, 1.0, 0.8)[-1] == 1  # steady at 0.8 is
    assert caps(2, 1.5, 0.4)[-1] == 1  # ... and 0.4 is not quiet enough to take the core back
    assert caps(2, 0.5, 1.5)[-1] == 1  # never fewer than one thread, even on a machine others saturate


def test_core_reserve_on_four_cores_leaves_what_the_neighbours_use(cpu_clock):
    reserve = cpu_load.CoreReserve(cores=4)
    reserve.threads_cap()

    def cap_after(seconds: float, others_cores: float) -> int | None:
        return cpu_clock(reserve, seconds, 1.0, others_cores)[-1]

    assert cap_after(1, 0.1) == 4
    assert cap_after(1, 1.8) == 2  # two cores' worth of neighbours
    assert cap_after(3, 1.1) == 3  # one of them went away
    assert cap_after(3, 0.0) == 4


def test_thread_share_caps_the_threads_at_what_the_neighbours_leave(monkeypatch):
    monkeypatch.delenv("WORKBENCH_CPU_THREADS", raising=False)
    monkeypatch.setenv("WORKBENCH_CPU_SHARE", "1")
    before = torch.get_num_threads()
    reserve = NoNeighbours()
    share = ThreadShare(lambda: 1, reserve=reserve)
    try:
        torch.set_num_threads(2)
        share.poll()
        share.apply()
        assert torch.get_num_threads() == 2
        reserve.cap = 1  # a dashboard's server and browser took a core
        assert share.poll()  # a change: the watcher interrupts the training thread
        share.apply()
        assert torch.get_num_threads() == 1
        reserve.cap = 2  # they went quiet: back to the task's own choice
        assert share.poll()
        share.apply()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
