"""Training settings shared by every task (seed 000: RecBole's training settings; seed 002: schedule settings).

Field names and defaults are the seeds' own. Where two seeds name one thing differently, the canonical field
accepts the other name as an alias (`learning_rate`/`lr`, `train_batch_size`/`batch_size`,
`stopping_step`/`patience`, `weight_decay`/`wd`, `enable_amp`/`amp`). Giving both names with different values is
an error rather than a silent pick.

Seed 004 (the Ascend STAMP card) adds script flags: `precision_mode` maps onto the AMP settings (PRECISION_MODES),
`profiling` records a torch.profiler window (workbench/tasks/profiling.py), and the Ascend dump and fusion flags
(ASCEND_ONLY) are accepted and listed as having no effect off Ascend. A setting that lives in a nested section
may also be written at the top level under the name a seed gives it (`PATH_ALIASES`: recommendation's `maxlen` is
`data.maxlen`); it is moved into its section before validation, so saved configs hold one canonical spelling.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from workbench.config.rules import Problems

Learner = Literal["adam", "sgd", "adagrad", "rmsprop", "sparse_adam"]
PrecisionMode = Literal["allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype", "allow_mix_precision"]

# seed 004's precision_mode -> (enable_amp, enable_scaler). Off Ascend, "keep float32 where the op supports it" is
# every op, so the two float32 modes are plain float32; both float16 modes are autocast with loss scaling (autocast
# keeps reductions and softmax in float32, so force_fp16 is not literally every op in float16).
PRECISION_MODES: dict[str, tuple[bool, bool]] = {
    "allow_fp32_to_fp16": (False, False),
    "must_keep_origin_dtype": (False, False),
    "force_fp16": (True, True),
    "allow_mix_precision": (True, True),
}

# seed 004's Ascend-only flags: accepted under their names (with the card's defaults), used by no task here
ASCEND_ONLY: dict[str, str] = {
    name: "an Ascend NPU dump/fusion flag; it has no effect off Ascend"
    for name in ("over_dump", "over_dump_path", "data_dump_flag", "data_dump_step", "data_dump_path", "use_mixlist",
                 "mixlist_file", "fusion_off_flag", "fusion_off_file")
}

# canonical field name -> the other names it answers to
ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "train_batch_size": ("batch_size",),
    "stopping_step": ("patience",),
    "weight_decay": ("wd",),
    "enable_amp": ("amp",),
    "embedding_size": ("embed_dim",),  # seed 004's card; only recommendation has the setting
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


class RunResources(StrictModel):
    """What a run asks of the cluster on each of its nodes. Only the ray executor places runs by it (the actor that
    runs the supervisor, or each bundle of a multi-node run's placement group, asks Ray for exactly this); the local
    executor ignores it and runs `max_concurrent_runs` at a time on its machine."""

    cpus: float | None = Field(
        None,
        gt=0,
        description="CPUs per node (Ray's num_cpus; fractions allowed). Empty: WORKBENCH_RAY_CPUS_PER_PROCESS "
        "(default 1) x nproc_per_node. Ignored by the local executor.",
    )
    gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs per node (Ray's num_gpus; fractions share a GPU). Empty: nproc_per_node when the run "
        "trains on CUDA (`device: cuda`, or `auto` on a cluster that has GPUs), else 0. Ignored by the local executor.",
    )
    custom: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per node, name -> amount (e.g. {ssd: 1}): the run goes only to nodes "
        "started with them (`ray start --resources='{\"ssd\": 1}'`). Ignored by the local executor.",
    )

    @model_validator(mode="after")
    def _custom_names_and_amounts(self, info: ValidationInfo) -> RunResources:
        problems = Problems(self, info)
        if problems.readable("custom"):
            for name, amount in self.custom.items():
                if not name.strip():
                    problems.add("custom", "a custom resource needs a name")
                elif name in ("CPU", "GPU", "memory", "object_store_memory"):
                    problems.add("custom", f"`{name}` is one of Ray's own resources: use cpus / gpus, not custom")
                if amount <= 0:
                    problems.add("custom", f"{name}: the amount must be greater than 0 (got {amount:g})")
        problems.raise_if_any()
        return self


class CommonTrainingSettings(StrictModel):
    """Settings every task's config carries. Task configs subclass this and may override defaults.

    A task that has no use for some of them says so in `not_used` (setting -> why): every config still accepts them
    (the seeds name them for every task), the form puts them in their own collapsed section, and a value other than
    the default is reported by `ignored_settings` rather than silently dropped.
    """

    not_used: ClassVar[dict[str, str]] = dict(ASCEND_ONLY)
    # top-level name a seed uses -> the dotted path of the setting it means (see the module docstring)
    PATH_ALIASES: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Every task lists the Ascend-only flags among the settings it does not use."""
        super().__pydantic_init_subclass__(**kwargs)
        cls.not_used = {**cls.not_used, **{k: v for k, v in ASCEND_ONLY.items() if k not in cls.not_used}}

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
        description="Mixed precision training (float16 autocast on CUDA, bfloat16 on CPU). Alias: `amp`. "
        "Set by `precision_mode` when that is given.",
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
    nnodes: int = Field(
        1,
        ge=1,
        le=64,
        description="Machines one run spans, nproc_per_node processes on each (torchrun --nnodes, c10d rendezvous on "
        "the first). More than 1 needs the ray executor: it reserves one placement-group bundle per node "
        "(STRICT_SPREAD, each with `resources`). The local executor refuses it.",
    )
    resources: RunResources = Field(
        default_factory=RunResources,
        description="What the run asks of a Ray cluster on each node: cpus, gpus, custom resources. Used only by "
        "the ray executor (WORKBENCH_EXECUTOR=ray); the local executor ignores it.",
    )
    keep_ckpt: int = Field(
        3,
        ge=1,
        description="Number of most recent checkpoints kept per run; the best checkpoint by the monitored metric "
        "is always kept as well.",
    )
    # seed 004 (the Ascend STAMP card's script flags)
    precision_mode: PrecisionMode | None = Field(
        None,
        description="Seed 004's precision switch, mapped onto enable_amp / enable_scaler: `allow_fp32_to_fp16` and "
        "`must_keep_origin_dtype` = float32 (amp off); `allow_mix_precision` and `force_fp16` = autocast (float16 "
        "on CUDA, bfloat16 on CPU) with a GradScaler. Empty: enable_amp / enable_scaler decide. When set, it "
        "overrides their defaults; enable_amp / enable_scaler set away from their default to the opposite meaning "
        "is an error.",
    )
    profiling: bool = Field(
        False,
        description="Record a torch.profiler trace of a window of training steps (after profiling_wait + "
        "profiling_warmup steps, for profiling_active steps): Chrome trace + summary (top operators, data / forward "
        "/ backward / optimizer shares) on the Dashboard. Off: nothing is recorded and nothing is slowed down.",
    )
    profiling_dump_path: str = Field(
        "",
        description="Folder for the profiler's trace and summary (a subfolder per run). Empty: the run folder's "
        "`profile/` (the Dashboard offers the trace for download only from there). Seed 004's default /home/data "
        "is not a useful default here.",
    )
    profiling_wait: int = Field(
        2, ge=0, description="Profiling: training steps skipped before the profiler starts (lazy set-up, cold caches)."
    )
    profiling_warmup: int = Field(
        1, ge=0, description="Profiling: steps traced but discarded, so the profiler's own start-up is not measured."
    )
    profiling_active: int = Field(3, ge=1, description="Profiling: number of steps recorded in the trace.")
    over_dump: bool = Field(False, description="Ascend only (no effect here): overflow detection dump.")
    over_dump_path: str = Field("/home/data", description="Ascend only (no effect here): where overflow dumps go.")
    data_dump_flag: bool = Field(False, description="Ascend only (no effect here): dump operator data.")
    data_dump_step: int = Field(10, ge=0, description="Ascend only (no effect here): step whose data is dumped.")
    data_dump_path: str = Field("/home/data", description="Ascend only (no effect here): where data dumps go.")
    use_mixlist: bool = Field(False, description="Ascend only (no effect here): use a mixed-precision op list.")
    mixlist_file: str = Field("ops_info.json", description="Ascend only (no effect here): the mixed-precision op list.")
    fusion_off_flag: bool = Field(False, description="Ascend only (no effect here): switch off graph fusions.")
    fusion_off_file: str = Field("fusion_switch.cfg", description="Ascend only (no effect here): the fusion switch file.")

    @model_validator(mode="before")
    @classmethod
    def _no_conflicting_aliases(cls, data: Any) -> Any:
        """Reject `lr: 0.1` next to `learning_rate: 0.01`: pydantic would silently take one of them. (The same value
        under both names is fine.)"""
        if not isinstance(data, dict):
            return data
        data = dict(data)  # precision_mode fills in the AMP settings: never in the caller's dict
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
            elif len(given) > 1:  # the same value twice: keep one, or pydantic calls the other an unknown setting
                keep = canonical if canonical in given else next(iter(given))
                for name in given:
                    if name != keep:
                        del data[name]
        errors += _precision_conflicts(cls, data)
        moved, path_errors = _move_path_aliases(cls, data)
        errors += path_errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return moved

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


def _error(loc: tuple[str, ...], message: str, given: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("alias_conflict", "{message}", {"message": message}), loc=loc, input=given
    )


def _precision_conflicts(cls: type[BaseModel], data: dict[str, Any]) -> list[InitErrorDetails]:
    """Set enable_amp / enable_scaler from precision_mode, or report where the config says otherwise.

    precision_mode decides over values equal to the schema default (`enable_amp: false` is what the New-run form
    always sends, and means "not asked for"); a value away from the default that means the opposite, e.g.
    `precision_mode: must_keep_origin_dtype` with `enable_amp: true`, is an error rather than a silent pick. A saved
    config holds all three, consistent, so it loads again.
    """
    mode = data.get("precision_mode")
    if mode not in PRECISION_MODES:
        return []  # unset, or a bad value the field itself reports
    wanted = dict(zip(("enable_amp", "enable_scaler"), PRECISION_MODES[mode]))
    clashes = []
    for canonical, value in wanted.items():
        default = cls.model_fields[canonical].default
        names = [n for n in (canonical, *ALIASES.get(canonical, ())) if n in data]
        for name in names:
            if isinstance(data[name], bool) and data[name] != value and data[name] != default:
                clashes.append(f"`{name}: {data[name]}`")
            elif isinstance(data[name], bool):
                data[name] = value
        if not names:
            data[canonical] = value
    if not clashes:
        return []
    implied = ", ".join(f"{k}: {v}" for k, v in wanted.items()).lower()
    message = (f"precision_mode {mode} means {implied}, but the config also says {' and '.join(clashes)}; "
               "keep one of them")
    return [_error(("precision_mode",), message, mode)]


def _move_path_aliases(cls: type[CommonTrainingSettings], data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
    """Move top-level seed names (`maxlen`) to the nested setting they mean (`data.maxlen`); a copy of `data`."""
    found = {name: target for name, target in cls.PATH_ALIASES.items() if name in data}
    if not found:
        return data, []
    out = dict(data)
    errors = []
    for name, target in found.items():
        value = out.pop(name)
        *parents, leaf = target.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        spellings = [k for k in (leaf, *_nested_aliases(cls, target)) if k in node]
        clashing = [k for k in spellings if repr(node[k]) != repr(value)]
        if clashing:
            message = (f"`{name}`={value!r} and `{target.rsplit('.', 1)[0]}.{clashing[0]}`={node[clashing[0]]!r} "
                       f"name the same setting ({target}) with different values; keep one")
            errors.append(_error((name,), message, value))
        elif not spellings:
            node[leaf] = value
    return out, errors


def _nested_aliases(cls: type[BaseModel], path: str) -> tuple[str, ...]:
    """The other names the field at the dotted `path` answers to (its validation_alias choices)."""
    import typing

    model: Any = cls
    field = None
    for part in path.split("."):
        field = model.model_fields[part]
        args = typing.get_args(field.annotation) or (field.annotation,)
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    choices = getattr(field.validation_alias, "choices", ()) if field is not None else ()
    return tuple(c for c in choices if isinstance(c, str))


def canonical_setting_path(cls: type[BaseModel], path: str) -> str:
    """A setting path as a user may write it (`lr`, `embed_dim`, `maxlen`) -> its canonical dotted path."""
    path_aliases: dict[str, str] = getattr(cls, "PATH_ALIASES", {})
    if path in path_aliases:
        return path_aliases[path]
    parts = path.split(".")
    for canonical, others in ALIASES.items():
        if parts[-1] in others:
            parts[-1] = canonical
    return ".".join(parts)


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
