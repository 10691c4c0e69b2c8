"""Clicks table -> filtered, label-encoded sessions and (prefix -> next item) samples for train/valid/test.

Follows seed 004 / STAMP's preprocessing (drop length-1 sessions, drop items seen fewer than `min_item_count`
times, drop length-1 sessions again, label-encode) and RecBole's prefix augmentation: every click after the
first is the target of one sample whose input is the clicks before it.

Samples are not materialised as padded [N, maxlen] matrices (RecBole#1298, #1537: that copy is what makes its
loader memory-hungry). A sample is the index of its target click in one flat array of clicks; the model's input
is gathered per batch (`SessionData.batch`). No torch here: numpy and pandas only, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.tasks.recommendation.sources import SECONDS_PER_DAY

SPLITS = ("train", "valid", "test")


class EmptySplitError(ValueError):
    """Preprocessing left a split without samples; the message says which settings to change."""


@dataclass
class PreparedSessions:
    items: np.ndarray  # int32 [n_clicks]: item ids 1..n_items-1 (0 = PAD), grouped by session, in click order
    offsets: np.ndarray  # int64 [n_sessions + 1]: session s is items[offsets[s]:offsets[s + 1]]
    train_end: np.ndarray  # int64 [n_sessions]: clicks of s before this flat index are training interactions
    targets: dict[str, np.ndarray]  # split -> int64 [N]: flat index of each sample's target click
    n_items: int  # number of item ids including PAD
    item_tokens: list[str]  # raw token of item id i is item_tokens[i - 1]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1


def prepare_sessions(
    clicks: pd.DataFrame,
    *,
    min_item_count: int,
    split: str,
    valid_days: float,
    test_days: float,
) -> PreparedSessions:
    """The whole pipeline: order, filter, split, encode. `clicks` has the columns of sources.CLICK_COLUMNS."""
    stats = {"raw_clicks": len(clicks)}
    clicks = clicks.sort_values(["session", "order"], kind="stable")  # stable: ties keep file order
    clicks = filter_clicks(clicks, min_item_count)
    if clicks.empty:
        raise EmptySplitError(
            f"no session is left after dropping length-1 sessions and items seen fewer than {min_item_count} "
            "times; lower data.min_item_count or use more data"
        )
    session = _session_codes(clicks["session"].to_numpy())
    if split == "leave_one_out":
        offsets = _offsets(session)
        train_end, targets = _leave_one_out(offsets)
        items = clicks["item"].to_numpy()
    elif split == "time":
        clicks, offsets, train_end, targets = _time_split(clicks, session, valid_days, test_days)
        items = clicks["item"].to_numpy()
    else:
        raise ValueError(f"unknown split {split!r}; expected leave_one_out or time")
    for name in SPLITS:
        if len(targets[name]) == 0:
            advice = (
                "sessions need at least 3 clicks to give a valid sample and 2 for a test sample"
                if split == "leave_one_out"
                else "adjust data.valid_days / data.test_days to the time span of the data"
            )
            raise EmptySplitError(f"the {name} split has no samples after preprocessing; {advice}")
    # Tokens as strings, so generated sessions and their .inter export encode to the same ids.
    codes, uniques = pd.factorize(items.astype(str), sort=True)
    stats.update(
        clicks=len(items),
        sessions=len(offsets) - 1,
        items=len(uniques),
        **{f"{name}_samples": len(targets[name]) for name in SPLITS},
    )
    return PreparedSessions(
        items=(codes + 1).astype(np.int32),
        offsets=offsets,
        train_end=train_end,
        targets=targets,
        n_items=len(uniques) + 1,
        item_tokens=[str(t) for t in uniques],
        stats=stats,
    )


def filter_clicks(clicks: pd.DataFrame, min_item_count: int) -> pd.DataFrame:
    """Seed 004: drop length-1 sessions, then items seen < min_item_count times, then length-1 sessions again."""
    clicks = clicks[clicks.groupby("session")["session"].transform("size").to_numpy() > 1]
    if min_item_count > 1:
        clicks = clicks[clicks.groupby("item")["item"].transform("size").to_numpy() >= min_item_count]
        clicks = clicks[clicks.groupby("session")["session"].transform("size").to_numpy() > 1]
    return clicks


def _session_codes(session: np.ndarray) -> np.ndarray:
    """Renumber sessions 0..S-1 in their (sorted) order of appearance."""
    change = np.empty(len(session), dtype=bool)
    change[:1] = True
    change[1:] = session[1:] != session[:-1]
    return np.cumsum(change) - 1


def _offsets(session_codes: np.ndarray) -> np.ndarray:
    counts = np.bincount(session_codes)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _positions(offsets: np.ndarray) -> np.ndarray:
    """Position of every click inside its session (0 for the first click)."""
    lengths = np.diff(offsets)
    return np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)


def _leave_one_out(offsets: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """RecBole's LS valid_and_test over augmented samples, per session.

    A session of n clicks gives n-1 samples. Like RecBole's `_split_index_by_leave_one_out`, at least one sample
    stays in train: 1 sample -> train; 2 -> train + test; 3 or more -> the last is test, the one before valid.
    """
    lengths = np.diff(offsets)
    pos = _positions(offsets)
    n = np.repeat(lengths, lengths)  # session length of every click
    held = np.clip(n - 2, 0, 2)  # samples held out of the session: min(2, n_samples - 1)
    is_test = (held >= 1) & (pos == n - 1)
    is_valid = (held == 2) & (pos == n - 2)
    is_train = (pos >= 1) & ~is_test & ~is_valid
    train_end = offsets[:-1] + lengths - np.clip(lengths - 2, 0, 2)
    index = np.arange(offsets[-1], dtype=np.int64)
    return train_end, {"train": index[is_train], "valid": index[is_valid], "test": index[is_test]}


def _time_split(
    clicks: pd.DataFrame, session: np.ndarray, valid_days: float, test_days: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Whole sessions by the time of their last click (STAMP: the last 7 days are the test set).

    Valid/test clicks on items never seen in training are removed (they cannot be ranked meaningfully), and
    sessions that fall below 2 clicks through that are dropped, as in STAMP's process_cikm.py.
    """
    offsets = _offsets(session)
    last_time = np.maximum.reduceat(clicks["time"].to_numpy(), offsets[:-1])  # [S]
    test_cut = last_time.max() - test_days * SECONDS_PER_DAY
    valid_cut = test_cut - valid_days * SECONDS_PER_DAY
    part = np.where(last_time > test_cut, 2, np.where(last_time > valid_cut, 1, 0))  # 0 train, 1 valid, 2 test
    click_part = np.repeat(part, np.diff(offsets))
    items = clicks["item"].to_numpy()
    train_items = pd.unique(items[click_part == 0])
    keep = (click_part == 0) | pd.Series(items).isin(train_items).to_numpy()
    clicks, session, click_part = clicks[keep], session[keep], click_part[keep]
    sizes = np.bincount(session, minlength=len(part))[session]
    keep = sizes > 1
    clicks, session, click_part = clicks[keep], session[keep], click_part[keep]
    session = _session_codes(session)
    offsets = _offsets(session)
    part = click_part[offsets[:-1]]
    pos = _positions(offsets)
    index = np.arange(offsets[-1], dtype=np.int64)
    targets = {name: index[(pos >= 1) & (click_part == p)] for p, name in enumerate(SPLITS)}
    train_end = np.where(part == 0, offsets[1:], offsets[:-1])
    return clicks, offsets, train_end, targets
