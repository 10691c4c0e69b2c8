"""Vectorised uint64 key -> row index: an open-addressing hash table held in one int32 numpy array.

Why not a dict: a Python dict costs ~100 bytes per key plus a Python int per key, and every lookup is a Python call.
Here a lookup of n keys is a handful of numpy passes over n-element arrays (one round per probe step, and only the
keys still probing take part in the next round), and the index costs 4 bytes / load factor per key (~6.5 bytes at
the average load of 0.62).

Layout: `slots[i]` holds a row number of the table or -1 (empty). The key itself is not duplicated: a probe compares
`table_keys[slots[i]]` with the query. Linear probing from a home slot computed from a 64-bit mix of the key
(splitmix64), mapped to [0, capacity) by multiply-shift so the capacity needs not be a power of two. Keys are never
deleted one by one: the table compacts its rows at shrink time and rebuilds the index in one bulk insert.
"""

from __future__ import annotations

import numpy as np

EMPTY = -1
MAX_LOAD = 0.75  # grow past this load factor
GROWTH = 1.5  # capacity multiplier on growth (load then drops to 0.5)
MIN_CAPACITY = 1024

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(keys: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads sequential or clustered ids over all 64 bits (uint64 in, uint64 out)."""
    z = keys.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= _M1  # uint64 multiplication wraps modulo 2**64, which is what the mix wants
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


class KeyIndex:
    """Maps uint64 keys to int64 row numbers; `table_keys` is the owner's key column (row -> key)."""

    def __init__(self, capacity: int = MIN_CAPACITY):
        self.capacity = max(int(capacity), MIN_CAPACITY)
        self.slots = np.full(self.capacity, EMPTY, dtype=np.int32)
        self.size = 0

    @property
    def nbytes(self) -> int:
        return self.slots.nbytes

    def _home(self, keys: np.ndarray) -> np.ndarray:
        # multiply-shift: the top 32 bits of the mix times the capacity, divided by 2**32 -> [0, capacity)
        high = (mix64(keys) >> np.uint64(32)).astype(np.int64)
        return (high * self.capacity) >> 32

    def lookup(self, keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where the key is absent. keys: uint64 [n] -> int64 [n]."""
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.full(keys.shape[0], EMPTY, dtype=np.int64)
        if self.size == 0 or keys.size == 0:
            return rows
        # The probing keys travel as compact arrays (original index, slot position, key) that shrink every round.
        idx, pos, query = np.arange(keys.shape[0]), self._home(keys), keys
        while idx.size:
            found = self.slots[pos]
            occupied = found >= 0
            hit = occupied.copy()
            hit[occupied] = table_keys[found[occupied]] == query[occupied]
            rows[idx[hit]] = found[hit]
            more = occupied & ~hit  # an empty slot ends the probe: the key is absent
            idx, pos, query = idx[more], pos[more] + 1, query[more]
            pos[pos == self.capacity] = 0
        return rows

    def insert(self, keys: np.ndarray, rows: np.ndarray, table_keys: np.ndarray, count: int) -> None:
        """Insert keys that are unique and absent, stored at `rows` of the owner.

        The owner keeps its rows dense: rows 0..count-1 are live and row r holds table_keys[r], the new ones
        included. Past MAX_LOAD the index is rebuilt from those rows (which indexes the new keys too).
        """
        if keys.size == 0:
            return
        if self.size + keys.size > MAX_LOAD * self.capacity:
            self.rebuild(table_keys, count)
            return
        self._place(np.asarray(keys, dtype=np.uint64), np.asarray(rows, dtype=np.int64))

    def rebuild(self, table_keys: np.ndarray, count: int) -> None:
        """Index rows 0..count-1 of `table_keys` from scratch at load MAX_LOAD / GROWTH (0.5)."""
        self.capacity = max(int(count * GROWTH / MAX_LOAD) + 1, MIN_CAPACITY)
        self.slots = np.full(self.capacity, EMPTY, dtype=np.int32)
        self.size = 0
        self._place(np.asarray(table_keys[:count], dtype=np.uint64), np.arange(count, dtype=np.int64))

    def _place(self, keys: np.ndarray, rows: np.ndarray) -> None:
        # Rounds of: every pending key looks at its current slot; of those finding it empty, the first per slot wins
        # it; everyone else moves one slot on. Ends when all are placed (load < 1 guarantees it).
        pos, pending_rows = self._home(keys), rows
        while pos.size:
            free = np.flatnonzero(self.slots[pos] == EMPTY)
            _, first = np.unique(pos[free], return_index=True)
            won = free[first]
            self.slots[pos[won]] = pending_rows[won]
            more = np.ones(pos.size, dtype=bool)
            more[won] = False
            pos, pending_rows = pos[more] + 1, pending_rows[more]
            pos[pos == self.capacity] = 0
        self.size += keys.shape[0]
