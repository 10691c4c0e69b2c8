"""Config parsing: field paths and lines in errors, aliases, overrides, every shipped preset validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import api
from workbench.config.io import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_error_at_once_with_path_and_line():
    text = "task: linreg\nepochs: 0\nlearning_rate: -1\nbogus_key: 3\ntrain_neg_sample_args:\n  sample_num: 0\n"
    with pytest.raises(ConfigError) as info:
        api.validate_yaml(text, source="bad.yaml")
    errors = {e.path: e for e in info.value.errors}
    assert set(errors) == {"epochs", "learning_rate", "bogus_key", "train_neg_sample_args.sample_num"}
    assert errors["epochs"].line == 2 and errors["train_neg_sample_args.sample_num"].line == 6
    assert "unknown setting" in errors["bogus_key"].message
    assert "bad.yaml" in str(info.value) and "(line 3)" in str(info.value)


def test_unknown_task_and_bad_yaml():
    with pytest.raises(ConfigError, match="unknown or missing task"):
        api.validate_yaml("task: nope\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        api.validate_yaml("task: linreg\nepochs: [1,\n")
    assert info.value.errors[0].line is not None


def test_aliases_and_conflicts():
    cfg = api.validate_dict({"task": "linreg", "lr": 0.1, "batch_size": 7, "patience": 3, "wd": 0.01, "amp": True})
    assert (cfg.learning_rate, cfg.train_batch_size, cfg.stopping_step, cfg.weight_decay, cfg.enable_amp) == (0.1, 7, 3, 0.01, True)
    with pytest.raises(ConfigError, match="same setting"):
        api.validate_dict({"task": "linreg", "lr": 0.1, "learning_rate": 0.2})
    # a conflict sits under its setting and hides nothing else
    with pytest.raises(ConfigError) as info:
        api.validate_dict({"task": "linreg", "lr": 0.1, "learning_rate": 0.2, "epochs": 0})
    assert [e.path for e in info.value.errors] == ["learning_rate", "epochs"]
    # the stored form uses the canonical names
    assert "learning_rate" in api.to_dict(cfg) and "lr" not in api.to_dict(cfg)


def test_overrides():
    cfg = api.validate_yaml("task: linreg\n", overrides=["epochs=9", "train_neg_sample_args.sample_num=4", "clip_grad_norm={max_norm: 1.0}"])
    assert cfg.epochs == 9 and cfg.train_neg_sample_args.sample_num == 4 and cfg.clip_grad_norm.max_norm == 1.0


def test_common_settings_have_seed_names_and_defaults():
    cfg = api.validate_dict({"task": "linreg"})
    d = api.to_dict(cfg)
    seed000 = {
        "train_batch_size": 2048, "learner": "adam", "learning_rate": 0.001, "eval_step": 1, "stopping_step": 10,
        "min_delta": 0.001, "clip_grad_norm": None, "loss_decimal_place": 4, "weight_decay": 0.0, "require_pow": False,
        "enable_amp": False, "enable_scaler": False,
    }  # fmt: skip
    for name, default in seed000.items():
        assert d[name] == default, name
    assert d["train_neg_sample_args"] == {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False, "candidate_num": 0}
    for name in ("epochs_warmup", "epochs_ending", "min_std", "scheduler_patience", "scheduler_factor", "print_freq", "train_ratio"):
        assert name in d


def _undescribed(cls, prefix=""):  # type: ignore[no-untyped-def]
    from pydantic import BaseModel

    from workbench.ui.form import _unwrap_optional

    missing = []
    for name, field in cls.model_fields.items():
        if not field.description:
            missing.append(prefix + name)
        inner, _ = _unwrap_optional(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            missing += _undescribed(inner, f"{prefix}{name}.")
    return missing


@pytest.mark.parametrize("task", sorted(api.tasks()))
def test_every_field_of_every_task_has_help_text(task):
    assert _undescribed(api.config_class(task)) == []


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_validates(path):
    cfg = api.validate_file(path)
    assert cfg.task == path.parent.name  # type: ignore[attr-defined]


def test_default_config_yaml_round_trips():
    for task in api.tasks():
        text = api.default_config_yaml(task)
        assert text.startswith("#")
        assert api.to_dict(api.validate_yaml(text)) == api.to_dict(api.default_config(task))


@pytest.mark.parametrize("task", ["recommendation", "ctr_stream", "spleeter"])
def test_not_used_settings_are_shared_settings_and_only_reported_when_changed(task):
    not_used = api.not_used_settings(task)
    assert not_used and set(not_used) <= api.common_setting_names()
    default = api.default_config(task)
    assert api.ignored_settings(default) == []  # defaults are never reported
    name = next(n for n in sorted(not_used) if isinstance(getattr(default, n), (bool, int, float)))
    value = getattr(default, name)
    changed = (not value) if isinstance(value, bool) else value + 1 if isinstance(value, int) else value / 2
    cfg = api.validate_dict({**api.to_dict(default), name: changed})
    notes = api.ignored_settings(cfg)
    assert len(notes) == 1 and notes[0].startswith(f"{name} = ") and task in notes[0]


def test_validate_names_the_settings_a_task_ignores(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "ctr.yaml"
    path.write_text("task: ctr_stream\nmin_std: 0.001\nscheduler_factor: 0.316\n")
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "min_std = 0.001 has no effect: ctr_stream does not use it" in out.stderr
    assert "scheduler_factor" not in out.stderr  # 0.316 is its default: nothing to say


def test_field_errors_and_cross_field_rules_come_in_one_pass():
    # epochs fails its own check; valid_metric and start/end day break cross-field rules pydantic would skip
    text = "task: recommendation\nepochs: 0\nvalid_metric: MRR@5\ndata:\n  source: atomic\n"
    with pytest.raises(ConfigError) as info:
        api.validate_yaml(text, source="rec.yaml")
    lines = {e.path: e.line for e in info.value.errors}
    assert lines == {"epochs": 2, "valid_metric": 3, "data.path": 4}
    text = "task: ctr_stream\nembedx_dim: 0\nstart_day: 2019-07-20\nembed_sgd_param:\n  weight_bounds: [1, 2]\n"
    with pytest.raises(ConfigError) as info:
        api.validate_yaml(text)
    paths = {e.path for e in info.value.errors}
    assert paths == {"embedx_dim", "start_day", "embed_sgd_param.weight_bounds"}


def test_a_rule_that_reads_a_failed_field_stays_silent():
    # split_interval 0 fails; its default (30) must not be judged against split_per_pass 7 by the divisibility rule
    with pytest.raises(ConfigError) as info:
        api.validate_dict({"task": "ctr_stream", "split_interval": 0, "split_per_pass": 7, "fea_dim": 4})
    errors = {e.path: e.message for e in info.value.errors}
    assert set(errors) == {"split_interval", "fea_dim"}
    assert "greater than or equal to 1" in errors["split_interval"]


def test_validate_cli_reports_field_and_rule_errors_together(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "rec.yaml"
    path.write_text("task: recommendation\nembedding_size: 0\nvalid_metric: nope@3\n")
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "validate", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "2 problem(s)" in out.stderr
    assert "embedding_size (line 2)" in out.stderr and "valid_metric (line 3)" in out.stderr


@pytest.mark.parametrize("task", ["recommendation", "ctr_stream", "spleeter"])
def test_every_task_has_resources_and_nnodes_with_the_executors_defaults(task):
    cfg = api.validate_dict({"task": task})
    assert cfg.nnodes == 1
    assert (cfg.resources.cpus, cfg.resources.gpus, cfg.resources.custom) == (None, None, {})
    # ctr_stream: a table shard for each of the 2 processes, and the rendezvous its own rule asks for (for machines
    # joining by hand under the local executor; the ray executor chooses its own)
    shards = {"shard_num": 2, "rdzv_endpoint": "node0:29400"} if task == "ctr_stream" else {}
    cfg = api.validate_dict({"task": task, "nnodes": 2, "resources": {"cpus": 0.5, "gpus": 1, "custom": {"ssd": 1}}, **shards})
    assert (cfg.nnodes, cfg.resources.cpus, cfg.resources.gpus, cfg.resources.custom) == (2, 0.5, 1.0, {"ssd": 1.0})


def test_resources_errors_are_reported_together_under_their_paths():
    with pytest.raises(ConfigError) as info:
        api.validate_dict({"task": "recommendation", "nnodes": 0, "resources": {"cpus": 0, "gpus": -1, "custom": {"GPU": 1, "ssd": 0}, "disk": 1}})
    errors = [(e.path, e.message) for e in info.value.errors]
    paths = [p for p, _ in errors]
    assert set(paths) == {"nnodes", "resources.cpus", "resources.gpus", "resources.custom", "resources.disk"}, errors
    said = " | ".join(m for p, m in errors if p == "resources.custom")
    assert "`GPU` is one of Ray's own resources" in said and "ssd: the amount must be greater than 0" in said

