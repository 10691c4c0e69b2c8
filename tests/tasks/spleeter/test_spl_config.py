"""The spleeter config: seed 003 names and defaults, aliases, Spleeter's checks, shipped presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workbench.config.io import ConfigError, load_config_file, parse_config
from workbench.tasks import TASKS
from workbench.tasks.spleeter.config import SpleeterConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "spleeter"

# Every parameter of seed 003 with the default it lists.
SEED_003 = {
    "mode": "train", "nproc_per_node": 1, "margin": 0.5, "chunk_duration": 20.0, "sample_rate": 44100,
    "frame_length": 4096, "frame_step": 1024, "T": 512, "F": 1024, "n_chunks_per_song": 15,
    "train_manifest": "manifest.csv", "train_dataset": "dataset", "epochs": 10, "batch_size": 20,
    "optimizer": "adam", "loss": "l1", "momentum": 0.9, "dampening": 0.0, "lr": 1e-5, "lr_decay": 0.0,
    "wd": 0.00001, "model_dir": "model", "load_optimizer": True, "start": 0, "load_model": True, "seed": 37,
    "keep_ckpt": 1, "clean_logs": True, "amp": False,
}  # and `trainer`, whose seed default (an example name) became the user running the workbench
ALIASES = {"batch_size": "train_batch_size", "lr": "learning_rate", "wd": "weight_decay", "amp": "enable_amp"}


def test_seed_defaults_and_names():
    cfg = SpleeterConfig()
    for name, default in SEED_003.items():
        assert getattr(cfg, ALIASES.get(name, name)) == default, name
        assert SpleeterConfig.model_fields[ALIASES.get(name, name)].description, name


def test_trainer_defaults_to_the_user_and_can_be_set():
    import getpass

    assert SpleeterConfig().trainer == getpass.getuser()
    assert parse_config({"task": "spleeter", "trainer": "daShiChangZhaoLei"}).trainer == "daShiChangZhaoLei"


def test_seed_names_are_accepted_as_aliases():
    cfg = parse_config({"task": "spleeter", "lr": 1e-4, "batch_size": 4, "wd": 0.0, "amp": True})
    assert (cfg.learning_rate, cfg.train_batch_size, cfg.weight_decay, cfg.enable_amp) == (1e-4, 4, 0.0, True)
    with pytest.raises(ConfigError, match="name the same setting"):
        parse_config({"task": "spleeter", "lr": 1e-4, "learning_rate": 1e-3})


def test_spleeter_checks_reported_together_with_paths():
    with pytest.raises(ConfigError) as err:
        parse_config({"task": "spleeter", "F": 4000, "T": 900, "mode": "process_data", "nproc_per_node": 2})
    paths = {e.path: e.message for e in err.value.errors}
    assert set(paths) == {"F", "T", "nproc_per_node"}
    assert "frame_length/2 + 1 = 2049" in paths["F"]
    assert "must be >= T (900)" in paths["T"]
    with pytest.raises(ConfigError) as err:
        parse_config({"task": "spleeter", "train_manifest": "", "synthetic": {"duration": 10.0}})
    assert err.value.errors[0].path == "synthetic.duration"


def test_unknown_keys_rejected():
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config({"task": "spleeter", "fast_train": True})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_presets_validate(path):
    cfg = load_config_file(path)
    assert isinstance(cfg, SpleeterConfig)
    assert path.read_text().lstrip().startswith("#")  # presets are commented


def test_presets_present_and_registered():
    spec = TASKS["spleeter"]
    assert {"default", "quick"} <= set(spec.presets())
    assert spec.monitor(SpleeterConfig()) == ("valid/si_sdr_vocals", "max")
    assert set(spec.data_commands) == {"synth-songs", "manifest"}


def test_config_module_does_not_import_torch():
    code = "import sys, workbench.tasks.spleeter.config, workbench.tasks.spleeter; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
