"""Saved models in PaddleRec's layout and line format, and the donefiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.save import (
    SavedRows,
    format_lines,
    last_donefile_entry,
    model_folder,
    read_model_lines,
    save_model,
    write_model_donefile,
    write_xbox_donefile,
)
from workbench.tasks.ctr_stream.table import SAVE_BASE, SAVE_BATCH, SAVE_CHECKPOINT, SAVE_DELTA, SparseTable


def table_with_three_keys(**cfg) -> SparseTable:
    t = SparseTable(CtrStreamConfig(embedx_dim=2, embedx_threshold=1.0, base_threshold=1.0, **cfg), seed=0)
    keys = np.array([11, 22, 2**64 - 1], np.uint64)
    t.push(keys, t.lookup(keys), np.array([2, 3, 4], np.uint16), np.array([1, 30, 3], np.float32),
           np.array([0, 0, 3], np.float32), np.zeros((3, 3), np.float32))
    return t


def test_folder_names_follow_paddlerec():
    assert [model_folder(Path("o"), "20190720", m, 6).as_posix()
            for m in (SAVE_CHECKPOINT, SAVE_DELTA, SAVE_BASE, SAVE_BATCH)] == [
        "o/20190720/6", "o/20190720/delta-6", "o/20190720/base", "o/20190720/0"]


def test_line_format_carries_embedx_only_for_extended_keys_above_the_threshold():
    t = table_with_three_keys()
    t.embed_w[:3] = [0.5, -0.25, 1e-05]
    lines = format_lines(SavedRows.take(t, SAVE_CHECKPOINT)[0], np.arange(3)).splitlines()
    # key slot unseen_days delta_score show click embed_w embed_g2sum [embedx_w x2 embedx_g2sum]
    assert lines[0] == "11 2 0 0.1 1 0 0.5 0"  # score 0.1: no mf part
    assert lines[1].startswith("22 3 0 3 30 0 -0.25 0 ") and len(lines[1].split()) == 11
    assert lines[2].startswith("18446744073709551615 4 0 3 3 3 1e-05 0 ")
    t.show[1] = 5  # mf part exists but the score (0.5) fell below embedx_threshold: not written
    assert len(format_lines(SavedRows.take(t, SAVE_CHECKPOINT)[0], np.array([1])).split()) == 8


def test_save_writes_shards_meta_and_dense_then_applies_after_save_updates(tmp_path):
    t = table_with_three_keys(delta_threshold=0.5)
    folder = tmp_path / "20190720" / "delta-3"
    n = save_model(folder, t, SAVE_DELTA, {"model": {"w": torch.ones(2)}}, {"day": "20190720"}, shard_num=3)
    assert n == 2  # key 11 (score 0.1) is below base_threshold 1
    assert sorted(p.name for p in (folder / "000").iterdir()) == ["part-000-00000", "part-000-00001", "part-000-00002"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["mode_name"] == "delta" and meta["features"] == 2
    assert torch.load(folder / "dense.pt", weights_only=True)["model"]["w"].sum() == 2
    assert t.delta_score[:3].tolist() == [np.float32(0.1), 0.0, 0.0]  # reset for the saved keys only
    back = read_model_lines(folder, base_width=7)
    assert sorted(back["keys"].tolist()) == [22, 2**64 - 1] and back["has_embedx"].all()
    assert not list(tmp_path.glob("**/*.tmp"))


def test_batch_model_ages_keys_and_gzip_converter(tmp_path):
    t = table_with_three_keys()
    save_model(tmp_path / "b", t, SAVE_BASE, {}, {}, compress=True)
    assert [p.name for p in (tmp_path / "b" / "000").iterdir()] == ["part-000-00000.gz"]
    assert sorted(read_model_lines(tmp_path / "b", 7)["keys"].tolist()) == [22, 2**64 - 1]
    save_model(tmp_path / "0", t, SAVE_BATCH, {}, {})
    back = read_model_lines(tmp_path / "0", 7)
    assert back["keys"].size == 3 and t.unseen_days[:3].tolist() == [1, 1, 1]
    assert back["values"][:, 1].tolist() == [0, 0, 0]  # written before the ageing


def test_checkpoint_lines_read_back_to_the_table_values(tmp_path):
    t = table_with_three_keys()
    save_model(tmp_path / "c", t, SAVE_CHECKPOINT, {}, {})
    back = read_model_lines(tmp_path / "c", 7)
    order = np.argsort(back["keys"])
    rows = t.lookup(back["keys"][order])
    assert np.allclose(back["values"][order, 3], t.show[rows])
    mf = t.mf_index[rows[1]]
    assert np.allclose(back["values"][order[1], 7:9], t.embedx_w[mf], rtol=1e-5)


def test_donefiles(tmp_path):
    write_model_donefile(tmp_path, "20190720", 6, 123, tmp_path / "20190720" / "6")
    write_model_donefile(tmp_path, "20190720", 6, 123, tmp_path / "20190720" / "6")  # a rerun: not repeated
    write_model_donefile(tmp_path, "20190721", -1, 123, tmp_path / "20190721" / "0")
    lines = (tmp_path / "donefile.txt").read_text().splitlines()
    assert lines == [f"20190720\t123\t{tmp_path}/20190720/6\t6\t0", f"20190721\t123\t{tmp_path}/20190721/0\t-1\t0"]
    assert last_donefile_entry(tmp_path) == ("20190721", -1, f"{tmp_path}/20190721/0")
    write_xbox_donefile(tmp_path, SAVE_BASE, 123, tmp_path / "base", 7, "data/20190720", "auc=0.7")
    write_xbox_donefile(tmp_path, SAVE_DELTA, 123, tmp_path / "delta-6", 3, "data/20190720", "auc=0.7")
    base = json.loads((tmp_path / "base_donefile.txt").read_text())
    assert base["input"] == f"{tmp_path}/base/000" and base["key"] == "123" and base["record_count"] == "7"
    assert json.loads((tmp_path / "patch_donefile.txt").read_text())["monitor_data"] == "auc=0.7"
