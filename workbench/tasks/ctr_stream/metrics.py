"""Paddle's CTR metrics: the 4096-bucket AUC (paddle.static.auc + fleet.metrics.auc) and ctr_metric_bundle.

Accumulated per phase (infer, train) of a pass and reset after it, as PaddleRec does. The bucket of a prediction p
is int(p * 4095); AUC walks the buckets from high to low and adds trapezoids, so predictions within 1/4095 of each
other count as ties. Extra to Paddle's log line: logloss (with log_loss's eps 1e-4, the training loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NUM_THRESHOLDS = 4095
NUM_BUCKETS = NUM_THRESHOLDS + 1
LOG_LOSS_EPS = 1e-4


def bucket_auc(stat_pos: np.ndarray, stat_neg: np.ndarray) -> float:
    """fleet.metrics.auc: area = sum over buckets (high to low) of (neg_n - neg_{n-1}) * (pos_{n-1} + pos_n) / 2."""
    pos = np.cumsum(stat_pos[::-1].astype(np.float64))
    neg = np.cumsum(stat_neg[::-1].astype(np.float64))
    if pos.size == 0 or pos[-1] * neg[-1] == 0:
        return 0.5
    prev_pos = np.concatenate(([0.0], pos[:-1]))
    prev_neg = np.concatenate(([0.0], neg[:-1]))
    area = np.sum((neg - prev_neg) * (prev_pos + pos) / 2)
    return float(area / (pos[-1] * neg[-1]))


def exact_auc(pred: np.ndarray, label: np.ndarray) -> float:
    """Exact ROC AUC with ties counted half (Mann-Whitney), for tests and for the Bayes-optimal reference."""
    pred = np.asarray(pred, dtype=np.float64)
    pos = np.asarray(label) > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(pred, kind="mergesort")
    sorted_pred = pred[order]
    ranks = np.empty(pred.size, dtype=np.float64)
    # average rank of each group of equal predictions
    _, first, counts = np.unique(sorted_pred, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bucket_error(stat_pos: np.ndarray, stat_neg: np.ndarray) -> float:
    """Paddle's bucket error: merge adjacent buckets (within a 0.01 CTR span) until the relative standard error
    sqrt((1 - c) / (c * impressions)) < 0.05, then take the impression-weighted |actual CTR / predicted - 1|."""
    last_ctr = -1.0
    impression_sum = ctr_sum = click_sum = 0.0
    error_sum = error_count = 0.0
    num_bucket = stat_pos.shape[0]
    clicks, shows = stat_pos.tolist(), (stat_pos + stat_neg).tolist()  # plain floats: numpy scalars are slow here
    for i in range(num_bucket):  # 4096 buckets: a Python loop over buckets, not over impressions
        click = clicks[i]
        show = shows[i]
        ctr = i / num_bucket
        if abs(ctr - last_ctr) > 0.01:
            last_ctr = ctr
            impression_sum = ctr_sum = click_sum = 0.0
        impression_sum += show
        ctr_sum += ctr * show
        click_sum += click
        if impression_sum == 0:
            continue
        adjust_ctr = ctr_sum / impression_sum
        if adjust_ctr == 0:
            continue
        relative_error = math.sqrt((1 - adjust_ctr) / (adjust_ctr * impression_sum))
        if relative_error < 0.05:
            actual_ctr = click_sum / impression_sum
            error_sum += abs(actual_ctr / adjust_ctr - 1) * impression_sum
            error_count += impression_sum
            last_ctr = -1
    return error_sum / error_count if error_count > 0 else 0.0


@dataclass
class CtrMetrics:
    """Accumulates one phase's predictions: AUC buckets plus the sums of ctr_metric_bundle."""

    stat_pos: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BUCKETS, dtype=np.int64))
    stat_neg: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BUCKETS, dtype=np.int64))
    sqrerr: float = 0.0
    abserr: float = 0.0
    prob: float = 0.0
    q: float = 0.0
    pos: float = 0.0
    total: float = 0.0
    logloss: float = 0.0

    def add(self, pred: np.ndarray, label: np.ndarray) -> None:
        """pred: probabilities [B]; label: 0/1 [B]."""
        p = np.asarray(pred, dtype=np.float64)
        y = np.asarray(label, dtype=np.float64)
        bucket = np.clip((p * NUM_THRESHOLDS).astype(np.int64), 0, NUM_THRESHOLDS)
        positive = y > 0
        self.stat_pos += np.bincount(bucket[positive], minlength=NUM_BUCKETS)
        self.stat_neg += np.bincount(bucket[~positive], minlength=NUM_BUCKETS)
        diff = p - y
        self.sqrerr += float((diff * diff).sum())  # not np.dot: BLAS threads made a pass-sized dot 100x slower
        self.abserr += float(np.abs(diff).sum())
        self.prob += float(p.sum())
        self.q += float((1 / (1 + np.exp(-p))).sum())  # Paddle's quirk: sigmoid of the probability (MEAN Q)
        self.pos += float(positive.sum())
        self.total += float(p.size)
        self.logloss -= float((y * np.log(p + LOG_LOSS_EPS) + (1 - y) * np.log(1 - p + LOG_LOSS_EPS)).sum())

    def merge(self, other: CtrMetrics) -> None:
        self.stat_pos += other.stat_pos
        self.stat_neg += other.stat_neg
        for name in ("sqrerr", "abserr", "prob", "q", "pos", "total", "logloss"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def compute(self, prefix: str) -> dict[str, float]:
        """`<prefix>/auc`, bucket_error, mae, rmse, actual_ctr, predicted_ctr, copc, mean_q, logloss, examples."""
        n = max(self.total, 1.0)
        actual, predicted = self.pos / n, self.prob / n
        return {
            f"{prefix}/auc": bucket_auc(self.stat_pos, self.stat_neg),
            f"{prefix}/bucket_error": bucket_error(self.stat_pos, self.stat_neg),
            f"{prefix}/mae": self.abserr / n,
            f"{prefix}/rmse": math.sqrt(self.sqrerr / n),
            f"{prefix}/actual_ctr": actual,
            f"{prefix}/predicted_ctr": predicted,
            f"{prefix}/copc": actual / predicted if predicted > 0 else 0.0,
            f"{prefix}/mean_q": self.q / n,
            f"{prefix}/logloss": self.logloss / n,
            f"{prefix}/examples": self.total,
        }

    def state(self) -> dict[str, object]:
        return {"stat_pos": self.stat_pos.copy(), "stat_neg": self.stat_neg.copy(),
                **{k: getattr(self, k) for k in ("sqrerr", "abserr", "prob", "q", "pos", "total", "logloss")}}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> CtrMetrics:
        m = cls()
        m.stat_pos = np.asarray(state["stat_pos"], dtype=np.int64).copy()
        m.stat_neg = np.asarray(state["stat_neg"], dtype=np.int64).copy()
        for k in ("sqrerr", "abserr", "prob", "q", "pos", "total", "logloss"):
            setattr(m, k, float(state[k]))  # type: ignore[arg-type]
        return m


_SUMS = ("sqrerr", "abserr", "prob", "q", "pos", "total", "logloss")


def reduce_metrics(metrics: CtrMetrics, all_sum: Callable[[np.ndarray], np.ndarray]) -> CtrMetrics:
    """The metrics over every rank: bucket counts and sums added up (Paddle all-reduces stat_pos/stat_neg the same
    way before computing the global AUC). `all_sum` is the ranks' element-wise float64 sum (identity on one rank);
    the counts stay exact below 2^53."""
    packed = np.concatenate([metrics.stat_pos.astype(np.float64), metrics.stat_neg.astype(np.float64),
                             np.array([getattr(metrics, k) for k in _SUMS], dtype=np.float64)])
    summed = all_sum(packed)
    out = CtrMetrics()
    out.stat_pos = np.rint(summed[:NUM_BUCKETS]).astype(np.int64)
    out.stat_neg = np.rint(summed[NUM_BUCKETS : 2 * NUM_BUCKETS]).astype(np.int64)
    for k, v in zip(_SUMS, summed[2 * NUM_BUCKETS :].tolist()):
        setattr(out, k, v)
    return out
