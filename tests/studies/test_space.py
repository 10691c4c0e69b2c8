"""Search spaces: parsing, every error at once with its path, the guide's ranges, Optuna distributions."""

from __future__ import annotations

import pytest

from workbench.config.io import ConfigError, parse_config
from workbench.studies.space import Choices, Range, apply_params, example_space_yaml, parse_space, space_from_yaml, suggested_space, to_distributions


@pytest.fixture()
def base():
    return parse_config({"task": "recommendation"})


def test_ranges_choices_nested_paths_and_aliases(base):
    space = parse_space(
        {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "train_batch_size": {"low": 32, "high": 512, "step": 32},
         "data.maxlen": {"choices": [20, 50]}, "learner": {"choices": ["adam", "sgd"]}},
        base,
    )
    assert space["learning_rate"] == Range(1e-4, 1e-2, log=True)
    assert space["train_batch_size"] == Range(32, 512, step=32, integer=True)
    assert space["data.maxlen"] == Choices((20, 50))
    dists = to_distributions(space)
    assert dists["learning_rate"].log and dists["train_batch_size"].step == 32


def test_every_problem_at_once_with_its_path(base):
    with pytest.raises(ConfigError) as err:
        parse_space(
            {"no_such_setting": {"low": 1, "high": 2}, "learning_rate": {"low": 0.1, "high": 0.01},
             "weight_decay": {"low": 0, "high": 1, "log": True}, "learner": {"choices": ["adam", "nadam"]},
             "epochs": {"low": 1.5, "high": 3}, "data": {"low": 1, "high": 2}},
            base,
        )
    paths = sorted(e.path for e in err.value.errors)
    assert paths == ["space.data", "space.epochs.low", "space.learner.choices.1", "space.learning_rate", "space.no_such_setting", "space.weight_decay.low"]
    assert "greater than high" in str(err.value) and "log range needs low > 0" in str(err.value)


def test_a_bound_that_fails_the_settings_own_validation(base):
    with pytest.raises(ConfigError) as err:
        parse_space({"learning_rate": {"low": 0.0, "high": 0.01}}, base)
    assert [e.path for e in err.value.errors] == ["space.learning_rate.low"]


def test_sampled_values_make_a_valid_config(base):
    from workbench.config.io import config_to_dict

    cfg = parse_config(apply_params(config_to_dict(base), {"learning_rate": 0.003, "data.maxlen": 20}))
    assert cfg.learning_rate == 0.003 and cfg.data.maxlen == 20
    assert base.learning_rate != 0.003  # the base is not changed


def test_guide_ranges_and_example_yaml_round_trip(base):
    suggested = suggested_space(base)
    assert suggested["train_batch_size"] == Range(32, 512, log=True, integer=True)
    assert suggested["learning_rate"].log
    assert space_from_yaml(example_space_yaml(base), base) == suggested
