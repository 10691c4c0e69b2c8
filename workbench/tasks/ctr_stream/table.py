"""The sparse feature table: PaddleRec's MemorySparseTable + SparseAccessor/CtrCommonAccessor, in numpy columns.

Per feature (row) PaddleRec stores `[slot, unseen_days, delta_score, show, click, embed_w, embed_g2sum,
embedx_w[embedx_dim], embedx_g2sum]`, the last two (the "mf" part) only once the feature is extended. Here:
- arrays over all rows (rows are dense: 0..n-1, compacted at shrink): keys, slot, unseen_days, mf_index, and one
  float matrix for delta_score, show, click, embed_w and its optimizer state;
- the mf part in a separate pool (embedx_w and its optimizer state), reached through `mf_index` (-1 = not
  extended), so features that never reach embedx_threshold cost no embedx memory;
- keys -> rows through a vectorised hash index (index.py), brought up to date lazily: a push appends the rows it
  creates and the index takes them in one bulk insert at the next lookup (the next pass's), since a pass's own pulls
  and pushes reach rows through the rows its start looked up (ps.ShardedTable) and never need the index.
Memory per feature: 8 (key) + 2 (slot) + 2 (unseen_days) + 4 x 4 (delta_score, show, click, embed_w) + 4 x
embed_state_dim + 4 (mf_index) + ~6.5 (index), plus 4 x (embedx_dim + embedx_state_dim) when extended, plus the
growth slack of the columns (GROWTH = 1.25).

Rules (reference/ctr_stream.md section 1, which follows the C++ code):
- pull of a missing key returns zeros and creates nothing; a key without mf part pulls embedx = 0;
- a push creates missing keys (optionally admitted at random), then show/click/delta_score accumulate, unseen_days
  resets to 0, AdaGrad updates embed and (if extended) embedx; a key that reaches embedx_threshold in this push is
  extended with a fresh random embedx, and this push's embedx gradient is discarded;
- shrink decays show/click of every key, then deletes keys by score and by unseen days;
- save modes 0/1/2/3 select keys and update delta_score / unseen_days after the save.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.index import KeyIndex
from workbench.tasks.ctr_stream.sgd import SgdRule

GROWTH = 1.25  # column capacity multiplier: small, so that slack stays within the memory budget
MIN_ROWS = 1024
SAVE_CHECKPOINT, SAVE_DELTA, SAVE_BASE, SAVE_BATCH = 0, 1, 2, 3


class SparseTable:
    """Sparse parameters keyed by uint64 feasign. Push arguments must hold unique keys (merged, see `merge_push`)."""

    def __init__(self, cfg: CtrStreamConfig, seed: int = 0):
        self.cfg = cfg
        self.embedx_dim = cfg.embedx_dim
        self.with_show_click = cfg.accessor_class == "CtrCommonAccessor"
        self.embed_rule = SgdRule(cfg.embed_sgd_param, 1)
        self.embedx_rule = SgdRule(cfg.embedx_sgd_param, cfg.embedx_dim)
        self.rng = np.random.default_rng(seed)
        self.index = KeyIndex()
        self.n = 0  # live rows
        self.indexed = 0  # rows 0..indexed-1 are in the index; the rest are inserted at the next lookup
        self.mf_n = 0  # live mf rows
        self.created_total = 0
        self.deleted_total = 0
        self._alloc_rows(MIN_ROWS)
        self._alloc_mf(MIN_ROWS)

    # -- storage --------------------------------------------------------------------------------------------------
    # Per row: keys, slot, unseen_days, mf_index as their own columns; the float fields in one matrix `vals`
    # [cap, 4 + embed_state_dim] = (delta_score, show, click, embed_w, embed_state...), and the mf pool in one
    # matrix `mf` [mf_cap, embedx_dim + embedx_state_dim] = (embedx_w..., embedx_state...), so that a push gathers
    # and scatters each with one fancy index. The named fields are views of these matrices (see _bind_views).
    DELTA, SHOW, CLICK, EMBED = 0, 1, 2, 3
    _ROW_COLUMNS = ("keys", "slot", "unseen_days", "vals", "mf_index")
    _MF_COLUMNS = ("mf",)
    _STATE_FIELDS = ("keys", "slot", "unseen_days", "delta_score", "show", "click", "embed_w", "embed_state",
                     "mf_index", "embedx_w", "embedx_state")

    def _alloc_rows(self, capacity: int) -> None:
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.slot = np.zeros(capacity, dtype=np.uint16)
        self.unseen_days = np.zeros(capacity, dtype=np.uint16)
        self.vals = np.zeros((capacity, 4 + self.embed_rule.state_dim), dtype=np.float32)
        self.mf_index = np.full(capacity, -1, dtype=np.int32)
        self._bind_views()

    def _alloc_mf(self, capacity: int) -> None:
        self.mf = np.zeros((capacity, self.embedx_dim + self.embedx_rule.state_dim), dtype=np.float32)
        self._bind_views()

    def _bind_views(self) -> None:
        if hasattr(self, "vals"):
            self.delta_score, self.show, self.click = self.vals[:, 0], self.vals[:, 1], self.vals[:, 2]
            self.embed_w, self.embed_state = self.vals[:, 3], self.vals[:, 4:]
        if hasattr(self, "mf"):
            self.embedx_w, self.embedx_state = self.mf[:, : self.embedx_dim], self.mf[:, self.embedx_dim :]

    def _resize(self, names: tuple[str, ...], live: int, capacity: int) -> None:
        for name in names:
            old = getattr(self, name)
            new = np.empty((capacity,) + old.shape[1:], dtype=old.dtype)
            new[:live] = old[:live]
            setattr(self, name, new)
        self._bind_views()

    def _reserve_rows(self, extra: int) -> None:
        need = self.n + extra
        if need > self.keys.shape[0]:
            self._resize(self._ROW_COLUMNS, self.n, max(need, int(self.keys.shape[0] * GROWTH)))

    def _reserve_mf(self, extra: int) -> None:
        need = self.mf_n + extra
        if need > self.mf.shape[0]:
            self._resize(self._MF_COLUMNS, self.mf_n, max(need, int(self.mf.shape[0] * GROWTH)))

    # -- the accessor's score -------------------------------------------------------------------------------------
    def score(self, show: np.ndarray, click: np.ndarray) -> np.ndarray:
        """score = (show - click) * nonclk_coeff + click * click_coeff (PaddleRec's ShowClickScore)."""
        return (show - click) * np.float32(self.cfg.nonclk_coeff) + click * np.float32(self.cfg.click_coeff)

    # -- pull / push ----------------------------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key (int64), -1 for keys not in the table."""
        self._sync_index()
        return self.index.lookup(np.asarray(keys, dtype=np.uint64), self.keys)

    def _sync_index(self) -> None:
        """Insert the rows created since the last lookup: one bulk insert instead of one per push (the probe rounds
        of an insert cost the same few numpy calls for 20 keys as for 20,000)."""
        if self.indexed < self.n:
            self.index.insert(self.keys[self.indexed : self.n], np.arange(self.indexed, self.n), self.keys, self.n)
            self.indexed = self.n

    def _rebuild_index(self) -> None:
        self.index.rebuild(self.keys, self.n)
        self.indexed = self.n

    def pull(self, rows: np.ndarray) -> np.ndarray:
        """Pulled values [len(rows), pull_dim]: [embed_w, embedx] or, for CtrCommonAccessor, [show, click, embed_w, embedx].

        Rows of -1 (missing keys) and the embedx of keys without mf part come back as zeros.
        """
        off = 2 if self.with_show_click else 0
        live = rows >= 0
        all_live = bool(live.all())
        r = rows if all_live else np.where(live, rows, 0)
        mfi = self.mf_index[r]
        has = (mfi >= 0) & live
        all_have = bool(has.all())
        out = np.empty((rows.shape[0], off + 1 + self.embedx_dim), dtype=np.float32)
        if self.with_show_click:
            out[:, 0] = self.show[r]
            out[:, 1] = self.click[r]
        out[:, off] = self.embed_w[r]
        # np.take, not fancy indexing: for 2-D gathers it is several times faster
        out[:, off + 1 :] = np.take(self.mf, mfi if all_have else np.where(has, mfi, 0), axis=0)[:, : self.embedx_dim]
        if not all_have:  # missing keys pull zeros; keys without mf part pull embedx = 0
            out[~has, off + 1 :] = 0
            out[~live] = 0
        return out

    def push(
        self,
        keys: np.ndarray,
        rows: np.ndarray,
        slots: np.ndarray,
        show: np.ndarray,
        click: np.ndarray,
        grad: np.ndarray,
    ) -> np.ndarray:
        """Apply one merged push. keys/rows/slots/show/click [n] (unique keys; rows from `lookup`, -1 = new),
        grad [n, 1 + embedx_dim] (embed gradient, then embedx). Returns the rows after creation (-1: not admitted).
        """
        rows = np.array(rows, dtype=np.int64, copy=True)
        new = np.flatnonzero(rows < 0)
        if new.size:
            if self.cfg.enable_create_feasign_randomly:
                s = self.score(show[new], click[new])
                new = new[(s >= 1) | (self.rng.random(new.size) < s)]
            rows[new] = self._create(np.asarray(keys, dtype=np.uint64)[new])
        live = np.flatnonzero(rows >= 0)
        if live.size < rows.size:
            slots, show, click, grad = slots[live], show[live], click[live], grad[live]
        r = rows[live]
        show = show.astype(np.float32, copy=False)
        click = click.astype(np.float32, copy=False)
        grad = grad.astype(np.float32, copy=False)
        scale = show if self.cfg.show_scale else np.ones_like(show)

        v = np.take(self.vals, r, axis=0)  # [n, 4 + s1] gathered copy (take: faster than fancy indexing)
        v[:, self.SHOW] += show
        v[:, self.CLICK] += click
        v[:, self.DELTA] += self.score(show, click)
        self.embed_rule.update(v[:, self.EMBED : self.EMBED + 1], v[:, self.EMBED + 1 :], grad[:, :1], scale)
        self.vals[r] = v
        self.slot[r] = slots
        self.unseen_days[r] = 0

        mfi = self.mf_index[r]
        has = mfi >= 0
        all_have = bool(has.all())  # the common case once features are extended: no masked copies
        m = mfi if all_have else mfi[has]
        if m.size:
            x = np.take(self.mf, m, axis=0)
            gx, sx = (grad[:, 1:], scale) if all_have else (grad[has, 1:], scale[has])
            self.embedx_rule.update(x[:, : self.embedx_dim], x[:, self.embedx_dim :], gx, sx)
            self.mf[m] = x
        if not all_have:
            # Keys without mf part that now reach the threshold get a fresh embedx; this push's embedx gradient is
            # dropped (PaddleRec updates a buffer, re-runs Create on the grown value, copies back the non-mf part).
            plain = ~has
            grow = r[plain][self.score(v[plain, self.SHOW], v[plain, self.CLICK]) >= np.float32(self.cfg.embedx_threshold)]
            if grow.size:
                self._extend(grow)
        return rows

    def merge_push(
        self, keys: np.ndarray, slots: np.ndarray, show: np.ndarray, click: np.ndarray, grad: np.ndarray
    ) -> np.ndarray:
        """Push per-occurrence values: duplicate keys are merged first (sums; the last slot wins), like the client."""
        uniq, first, inv = np.unique(np.asarray(keys, dtype=np.uint64), return_index=True, return_inverse=True)
        n = uniq.size
        m_show = np.bincount(inv, weights=show, minlength=n).astype(np.float32)
        m_click = np.bincount(inv, weights=click, minlength=n).astype(np.float32)
        m_grad = np.zeros((n, grad.shape[1]), dtype=np.float32)
        np.add.at(m_grad, inv, grad.astype(np.float32))
        m_slots = np.zeros(n, dtype=np.uint16)
        m_slots[inv] = slots
        return self.push(uniq, self.lookup(uniq), m_slots, m_show, m_click, m_grad)

    def _create(self, keys: np.ndarray) -> np.ndarray:
        """Append new keys (PaddleRec Create: counters 0; embed_w 0 under zero_init, else uniform; no mf part)."""
        k = keys.size
        self._reserve_rows(k)
        rows = np.arange(self.n, self.n + k, dtype=np.int64)
        w, state = self.embed_rule.init(k, self.rng, zero_init=self.cfg.zero_init)
        self.keys[rows] = keys
        self.slot[rows] = 0
        self.unseen_days[rows] = 0
        self.vals[rows] = np.concatenate([np.zeros((k, 3), np.float32), w, state], axis=1)  # delta, show, click = 0
        self.mf_index[rows] = -1
        self.n += k
        self.created_total += k
        return rows

    def _extend(self, rows: np.ndarray) -> None:
        k = rows.size
        self._reserve_mf(k)
        w, state = self.embedx_rule.init(k, self.rng, zero_init=False)
        mf = np.arange(self.mf_n, self.mf_n + k)
        self.mf[mf] = np.concatenate([w, state], axis=1)
        self.mf_index[rows] = mf
        self.mf_n += k

    # -- end of day -----------------------------------------------------------------------------------------------
    def shrink(self) -> int:
        """Decay show/click of every key, then delete by score and by unseen days. Returns the number deleted."""
        n = self.n
        decay = np.float32(self.cfg.show_click_decay_rate)
        self.show[:n] *= decay
        self.click[:n] *= decay
        delete = (self.score(self.show[:n], self.click[:n]) < np.float32(self.cfg.delete_threshold)) | (
            self.unseen_days[:n] > self.cfg.delete_after_unseen_days
        )
        deleted = int(delete.sum())
        if deleted:
            self._compact(np.flatnonzero(~delete))
        self.deleted_total += deleted
        return deleted

    def _compact(self, keep: np.ndarray) -> None:
        """Keep rows `keep` (sorted), renumber rows and mf rows densely, right-size the columns, rebuild the index."""
        k = keep.size
        capacity = max(int(k * GROWTH), MIN_ROWS)
        old_mf = self.mf_index[keep]
        has = old_mf >= 0
        mf_keep = old_mf[has]
        for name in self._ROW_COLUMNS:
            setattr(self, name, _take(getattr(self, name), keep, capacity))
        for name in self._MF_COLUMNS:
            setattr(self, name, _take(getattr(self, name), mf_keep, max(int(mf_keep.size * GROWTH), MIN_ROWS)))
        self._bind_views()
        new_mf = np.full(k, -1, dtype=np.int32)
        new_mf[has] = np.arange(mf_keep.size, dtype=np.int32)
        self.mf_index[:k] = new_mf
        self.n, self.mf_n = k, int(mf_keep.size)
        self._rebuild_index()

    # -- save modes -----------------------------------------------------------------------------------------------
    def save_mask(self, mode: int) -> np.ndarray:
        """Keys a save of `mode` writes: 0 checkpoint and 3 batch model all; 1 delta and 2 base filtered."""
        n = self.n
        if mode in (SAVE_CHECKPOINT, SAVE_BATCH):
            return np.ones(n, dtype=bool)
        delta_threshold = 0.0 if mode == SAVE_BASE else self.cfg.delta_threshold
        return (
            (self.score(self.show[:n], self.click[:n]) >= np.float32(self.cfg.base_threshold))
            & (self.delta_score[:n] >= np.float32(delta_threshold))
            & (self.unseen_days[:n] <= self.cfg.delta_keep_days)
        )

    def update_after_save(self, mode: int, mask: np.ndarray) -> None:
        """Delta and base reset delta_score of the saved keys; the batch model ages every key by one day."""
        if mode in (SAVE_DELTA, SAVE_BASE):
            self.delta_score[: self.n][mask] = 0
        elif mode == SAVE_BATCH:
            unseen = self.unseen_days[: self.n]
            unseen[unseen < np.iinfo(np.uint16).max] += 1  # saturate instead of wrapping to 0

    def saves_embedx(self, rows: np.ndarray) -> np.ndarray:
        """Whether a saved line carries embedx: the key has an mf part and score >= embedx_threshold (ParseToString)."""
        return (self.mf_index[rows] >= 0) & (
            self.score(self.show[rows], self.click[rows]) >= np.float32(self.cfg.embedx_threshold)
        )

    def load_saved_rows(self, keys: np.ndarray, values: np.ndarray, has_embedx: np.ndarray) -> None:
        """Fill an empty table from saved lines (save.read_model_lines): values [n, w] in the saved column order
        slot, unseen_days, delta_score, show, click, embed_w, embed state..., then embedx_w..., embedx state...
        where has_embedx. A line without embedx leaves the feature without an mf part, as PaddleRec's load does."""
        if self.n:
            raise ValueError("load_saved_rows needs an empty table")
        s1, d, s2 = self.embed_rule.state_dim, self.embedx_dim, self.embedx_rule.state_dim
        expected = 6 + s1 + d + s2
        if has_embedx.any() and values.shape[1] != expected:
            raise ValueError(f"saved lines have {values.shape[1]} values with embedx, this config expects {expected} "
                             "(check embedx_dim and the sgd rules)")
        n = keys.size
        self._reserve_rows(n)
        self.keys[:n] = keys
        self.slot[:n] = values[:, 0]
        self.unseen_days[:n] = values[:, 1]
        self.delta_score[:n], self.show[:n], self.click[:n], self.embed_w[:n] = values[:, 2:6].T
        self.embed_state[:n] = values[:, 6 : 6 + s1]
        rows = np.flatnonzero(has_embedx)
        self._reserve_mf(rows.size)
        self.embedx_w[: rows.size] = values[rows, 6 + s1 : 6 + s1 + d]
        self.embedx_state[: rows.size] = values[rows, 6 + s1 + d : expected]
        self.mf_index[:n] = -1
        self.mf_index[rows] = np.arange(rows.size)
        self.n, self.mf_n = n, int(rows.size)
        self._rebuild_index()

    # -- statistics -----------------------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes held: every column at its capacity, the mf pool and the index."""
        self._sync_index()  # the index's size as if every row were in it (it grows when they are)
        arrays = [getattr(self, c) for c in self._ROW_COLUMNS + self._MF_COLUMNS]
        return int(sum(a.nbytes for a in arrays) + self.index.nbytes)

    def raw_payload_bytes(self) -> int:
        """PaddleRec's float payload of the stored features: an 8-byte key + 4 bytes per value float."""
        base = 8 + 4 * (6 + self.embed_rule.state_dim)
        mf = 4 * (self.embedx_dim + self.embedx_rule.state_dim)
        return self.n * base + self.mf_n * mf

    def stats(self) -> dict[str, float]:
        return {
            "table/rows": float(self.n),
            "table/rows_with_embedx": float(self.mf_n),
            "table/memory_mb": self.memory_bytes() / 2**20,
            "table/bytes_per_feature": self.memory_bytes() / max(self.n, 1),
        }

    # -- state for resumable checkpoints (numpy arrays and plain values) ------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Named columns of the live rows (numpy copies), the counters and the RNG state."""
        state: dict[str, Any] = {}
        for name in self._STATE_FIELDS:
            live = self.mf_n if name.startswith("embedx") else self.n
            state[name] = getattr(self, name)[:live].copy()
        state["counters"] = {"created_total": self.created_total, "deleted_total": self.deleted_total}
        state["rng"] = _rng_state_to_text(self.rng)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n, mf_n = int(state["keys"].shape[0]), int(state["embedx_w"].shape[0])
        if state["embedx_w"].shape[1] != self.embedx_dim or state["embed_state"].shape[1] != self.embed_rule.state_dim:
            raise ValueError(
                f"the saved table has embedx_dim {state['embedx_w'].shape[1]} and embed state dim "
                f"{state['embed_state'].shape[1]}, the config asks for {self.embedx_dim} and {self.embed_rule.state_dim}"
                "; resume with the config the checkpoint was trained with"
            )
        self._alloc_rows(max(int(n * GROWTH), MIN_ROWS))
        self._alloc_mf(max(int(mf_n * GROWTH), MIN_ROWS))
        for name in self._STATE_FIELDS:
            getattr(self, name)[: state[name].shape[0]] = state[name]
        self.n, self.mf_n = n, mf_n
        self.created_total = int(state["counters"]["created_total"])
        self.deleted_total = int(state["counters"]["deleted_total"])
        if state.get("rng") is not None:  # None: a shard of a state saved with another rank count keeps its own
            self.rng.bit_generator.state = _rng_state_from_text(state["rng"])
        self._rebuild_index()


def _take(array: np.ndarray, rows: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros((capacity,) + array.shape[1:], dtype=array.dtype)
    out[: rows.size] = array[rows]
    if array.dtype == np.int32:  # mf_index: spare rows must read "no mf part"
        out[rows.size :] = -1
    return out


def _rng_state_to_text(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's state holds 128-bit integers; strings keep the checkpoint loadable with torch.load(weights_only=True)
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"], "state": str(st["state"]["state"]), "inc": str(st["state"]["inc"]),
            "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}


def _rng_state_from_text(d: dict[str, Any]) -> dict[str, Any]:
    return {"bit_generator": d["bit_generator"], "state": {"state": int(d["state"]), "inc": int(d["inc"])},
            "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}
