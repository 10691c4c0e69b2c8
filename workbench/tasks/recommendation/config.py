"""Config schema of the `recommendation` task (STAMP, BPR-MF, popularity) and its cross-field rules.

No torch here: the CLI and the form validate configs without importing it. Every cross-field problem is
reported at once with its own field path (see workbench/config/rules.py), not one generic "value error" on the whole config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator

from workbench.config.common import CommonTrainingSettings, NegSampleArgs, StrictModel, aliased
from workbench.config.rules import Problems

ModelName = Literal["STAMP", "BPR", "Pop"]
LossType = Literal["CE", "BPR"]
MetricName = Literal["Recall", "MRR", "NDCG", "Hit"]
METRIC_NAMES: tuple[str, ...] = ("Recall", "MRR", "NDCG", "Hit")
DataSource = Literal["synthetic", "atomic", "diginetica"]
SplitMode = Literal["leave_one_out", "time"]

# Models with embedding tables whose gradients can be sparse (SparseAdam needs at least one).
SPARSE_MODELS = ("STAMP", "BPR")


class SyntheticSessions(StrictModel):
    """Generator of click sessions: Zipf item popularity + per-item Markov successors + session topics."""

    n_items: int = Field(1000, ge=10, le=5_000_000, description="Number of distinct items in the catalogue.")
    n_sessions: int = Field(20000, ge=10, le=50_000_000, description="Number of sessions to generate.")
    mean_length: float = Field(
        6.0, ge=2, le=200, description="Mean clicks per session (geometric lengths, at least 2 clicks)."
    )
    max_length: int = Field(30, ge=2, le=1000, description="Longest session in clicks; longer draws are cut.")
    zipf_exponent: float = Field(
        1.1, ge=0, le=4, description="Item popularity follows rank^-zipf_exponent (0 = all items equally popular)."
    )
    n_topics: int = Field(
        20, ge=1, description="Items are split into this many topics; a session stays mostly inside its topic."
    )
    n_successors: int = Field(
        4, ge=1, le=100, description="Each item has this many likely next items (its Markov successors)."
    )
    follow_prob: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Chance that the next click is one of the current item's successors; otherwise it is a "
        "popularity draw from the session's topic (or, 1 time in 5, from the whole catalogue).",
    )
    days: float = Field(30.0, gt=0, description="Session start times are spread over this many days.")
    seed: int = Field(7, description="Seed of the generator (independent of the training seed).")
    # -- issue 14: a second generator shape, and knobs that vary session length and re-clicks ----------------
    kind: Literal["topics", "intents"] = Field(
        "topics",
        description="`topics`: global Zipf popularity restricted to the session's topic (n_topics). `intents`: "
        "every latent intent (n_topics of them) has its own Zipf ranking over its items, and a session may drift "
        "to another intent (intent_switch_prob).",
    )
    length_distribution: Literal["geometric", "lognormal", "uniform"] = Field(
        "geometric",
        description="Session lengths: 2 + extra clicks drawn geometric, lognormal (sigma 1, heavy tail) or uniform, "
        "all with mean mean_length and cut at max_length.",
    )
    reclick_prob: float = Field(
        0.0, ge=0, le=0.9, description="Chance that a click repeats an earlier click of the same session."
    )
    intent_switch_prob: float = Field(
        0.05, ge=0, le=1, description="`intents`: chance per click that the session moves to another intent."
    )

    @model_validator(mode="after")
    def _sizes_fit(self, info: ValidationInfo) -> SyntheticSessions:
        problems = Problems(self, info)
        if problems.readable("n_topics", "n_items") and self.n_topics > self.n_items:
            problems.add("n_topics", f"n_topics ({self.n_topics}) cannot exceed n_items ({self.n_items})")
        problems.raise_if_any()
        return self


class RecommendationData(StrictModel):
    """Where the sessions come from and how they become (prefix -> next item) samples."""

    source: DataSource = Field(
        "synthetic",
        description="`synthetic`: generated sessions (no download needed); `atomic`: a RecBole `.inter` file "
        "(tab-separated, `field:type` header, session_id or user_id, item_id, optional timestamp); "
        "`diginetica`: the CIKM Cup 2016 `train-item-views.csv`.",
    )
    path: str | None = Field(
        None,
        description="Data file for `atomic` (.inter) and `diginetica` (train-item-views.csv, or the folder holding "
        "it); ignored for `synthetic`. Seed 004's top-level `data_path` (the data folder) sets this.",
    )
    synthetic: SyntheticSessions = Field(
        default_factory=SyntheticSessions, description="Sizes and seed of the synthetic generator."
    )
    maxlen: int = Field(
        50,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("maxlen", "MAX_ITEM_LIST_LENGTH"),
        description="Longest item history fed to the model (RecBole MAX_ITEM_LIST_LENGTH): longer prefixes keep "
        "their last maxlen items, shorter ones are right-padded with 0. May also be written `maxlen` at the top "
        "level (seed 004's card).",
    )
    min_item_count: int = Field(
        5,
        ge=1,
        description="Items clicked fewer times are dropped (the usual Diginetica filter: drop length-1 sessions, "
        "then rare items, then length-1 sessions again). 1 keeps every item.",
    )
    split: SplitMode = Field(
        "leave_one_out",
        description="`leave_one_out` (RecBole's LS valid_and_test): per session the last prefix is a test "
        "sample, the one before a valid sample, the rest train. `time`: whole sessions by their last click: "
        "the last test_days go to test, the valid_days before them to valid (STAMP's Diginetica protocol; "
        "valid/test items unseen in training are removed).",
    )
    valid_days: float = Field(
        7.0, ge=0, description="`time` split: days of sessions before the test period used for validation."
    )
    test_days: float = Field(7.0, gt=0, description="`time` split: days of sessions at the end used for testing.")
    cache: bool = Field(
        True,
        description="Keep the preprocessed tensors under $WORKBENCH_HOME/cache/recommendation/, keyed by a "
        "fingerprint of the data file (path, size, mtime) and of the settings above.",
    )

    def source_file(self) -> RecommendationData:
        """These settings with a Diginetica data folder (seed 004's `--data_path=/home/data`) resolved to its
        train-item-views.csv; read at run time, so a config validated elsewhere does not look at this disk."""
        if self.source == "diginetica" and self.path and Path(self.path).is_dir():
            return self.model_copy(update={"path": str(Path(self.path) / "train-item-views.csv")})
        return self

    def path_problem(self) -> str | None:
        """Checked by RecommendationConfig, so that it is reported together with the other cross-field rules."""
        if self.source != "synthetic" and not self.path:
            example = "data/sessions.inter" if self.source == "atomic" else "data/diginetica/train-item-views.csv"
            return f"source `{self.source}` reads a file: set data.path, e.g. {example}"
        return None


class RecommendationConfig(CommonTrainingSettings):
    """Session-based recommendation: predict the next clicked item from the session so far."""

    task: Literal["recommendation"] = Field("recommendation", description="Task name (fixed).")

    PATH_ALIASES: ClassVar[dict[str, str]] = {"maxlen": "data.maxlen", "data_path": "data.path"}
    not_used: ClassVar[dict[str, str]] = {
        "min_std": "it standardises nothing",
        "train_ratio": "the data is always split by `data.split` (leave_one_out or time)",
    }
    model: ModelName = Field(
        "STAMP",
        description="`STAMP`: short-term attention/memory priority (Liu et al. 2018); `BPR`: matrix factorisation "
        "of session/user x item with BPR loss (needs leave_one_out); `Pop`: most popular items (baseline).",
    )
    embedding_size: int = Field(
        64,
        ge=1,
        le=4096,
        validation_alias=aliased("embedding_size"),
        description="Size of item (and user) embeddings. Alias: `embed_dim` (seed 004's card).",
    )
    steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="Cap on training steps per epoch (seed 004's script flag): an epoch ends after this many "
        "optimizer steps, or at the end of the data if that comes first; each epoch still starts from a fresh "
        "shuffle. Empty: the whole training split every epoch. Seed 004's script defaults to 50.",
    )
    loss_type: LossType = Field(
        "CE",
        description="`CE`: softmax cross-entropy over all items (train_neg_sample_args must be null); `BPR`: "
        "pairwise loss against sampled negatives (train_neg_sample_args required).",
    )
    reg_weight: float = Field(
        0.0,
        ge=0,
        description="BPR model only: weight of the embedding regulariser on the batch's user, positive and "
        "negative embeddings (sum ||E||^2 / batch / 2 with require_pow, else sum ||E|| / batch).",
    )
    train_neg_sample_args: NegSampleArgs | None = Field(
        None,
        description="Negative sampling for loss_type BPR: distribution, sample_num (negatives per positive), "
        "alpha, dynamic, candidate_num. Must be null with loss_type CE (this task's default).",
    )
    topk: list[int] = Field(
        default_factory=lambda: [10, 20],
        min_length=1,
        description="Cut-offs K of the ranking metrics; every metric is reported at every K.",
    )
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["Recall", "MRR", "NDCG", "Hit"],
        min_length=1,
        description="Ranking metrics (full ranking over all items): Recall, MRR, NDCG, Hit. With one target "
        "per sample Hit@K equals Recall@K.",
    )
    valid_metric: str = Field(
        "MRR@10",
        description="Metric that picks the best checkpoint, drives early stopping and reduce-on-plateau; must be "
        "one of metrics x topk (checked now, not after the first epoch as in RecBole). Case-insensitive.",
    )
    eval_batch_size: int = Field(
        1024,
        ge=1,
        description="Samples scored at once during evaluation (memory: eval_batch_size x items x 4 bytes).",
    )
    data: RecommendationData = Field(default_factory=RecommendationData, description="Data source and preprocessing.")

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_case(cls, value: Any) -> Any:
        """Accept `recall`, `mrr`, ... as RecBole users write them in either case."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            canon = {m.lower(): m for m in METRIC_NAMES}
            value = [canon.get(v.lower(), v) if isinstance(v, str) else v for v in value]
            value = list(dict.fromkeys(value))
        return value

    @field_validator("topk", mode="after")
    @classmethod
    def _topk_positive(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError("every K must be >= 1")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> RecommendationConfig:
        problems = Problems(self, info)
        ok, add = problems.readable, problems.add
        neg = self.train_neg_sample_args
        if ok("model", "loss_type", "train_neg_sample_args"):
            if self.model == "BPR" and self.loss_type != "BPR":
                add("loss_type", "model BPR (matrix factorisation) trains with loss_type: BPR and "
                    "train_neg_sample_args set (e.g. {distribution: uniform, sample_num: 1})")
            elif self.model != "Pop" and self.loss_type == "CE" and neg is not None:
                add("train_neg_sample_args", "must be null with loss_type CE (the softmax already scores every "
                    "item): set `train_neg_sample_args: null`, or use `loss_type: BPR` to train on sampled negatives")
            if self.model != "Pop" and self.loss_type == "BPR" and neg is None:
                add("train_neg_sample_args", "loss_type BPR needs negative samples: set train_neg_sample_args "
                    "(e.g. {distribution: uniform, sample_num: 1}), or use loss_type: CE")
        if ok("learner", "model") and self.learner == "sparse_adam" and self.model not in SPARSE_MODELS:
            add("learner", f"sparse_adam needs a model with embedding tables ({', '.join(SPARSE_MODELS)}); "
                f"model {self.model} has none. Use learner: adam")
        if ok("reg_weight", "model") and self.reg_weight > 0 and self.model != "BPR":
            add("reg_weight", f"reg_weight only applies to model BPR; set it to 0 for {self.model}")
        if ok("model", "data.split") and self.model == "BPR" and self.data.split == "time":
            add("data.split", "model BPR learns one vector per session/user, and a time split puts unseen "
                "sessions in valid/test; use split: leave_one_out")
        path_problem = self.data.path_problem() if ok("data.source", "data.path") else None
        if path_problem:
            add("data.path", path_problem)
        metric_problem = self._check_valid_metric() if ok("valid_metric", "metrics", "topk") else None
        if metric_problem:
            add("valid_metric", metric_problem)
        problems.raise_if_any()
        return self

    def _check_valid_metric(self) -> str | None:
        """Normalise valid_metric to its canonical spelling (MRR@10); return a message if it is not reported."""
        choices = [f"{m}@{k}" for m in self.metrics for k in self.topk]
        match = re.fullmatch(r"\s*([A-Za-z]+)\s*@\s*(\d+)\s*", self.valid_metric)
        if match:
            wanted = f"{match.group(1).lower()}@{int(match.group(2))}"
            for choice in choices:
                if choice.lower() == wanted:
                    self.valid_metric = choice
                    return None
        return f"{self.valid_metric!r} is not among the reported metrics x topk; choose one of: {', '.join(choices)}"

    @property
    def monitor_key(self) -> str:
        """Metric key of the valid metric as logged, e.g. `valid/mrr@10`."""
        return f"valid/{self.valid_metric.lower()}"
