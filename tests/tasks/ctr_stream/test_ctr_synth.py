"""The synthetic stream (known answer) and the Criteo converter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.tasks.ctr_stream.config import SyntheticStream
from workbench.tasks.ctr_stream.criteo import convert_criteo
from workbench.tasks.ctr_stream.metrics import exact_auc
from workbench.tasks.ctr_stream.slots import parse_slot_lines
from workbench.tasks.ctr_stream.synth import HiddenModel, generate_stream


def test_stream_layout_sidecars_and_known_bayes_auc(tmp_path):
    settings = SyntheticStream(examples_per_slice=400, vocab_size=300)
    summary = generate_stream(tmp_path, slots=[2, 3, 4, 5, 6], days=["20190720", "20190721"], split_interval=360,
                              settings=settings, donefile="data.done")
    slices = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*") if p.is_dir())
    assert slices == [f"{d}/{t}" for d in ("20190720", "20190721") for t in ("0000", "0600", "1200", "1800")]
    folder = tmp_path / "20190720" / "0600"
    assert sorted(p.name for p in folder.iterdir()) == ["_truth.npz", "data.done", "part-00000"]
    parsed = parse_slot_lines((folder / "part-00000").read_bytes(), with_ins_id=True)
    truth = np.load(folder / "_truth.npz")
    assert parsed.num_lines == 400 and parsed.bad_count == 0
    assert (parsed.labels == truth["click"]).all() and set(np.unique(parsed.slots).tolist()) <= {2, 3, 4, 5, 6}
    assert parsed.ins_ids[0] == "2019072000010000000"
    day = summary["days"]["20190720"]
    probs = np.concatenate([np.load(tmp_path / "20190720" / t / "_truth.npz")["prob"] for t in ("0000", "0600", "1200", "1800")])
    clicks = np.concatenate([np.load(tmp_path / "20190720" / t / "_truth.npz")["click"] for t in ("0000", "0600", "1200", "1800")])
    assert day["bayes_auc"] == pytest.approx(exact_auc(probs, clicks))
    assert 0.7 < day["bayes_auc"] < 0.95 and day["ctr"] == pytest.approx(0.1, abs=0.03)
    assert json.loads((tmp_path / "_synth.json").read_text())["days"]["20190721"]["impressions"] == 1600


def test_generation_is_deterministic_and_features_churn_between_days():
    model = HiddenModel(list(range(2, 10)), SyntheticStream(churn_per_day=0.3, vocab_size=500))
    a = model.impressions(0, 3000, np.random.default_rng(1))
    b = model.impressions(0, 3000, np.random.default_rng(1))
    assert (a["keys"] == b["keys"]).all() and np.allclose(a["prob"], b["prob"])
    later = model.impressions(1, 3000, np.random.default_rng(1))
    day0, day1 = set(a["keys"].tolist()), set(later["keys"].tolist())
    assert 0.15 < len(day1 - day0) / len(day1) < 0.6  # new ids appear, old ones die
    assert len(model.pairs) == 3 and (a["interaction"] != 0).any()


def test_interactions_make_the_true_model_better_than_its_linear_part():
    model = HiddenModel(list(range(2, 14)), SyntheticStream())
    imp = model.impressions(0, 20000, np.random.default_rng(2))
    assert exact_auc(imp["prob"], imp["click"]) > exact_auc(imp["linear"], imp["click"]) + 0.02


def test_criteo_tsv_becomes_time_sliced_slot_files(tmp_path):
    rows = ["1\t5\t-1\t\t" + "\t".join(["3"] * 10) + "\t" + "\t".join(["68fd1e64"] * 25 + [""]),
            "0\t\t2\t300\t" + "\t".join([""] * 10) + "\t" + "\t".join(["a" * 7 + "b"] * 26),
            "0\t1\t1\t1\t" + "\t".join(["1"] * 10) + "\t" + "\t".join(["80e26c9b"] * 26)]
    src = tmp_path / "train.txt"
    src.write_text("\n".join(rows) + "\n")
    summary = convert_criteo(src, tmp_path / "out", start_day="20190720", split_interval=30, lines_per_slice=2)
    assert summary["slices"] == 2 and summary["last_slice"] == "20190720/0030" and summary["lines"] == 3 and summary["ctr"] == pytest.approx(1 / 3)
    first = parse_slot_lines((tmp_path / "out" / "20190720" / "0000" / "part-00000").read_bytes())
    assert first.labels.tolist() == [1.0, 0.0] and first.bad_count == 0
    counts = np.diff(first.offsets).tolist()
    assert counts == [12 + 25, 2 + 26]  # missing values write no token
    assert set(first.slots.tolist()) <= set(range(2, 41))
    assert (tmp_path / "out" / "20190720" / "0030" / "data.done").exists()


def test_a_later_day_generated_alone_matches_the_whole_stream(tmp_path):
    settings = SyntheticStream(examples_per_slice=50, vocab_size=100)
    generate_stream(tmp_path / "all", slots=[2, 3], days=["20190720", "20190721"], split_interval=720, settings=settings)
    generate_stream(tmp_path / "one", slots=[2, 3], days=["20190721"], split_interval=720, settings=settings,
                    first_day="20190720")
    for part in ("20190721/0000/part-00000", "20190721/1200/part-00000"):
        assert (tmp_path / "all" / part).read_bytes() == (tmp_path / "one" / part).read_bytes()


def test_vocabularies_lie_between_min_and_max_vocab_size():
    model = HiddenModel(list(range(2, 22)), SyntheticStream(min_vocab_size=20, vocab_size=20000, interactions=1))
    assert model.vocab.min() >= 20 and model.vocab.max() <= 20000 and model.vocab.max() > 2000
    assert len(model.pairs) == 1


def test_min_vocab_size_above_vocab_size_is_rejected_with_its_field_path():
    from pydantic import ValidationError

    from workbench.tasks.ctr_stream.config import CtrStreamConfig

    with pytest.raises(ValidationError) as err:
        CtrStreamConfig(synthetic={"min_vocab_size": 500, "vocab_size": 100})
    assert ("synthetic", "min_vocab_size") in [e["loc"] for e in err.value.errors()]
