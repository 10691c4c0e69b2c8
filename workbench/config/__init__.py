"""Config schemas and YAML I/O. Every task's config is a pydantic model with `task` as its discriminator."""

from workbench.config.common import CommonTrainingSettings, NegSampleArgs, StrictModel
from workbench.config.io import (
    ConfigError,
    FieldError,
    config_to_yaml,
    default_yaml,
    load_config_file,
    parse_config,
    parse_yaml_text,
)

__all__ = [
    "CommonTrainingSettings",
    "ConfigError",
    "FieldError",
    "NegSampleArgs",
    "StrictModel",
    "config_to_yaml",
    "default_yaml",
    "load_config_file",
    "parse_config",
    "parse_yaml_text",
]
