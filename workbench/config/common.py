"""Training settings shared by every task (seed 000: RecBole's training settings; seed 002: schedule settings).

Field names and defaults are the seeds' own. Where two seeds name one thing differently, the canonical field
accepts the other name as an alias (`learning_rate`/`lr`, `train_batch_size`/`batch_size`,
`stopping_step`/`patience`, `weight_decay`/`wd`, `enable_amp`/`amp`). Giving both names with different values is
an error rather than a silent pick.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workbench.config.rules import Problems

Learner = Literal["adam", "sgd", "adagrad", "rmsprop", "sparse_adam"]

# canonical field name -> the other names it answers to
ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "train_batch_size": ("batch_size",),
    "stopping_step": ("patience",),
    "weight_decay": ("wd",),
    "enable_amp": ("amp",),
}


def aliased(name: str) -> AliasChoices:
    """`validation_alias` for a canonical field: accepts its own name and the seeds' other names."""
    return AliasChoices(name, *ALIASES.get(name, ()))


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, names and aliases both accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=False)


class NegSampleArgs(StrictModel):
    """Negative sampling during training (RecBole `train_neg_sample_args`)."""

    distribution: Literal["uniform", "popularity"] = Field(
        "uniform",
        description="Distribution of negative items: `uniform` picks any item with equal chance; `popularity` "
        "picks items in proportion to how often they occur in the training interactions.",
    )
    sample_num: int = Field(
        1,
        ge=1,
        description="Number of negative items drawn for each positive item (N negatives per positive; unlike "
        "RecBole, which repeats the positive row N times with one negative each).",
    )
    alpha: float = Field(
        1.0,
        gt=0,
        description="Exponent on item frequency for `popularity` sampling (1.0 = proportional to counts).",
    )
    dynamic: bool = Field(
        False,
        description="Dynamic (hard) negative sampling: draw `candidate_num` candidates per negative, score them "
        "with the current model and keep the highest-scoring one.",
    )
    candidate_num: int = Field(
        0,
        ge=0,
        description="Number of candidate negatives scored per kept negative when `dynamic` is on (must be >= 2 then).",
    )

    @model_validator(mode="after")
    def _dynamic_needs_candidates(self, info: ValidationInfo) -> NegSampleArgs:
        problems = Problems(self, info)
        if problems.readable("dynamic", "candidate_num") and self.dynamic and self.candidate_num < 2:
            problems.add("candidate_num", "dynamic sampling needs candidate_num >= 2 (the number of candidates scored per negative)")
        problems.raise_if_any()
        return self


class ClipGradNorm(StrictModel):
    """Arguments of `torch.nn.utils.clip_grad_norm_`."""

    max_norm: float = Field(5.0, gt=0, description="Largest allowed total gradient norm.")
    norm_type: float = Field(2.0, gt=0, description="Type of the norm (2 = Euclidean; use a large value for max-norm).")


class CommonTrainingSettings(StrictModel):
    """Settings every task's config carries. Task configs subclass this and may override defaults.

    A task that has no use for some of them says so in `not_used` (setting -> why): every config still accepts them
    (the seeds name them for every task), the form puts them in their own collapsed section, and a value other than
    the default is reported by `ignored_settings` rather than silently dropped.
    """

    not_used: ClassVar[dict[str, str]] = {}

    # seed 000 (RecBole training settings)
    epochs: int = Field(300, ge=1, description="The number of training epochs.")
    train_batch_size: int = Field(
        2048,
        ge=1,
        validation_alias=aliased("train_batch_size"),
        description="The training batch size (examples per optimizer step, per process). Alias: `batch_size`.",
    )
    learner: Learner = Field(
        "adam",
        description="The name of the optimizer. `sparse_adam` gives embedding tables sparse gradients and "
        "SparseAdam, and every other parameter Adam (RecBole crashes on dense gradients instead).",
    )
    learning_rate: float = Field(
        0.001, gt=0, validation_alias=aliased("learning_rate"), description="Learning rate. Alias: `lr`."
    )
    train_neg_sample_args: NegSampleArgs | None = Field(
        default_factory=NegSampleArgs,
        description="Negative sampling: distribution, sample_num, dynamic, candidate_num. Set to null for no "
        "sampling (required when the loss is a full softmax cross-entropy).",
    )
    eval_step: int = Field(
        1,
        description="The number of training epochs between evaluations on the valid set. If it is less than 1, "
        "the model is not evaluated on the valid set (and a checkpoint is saved every epoch).",
    )
    stopping_step: int = Field(
        10,
        ge=1,
        validation_alias=aliased("stopping_step"),
        description="Early stopping: stop after this many consecutive evaluations without an improvement of more "
        "than `min_delta`. Alias: `patience`.",
    )
    min_delta: float = Field(
        0.001,
        ge=0,
        description="An evaluation improves only when the valid metric beats the best value so far by more than "
        "this (a tie never counts).",
    )
    clip_grad_norm: ClipGradNorm | None = Field(
        None,
        description="Arguments of clip_grad_norm_ ({max_norm, norm_type}); null disables clipping. Clipping runs "
        "after the gradient scaler is unscaled, so it sees real gradients.",
    )
    loss_decimal_place: int = Field(4, ge=0, le=12, description="The decimal places of the training loss in the log.")
    weight_decay: float = Field(
        0.0, ge=0, validation_alias=aliased("weight_decay"), description="The weight decay (L2 penalty) of the optimizer. Alias: `wd`."
    )
    require_pow: bool = Field(
        False,
        description="Whether the embedding regulariser raises the norm to its power (sum ||E||_p^p / batch / p) "
        "instead of using the plain norm (sum ||E||_p / batch).",
    )
    enable_amp: bool = Field(
        False,
        validation_alias=aliased("enable_amp"),
        description="Mixed precision training (float16 autocast on CUDA, bfloat16 on CPU). Alias: `amp`.",
    )
    enable_scaler: bool = Field(
        False,
        description="Use a GradScaler with mixed precision to avoid float16 gradient underflow (CUDA only; "
        "ignored with one warning in the run log on CPU).",
    )
    # seed 002 (schedule and bookkeeping)
    epochs_warmup: int = Field(
        0,
        ge=0,
        description="Linear learning-rate warm-up length in epochs: the rate grows from near 0 to learning_rate "
        "over the first epochs_warmup epochs (typically 1-2; 0 = off).",
    )
    epochs_ending: int = Field(
        0,
        ge=0,
        description="Length in epochs of the final phase in which the learning rate decays linearly towards 0, to "
        "settle the model before training ends (typically 1-2; 0 = off).",
    )
    min_std: float = Field(
        1e-8,
        gt=0,
        description="Smallest standard deviation used when standardising values (features, scores), so that a "
        "near-constant column does not divide by ~0.",
    )
    scheduler_patience: int = Field(
        3,
        ge=1,
        description="Reduce-on-plateau: number of evaluations without improvement of the valid metric before the "
        "learning rate is multiplied by scheduler_factor.",
    )
    scheduler_factor: float = Field(
        0.316,
        gt=0,
        le=1,
        description="Reduce-on-plateau: factor applied to the learning rate on a plateau (1.0 disables it; "
        "10^-0.5 = 0.316 is a reasonable start).",
    )
    print_freq: int = Field(50, ge=1, description="Log training metrics (loss, lr, throughput) every this many steps.")
    train_ratio: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Share of the data used for training when the data is not already split; the rest is validation.",
    )
    # workbench settings
    seed: int = Field(2020, description="Random seed for Python, NumPy and PyTorch.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train: `auto` picks CUDA when available, else the CPU."
    )
    nproc_per_node: int = Field(
        1,
        ge=1,
        description="Number of processes (one per GPU, or CPU processes with gloo). More than 1 launches torchrun "
        "with DistributedDataParallel.",
    )
    keep_ckpt: int = Field(
        3,
        ge=1,
        description="Number of most recent checkpoints kept per run; the best checkpoint by the monitored metric "
        "is always kept as well.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_conflicting_aliases(cls, data: Any) -> Any:
        """Reject `lr: 0.1` next to `learning_rate: 0.01`: pydantic would silently take one of them."""
        if not isinstance(data, dict):
            return data
        errors: list[InitErrorDetails] = []
        for canonical, others in ALIASES.items():
            given = {name: data[name] for name in (canonical, *others) if name in data}
            if len(given) > 1 and len({repr(v) for v in given.values()}) > 1:
                names = " and ".join(f"`{k}`={v!r}" for k, v in given.items())
                message = f"{names} name the same setting with different values; keep one"
                # under the setting's own path, so the form marks it and the other fields are still checked
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("alias_conflict", "{message}", {"message": message}),
                        loc=(canonical,),
                        input=given,
                    )
                )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _schedule_fits(self, info: ValidationInfo) -> CommonTrainingSettings:
        problems = Problems(self, info)
        if problems.readable("epochs", "epochs_warmup", "epochs_ending") and self.epochs_warmup + self.epochs_ending > self.epochs:
            problems.add(
                "epochs_warmup",
                f"epochs_warmup ({self.epochs_warmup}) + epochs_ending ({self.epochs_ending}) exceed epochs ({self.epochs})",
            )
        problems.raise_if_any()
        return self


def ignored_settings(cfg: CommonTrainingSettings) -> list[str]:
    """One line per setting the config's task does not use that is set to something other than its default."""
    out = []
    for name, why in type(cfg).not_used.items():
        field = type(cfg).model_fields[name]
        value = getattr(cfg, name)
        default = field.get_default(call_default_factory=True)
        if value != default:
            out.append(f"{name} = {value!r} has no effect: {cfg.task} does not use it ({why})")  # type: ignore[attr-defined]
    return out
