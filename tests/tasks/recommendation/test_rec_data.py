"""Data: readers (incl. malformed files), Diginetica pipeline, splits, batches, cache fingerprint, data commands."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from workbench.tasks.recommendation.cli import import_diginetica, session_stats, synth_sessions
from workbench.tasks.recommendation.config import RecommendationData, SyntheticSessions
from workbench.tasks.recommendation.data import data_fingerprint, load_session_data
from workbench.tasks.recommendation.pipeline import EmptySplitError, prepare_sessions
from workbench.tasks.recommendation.sources import DataFileError, generate_sessions, read_atomic, read_diginetica

HEADER = "session_id:token\titem_id:token\ttimestamp:float\n"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))


def _write(path, text):
    path.write_text(text)
    return path


def test_atomic_reader_orders_by_timestamp(tmp_path):
    f = _write(tmp_path / "a.inter", HEADER + "s1\ti9\t30\ns1\ti7\t10\n\ns2\ti7\t5\ns1\ti8\t40\ns1\ti1\t20\n")
    clicks = read_atomic(f)
    assert len(clicks) == 5  # the blank line is skipped
    prepared = prepare_sessions(clicks, min_item_count=1, split="leave_one_out", valid_days=7, test_days=7)
    tokens = np.array(prepared.item_tokens)[prepared.items - 1]
    assert tokens.tolist() == ["i7", "i1", "i9", "i8"]  # s1 sorted by time; s2 has one click and is dropped


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("session_id\titem_id:token\n1\t2\n", 1, "name:type"),
        ("user_id:token\ttimestamp:float\n1\t2\n", 1, "item_id"),
        (HEADER + "1\t2\t3\n1\t2\t3\t4\n", 3, "wrong number of fields"),
        (HEADER + "1\t2\t3\n1\t2\tnoon\n1\t2\tlater\n", 3, "timestamp must be a number (1 more"),
        (HEADER + "1\t2\t3\n\n1\t\t4\n", 4, "missing value in column 'item_id'"),
    ],
)
def test_malformed_atomic_files_name_file_and_line(tmp_path, text, line, words):
    f = _write(tmp_path / "bad.inter", text)
    with pytest.raises(DataFileError) as info:
        read_atomic(f)
    assert info.value.line == line
    assert str(info.value).startswith(f"{f}:{line}: ")
    assert words in str(info.value)


def test_missing_file_says_what_to_set(tmp_path):
    with pytest.raises(DataFileError, match="data.path must point at"):
        read_atomic(tmp_path / "nope.inter")


DIGI = """sessionId;userId;itemId;timeframe;eventdate
1;NA;10;5000;2016-05-01
1;NA;11;1000;2016-05-01
1;NA;12;9000;2016-05-01
1;NA;13;7000;2016-05-01
1;NA;11;3000;2016-05-01
2;NA;10;100;2016-05-02
2;NA;11;200;2016-05-02
2;NA;13;300;2016-05-02
3;NA;99;100;2016-05-02
3;NA;10;300;2016-05-02
"""


def test_diginetica_orders_clicks_by_timeframe_and_filters_rare_items(tmp_path):
    f = _write(tmp_path / "train-item-views.csv", DIGI)
    clicks = read_diginetica(f)
    prepared = prepare_sessions(clicks, min_item_count=2, split="leave_one_out", valid_days=7, test_days=7)
    tokens = np.array(prepared.item_tokens)[prepared.items - 1].tolist()
    # session 1 by timeframe (not file order, all on one date): 11, 11, 10, 13, 12; items 12 and 99 are seen
    # once -> dropped, which leaves session 3 with one click -> dropped too
    assert tokens == ["11", "11", "10", "13", "10", "11", "13"]
    assert prepared.offsets.tolist() == [0, 4, 7]
    assert [len(prepared.targets[s]) for s in ("train", "valid", "test")] == [2, 1, 2]


def test_diginetica_bad_date_names_the_line(tmp_path):
    f = _write(tmp_path / "train-item-views.csv", DIGI.replace("2016-05-02\n3;", "02/05/2016\n3;", 1))
    with pytest.raises(DataFileError) as info:
        read_diginetica(f)
    assert info.value.line == 9 and "eventdate" in str(info.value)
    f2 = _write(tmp_path / "x.csv", "sessionId;itemId\n1;2\n")
    with pytest.raises(DataFileError, match="header lacks userId, timeframe, eventdate"):
        read_diginetica(f2)


def _clicks(sessions: list[list[int]], days: list[float] | None = None) -> pd.DataFrame:
    rows = []
    for s, items in enumerate(sessions):
        for pos, item in enumerate(items):
            t = (days[s] if days else 0.0) * 86400 + pos
            rows.append((s, item, t, t))
    return pd.DataFrame(rows, columns=["session", "item", "time", "order"])


def test_leave_one_out_follows_recbole():
    clicks = _clicks([[1, 2], [1, 2, 3], [1, 2, 3, 4, 5]])
    p = prepare_sessions(clicks, min_item_count=1, split="leave_one_out", valid_days=7, test_days=7)
    # flat clicks: [1 2 | 1 2 3 | 1 2 3 4 5]; 1 sample -> train; 2 -> train + test; 4 -> 2 train, valid, test
    assert p.targets["train"].tolist() == [1, 3, 6, 7]
    assert p.targets["valid"].tolist() == [8]
    assert p.targets["test"].tolist() == [4, 9]
    assert p.train_end.tolist() == [2, 4, 8]


def test_time_split_keeps_whole_sessions_and_drops_unseen_items():
    clicks = _clicks([[1, 2, 3], [2, 3], [3, 9, 1], [1, 2]], days=[0, 10, 19, 20])
    with pytest.raises(EmptySplitError, match="valid split has no samples.*valid_days"):
        prepare_sessions(clicks, min_item_count=1, split="time", valid_days=5, test_days=5)
    # train: session 0; valid: session 1; test: session 2 (item 9 was never trained on -> removed) and 3
    p = prepare_sessions(clicks, min_item_count=1, split="time", valid_days=12, test_days=5)
    assert [p.item_tokens[i - 1] for i in p.items] == ["1", "2", "3", "2", "3", "3", "1", "1", "2"]
    assert p.targets["train"].tolist() == [1, 2]
    assert p.targets["valid"].tolist() == [4]
    assert p.train_end.tolist() == [3, 3, 5, 7]
    assert p.targets["test"].tolist() == [6, 8]


def test_batches_pad_right_and_truncate_to_maxlen(tmp_path):
    f = _write(tmp_path / "a.inter", HEADER + "".join(f"1\t{i}\t{i}\n" for i in range(1, 8)))
    data = load_session_data(RecommendationData(source="atomic", path=str(f), min_item_count=1, maxlen=3))
    test = data.splits["test"]
    batch = data.batch("test", torch.arange(len(test)))
    assert [data.item_tokens[i - 1] for i in batch.item_seq[0].tolist()] == ["4", "5", "6"]  # the last 3 of 6
    assert batch.item_len.tolist() == [3] and data.item_tokens[batch.target.item() - 1] == "7"
    first = data.batch("train", torch.tensor([0]))
    assert first.item_len.item() == 1 and first.item_seq[0, 1:].tolist() == [0, 0]


def test_cache_is_reused_and_fingerprint_tracks_file_and_settings(tmp_path):
    f = _write(tmp_path / "a.inter", HEADER + "1\t1\t1\n1\t2\t2\n1\t3\t3\n1\t4\t4\n2\t1\t1\n2\t2\t2\n")
    cfg = RecommendationData(source="atomic", path=str(f), min_item_count=1)
    first = load_session_data(cfg)
    cache_files = list((tmp_path / "home" / "cache" / "recommendation").glob("*.pt"))
    assert [p.stem for p in cache_files] == [first.fingerprint]
    assert load_session_data(cfg).fingerprint == first.fingerprint
    assert data_fingerprint(cfg.model_copy(update={"maxlen": 3})) == first.fingerprint  # applied per batch
    assert data_fingerprint(cfg.model_copy(update={"min_item_count": 2})) != first.fingerprint
    _write(f, f.read_text() + "3\t1\t1\n3\t2\t2\n")
    os.utime(f, ns=(1, 1))
    assert data_fingerprint(cfg) != first.fingerprint
    assert load_session_data(cfg).n_users == 3
    synthetic = RecommendationData()
    other_seed = RecommendationData(synthetic=SyntheticSessions(seed=8))
    assert data_fingerprint(synthetic) != data_fingerprint(other_seed)


def test_synthetic_generator_is_deterministic_and_structured():
    spec = SyntheticSessions(n_items=200, n_sessions=2000, seed=3)
    a, b = generate_sessions(spec), generate_sessions(spec)
    pd.testing.assert_frame_equal(a, b)
    assert a["item"].between(1, 200).all()
    lengths = a.groupby("session").size()
    assert lengths.min() >= 2 and lengths.max() <= spec.max_length
    assert lengths.mean() == pytest.approx(spec.mean_length, rel=0.15)
    # Markov structure: the most frequent successor of a popular item covers far more than 1/200 of its next clicks
    nxt = a.groupby("session")["item"].shift(-1)
    top = a["item"].value_counts().index[0]
    follow = nxt[a["item"] == top].value_counts(normalize=True)
    assert follow.iloc[0] > 0.1


def test_data_commands_write_files_that_load(tmp_path):
    app = typer.Typer()
    app.command("synth-sessions")(synth_sessions)
    app.command("import-diginetica")(import_diginetica)
    app.command("session-stats")(session_stats)
    runner = CliRunner()
    out = tmp_path / "s.inter"
    result = runner.invoke(app, ["synth-sessions", str(out), "--n-items", "50", "--n-sessions", "300"])
    assert result.exit_code == 0, result.output
    assert len(read_atomic(out)) > 600
    result = runner.invoke(app, ["session-stats", str(out)])
    assert result.exit_code == 0 and "train_samples" in result.output
    digi = _write(tmp_path / "train-item-views.csv", DIGI)
    result = runner.invoke(app, ["import-diginetica", str(digi), str(tmp_path / "d.inter"), "--min-item-count", "2"])
    assert result.exit_code == 0, result.output
    clicks = read_atomic(tmp_path / "d.inter")
    assert clicks["item"].tolist() == ["11", "11", "10", "13", "10", "11", "13"]  # timeframe order survives


def test_intents_generator_knobs_shape_the_sessions():
    """Issue 14's kind of data: intents with their own Zipf ranking, re-clicks, other length distributions."""
    base = dict(kind="intents", n_items=300, n_sessions=3000, mean_length=8.0, max_length=40, n_topics=10, seed=5)
    plain = generate_sessions(SyntheticSessions(**base))
    again = generate_sessions(SyntheticSessions(**base, reclick_prob=0.4))
    pd.testing.assert_frame_equal(plain, generate_sessions(SyntheticSessions(**base)))
    assert plain["item"].between(1, 300).all()

    def reclicked(clicks: pd.DataFrame) -> float:
        return float(clicks.duplicated(["session", "item"]).mean())

    assert reclicked(again) > reclicked(plain) + 0.12  # 0.4 of later clicks repeat (some would anyway)
    assert plain.groupby("session").size().mean() == pytest.approx(8.0, rel=0.1)
    heavy = generate_sessions(SyntheticSessions(**base, length_distribution="lognormal")).groupby("session").size()
    flat = generate_sessions(SyntheticSessions(**base, length_distribution="uniform")).groupby("session").size()
    assert heavy.mean() == pytest.approx(8.0, rel=0.15) and flat.mean() == pytest.approx(8.0, rel=0.1)
    assert heavy.median() < flat.median() and heavy.max() > flat.max()  # long tail vs no tail
    # Zipf inside each intent: no intent switches, so a session's items share an intent; with skew 2 its top
    # item takes a large share of the intent's non-successor draws
    one_intent = SyntheticSessions(**{**base, "n_topics": 3}, intent_switch_prob=0.0, follow_prob=0.0, zipf_exponent=2.0)
    clicks = generate_sessions(one_intent)
    assert clicks["item"].value_counts(normalize=True).iloc[0] > 0.15


def test_topics_generator_is_unchanged_by_the_new_knobs_at_their_defaults():
    spec = SyntheticSessions(n_items=100, n_sessions=500, seed=2)
    explicit = SyntheticSessions(
        n_items=100, n_sessions=500, seed=2, kind="topics", length_distribution="geometric", reclick_prob=0.0
    )
    pd.testing.assert_frame_equal(generate_sessions(spec), generate_sessions(explicit))
    assert RecommendationData(synthetic=spec) == RecommendationData(synthetic=explicit)
