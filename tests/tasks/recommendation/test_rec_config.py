"""Config schema: defaults, cross-field rules reported with field paths, shipped presets, no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workbench.config.io import ConfigError, load_config_file, parse_config, parse_yaml_text
from workbench.tasks import TASKS
from workbench.tasks.recommendation import SPEC
from workbench.tasks.recommendation.config import RecommendationConfig

PRESETS = sorted((Path(__file__).resolve().parents[3] / "configs" / "recommendation").glob("*.yaml"))


def _errors(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"task": "recommendation", **data})
    return {e.path: e.message for e in info.value.errors}


def test_default_trains_stamp_with_ce_and_no_negative_sampling():
    cfg = RecommendationConfig()
    assert (cfg.model, cfg.loss_type, cfg.train_neg_sample_args) == ("STAMP", "CE", None)
    assert cfg.valid_metric == "MRR@10" and cfg.topk == [10, 20]
    assert cfg.data.source == "synthetic"
    assert SPEC.monitor(cfg) == ("valid/mrr@10", "max")
    assert TASKS["recommendation"] is SPEC


def test_ce_with_negative_sampling_says_what_to_change():
    errors = _errors({"train_neg_sample_args": {"distribution": "uniform"}})
    assert "train_neg_sample_args: null" in errors["train_neg_sample_args"]


def test_bpr_loss_without_negatives_is_an_error():
    errors = _errors({"loss_type": "BPR"})
    assert "needs negative samples" in errors["train_neg_sample_args"]


def test_every_problem_is_reported_at_once_with_its_path():
    errors = _errors({"model": "Pop", "learner": "sparse_adam", "valid_metric": "mrr@5", "reg_weight": 0.1})
    assert set(errors) == {"learner", "valid_metric", "reg_weight"}
    assert "MRR@10" in errors["valid_metric"] and "Recall@20" in errors["valid_metric"]  # lists the valid choices


def test_nested_and_type_errors_keep_their_paths(tmp_path):
    text = "task: recommendation\nepochs: -1\ndata:\n  source: atomic\n  synthetic:\n    n_topicz: 3\n"
    with pytest.raises(ConfigError) as info:
        parse_yaml_text(text)
    paths = {e.path: e.line for e in info.value.errors}
    # the cross-field rule on data.path is reported in the same pass as the field errors (at its section's line)
    assert paths == {"epochs": 2, "data.synthetic.n_topicz": 6, "data.path": 3}
    errors = _errors({"data": {"source": "diginetica"}})
    assert "set data.path" in errors["data.path"]


def test_bpr_model_rules():
    errors = _errors({"model": "BPR", "data": {"split": "time"}})
    assert set(errors) == {"loss_type", "data.split"}
    cfg = parse_config({"task": "recommendation", "model": "BPR", "loss_type": "BPR", "train_neg_sample_args": {}})
    assert cfg.train_neg_sample_args.sample_num == 1


def test_valid_metric_and_metric_names_are_case_insensitive():
    cfg = parse_config({"task": "recommendation", "metrics": ["recall", "ndcg"], "topk": [20, 5, 20], "valid_metric": "ndcg@20"})
    assert cfg.metrics == ["Recall", "NDCG"] and cfg.topk == [5, 20]
    assert cfg.valid_metric == "NDCG@20" and cfg.monitor_key == "valid/ndcg@20"


def test_aliases_from_the_seeds():
    cfg = parse_config({"task": "recommendation", "lr": 0.01, "batch_size": 64, "patience": 4, "data": {"MAX_ITEM_LIST_LENGTH": 7}})
    assert (cfg.learning_rate, cfg.train_batch_size, cfg.stopping_step, cfg.data.maxlen) == (0.01, 64, 4, 7)


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_shipped_preset_validates(path):
    cfg = load_config_file(path)
    assert cfg.task == "recommendation"
    assert "task: recommendation" in path.read_text()


def test_presets_exist():
    assert {"default", "quick", "stamp_diginetica", "bpr", "pop"} <= {p.stem for p in PRESETS}
    digi = load_config_file(next(p for p in PRESETS if p.stem == "stamp_diginetica"))
    assert (digi.train_batch_size, digi.data.maxlen, digi.embedding_size, digi.learning_rate, digi.epochs) == (
        128, 40, 100, 0.005, 30,
    )  # fmt: skip


def test_every_field_has_help_text():
    def walk(model_cls, prefix=""):
        for name, field in model_cls.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, f"{prefix}{name}.")

    walk(RecommendationConfig)


def test_config_modules_do_not_import_torch():
    code = (
        "import sys; import workbench.tasks.recommendation, workbench.tasks.recommendation.cli; "
        "from workbench.config.io import default_yaml; default_yaml('recommendation'); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
