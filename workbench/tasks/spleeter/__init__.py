"""Spleeter source separation: one U-Net per stem on magnitude spectrograms (deezer/spleeter, seed 003).

Importing this package must stay cheap (no torch): the registry imports it to list tasks and validate configs.
"""

from __future__ import annotations

from workbench.tasks.spec import TaskSpec
from workbench.tasks.spleeter.config import SpleeterConfig

MONITOR = ("valid/si_sdr_vocals", "max")

SPEC = TaskSpec(
    name="spleeter",
    title="Source separation (Spleeter)",
    description="Train Spleeter's U-Net to split songs into vocals and accompaniment (or 4 stems) from a song "
    "manifest or generated songs; watch SDR/SI-SDR against the mixture and ideal-mask baselines and listen to "
    "what each checkpoint separates.",
    config_cls=SpleeterConfig,
    run_target="workbench.tasks.spleeter.train:run",
    monitor=lambda cfg: MONITOR,
    data_commands={
        "synth-songs": "workbench.tasks.spleeter.cli:synth_songs",
        "manifest": "workbench.tasks.spleeter.cli:manifest",
    },
    evaluate_target="workbench.tasks.spleeter.train:evaluate",
    infer_target="workbench.tasks.spleeter.separate:infer",
    overlays={
        "Vocals SI-SDR: model vs mixture baseline vs ideal mask": ("valid/si_sdr_vocals", "valid/si_sdr_vocals_mixture", "valid/si_sdr_vocals_irm"),
    },
    infer_input="a song (WAV)",
)

__all__ = ["MONITOR", "SPEC", "SpleeterConfig"]
