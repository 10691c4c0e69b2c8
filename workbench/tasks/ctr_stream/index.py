"""Vectorised uint64 key -> row index: an open-addressing hash table held in one int32 numpy array.

Why not a dict: a Python dict costs ~100 bytes per key plus a Python int per key, and every lookup is a Python call.
Here a lookup of n keys is a few numpy passes over n-element arrays per probe round, and only the keys still
probing take part in the next round. The index costs 4 bytes / load factor per key (~7 bytes at the average load).

Layout: `slots[i]` holds a row number of the owner's columns or -1 (empty). The key itself is not duplicated: a
probe compares `table_keys[slots[i]]` with the query. Capacity is a power of two; the home slot is the top bits of
a splitmix64 mix of the key; probing is triangular (home, +1, +3, +6, ...), which visits every slot of a
power-of-two table and avoids the long clusters of linear probing. Keys are never deleted one by one: the table
compacts its rows at shrink time and rebuilds the index in one bulk insert.
"""

from __future__ import annotations

import numpy as np

EMPTY = -1
MAX_LOAD = 0.75  # double the capacity past this load factor (the load then lies in 0.375..0.75)
MIN_BITS = 10

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
    """Maps uint64 keys to int64 row numbers of an owner whose key column is `table_keys` (row -> key)."""

    def __init__(self, bits: int = MIN_BITS):
        self._set_bits(bits)
        self.size = 0

    def _set_bits(self, bits: int) -> None:
        self.bits = max(int(bits), MIN_BITS)
        self.capacity = 1 << self.bits
        self.mask = self.capacity - 1
        self.slots = np.full(self.capacity, EMPTY, dtype=np.int32)

    @property
    def nbytes(self) -> int:
        return self.slots.nbytes

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return (mix64(keys) >> np.uint64(64 - self.bits)).astype(np.int64)

    def lookup(self, keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where the key is absent. keys: uint64 [n] -> int64 [n]."""
        keys = np.asarray(keys, dtype=np.uint64)
        rows = np.full(keys.shape[0], EMPTY, dtype=np.int64)
        if self.size == 0 or keys.size == 0:
            return rows
        # The probing keys travel as compact arrays (original index, slot, key) that shrink every round.
        idx, pos, query = np.arange(keys.shape[0]), self._home(keys), keys
        step = 0
        while idx.size:
            found = self.slots[pos]
            occupied = found >= 0
            hit = occupied.copy()
            hit[occupied] = table_keys[found[occupied]] == query[occupied]
            rows[idx[hit]] = found[hit]
            more = occupied & ~hit  # an empty slot ends the probe: the key is absent
            step += 1
            idx, pos, query = idx[more], (pos[more] + step) & self.mask, query[more]
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
        """Index rows 0..count-1 of `table_keys` from scratch, in the smallest table that holds them at MAX_LOAD."""
        bits = MIN_BITS
        while count > MAX_LOAD * (1 << bits):
            bits += 1
        self._set_bits(bits)
        self.size = 0
        self._place(np.asarray(table_keys[:count], dtype=np.uint64), np.arange(count, dtype=np.int64))

    def _place(self, keys: np.ndarray, rows: np.ndarray) -> None:
        # Rounds: every pending key claims its current slot if empty. Several may claim one slot: numpy's scatter
        # keeps one of them, and reading the slot back tells who won. Losers and keys that met an occupied slot
        # move to their next probe position. Rows are unique, so the read-back is unambiguous.
        pos, pending = self._home(keys), rows
        step = 0
        while pos.size:
            free = np.flatnonzero(self.slots[pos] == EMPTY)
            self.slots[pos[free]] = pending[free]
            won = free[self.slots[pos[free]] == pending[free]]
            more = np.ones(pos.size, dtype=bool)
            more[won] = False
            step += 1
            pos, pending = (pos[more] + step) & self.mask, pending[more]
        self.size += keys.shape[0]
