"""Every parameter the seeds name is accepted under that name, and the seed-004 names do what they say.

The name lists are copied from ../shared/seeds (000: RecBole training settings, 002: the hyper-parameter guide,
003: the Spleeter port's flags, 004: the Ascend STAMP card's script flags and hyper-parameters).
"""

from __future__ import annotations

import pytest

from workbench.config.common import ASCEND_ONLY, PRECISION_MODES, ignored_settings
from workbench.config.io import ConfigError, config_to_dict, config_to_yaml, parse_config, parse_yaml_text
from workbench.tasks import TASKS

SEED_000 = ["epochs", "train_batch_size", "learner", "learning_rate", "train_neg_sample_args", "eval_step",
            "stopping_step", "min_delta", "clip_grad_norm", "loss_decimal_place", "weight_decay", "require_pow",
            "enable_amp", "enable_scaler"]
SEED_002 = ["batch_size", "learning_rate", "epochs", "epochs_warmup", "epochs_ending", "min_std", "patience",
            "scheduler_patience", "scheduler_factor", "print_freq", "train_ratio"]
SEED_003 = ["mode", "nproc_per_node", "margin", "chunk_duration", "sample_rate", "frame_length", "frame_step", "T",
            "F", "n_chunks_per_song", "train_manifest", "train_dataset", "epochs", "batch_size", "optimizer", "loss",
            "momentum", "dampening", "lr", "lr_decay", "wd", "model_dir", "load_optimizer", "start", "load_model",
            "seed", "keep_ckpt", "trainer", "clean_logs", "amp"]
SEED_004 = ["data_path", "batch_size", "epochs", "steps_per_epoch", "learning_rate", "precision_mode", "over_dump",
            "data_dump_flag", "data_dump_step", "profiling", "profiling_dump_path", "over_dump_path",
            "data_dump_path", "use_mixlist", "fusion_off_flag", "mixlist_file", "fusion_off_file", "maxlen",
            "embed_dim"]
SHARED_004 = ["precision_mode", "profiling", "profiling_dump_path", *ASCEND_ONLY]  # seed 004 names every task takes

CASES = [(task, name) for task in TASKS if task in ("recommendation", "ctr_stream", "spleeter")
         for name in SEED_000 + SEED_002 + SHARED_004] + \
        [("spleeter", name) for name in SEED_003] + [("recommendation", name) for name in SEED_004]


def _unknown(task: str, name: str) -> list[str]:
    """The 'unknown setting' errors a config with `name` set to a plausible value gets (none when accepted)."""
    value = {"mode": "fast_train", "precision_mode": "allow_mix_precision", "learner": "adam", "optimizer": "sgd",
             "loss": "l2", "trainer": "me", "train_neg_sample_args": None, "clip_grad_norm": None,
             "data_path": "data", "train_manifest": "m.csv", "train_dataset": "d", "model_dir": "model",
             "profiling_dump_path": "", "over_dump_path": "/x", "data_dump_path": "/x", "mixlist_file": "a.json",
             "fusion_off_file": "f.cfg"}.get(name, 1)
    try:
        parse_config({"task": task, name: value})
    except ConfigError as exc:
        return [str(e) for e in exc.errors if "unknown setting" in e.message]
    return []


@pytest.mark.parametrize(("task", "name"), CASES)
def test_every_seed_name_is_accepted(task, name):
    assert _unknown(task, name) == []


def test_embed_dim_and_maxlen_are_one_value_each_and_survive_save_load():
    cfg = parse_config({"task": "recommendation", "embed_dim": 100, "maxlen": 40, "data_path": "/data"})
    assert (cfg.embedding_size, cfg.data.maxlen, cfg.data.path) == (100, 40, "/data")
    saved = config_to_dict(cfg)
    assert "embed_dim" not in saved and "maxlen" not in saved and saved["data"]["maxlen"] == 40
    assert parse_config(saved) == cfg
    assert parse_yaml_text(config_to_yaml(cfg)) == cfg
    same = parse_config({"task": "recommendation", "embed_dim": 100, "embedding_size": 100,
                         "maxlen": 40, "data": {"MAX_ITEM_LIST_LENGTH": 40}})
    assert (same.embedding_size, same.data.maxlen) == (100, 40)


def test_conflicting_spellings_are_rejected_together_with_their_paths():
    with pytest.raises(ConfigError) as err:
        parse_config({"task": "recommendation", "embed_dim": 100, "embedding_size": 64, "maxlen": 40,
                      "data": {"maxlen": 30}, "epochs": 0})
    by_path = {e.path: e.message for e in err.value.errors}
    assert set(by_path) == {"embedding_size", "maxlen", "epochs"}
    assert "`embedding_size`=64 and `embed_dim`=100" in by_path["embedding_size"]
    assert "data.maxlen" in by_path["maxlen"] and "30" in by_path["maxlen"]


def test_a_bad_top_level_maxlen_points_at_its_line():
    with pytest.raises(ConfigError) as err:
        parse_yaml_text("task: recommendation\nepochs: 2\nmaxlen: 0\n")
    (error,) = err.value.errors
    assert (error.path, error.line) == ("data.maxlen", 3)


@pytest.mark.parametrize("mode", list(PRECISION_MODES))
def test_precision_mode_maps_onto_amp(mode):
    amp, scaler = PRECISION_MODES[mode]
    cfg = parse_config({"task": "recommendation", "precision_mode": mode})
    assert (cfg.enable_amp, cfg.enable_scaler, cfg.precision_mode) == (amp, scaler, mode)
    assert parse_config(config_to_dict(cfg)) == cfg  # the saved trio is consistent, so it loads again
    assert parse_config({"task": "spleeter", "precision_mode": mode, "amp": amp}).enable_amp is amp


def test_precision_mode_against_an_explicit_amp_setting_is_an_error():
    with pytest.raises(ConfigError) as err:
        parse_config({"task": "spleeter", "precision_mode": "must_keep_origin_dtype", "amp": True, "F": 99999})
    paths = [e.path for e in err.value.errors]
    assert paths == ["precision_mode", "F"]  # reported with the other problems, in one pass
    assert "`amp: True`" in err.value.errors[0].message
    assert parse_config({"task": "recommendation"}).precision_mode is None  # unset: enable_amp decides


def test_precision_mode_decides_over_default_amp_values_as_the_form_sends_them():
    form = {"task": "recommendation", "precision_mode": "allow_mix_precision", "enable_amp": False,
            "enable_scaler": False}
    cfg = parse_config(form)
    assert (cfg.enable_amp, cfg.enable_scaler) == (True, True)
    assert form["enable_amp"] is False  # the caller's dict is left alone


def test_ascend_only_flags_are_accepted_and_named_as_having_no_effect():
    for task in ("recommendation", "ctr_stream", "spleeter"):
        cls = TASKS[task].config_cls
        assert set(ASCEND_ONLY) <= set(cls.not_used), task
        cfg = parse_config({"task": task, "over_dump": True, "mixlist_file": "mine.json"})
        notes = ignored_settings(cfg)
        assert any(n.startswith("over_dump = True has no effect") and "off Ascend" in n for n in notes), notes
        assert any(n.startswith("mixlist_file = 'mine.json' has no effect") for n in notes), notes


def test_min_std_stays_marked_unused_everywhere():
    for task in ("recommendation", "ctr_stream", "spleeter"):
        assert "min_std" in TASKS[task].config_cls.not_used


def test_study_space_takes_the_seed_names():
    from workbench.studies.space import parse_space

    base = parse_config({"task": "recommendation"})
    space = parse_space({"maxlen": {"choices": [20, 40]}, "embed_dim": {"low": 32, "high": 128}}, base)
    assert set(space) == {"data.maxlen", "embedding_size"}
    with pytest.raises(ConfigError, match="searched twice"):
        parse_space({"maxlen": {"choices": [20]}, "data.maxlen": {"choices": [30]}}, base)


def test_data_path_folder_resolves_to_the_diginetica_file(tmp_path):
    cfg = parse_config({"task": "recommendation", "data_path": str(tmp_path), "data": {"source": "diginetica"}})
    assert cfg.data.source_file().path == str(tmp_path / "train-item-views.csv")
    file_cfg = parse_config({"task": "recommendation", "data": {"source": "diginetica", "path": "x.csv"}})
    assert file_cfg.data.source_file().path == "x.csv"


def test_steps_per_epoch_validates():
    assert parse_config({"task": "recommendation"}).steps_per_epoch is None
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        parse_config({"task": "recommendation", "steps_per_epoch": 0})


def test_spleeter_modes():
    assert parse_config({"task": "spleeter", "mode": "fast_train", "nproc_per_node": 2}).mode == "fast_train"
    with pytest.raises(ConfigError, match="nproc_per_node"):
        parse_config({"task": "spleeter", "mode": "process_data", "nproc_per_node": 2})
    help_text = TASKS["spleeter"].config_cls.model_fields["mode"].description
    assert "fast_train" in help_text and "fixes" in help_text and "n_chunks_per_song" in help_text
