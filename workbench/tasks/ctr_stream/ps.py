"""The sparse table sharded over torch.distributed: PaddleRec's CPU parameter server with one shard per rank.

Every rank is both a trainer and a server. Key k belongs to table shard `k % shard_num`, and shards are dealt to
ranks in blocks of ceil(shard_num / world_size) (PaddleRec's get_sparse_shard); a rank's `SparseTable` holds the
keys of its shards and applies the same accessor rules as the single-process table (it is that table).

Per batch, with U distinct features on this rank:
    header   all_to_all_single  [W, 2] int64: (keys for that rank, my stop flag)   every rank learns who stops
    keys     all_to_all_single  uint64 keys, sorted by owner                        8 B a feature
    values   all_to_all_single  pulled [n, P] float32 back from the owners          4P B a feature
    push     all_to_all_single  [n, 3 + G] float32: slot, show, click, gradient      (train only)
The owner applies the pushes of the ranks one after another (rank order), as a server applies its trainers' pushes.
World size 1 does none of this: `pull`/`push` go straight to the local table through the pass's row cache, so the
one-process run is the 1-rank case of the same code with no exchange at all.

Collectives of the main thread use `Dist.sparse` (gloo: the table lives in host memory, so on CUDA runs too the
exchange is gloo's, while the dense all_gather uses the default group, nccl there); the save thread and the pass
loader thread have their own gloo groups, so that their collectives never interleave with the training ones.
Gloo has all_to_all_single on torch 2.13 (uneven splits too, checked in tests/tasks/ctr_stream/test_ctr_dist.py);
where a backend lacks it, `Dist.setup` finds out with a probe, says so in the log, and routes through all_gather.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.tasks.ctr_stream.table import SparseTable


class ShardingError(ValueError):
    """The sharded table cannot be set up as configured."""


class PeerFailed(RuntimeError):
    """Another rank failed; the message carries that rank's own error."""


def owner_of(keys: np.ndarray, shard_num: int, world: int) -> np.ndarray:
    """Rank that owns each key: PaddleRec's get_sparse_shard, (key % shard_num) // ceil(shard_num / world)."""
    per_rank = -(-shard_num // world)
    return ((np.asarray(keys, dtype=np.uint64) % np.uint64(shard_num)) // np.uint64(per_rank)).astype(np.int64)


def owned_shards(rank: int, shard_num: int, world: int) -> range:
    """The table shards (= part files of a save) that `rank` holds."""
    per_rank = -(-shard_num // world)
    return range(min(rank * per_rank, shard_num), min((rank + 1) * per_rank, shard_num))


def file_share(files: list[Path], rank: int, world: int) -> list[Path]:
    """PaddleRec's get_file_shard: contiguous blocks, the first len % world trainers one file more."""
    block, extra = divmod(len(files), world)
    begin = rank * block + min(rank, extra)
    return files[begin : begin + block + (1 if rank < extra else 0)]


@dataclass
class Dist:
    """Rank, world size and process groups of a distributed run (world 1: no groups, every collective a no-op)."""

    rank: int = 0
    world: int = 1
    sparse: Any = None  # gloo group: table exchange and agreements of the training thread
    save: Any = None  # gloo group: the save thread (part files, gathered states)
    data: Any = None  # gloo group: the pass loader (donefile wait, file lists)
    dense: Any = None  # default group: the dense gradients' all_gather (nccl on CUDA)
    error_dir: Path | None = None  # where a failing rank leaves its error for the others
    has_all_to_all: bool = True  # False: the sparse group's backend lacks all_to_all_single (all_gather instead)
    timeout_s: float | None = None  # the groups' collective timeout (None: the default group's, torch: 30 min)

    @classmethod
    def setup(cls, rank: int, world: int, shard_num: int, error_dir: Path | None = None,
              timeout_s: float | None = None) -> Dist:
        """Groups for a run of `world` ranks; the default process group must be initialised (the worker does).
        With `timeout_s` every group this run's collectives use is made with that timeout (collective_timeout_s),
        so that a rank that hangs fails the others after it instead of after the default group's 30 minutes."""
        if world == 1:
            return cls()
        import datetime

        import torch.distributed as dist

        if shard_num < world:
            raise ShardingError(f"shard_num ({shard_num}) must be at least the number of ranks ({world}): every rank "
                                "holds one or more table shards; raise shard_num")
        if not dist.is_initialized():
            raise ShardingError(f"world size {world} but no torch.distributed process group; run under torchrun")
        timed = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        gloo = dist.get_backend() == "gloo"
        sparse = dist.new_group(backend="gloo", **timed) if timed or not gloo else dist.group.WORLD
        save, data = dist.new_group(backend="gloo", **timed), dist.new_group(backend="gloo", **timed)
        dense = dist.new_group(**timed) if timed else dist.group.WORLD  # the default backend: nccl on CUDA
        if error_dir is not None:
            error_dir.mkdir(parents=True, exist_ok=True)
        out = cls(rank, world, sparse=sparse, save=save, data=data, dense=dense, error_dir=error_dir,
                  timeout_s=timeout_s)
        out.has_all_to_all = _probe_all_to_all(out.sparse, world)
        return out

    def all_to_all(self, out: torch.Tensor, inp: torch.Tensor, out_splits: list[int] | None = None,
                   in_splits: list[int] | None = None) -> None:
        """all_to_all_single on the sparse group (rows of `inp` split by `in_splits` go to the ranks in order;
        None: equal splits), or its all_gather emulation where the backend lacks it (every rank receives every
        rank's whole input and keeps its part: world-1 times the traffic)."""
        import torch.distributed as dist

        if self.has_all_to_all:
            dist.all_to_all_single(out, inp, out_splits, in_splits, group=self.sparse)
            return
        world, rank = self.world, self.rank
        mine = torch.tensor(in_splits if in_splits is not None else [inp.shape[0] // world] * world, dtype=torch.int64)
        splits = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(splits, mine, group=self.sparse)
        table = torch.stack(splits)  # [source, destination] rows
        longest = int(table.sum(1).max())
        padded = torch.zeros((longest,) + tuple(inp.shape[1:]), dtype=inp.dtype)
        padded[: inp.shape[0]] = inp
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded, group=self.sparse)
        pieces = [gathered[src][int(table[src, :rank].sum()) : int(table[src, : rank + 1].sum())] for src in range(world)]
        out.copy_(torch.cat(pieces))

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # -- small collectives ------------------------------------------------------------------------------------------
    def all_sum(self, values: np.ndarray, group: Any = None) -> np.ndarray:
        """Element-wise sum over ranks of a float64 vector (counts up to 2^53 stay exact)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        dist.all_reduce(t, group=group or self.sparse)
        return t.numpy()

    def any(self, flag: bool, group: Any = None) -> bool:
        """True on every rank if it is True on one (a stop seen by one rank stops all at the same point)."""
        return bool(self.all_sum(np.array([float(flag)]), group)[0] > 0) if self.distributed else flag

    def max_int(self, value: int) -> int:
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.sparse)
        return int(t.item())

    def broadcast(self, value: Any, group: Any = None) -> Any:
        """Rank 0's `value` on every rank (a picklable object)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=group or self.sparse)
        return box[0]

    # -- failures -------------------------------------------------------------------------------------------------
    def record_error(self, exc: BaseException) -> None:
        """Leave this rank's error where the others look for it (before the process exits and its sockets close,
        which is what makes the others' collectives fail)."""
        if self.error_dir is None or isinstance(exc, PeerFailed):
            return
        path = self.error_dir / f"rank-{self.rank}.json"
        path.write_text(json.dumps({"rank": self.rank, "error": f"{type(exc).__name__}: {exc}", "time": time.time()}))

    def peer_error(self, wait_s: float = 5.0) -> str | None:
        """The first error another rank recorded, waiting up to `wait_s` for one to appear."""
        if self.error_dir is None:
            return None
        deadline = time.monotonic() + wait_s
        while True:
            found = []
            for path in self.error_dir.glob("rank-*.json"):
                try:
                    found.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
            found = [f for f in found if f["rank"] != self.rank]
            if found:
                first = min(found, key=lambda f: f["time"])
                return f"rank {first['rank']} failed: {first['error']}"
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def _probe_all_to_all(group: Any, world: int) -> bool:
    """Whether the group's backend has all_to_all_single (gloo does on torch 2.13; older builds did not)."""
    import logging

    import torch.distributed as dist

    try:
        dist.all_to_all_single(torch.empty(world, dtype=torch.int64), torch.zeros(world, dtype=torch.int64), group=group)
        return True
    except (RuntimeError, NotImplementedError) as exc:
        logging.getLogger(__name__).warning(
            "the %s backend lacks all_to_all_single (%s): the sparse table's pulls and pushes go through all_gather "
            "instead, %d times the traffic", dist.get_backend(group), str(exc).splitlines()[0] if str(exc) else exc,
            world - 1)
        return False


def is_peer_failure(exc: BaseException) -> bool:
    """A collective failed because another rank went away (gloo reports a closed or reset connection)."""
    import torch.distributed as dist

    text = str(exc).lower()
    return isinstance(exc, getattr(dist, "DistBackendError", RuntimeError)) or any(
        word in text for word in ("connection closed", "connection reset", "gloo", "broken pipe", "timed out"))


@dataclass
class _Route:
    """Where one batch's keys went in `pull`, so that `push` sends the gradients the same way."""

    idx: np.ndarray  # pass-key indices of the batch's features, in the caller's order
    order: np.ndarray | None = None  # the caller's features sorted by owner
    send: list[int] = field(default_factory=list)  # features sent to each rank
    recv: list[int] = field(default_factory=list)  # features received from each rank (this rank owns them)
    keys: np.ndarray | None = None  # the received keys (owner side)
    rows: np.ndarray | None = None  # their rows in the local table (-1: not there yet)


class ShardedTable:
    """This rank's shard (`local`, a SparseTable) and the exchange that makes the shards one table.

    Use per pass: `begin_pass(pass_keys, batches)` (a collective: returns the steps every rank takes, the most
    batches any rank has), then per step `pull(idx, stop)` and, when training, `push(...)` for the same features.
    """

    def __init__(self, local: SparseTable, shard_num: int, dist: Dist):
        self.local = local
        self.shard_num = shard_num
        self.dist = dist
        self.bytes_sent = 0  # sparse exchange payload this rank sent to other ranks, cumulative
        self._pass_keys = np.zeros(0, np.uint64)
        self._pass_rows = np.zeros(0, np.int64)  # world 1: rows of the pass's keys, kept current by the pushes
        self._route: _Route | None = None

    def owned(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the keys this rank holds."""
        if not self.dist.distributed:
            return np.ones(np.asarray(keys).shape[0], dtype=bool)
        return owner_of(keys, self.shard_num, self.dist.world) == self.dist.rank

    def begin_pass(self, pass_keys: np.ndarray, batches: int) -> int:
        self._pass_keys = pass_keys
        if not self.dist.distributed:
            self._pass_rows = self.local.lookup(pass_keys)
        return self.dist.max_int(batches)

    # -- pull / push ------------------------------------------------------------------------------------------------
    def pull_pass(self) -> np.ndarray | None:
        """One process: the values of all the pass's keys [K, P] in one gather, for the infer phase (which changes
        nothing, so each batch's pull is a row subset of it); None with several ranks, whose pulls are collectives."""
        return None if self.dist.distributed else self.local.pull(self._pass_rows)

    def pull(self, idx: np.ndarray, stop: bool = False) -> np.ndarray | None:
        """Pulled values [len(idx), P] of the pass keys `idx`; None on every rank when any rank asked to stop."""
        if not self.dist.distributed:
            if stop:
                return None
            self._route = _Route(idx)
            return self.local.pull(self._pass_rows[idx])
        world = self.dist.world
        keys = self._pass_keys[idx]
        owner = owner_of(keys, self.shard_num, world)
        order = np.argsort(owner, kind="stable")
        send = np.bincount(owner, minlength=world)
        header = torch.from_numpy(np.stack([send, np.full(world, int(stop))], axis=1).reshape(-1).astype(np.int64))
        got = torch.empty_like(header)
        self.dist.all_to_all(got, header)
        got = got.numpy().reshape(world, 2)
        if got[:, 1].any():
            return None
        recv = got[:, 0].tolist()
        sent_keys = np.ascontiguousarray(keys[order]).view(np.int64)
        in_keys = torch.empty(sum(recv), dtype=torch.int64)
        self.dist.all_to_all(in_keys, torch.from_numpy(sent_keys), recv, send.tolist())
        route = _Route(idx, order, send.tolist(), recv, in_keys.numpy().view(np.uint64))
        route.rows = self.local.lookup(route.keys)
        values = self.local.pull(route.rows)
        back = torch.empty((len(idx), values.shape[1]), dtype=torch.float32)
        self.dist.all_to_all(back, torch.from_numpy(values), route.send, route.recv)
        self._count(route.send, 8)
        self._count(route.recv, 4 * values.shape[1])
        out = np.empty_like(back.numpy())
        out[order] = back.numpy()
        self._route = route
        return out

    def push(self, slot: np.ndarray, show: np.ndarray, click: np.ndarray, grad: np.ndarray) -> None:
        """Push the gradients [U, G] (and show/click/slot) of the features of the last `pull`."""
        route = self._route
        if route is None:
            raise RuntimeError("push without a pull")
        self._route = None
        if not self.dist.distributed:
            rows = self._pass_rows[route.idx]
            self._pass_rows[route.idx] = self.local.push(self._pass_keys[route.idx], rows, slot, show, click, grad)
            return
        width = 3 + grad.shape[1]
        payload = np.empty((route.idx.size, width), dtype=np.float32)
        payload[:, 0], payload[:, 1], payload[:, 2], payload[:, 3:] = slot, show, click, grad  # uint16 slots: exact
        payload = payload[route.order]
        got = torch.empty((sum(route.recv), width), dtype=torch.float32)
        self.dist.all_to_all(got, torch.from_numpy(payload), route.recv, route.send)
        self._count(route.send, 4 * width)
        values = got.numpy()
        assert route.keys is not None and route.rows is not None
        # Each rank's push is applied on its own, in rank order, as a server applies its trainers' pushes one after
        # another (a rank's keys are unique: it merged its batch). A key that one push created is found for the next.
        lo = 0
        for count in route.recv:
            hi = lo + count
            if count:
                keys, rows, v = route.keys[lo:hi], route.rows[lo:hi].copy(), values[lo:hi]
                if lo:
                    new = rows < 0
                    rows[new] = self.local.lookup(keys[new])
                self.local.push(keys, rows, v[:, 0].astype(np.uint16), v[:, 1], v[:, 2], v[:, 3:])
            lo = hi

    def _count(self, per_rank: list[int], width_bytes: int) -> None:
        self.bytes_sent += width_bytes * (sum(per_rank) - per_rank[self.dist.rank])

    # -- global statistics ----------------------------------------------------------------------------------------
    def global_stats(self) -> dict[str, float]:
        """table/* statistics summed over the shards (bytes_per_feature from the sums)."""
        local = self.local
        rows, mf, mem = self.dist.all_sum(np.array([local.n, local.mf_n, local.memory_bytes()], np.float64)).tolist()
        return {"table/rows": float(rows), "table/rows_with_embedx": float(mf), "table/memory_mb": mem / 2**20,
                "table/bytes_per_feature": mem / max(rows, 1.0)}

    def global_counts(self) -> tuple[int, int, int, int]:
        """(rows, rows with embedx, created_total, deleted_total) over all shards."""
        local = self.local
        summed = self.dist.all_sum(np.array([local.n, local.mf_n, local.created_total, local.deleted_total],
                                            dtype=np.float64))
        return tuple(int(v) for v in summed)  # type: ignore[return-value]


# -- resumable states across rank counts ----------------------------------------------------------------------------
def merge_table_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One table state (SparseTable.state_dict's layout) from the states of all shards: rows concatenated, mf rows
    renumbered; each shard's RNG kept in `shard_rngs` (rank order) so the same rank count resumes them exactly."""
    if len(states) == 1:
        return states[0]
    out: dict[str, Any] = {}
    offset = 0
    mf_index = []
    for s in states:
        m = s["mf_index"].astype(np.int64)
        mf_index.append(np.where(m >= 0, m + offset, -1).astype(np.int32))
        offset += s["embedx_w"].shape[0]
    for name in states[0]:
        if name in ("counters", "rng", "shard_rngs"):
            continue
        out[name] = np.concatenate(mf_index if name == "mf_index" else [s[name] for s in states])
    out["counters"] = {k: sum(int(s["counters"][k]) for s in states) for k in states[0]["counters"]}
    out["rng"] = states[0]["rng"]
    out["shard_rngs"] = [s["rng"] for s in states]
    return out


def split_table_state(state: dict[str, Any], keep: np.ndarray, rank: int, world: int) -> dict[str, Any]:
    """The part of a (merged) table state whose rows `keep` selects, for one shard. The counters go to rank 0 (their
    sums over ranks stay right); a shard's RNG is restored only when the state was saved with the same rank count."""
    rows = np.flatnonzero(keep)
    mf_index = state["mf_index"][rows].astype(np.int64)
    has = mf_index >= 0
    out: dict[str, Any] = {}
    for name, value in state.items():
        if name in ("counters", "rng", "shard_rngs"):
            continue
        if name.startswith("embedx"):
            out[name] = value[mf_index[has]]
        elif name == "mf_index":
            new = np.full(rows.size, -1, dtype=np.int32)
            new[has] = np.arange(int(has.sum()), dtype=np.int32)
            out[name] = new
        else:
            out[name] = value[rows]
    zero = {k: 0 for k in state["counters"]}
    out["counters"] = dict(state["counters"]) if rank == 0 else zero
    rngs = state.get("shard_rngs")
    out["rng"] = rngs[rank] if rngs is not None and len(rngs) == world else (state["rng"] if rank == 0 else None)
    return out


def rank_error_dir(run_dir: Path) -> Path:
    """Per-run folder where a failing rank writes its error (the run folder is shared by the ranks of a node)."""
    return run_dir / "rank_errors" / os.environ.get("TORCHELASTIC_RUN_ID", "local")
