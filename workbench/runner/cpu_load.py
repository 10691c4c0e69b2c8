"""How many cores other processes keep busy, so a worker's torch threads leave them room.

Why: torch's intra-op threads (OpenMP) split every op and wait for each other at its end, so when another process
takes one of the cores a thread runs on, every op waits for that thread's next time slice. A quick STAMP run with 2
threads on 2 cores took 194 s beside a process spinning on one core, against 48 s with 1 thread (both under the same
outside load; docs/dashboard.md). A live Dashboard (UI server plus browser) is such a process.
"""

from __future__ import annotations

import math
import os
import time

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float | None:
    """CPU seconds all processes spent busy since boot (/proc/stat: all but idle and iowait), None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS


def _own_busy_s() -> float:
    t = os.times()
    return t.user + t.system


class CoreReserve:
    """Cores to leave to other processes, from what they used between two calls of `threads_cap`.

    A core is left as soon as the others use more than `threshold` of one (a live Dashboard: ~0.2-0.4 core), and
    given back only when they use less than half that (hysteresis, so the thread count does not flap).
    """

    def __init__(self, cores: int, threshold: float = 0.2):
        self.cores = cores
        self.threshold = threshold
        self.leave = 0
        self._last: tuple[float, float, float] | None = None

    def others_cores(self) -> float | None:
        busy = _machine_busy_s()
        if busy is None:
            return None
        now, own = time.monotonic(), _own_busy_s()
        last, self._last = self._last, (now, busy, own)
        if last is None or now - last[0] <= 0:
            return None
        return max(0.0, (busy - last[1]) - (own - last[2])) / (now - last[0])

    def threads_cap(self) -> int | None:
        """At most this many threads for this process now (None: not known yet, or not measurable here)."""
        others = self.others_cores()
        if others is None or self.cores < 2:
            return None
        want = min(self.cores - 1, max(0, math.ceil(others - self.threshold)))
        if want > self.leave or others < self.leave - 1 + self.threshold / 2:
            self.leave = want
        return self.cores - self.leave
