"""The sparse table's rules, checked against values computed by hand from PaddleRec's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.table import SAVE_BASE, SAVE_BATCH, SAVE_CHECKPOINT, SAVE_DELTA, SparseTable

D = 8  # embedx_dim


def make(**overrides) -> SparseTable:
    return SparseTable(CtrStreamConfig(**overrides), seed=1)


def push(table: SparseTable, keys, show, click, grad, slot=2) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint64)
    n = keys.size
    grad = np.asarray(grad, dtype=np.float32).reshape(n, 1 + table.embedx_dim)
    return table.push(keys, table.lookup(keys), np.full(n, slot, np.uint16), np.asarray(show, np.float32),
                      np.asarray(click, np.float32), grad)


def g(embed: float, embedx: float = 0.0) -> list[float]:
    return [embed] + [embedx] * D


def test_pull_of_a_missing_key_is_zero_and_creates_nothing():
    t = make()
    rows = t.lookup(np.array([5, 6], np.uint64))
    assert (rows == -1).all()
    assert (t.pull(rows) == 0).all()
    assert t.n == 0


def test_first_push_creates_the_key_with_counters_and_one_adagrad_step():
    t = make(embedx_threshold=10)
    push(t, [42], show=[2], click=[1], grad=[g(0.6)], slot=7)
    r = t.lookup(np.array([42], np.uint64))[0]
    assert r == 0 and t.n == 1 and t.created_total == 1
    assert t.show[r] == 2 and t.click[r] == 1 and t.slot[r] == 7 and t.unseen_days[r] == 0
    assert t.delta_score[r] == pytest.approx((2 - 1) * 0.1 + 1 * 1.0)  # score of the push
    # AdaGrad from embed_w = 0 (zero_init), g2sum = 0: g = 0.6 / show 2 = 0.3; w = -0.05 * 0.3 * sqrt(3 / 3)
    assert t.embed_w[r] == pytest.approx(-0.015)
    assert t.embed_state[r, 0] == pytest.approx(0.3**2)
    assert t.mf_index[r] == -1  # score 1.1 < embedx_threshold 10: no embedx yet
    assert np.allclose(t.pull(np.array([r])), [[-0.015] + [0.0] * D])


def test_adagrad_uses_the_old_g2sum_and_clips_to_weight_bounds():
    bounds = {"weight_bounds": [-0.02, 0.02]}
    t = make(embedx_threshold=10, embed_sgd_param=bounds)
    push(t, [1], [1], [0], [g(0.2)])
    w1 = -0.05 * 0.2 * math.sqrt(3 / 3)  # -0.01
    assert t.embed_w[0] == pytest.approx(w1)
    push(t, [1], [1], [0], [g(0.4)])
    w2 = w1 - 0.05 * 0.4 * math.sqrt(3 / (3 + 0.2**2))  # the step uses g2sum before this push: 0.04
    assert t.embed_w[0] == pytest.approx(max(w2, -0.02))
    assert t.embed_state[0, 0] == pytest.approx(0.2**2 + 0.4**2)
    push(t, [1], [1], [0], [g(10.0)])
    assert t.embed_w[0] == pytest.approx(-0.02)  # clipped to the lower bound


def test_embedx_is_created_at_the_threshold_and_that_pushs_gradient_is_discarded():
    t = make(embedx_threshold=1.0)
    push(t, [9], [1], [0], [g(0.1, 50.0)])  # score 0.1: no embedx
    assert t.mf_n == 0
    before_embed = t.embed_w[0]
    push(t, [9], [1], [1], [g(0.1, 50.0)])  # score (2-1)*0.1 + 1 = 1.1 >= 1: extended in this push
    assert t.mf_n == 1
    x = t.embedx_w[t.mf_index[0]].copy()
    assert np.all(np.abs(x) <= 1e-4)  # fresh uniform(-initial_range, initial_range): the 50.0 gradient was dropped
    assert np.all(t.embedx_state[t.mf_index[0]] == 0)
    assert t.embed_w[0] != before_embed  # while the embed part did learn from that push
    push(t, [9], [2], [0], [g(0.0, 0.8)])  # now embedx trains: g = 0.8 / 2, step uses g2sum 0
    assert np.allclose(t.embedx_w[t.mf_index[0]], x - 0.05 * 0.4 * math.sqrt(3 / 3), atol=1e-7)
    assert t.embedx_state[t.mf_index[0], 0] == pytest.approx(0.4**2)  # one g2sum: mean of the squared gradients
    assert np.allclose(t.pull(np.array([0]))[0, 1:], t.embedx_w[t.mf_index[0]])


def test_threshold_zero_extends_on_the_first_push():
    t = make()  # seed default embedx_threshold 0
    push(t, [3, 4], [1, 1], [0, 0], [g(1.0, 1.0), g(1.0, 1.0)])
    assert t.mf_n == 2 and np.all(np.abs(t.embedx_w[:2]) <= 1e-4)


def test_std_adagrad_keeps_one_g2sum_per_dimension():
    t = make(embedx_threshold=0, embedx_dim=2, embedx_sgd_param={"name": "StdAdaGradSGDRule"})
    push(t, [1], [1], [0], [[0.0, 0.0, 0.0]])  # creates embedx
    x0 = t.embedx_w[0].copy()
    push(t, [1], [1], [0], [[0.0, 0.3, -0.6]])
    assert np.allclose(t.embedx_w[0], x0 - 0.05 * np.array([0.3, -0.6]), atol=1e-7)
    assert np.allclose(t.embedx_state[0], [0.09, 0.36])


def test_sparse_adam_is_bias_corrected_and_ignores_show():
    t = make(embedx_threshold=10, embed_sgd_param={"name": "SparseAdamSGDRule", "learning_rate": 0.01})
    push(t, [1], [4], [0], [g(0.5)])
    b1, b2 = 0.9, 0.999
    m, v = (1 - b1) * 0.5, (1 - b2) * 0.25
    lr = 0.01 * math.sqrt(1 - b2) / (1 - b1)  # beta powers start at beta
    assert t.embed_w[0] == pytest.approx(-lr * m / (math.sqrt(v) + 1e-8), rel=1e-4)
    assert np.allclose(t.embed_state[0], [m, v, b1 * b1, b2 * b2], rtol=1e-5)


def test_ctr_common_accessor_pulls_show_and_click_and_can_skip_show_scaling():
    t = make(accessor_class="CtrCommonAccessor", show_scale=False, embedx_threshold=10)
    push(t, [5], [4], [1], [g(0.2)])
    assert np.allclose(t.pull(np.array([0]))[0, :3], [4, 1, -0.05 * 0.2])  # g not divided by show 4


def test_shrink_decays_every_key_then_deletes_by_score_and_unseen_days():
    t = make(show_click_decay_rate=0.5, delete_threshold=0.5, delete_after_unseen_days=2, embedx_threshold=0.3)
    push(t, [1, 2, 3], [20, 2, 20], [0, 0, 0], [g(0.1, 0.1)] * 3)
    t.unseen_days[2] = 3  # key 3 unseen for 3 days
    x1 = t.embedx_w[t.mf_index[0]].copy()
    deleted = t.shrink()
    # scores after decay: key 1: 10 * 0.1 = 1.0 kept; key 2: 1 * 0.1 = 0.1 < 0.5 deleted; key 3: unseen 3 > 2 deleted
    assert deleted == 2 and t.n == 1 and t.deleted_total == 2
    assert t.show[0] == 10 and t.keys[0] == 1
    assert (t.lookup(np.array([1, 2, 3], np.uint64)) == [0, -1, -1]).all()
    assert t.mf_n == 1 and np.allclose(t.embedx_w[t.mf_index[0]], x1)  # the survivor keeps its embedx


def test_save_mode_filters_and_after_save_updates():
    t = make(base_threshold=1.0, delta_threshold=0.5, delta_keep_days=1)
    push(t, [1, 2, 3, 4], [20, 5, 20, 20], [0, 0, 0, 0], [g(0.0)] * 4)
    t.delta_score[:4] = [2.0, 2.0, 0.2, 2.0]
    t.unseen_days[:4] = [0, 0, 0, 2]
    # key 2: score 0.5 < base 1; key 3: delta 0.2 < 0.5; key 4: unseen 2 > keep 1
    assert t.save_mask(SAVE_DELTA).tolist() == [True, False, False, False]
    assert t.save_mask(SAVE_BASE).tolist() == [True, False, True, False]  # delta_threshold is 0 for base
    assert t.save_mask(SAVE_CHECKPOINT).all() and t.save_mask(SAVE_BATCH).all()
    t.update_after_save(SAVE_DELTA, t.save_mask(SAVE_DELTA))
    assert t.delta_score.tolist()[:4] == [0.0, 2.0, pytest.approx(0.2), 2.0]
    before = t.delta_score[:4].copy()
    t.update_after_save(SAVE_CHECKPOINT, t.save_mask(SAVE_CHECKPOINT))
    assert (t.delta_score[:4] == before).all() and t.unseen_days[:4].tolist() == [0, 0, 0, 2]
    t.update_after_save(SAVE_BATCH, t.save_mask(SAVE_BATCH))
    assert t.unseen_days[:4].tolist() == [1, 1, 1, 3]  # the batch model ages every key by a day
    t.update_after_save(SAVE_BASE, t.save_mask(SAVE_BASE))
    assert t.delta_score[2] == 0.0


def test_a_push_resets_unseen_days():
    t = make()
    push(t, [1, 2], [1, 1], [0, 0], [g(0.0)] * 2)
    t.update_after_save(SAVE_BATCH, t.save_mask(SAVE_BATCH))
    t.update_after_save(SAVE_BATCH, t.save_mask(SAVE_BATCH))
    push(t, [2], [1], [0], [g(0.0)])
    assert t.unseen_days[:2].tolist() == [2, 0]


def test_random_admission_follows_the_push_score():
    t = make(enable_create_feasign_randomly=True, embedx_threshold=10)
    keys = np.arange(1, 2001, dtype=np.uint64)
    n = keys.size
    rows = t.push(keys, t.lookup(keys), np.full(n, 2, np.uint16), np.ones(n, np.float32) * 5, np.zeros(n, np.float32),
                  np.zeros((n, 1 + D), np.float32))  # score 5 * 0.1 = 0.5: kept with probability 0.5
    assert 800 < (rows >= 0).sum() < 1200 and t.n == (rows >= 0).sum()
    rows = push(t, [9001, 9002], [10, 1], [1, 0], [g(0.0)] * 2)  # scores 1.9 (always kept) and 0.1
    assert rows[0] >= 0


def test_merge_push_sums_duplicate_keys_like_the_client():
    t = make(embedx_threshold=10)
    grads = np.array([g(0.2), g(0.4), g(1.0)], np.float32)
    t.merge_push(np.array([7, 7, 8], np.uint64), np.array([2, 2, 3], np.uint16), np.ones(3, np.float32),
                 np.array([1, 0, 0], np.float32), grads)
    r = t.lookup(np.array([7], np.uint64))[0]
    assert t.show[r] == 2 and t.click[r] == 1
    assert t.embed_w[r] == pytest.approx(-0.05 * (0.6 / 2))


def test_index_matches_a_dict_through_growth_shrink_and_extreme_keys():
    rng = np.random.default_rng(0)
    t = make(embedx_threshold=10, delete_threshold=0.15)
    expected: set[int] = set()
    for _ in range(30):
        keys = np.unique(rng.integers(1, 2**64 - 1, 3000, dtype=np.uint64, endpoint=True))
        keys = np.concatenate([keys, np.array([2**64 - 1], np.uint64)])
        keys = np.unique(keys)
        push(t, keys, np.ones(keys.size), np.zeros(keys.size), np.zeros((keys.size, 1 + D)))
        expected |= set(keys.tolist())
    assert t.n == len(expected)
    present = np.array(sorted(expected)[::7], dtype=np.uint64)
    absent = np.array([k for k in range(0, 1000) if k not in expected], dtype=np.uint64)
    assert (t.keys[t.lookup(present)] == present).all()
    assert (t.lookup(absent) == -1).all()
    t.show[: t.n // 2] = 1  # half drop below the delete threshold after this
    t.show[t.n // 2 : t.n] = 5
    keep = set(t.keys[t.n // 2 : t.n].tolist())
    t.shrink()
    assert set(t.keys[: t.n].tolist()) == keep
    assert (t.keys[t.lookup(np.array(sorted(keep), np.uint64))] == np.array(sorted(keep), np.uint64)).all()


def test_memory_per_feature_stays_within_one_and_a_half_times_the_raw_payload():
    t = make(embedx_threshold=10)
    keys = np.arange(1, 300_001, dtype=np.uint64) * np.uint64(2654435761)
    n = keys.size
    t.push(keys, t.lookup(keys), np.full(n, 2, np.uint16), np.ones(n, np.float32), np.zeros(n, np.float32),
           np.zeros((n, 1 + D), np.float32))
    ratio = t.memory_bytes() / t.raw_payload_bytes()
    assert ratio <= 1.5, f"{t.memory_bytes() / n:.1f} bytes per feature vs raw {t.raw_payload_bytes() / n:.1f}"


def test_state_dict_round_trip_continues_identically():
    a = make(embedx_threshold=0.5)
    push(a, [1, 2, 3], [3, 1, 9], [1, 0, 2], [g(0.3, 0.2)] * 3)
    b = make(embedx_threshold=0.5)
    b.load_state_dict(a.state_dict())
    for t in (a, b):
        push(t, [3, 4], [1, 9], [0, 1], [g(0.1, 0.5)] * 2)
    for col in ("keys", "show", "embed_w", "mf_index"):
        assert np.array_equal(getattr(a, col)[: a.n], getattr(b, col)[: b.n])
    assert np.array_equal(a.embedx_w[: a.mf_n], b.embedx_w[: b.mf_n])  # same RNG draws for key 4's embedx
