"""The ctr_stream config: seed names and defaults, cross-field checks, presets, and the PaddleRec importer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer import Typer
from typer.testing import CliRunner

from workbench.config.io import ConfigError, load_config_file, parse_config
from workbench.tasks import TASKS
from workbench.tasks.ctr_stream.cli import import_paddlerec_config, synth_ctr
from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.ctr_stream.paddlerec_import import import_paddlerec

PRESETS = sorted((Path(__file__).resolve().parents[3] / "configs" / "ctr_stream").glob("*.yaml"))

# PaddleRec's models/rank/slot_dnn/config_online.yaml (the version with table_parameters)
CONFIG_ONLINE = """
runner:
  train_data_dir: "./data"
  use_gpu: False
  train_batch_size: 32
  print_interval: 1
  model_save_path: "output_model"
  checkpoint_per_pass: 1
  save_delta_frequency: 1
  train_thread_num: 3
  shuffle_thread_num: 12
  reader_type: "InMemoryDataset"
  pipe_command: "python3.7 queuedataset_reader.py"
  dataset_debug: False
  data_sleep_second: 1
  sync_mode: "async"
  split_interval: 30
  split_per_pass: 2
  start_day: "20190720"
  end_day: "20190722"
  infer_batch_size: 32
  infer_thread_num: 1
  infer_data_dir: "data/"
  train_dump_fields_dir: "./train_dump_data"
  infer_dump_fields_dir: "./infer_dump_data"
hyper_parameters:
  optimizer:
    class: Adam
    learning_rate: 5e-6
    strategy: async
  dict_dim : 1000000
  emb_dim : 9
  sparse_feature_dim: 9
  slot_num: 300
  layer_sizes: [512, 256, 128]
  distributed_embedding: 0
table_parameters:
  embedding:
    table_class: "MemorySparseTable"
    shard_num: 10
    accessor:
      accessor_class: "SparseAccessor"
      fea_dim: 11
      embedx_dim: 8
      embedx_threshold: 10
      embed_sgd_param:
        name: "SparseAdaGradSGDRule"
        adagrad:
          learning_rate: 0.05
          initial_g2sum: 3.0
          initial_range: 0.0001
          weight_bounds: [-10.0, 10.0]
      embedx_sgd_param:
        name: "SparseAdaGradSGDRule"
        adagrad:
          learning_rate: 0.05
          initial_g2sum: 3.0
          initial_range: 0.0001
          weight_bounds: [-10.0, 10.0]
      ctr_accessor_param:
        nonclk_coeff: 0.1
        click_coeff: 1.0
        base_threshold: 1.5
        delta_threshold: 0.25
        delta_keep_days: 16.0
        show_click_decay_rate: 0.98
        delete_threshold: 0.8
        delete_after_unseen_days: 30.0
        ssd_unseenday_threshold: 1
      table_accessor_save_param:
        converter: "xbox_pb_converter"
        deconverter: ""
  mystery: 1
"""


def test_task_is_registered_with_its_contract():
    spec = TASKS["ctr_stream"]
    assert spec.config_cls is CtrStreamConfig and spec.monitor(CtrStreamConfig()) == ("infer/auc", "max")
    assert set(spec.data_commands) == {"synth-ctr", "criteo-to-slots", "import-paddlerec-config"}
    assert spec.run_target == "workbench.tasks.ctr_stream.train:run"
    assert spec.evaluate_target == "workbench.tasks.ctr_stream.train:evaluate"


def test_every_seed_parameter_exists_with_the_seed_default():
    cfg = CtrStreamConfig()
    seed_defaults = {
        "nonclk_coeff": 0.1, "click_coeff": 1.0, "embedx_threshold": 0, "embedx_dim": 8,
        "show_click_decay_rate": 1, "delete_threshold": 0, "delete_after_unseen_days": 30, "base_threshold": 0,
        "delta_threshold": 0, "delta_keep_days": 16, "adam_d2sum": False, "table_class": "MemorySparseTable",
        "accessor_class": "SparseAccessor",
    }
    for name, value in seed_defaults.items():
        assert getattr(cfg, name) == value, name
    for name in ("train_data_dir", "split_interval", "split_per_pass", "start_day", "end_day", "data_donefile",
                 "data_sleep_second", "prefetch", "is_data_hourly_placed", "save_model_path", "checkpoint_per_pass",
                 "save_delta_frequency", "dump_fields", "dump_param", "dump_fields_path", "converter", "deconverter",
                 "fea_dim"):
        assert name in CtrStreamConfig.model_fields, name
    sgd = cfg.embedx_sgd_param
    assert (sgd.name, sgd.learning_rate, sgd.initial_g2sum, sgd.initial_range, sgd.weight_bounds) == (
        "SparseAdaGradSGDRule", 0.05, 3.0, 0.0001, [-10.0, 10.0])
    assert all(f.description for f in CtrStreamConfig.model_fields.values())


def test_problems_are_reported_together_with_their_paths():
    with pytest.raises(ConfigError) as info:  # field problems first (pydantic checks fields before cross-field rules)
        parse_config({"task": "ctr_stream", "converter": "sh -c rm", "embedx_sgd_param": {"weight_bounds": [1, -1]},
                      "split_interval": 0})
    assert {e.path for e in info.value.errors} == {"converter", "embedx_sgd_param.weight_bounds", "split_interval"}
    with pytest.raises(ConfigError) as info:
        parse_config({"task": "ctr_stream", "fea_dim": 10, "start_day": "20190722", "end_day": "20190720",
                      "split_interval": 30, "split_per_pass": 5, "data_donefile": "a/b", "learner": "sparse_adam"})
    assert {e.path for e in info.value.errors} == {"fea_dim", "end_day", "split_per_pass", "data_donefile", "learner"}
    text = str(info.value)
    assert "embedx_dim + 3 = 11" in text and "48 slices" in text


def test_aliases_and_derived_values():
    cfg = parse_config({"task": "ctr_stream", "batch_size": 64, "lr": 0.01, "model_save_path": "out", "embedx_dim": 4,
                        "slot_num": 3, "accessor_class": "CtrCommonAccessor", "start_day": 20190721, "end_day": 20190722})
    assert (cfg.train_batch_size, cfg.learning_rate, cfg.save_model_path) == (64, 0.01, "out")
    assert cfg.days() == ["20190721", "20190722"]  # unquoted YAML days are numbers: read as the same dates
    assert cfg.slots == [2, 3, 4] and cfg.pull_dim == 7 and cfg.passes_per_day == 24
    assert CtrStreamConfig(fea_dim=7, embedx_dim=4).fea_dim == 7


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_validates(path):
    cfg = load_config_file(path)
    assert cfg.task == "ctr_stream"


def test_importer_maps_config_online_and_reports_what_it_cannot():
    report = import_paddlerec(yaml.safe_load(CONFIG_ONLINE))
    c = report.config
    assert c["save_model_path"] == "output_model" and c["train_batch_size"] == 32 and c["print_freq"] == 1
    assert c["embedx_threshold"] == 10 and c["show_click_decay_rate"] == 0.98 and c["shard_num"] == 10
    assert c["embedx_sgd_param"] == {"name": "SparseAdaGradSGDRule", "learning_rate": 0.05, "initial_g2sum": 3.0,
                                     "initial_range": 0.0001, "weight_bounds": [-10.0, 10.0]}
    assert c["learner"] == "adam" and c["learning_rate"] == 5e-6 and c["slot_num"] == 300
    unsupported = "\n".join(report.unsupported)
    assert "pipe_command" in unsupported and "xbox_pb_converter" in unsupported
    assert "table_parameters.mystery" in unsupported  # a second table
    assert any("ssd_unseenday_threshold" in i for i in report.ignored)
    assert any("learning_rate" in n for n in report.notes) and report.errors == []
    cfg = CtrStreamConfig.model_validate(c)
    assert cfg.slots[-1] == 301


def test_importer_flags_unknown_keys_and_mismatched_embedding_sizes():
    report = import_paddlerec({"runner": {"bogus": 1, "pipe_command": "cat"}, "hyper_parameters": {"emb_dim": 12},
                               "extra_section": {}})
    assert "runner.bogus" in report.unknown and "extra_section" in report.unknown
    assert any("does not match 1 + embedx_dim = 9" in e for e in report.errors)


def test_data_commands_run_through_typer(tmp_path):
    app = Typer()
    app.command("synth-ctr")(synth_ctr)
    app.command("import-paddlerec-config")(import_paddlerec_config)
    runner = CliRunner()
    result = runner.invoke(app, ["synth-ctr", str(tmp_path / "d"), "--days", "1", "--split-interval", "720",
                                 "--examples-per-slice", "50", "--slot-num", "3"])
    assert result.exit_code == 0, result.output
    assert "Bayes-optimal AUC" in result.output
    assert (tmp_path / "d" / "20190720" / "1200" / "data.done").exists()
    src = tmp_path / "config_online.yaml"
    src.write_text(CONFIG_ONLINE)
    result = runner.invoke(app, ["import-paddlerec-config", str(src), "--out", str(tmp_path / "mine.yaml")])
    assert result.exit_code == 0, result.output
    assert "pipe_command" in result.output
    cfg = load_config_file(tmp_path / "mine.yaml")
    assert cfg.embedx_threshold == 10


def test_form_sections_follow_config_online_and_cover_every_task_setting():
    from workbench import api
    from workbench.tasks.ctr_stream.config import CtrStreamConfig

    listed = [name for names in CtrStreamConfig.sections.values() for name in names]
    assert len(listed) == len(set(listed)), "a setting in two sections"
    assert set(listed) <= set(CtrStreamConfig.model_fields)
    assert not set(listed) & set(CtrStreamConfig.not_used)
    own = set(CtrStreamConfig.model_fields) - api.common_setting_names() - {"task"}
    assert own <= set(listed), own - set(listed)  # no task setting is left outside a section
    # the three learning rates sit in three different sections
    where = {n: title for title, names in CtrStreamConfig.sections.items() for n in names}
    assert len({where["learning_rate"], where["embed_sgd_param"], where["embedx_sgd_param"]}) == 3
