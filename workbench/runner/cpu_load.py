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
from collections import deque

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
    """Cores to leave to other processes, from what they used lately; `threads_cap` is called every few hundred ms.

    Two windows, because the two ways of being wrong cost very differently (quick STAMP, 12 epochs, 2 cores;
    docs/dashboard.md): 2 threads beside a process that keeps a core busy took 276-314 s against 7.5 s with 1
    thread, while beside one that is busy a fifth of the time (a live Dashboard between page loads: ~0.1-0.2 core)
    2 threads did as well as 1, and without neighbours 2 threads are ~1.3x faster.
    - A core is left as soon as the others used more than `enter` of one over the last `fast` seconds: a page load
      or a Streamlit rerun is a burst of a whole core for a second or two, and every moment of it at 2 threads is lost.
      A short redraw stays under it (session 7's status fragment, every 5 s: 0.25-0.65 CPU s of server and browser
      in ~0.5 s): with a 0.5 s window it took the worker to 1 thread for 2-3 s of every 5.
    - It is taken back only when they used less than `release` over the last `slow` seconds.
    """

    def __init__(self, cores: int, enter: float = 0.6, release: float = 0.3, fast: float = 1.0, slow: float = 2.0):
        self.cores = cores
        self.enter, self.release = enter, release
        self.fast, self.slow = fast, slow
        self.leave = 0
        self._samples: deque[tuple[float, float, float]] = deque()  # (monotonic time, machine busy s, own busy s)

    def _sample(self) -> bool:
        busy = _machine_busy_s()
        if busy is None:
            return False
        now = time.monotonic()
        self._samples.append((now, busy, _own_busy_s()))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.slow:
            self._samples.popleft()  # keep one sample at least `slow` old
        return True

    def others_cores(self, window: float) -> float | None:
        """Cores the other processes kept busy over (about) the last `window` seconds, from the samples taken."""
        if len(self._samples) < 2:
            return None
        now, busy, own = self._samples[-1]
        start = next((s for s in reversed(self._samples) if now - s[0] >= window), self._samples[0])
        if now - start[0] <= 0:
            return None
        return max(0.0, (busy - start[1]) - (own - start[2])) / (now - start[0])

    def threads_cap(self) -> int | None:
        """At most this many threads for this process now (None: not known yet, or not measurable here)."""
        if self.cores < 2 or not self._sample():
            return None
        fast, slow = self.others_cores(self.fast), self.others_cores(self.slow)
        if fast is None or slow is None:
            return None
        burst = min(self.cores - 1, max(0, math.ceil(fast - self.enter)))
        if burst > self.leave:
            self.leave = burst
        elif slow < self.leave - 1 + self.release:
            self.leave = max(0, math.ceil(slow - self.enter))  # below `leave`: release < enter
        return self.cores - self.leave
