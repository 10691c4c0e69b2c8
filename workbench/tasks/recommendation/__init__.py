"""Session recommendation: STAMP, BPR matrix factorisation and a popularity baseline.

Importing this package does not import torch: the registry, the form and `workbench validate` only need the
config schema. The training code is reached through `run_target` / `evaluate_target` in the worker process.
"""

from __future__ import annotations

from workbench.tasks.recommendation.config import RecommendationConfig
from workbench.tasks.spec import TaskSpec


def _monitor(cfg: RecommendationConfig) -> tuple[str, str]:
    return cfg.monitor_key, "max"


SPEC = TaskSpec(
    name="recommendation",
    title="Session recommendation",
    description="Predict the next clicked item of a session. STAMP (short-term attention/memory priority) with "
    "full-softmax or BPR loss, BPR matrix factorisation and a popularity baseline; Recall/MRR/NDCG/Hit@K over a "
    "full ranking of all items. Data: generated sessions, RecBole .inter files or Diginetica.",
    config_cls=RecommendationConfig,
    run_target="workbench.tasks.recommendation.train:run",
    monitor=_monitor,
    data_commands={
        "synth-sessions": "workbench.tasks.recommendation.cli:synth_sessions",
        "import-diginetica": "workbench.tasks.recommendation.cli:import_diginetica",
        "session-stats": "workbench.tasks.recommendation.cli:session_stats",
    },
    evaluate_target="workbench.tasks.recommendation.train:evaluate",
    overlays={"Recall@20 vs MRR@20 (valid)": ("valid/recall@20", "valid/mrr@20")},
    check_target="workbench.tasks.recommendation.model:check_state",
)

__all__ = ["SPEC", "RecommendationConfig"]
