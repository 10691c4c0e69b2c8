"""The nested settings of a ctr_stream config (config.py): the sparse table's SGD rule and the synthetic stream."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from workbench.config.common import StrictModel
from workbench.config.rules import Problems

SgdRuleName = Literal["SparseAdaGradSGDRule", "StdAdaGradSGDRule", "SparseAdamSGDRule"]


class SparseSgdParam(StrictModel):
    """Optimizer of one part of a sparse feature (PaddleRec `embed_sgd_param` / `embedx_sgd_param`)."""

    name: SgdRuleName = Field(
        "SparseAdaGradSGDRule",
        description="Optimizer name. SparseAdaGradSGDRule keeps one g2sum per vector (PaddleRec's default); "
        "StdAdaGradSGDRule one g2sum per dimension; SparseAdamSGDRule bias-corrected Adam (gradient not divided by "
        "show, as in PaddleRec).",
    )
    learning_rate: float = Field(0.05, gt=0, description="Learning rate.")
    initial_g2sum: float = Field(
        3.0, gt=0, description="Initial value of g2sum (AdaGrad rules): step = lr * g * sqrt(initial_g2sum / (initial_g2sum + g2sum))."
    )
    initial_range: float = Field(
        0.0001,
        ge=0,
        description="Embedding initialisation range [-initial_range, initial_range] (uniform). The 1-dim embed part is "
        "zero-initialised instead while `zero_init` is on.",
    )
    weight_bounds: list[float] = Field(
        default_factory=lambda: [-10.0, 10.0],
        description="Range [low, high] the embedding is clipped to during training.",
    )
    beta1_decay_rate: float = Field(0.9, gt=0, lt=1, description="SparseAdamSGDRule only: first-moment decay (beta1).")
    beta2_decay_rate: float = Field(0.999, gt=0, lt=1, description="SparseAdamSGDRule only: second-moment decay (beta2).")
    ada_epsilon: float = Field(1e-8, gt=0, description="SparseAdamSGDRule only: epsilon added to sqrt(v).")

    @model_validator(mode="after")
    def _bounds(self, info: ValidationInfo) -> SparseSgdParam:
        problems = Problems(self, info)
        if problems.readable("weight_bounds"):
            if len(self.weight_bounds) != 2 or self.weight_bounds[0] >= self.weight_bounds[1]:
                problems.add("weight_bounds", f"must be [low, high] with low < high, got {self.weight_bounds}")
            elif not self.weight_bounds[0] <= 0 <= self.weight_bounds[1]:
                problems.add("weight_bounds", f"must contain 0 (new features start at 0), got {self.weight_bounds}")
        problems.raise_if_any()
        return self


class SyntheticStream(StrictModel):
    """The built-in synthetic click stream, generated into the run folder when `train_data_dir` is empty."""

    examples_per_slice: int = Field(2000, ge=1, description="Impressions written to each time slice (folder).")
    vocab_size: int = Field(
        20000, ge=10, description="Largest per-slot vocabulary; slots get log-uniform sizes between min_vocab_size and this."
    )
    min_vocab_size: int = Field(
        10, ge=2, description="Smallest per-slot vocabulary (see vocab_size); must not exceed vocab_size."
    )
    zipf_exponent: float = Field(1.1, gt=0, description="Zipf exponent of feature popularity within a slot.")
    rank_weight_exponent: float = Field(
        0.7,
        ge=0,
        description="The weight of a slot's k-th most popular feature is scaled by k^-exponent, so that rare "
        "features matter less (0: rare and popular features alike, much harder to learn).",
    )
    churn_per_day: float = Field(
        0.05, ge=0, le=1, description="Share of each slot's features replaced by new ids (with new weights) per day."
    )
    interactions: int = Field(3, ge=0, description="Number of slot pairs with a hidden multiplicative interaction.")
    base_ctr: float = Field(0.1, gt=0, lt=1, description="Target mean click-through rate of the stream.")
    multi_value_share: float = Field(0.2, ge=0, le=1, description="Share of slots holding several feature ids per impression.")
    missing_rate: float = Field(0.05, ge=0, lt=1, description="Probability that a slot is absent from an impression.")
    ins_id: bool = Field(True, description="Write an `ins_id<TAB>` prefix on every line (as PaddleRec's InMemoryDataset expects).")
    seed: int = Field(7, description="Seed of the generator (the hidden model and the sampled impressions).")

    @model_validator(mode="after")
    def _vocab_range(self, info: ValidationInfo) -> SyntheticStream:
        problems = Problems(self, info)
        if problems.readable("min_vocab_size", "vocab_size") and self.min_vocab_size > self.vocab_size:
            problems.add("min_vocab_size", f"must not exceed vocab_size {self.vocab_size}, got {self.min_vocab_size}")
        problems.raise_if_any()
        return self
