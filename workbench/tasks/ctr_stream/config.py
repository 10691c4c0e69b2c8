"""Config of the streaming CTR task: PaddleRec CPUPS streaming training (seed 001) with the slot_dnn model.

Every parameter the seed names exists here under its name and with the seed's default; where the seed's prose and
PaddleRec's code disagree (the score formula, `delta_` vs `delta-`), the help says what the code does and we follow
the code. No torch import here: the CLI and the form validate configs without it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator

from workbench.config.common import ClipGradNorm, CommonTrainingSettings, Learner, NegSampleArgs, aliased
from workbench.config.rules import Problems
from workbench.tasks.ctr_stream.config_parts import SparseSgdParam, SyntheticStream

AccessorClass = Literal["SparseAccessor", "CtrCommonAccessor"]
OutputFormat = Literal["none", "gzip"]
DUMP_FIELD_NAMES = ("click", "predict", "concat")  # plus fc_0, fc_1, ... (hidden layer outputs)
MAX_SLOT_ID = 65535  # slots are stored as uint16 in the table


class CtrStreamConfig(CommonTrainingSettings):
    """Streaming CTR training with a PaddleRec-faithful sparse feature table (task `ctr_stream`)."""

    task: Literal["ctr_stream"] = Field("ctr_stream", description="Task name.")

    not_used: ClassVar[dict[str, str]] = {
        "epochs": "the passes come from start_day..end_day and split_interval/split_per_pass, each seen once",
        "train_neg_sample_args": "the negatives are the stream's non-clicked impressions",
        "eval_step": "every pass is evaluated (infer before train)",
        "stopping_step": "a stream is never stopped early",
        "min_delta": "a stream is never stopped early",
        "loss_decimal_place": "its log lines have a fixed format",
        "require_pow": "the sparse table regularises through embed_sgd_param / embedx_sgd_param",
        "enable_scaler": "enable_amp autocasts to bfloat16, which needs no loss scaling",
        "epochs_warmup": "the dense learning rate is constant over the stream",
        "epochs_ending": "the dense learning rate is constant over the stream",
        "scheduler_patience": "the dense learning rate is constant over the stream",
        "scheduler_factor": "the dense learning rate is constant over the stream",
        "min_std": "it standardises nothing",
        "train_ratio": "each pass is evaluated before it is trained on (no held-out split)",
    }

    # The form's sections, as PaddleRec's config_online.yaml groups these settings (runner, table_parameters with
    # its accessor and the two sparse SGD rules, hyper_parameters), so that the dense `learning_rate` and the
    # embed/embedx ones are told apart. Settings not listed here stay in the common section.
    sections: ClassVar[dict[str, tuple[str, ...]]] = {
        "Data and passes (runner)": (
            "train_data_dir", "split_interval", "split_per_pass", "start_day", "end_day", "data_donefile",
            "data_sleep_second", "data_max_wait_second", "prefetch", "is_data_hourly_placed", "shuffle",
            "max_bad_line_ratio", "train_thread_num", "synthetic",
        ),
        "Saving and dumps (runner)": (
            "save_model_path", "checkpoint_per_pass", "save_delta_frequency", "init_model_path", "dump_fields",
            "dump_param", "dump_fields_path", "dump_phase",
        ),
        "Sparse table and accessor (table_parameters)": (
            "table_class", "accessor_class", "shard_num", "nonclk_coeff", "click_coeff", "embedx_threshold",
            "embedx_dim", "fea_dim", "show_click_decay_rate", "delete_threshold", "delete_after_unseen_days",
            "base_threshold", "delta_threshold", "delta_keep_days", "converter", "deconverter", "zero_init",
            "show_scale", "enable_create_feasign_randomly",
        ),
        "Embed SGD: the 1-dim embed_w (embed_sgd_param)": ("embed_sgd_param",),
        "Embedx SGD: the extended embedding (embedx_sgd_param)": ("embedx_sgd_param",),
        "Dense network and its optimizer (hyper_parameters)": (
            "slot_num", "sparse_slots", "layer_sizes", "wide", "fm", "dnn_init_range", "learner", "learning_rate", "adam_d2sum",
            "train_batch_size", "clip_grad_norm",
        ),
        "Several machines (torchrun)": ("nnodes", "rdzv_endpoint", "collective_timeout_s"),
    }  # fmt: skip

    # -- settings shared with the other tasks, with streaming meanings ------------------------------------------
    epochs: int = Field(
        1,
        ge=1,
        description="Not used by streaming: the passes come from start_day..end_day and split_interval/split_per_pass, "
        "and every pass is seen once (infer, then train). Kept so shared tooling finds it.",
    )
    train_batch_size: int = Field(
        64,
        ge=1,
        validation_alias=aliased("train_batch_size"),
        description="Impressions per training step of the dense network and per sparse push. PaddleRec's slot_dnn uses "
        "32 per thread with 3 asynchronous threads; here one synchronous step sees the whole batch. Small batches learn "
        "much more from a stream with little data per id: a push averages a feature's gradient over its shows in the "
        "batch, so a frequent id gets one AdaGrad step per batch (64 beats 512 by about 0.05 day-2 AUC on issue 12's "
        "stream, docs/ctr_stream.md); larger batches train faster. Alias: `batch_size`.",
    )
    learner: Learner = Field(
        "adam",
        description="Optimizer of the dense MLP (adam, sgd, adagrad, rmsprop). The sparse table has its own rules "
        "(embed_sgd_param / embedx_sgd_param); `adam_d2sum` swaps Adam for PaddleRec's DAdamD2Sum.",
    )
    learning_rate: float = Field(
        0.002,
        gt=0,
        validation_alias=aliased("learning_rate"),
        description="Learning rate of the dense MLP. Alias: `lr`. (PaddleRec's config uses 5e-6 for asynchronous "
        "updates from many threads; synchronous training needs a larger value: 0.002 with batch 64.)",
    )
    train_neg_sample_args: NegSampleArgs | None = Field(
        None,
        description="Not used: the negatives of a CTR stream are its non-clicked impressions. Must stay null.",
    )
    eval_step: int = Field(1, description="Not used: every pass is evaluated (infer before train).")
    stopping_step: int = Field(
        10,
        ge=1,
        validation_alias=aliased("stopping_step"),
        description="Not used: a stream is never stopped early. Alias: `patience`.",
    )
    clip_grad_norm: ClipGradNorm | None = Field(
        None, description="Gradient clipping of the dense MLP ({max_norm, norm_type}); null disables it."
    )
    print_freq: int = Field(50, ge=1, description="Log train/loss (mean over the last steps) every this many steps.")
    nproc_per_node: int = Field(
        1, ge=1, le=64,
        description="Training processes on this machine (torchrun; more machines: torchrun --nnodes). Each process "
        "is a trainer on its share of every pass's files and a parameter server holding its shards of the sparse "
        "table (see shard_num); the dense network is data-parallel. Needs shard_num >= the number of processes.",
    )
    nnodes: int = Field(
        1, ge=1, le=1024,
        description="Machines taking part (torchrun --nnodes), each running nproc_per_node processes. With more than "
        "one, the runner starts this machine's processes under torchrun's c10d rendezvous at rdzv_endpoint and "
        "every other machine joins with `torchrun --nnodes N --nproc_per_node P --rdzv_backend c10d --rdzv_endpoint "
        "HOST:PORT --rdzv_id RUN_ID -m workbench.runner.worker RUN_ID` (docs/ctr_stream.md). The machines share the "
        "store (WORKBENCH_DB_URL) and the run folder (a shared filesystem). Needs shard_num >= nnodes x nproc_per_node.",
    )
    rdzv_endpoint: str = Field(
        "",
        description="host:port of torchrun's c10d rendezvous when nnodes > 1 under the local executor: a free port on "
        "one of the machines that all of them reach (torchrun's TCP store listens there); the local executor refuses "
        "nnodes > 1 without it. Under WORKBENCH_EXECUTOR=ray leave it empty: Ray places the nodes and the executor "
        "picks the rendezvous on the first. Unused with one machine.",
    )
    collective_timeout_s: float = Field(
        600.0, gt=0,
        description="Seconds a collective between the processes (pull/push exchange, dense gradients, agreements, "
        "saves) may wait for the others before the run fails. A rank that hangs instead of dying blocks the others "
        "this long (torch's own default is 30 min). At least twice data_sleep_second (waiting for data is done in "
        "rounds of one sleep, each ending in a collective); raise it if a rank may be legitimately slower than the others "
        "by longer, e.g. writing a very large model. Unused with one process.",
    )

    # -- data and passes (seed 001 section 2) ---------------------------------------------------------------------
    train_data_dir: str = Field(
        "",
        description="Training data directory, laid out as YYYYMMDD/HHMM/ (or YYYYMMDD/HH/) folders of slot-format "
        "files. Empty: generate the synthetic stream described in `synthetic` into the run folder and train on it. "
        "Only local paths (afs:/ and hdfs:/ are not supported).",
    )
    split_interval: int = Field(30, ge=1, le=1440, description="Interval between data slices (folders), in minutes.")
    split_per_pass: int = Field(2, ge=1, description="Number of data slices in one training pass.")
    start_day: str = Field("20190720", description="First training day, YYYYMMDD (e.g. 20190720).")
    end_day: str = Field("20190722", description="Last training day (inclusive), YYYYMMDD (e.g. 20190722).")
    data_donefile: str = Field(
        "",
        description="Name of the marker file that says a slice's data is completely written (usually an empty file). "
        "When set, each slice folder is polled until it exists; empty means the data is already complete.",
    )
    data_sleep_second: float = Field(
        10, gt=0, description="Seconds to wait before probing again for a slice's data_donefile."
    )
    data_max_wait_second: float = Field(
        7200,
        ge=0,
        description="Longest wait for one slice's data_donefile, in seconds; past it the run fails with the folder's "
        "name. 0 waits forever.",
    )
    prefetch: bool = Field(
        True,
        description="Read the next pass's data in the background while the current pass trains (a prefetched pass "
        "waits for its own donefiles without blocking training).",
    )
    is_data_hourly_placed: bool = Field(
        False, description="Slices are hourly folders named HH instead of HHMM (requires split_interval 60)."
    )
    shuffle: bool = Field(
        True,
        description="Shuffle each pass's impressions before training (PaddleRec's global_shuffle). The order is "
        "seeded by seed, day and pass, so a resumed run sees the same batches.",
    )
    max_bad_line_ratio: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Malformed lines are skipped and counted (the first few quoted in the log with file:line); a pass "
        "whose share of malformed lines exceeds this fails.",
    )
    synthetic: SyntheticStream = Field(
        default_factory=SyntheticStream,
        description="The synthetic stream generated into the run folder when train_data_dir is empty.",
    )

    # -- saving (seed 001 section 4) ------------------------------------------------------------------------------
    save_model_path: str = Field(
        "",
        validation_alias=AliasChoices("save_model_path", "model_save_path"),
        description="Where models are saved in PaddleRec's layout ({day}/{pass}, {day}/delta-{pass}, {day}/base, "
        "{day}/0, donefile.txt). Empty: `model/` inside the run folder. Alias: `model_save_path`.",
    )
    checkpoint_per_pass: int = Field(
        6,
        ge=1,
        description="Save a checkpoint model (mode 0, all features) to {day}/{pass} every this many passes (the "
        "day's last pass is covered by the batch model instead). Resuming continues after the latest one.",
    )
    save_delta_frequency: int = Field(
        6,
        ge=1,
        description="Save a delta inference model (mode 1) to {day}/delta-{pass} every this many passes (PaddleRec's "
        "online-training guide says `delta_`; its code, like the workbench, writes `delta-`).",
    )
    init_model_path: str = Field(
        "",
        description="A saved model folder to start from, e.g. another run's batch model .../model/20190721/0 or a "
        "checkpoint model {day}/{pass}: its sparse table lines and dense.pt (read with `deconverter`). Ignored when "
        "the run resumes from its own checkpoint. Empty: start with an empty table.",
    )
    dump_fields: list[str] = Field(
        default_factory=list,
        description="Debug dump: per-impression values to write each pass: click, predict, concat (the pooled "
        "embeddings), fc_0, fc_1, ... (hidden layer outputs). Empty: no dump.",
    )
    dump_param: list[str] = Field(
        default_factory=list,
        description="Debug dump: dense parameters to write each pass, by name (e.g. mlp.0.weight).",
    )
    dump_fields_path: str = Field(
        "", description="Where the debug dump goes, as {path}/{day}/{pass}/. Empty: `dump/` inside the run folder."
    )
    dump_phase: Literal["train", "infer"] = Field(
        "train", description="Phase whose forward pass is dumped (PaddleRec need_train_dump / need_infer_dump)."
    )

    # -- sparse table (seed 001 section 5) ------------------------------------------------------------------------
    table_class: Literal["MemorySparseTable"] = Field(
        "MemorySparseTable", description="Table that stores the embeddings (in-memory, vectorised key index)."
    )
    accessor_class: AccessorClass = Field(
        "SparseAccessor",
        description="Accessor that reads the embeddings. SparseAccessor pulls [embed_w, embedx] (dim 1+embedx_dim); "
        "CtrCommonAccessor also pulls show and click, fed to the network as log(show+1), log(click+1)-log(show+1).",
    )
    shard_num: int = Field(
        1, ge=1, le=1000,
        description="Number of table shards: key % shard_num. A saved table has one part file per shard; with "
        "several processes the shards are dealt to them in blocks (PaddleRec's get_sparse_shard).",
    )
    nonclk_coeff: float = Field(0.1, ge=0, description="Coefficient of a shown but not clicked impression in the score.")
    click_coeff: float = Field(1.0, ge=0, description="Coefficient of a click in the score.")
    embedx_threshold: float = Field(
        0,
        ge=0,
        description="A feature's extended embedding (embedx) is created once score(show, click) >= this threshold; "
        "the gradient of the push that creates it is discarded. Score = (show - click) * nonclk_coeff + click * "
        "click_coeff (PaddleRec's accessor code; its online-training guide has the sign of (click - show) wrong). PaddleRec's "
        "config uses 10.",
    )
    embedx_dim: int = Field(
        8, ge=1, description="Extended embedding dimension: the network sees 1 + embedx_dim values per feature."
    )
    fea_dim: int | None = Field(
        None,
        description="Total feature dimension including show and click, must be embedx_dim + 3 (checked). Empty: "
        "derived from embedx_dim.",
    )
    show_click_decay_rate: float = Field(
        1, ge=0, le=1, description="At each day's shrink, show and click of every feature are multiplied by this."
    )
    delete_threshold: float = Field(0, ge=0, description="At shrink, features whose score is below this are deleted.")
    delete_after_unseen_days: float = Field(
        30, gt=0, description="At shrink, features unseen for more than this many days are deleted."
    )
    base_threshold: float = Field(
        0, ge=0, description="Only features with score >= this are saved in base and delta models."
    )
    delta_threshold: float = Field(
        0,
        ge=0,
        description="Only features whose score gained at least this since the previous delta are saved in a delta.",
    )
    delta_keep_days: float = Field(
        16, ge=0, description="Only features unseen for at most this many days are saved in base and delta models."
    )
    converter: OutputFormat = Field(
        "none",
        description="Format of saved base/delta models: `none` (text part files) or `gzip` (part-*.gz). A built-in "
        "name, never a shell command.",
    )
    deconverter: OutputFormat = Field(
        "none",
        description="Format of the part files read back from init_model_path: `none` or `gzip` (files ending .gz "
        "are always read as gzip). A built-in name, never a shell command.",
    )
    embed_sgd_param: SparseSgdParam = Field(
        default_factory=SparseSgdParam, description="Optimizer of the 1-dim embed part (embed_w)."
    )
    embedx_sgd_param: SparseSgdParam = Field(
        default_factory=SparseSgdParam, description="Optimizer of the extended embedding (embedx_w)."
    )
    zero_init: bool = Field(True, description="Initialise embed_w of new features to 0 (PaddleRec ctr_accessor_param.zero_init).")
    show_scale: bool = Field(
        True,
        description="Divide a feature's pushed gradient by its show count in the push (PaddleRec's default; "
        "CtrCommonAccessor may turn it off).",
    )
    enable_create_feasign_randomly: bool = Field(
        False,
        description="Random admission of new features: a new key is kept only if the score of its first push is >= 1, "
        "or with probability equal to that score (PaddleRec FLAGS_pserver_enable_create_feasign_randomly).",
    )
    adam_d2sum: bool = Field(
        False,
        description="Train the dense MLP with PaddleRec's DAdamD2Sum rule instead of Adam (learning_rate is its lr).",
    )

    # -- model: slot_dnn ------------------------------------------------------------------------------------------
    slot_num: int = Field(
        26,
        ge=1,
        le=MAX_SLOT_ID - 1,
        description="Number of sparse slots when `sparse_slots` is empty: slots 2 .. slot_num+1 (slot 1 is the click).",
    )
    sparse_slots: list[int] = Field(
        default_factory=list,
        description="The sparse slot ids the network reads, in order. Empty: 2 .. slot_num+1. Other slots in the data "
        "are ignored.",
    )
    layer_sizes: list[int] = Field(
        default_factory=lambda: [512, 256, 128],
        description="Hidden layer sizes of the MLP on the concatenated per-slot embeddings (ReLU; one sigmoid output).",
    )
    wide: bool = Field(
        True,
        description="Add the sum of the features' embed_w straight to the output logit (a per-id logistic "
        "regression, the wide part of Wide & Deep), besides feeding embed_w to the MLP as slot_dnn does. Off: "
        "PaddleRec's slot_dnn exactly.",
    )
    fm: bool = Field(
        False,
        description="Add a factorization-machine term to the output logit: the sum over slot pairs of the dot "
        "product of their pooled embedx (DeepFM's FM part), so pairwise interactions need not be learnt by the MLP.",
    )
    dnn_init_range: float = Field(
        0.2, gt=0, description="MLP weights start as Normal(0, dnn_init_range / sqrt(fan_in)), as in slot_dnn."
    )
    train_thread_num: int = Field(
        0,
        ge=0,
        description="CPU threads for the dense network (torch). 0 = the cores this process may use, minus one for "
        "the prefetch reader when prefetch is on (at least 1).",
    )

    @field_validator("start_day", "end_day", mode="before")
    @classmethod
    def _day_as_text(cls, value: Any) -> Any:
        """`start_day: 20190720` (a YAML number, or `--set end_day=20190721`) means the same as the quoted text."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    # -- derived values -------------------------------------------------------------------------------------------
    @property
    def slots(self) -> list[int]:
        return list(self.sparse_slots) if self.sparse_slots else list(range(2, self.slot_num + 2))

    @property
    def pull_dim(self) -> int:
        """Values pulled per feature: [embed_w, embedx] (+ show, click for CtrCommonAccessor)."""
        return 1 + self.embedx_dim + (2 if self.accessor_class == "CtrCommonAccessor" else 0)

    def torch_threads(self, cores: int) -> int:
        return self.train_thread_num or max(1, cores - (1 if self.prefetch else 0))

    @property
    def passes_per_day(self) -> int:
        return (1440 // self.split_interval) // self.split_per_pass

    def days(self) -> list[str]:
        first, last = _parse_day(self.start_day), _parse_day(self.end_day)
        return [(first + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range((last - first).days + 1)]

    # -- cross-field checks: all problems at once, each under its own field path ----------------------------------
    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> CtrStreamConfig:
        problems = Problems(self, info)
        ok, add = problems.readable, problems.add
        if ok("fea_dim", "embedx_dim") and self.fea_dim is not None and self.fea_dim != self.embedx_dim + 3:
            add("fea_dim", f"must be embedx_dim + 3 = {self.embedx_dim + 3} (show, click, embed_w and "
                f"{self.embedx_dim} embedx values), got {self.fea_dim}; or leave it empty")
        days_ok = ok("start_day", "end_day")
        for name in ("start_day", "end_day"):
            if not ok(name):
                continue
            try:
                _parse_day(getattr(self, name))
            except ValueError:
                days_ok = False
                add(name, f"must be a date written YYYYMMDD (e.g. 20190720), got {getattr(self, name)!r}")
        if days_ok and _parse_day(self.end_day) < _parse_day(self.start_day):
            add("end_day", f"{self.end_day} is before start_day {self.start_day}")
        if ok("split_interval", "split_per_pass"):
            if 1440 % self.split_interval:
                add("split_interval", f"must divide a day (1440 minutes) evenly, got {self.split_interval}; e.g. 5, 10, 30, 60")
            elif (1440 // self.split_interval) % self.split_per_pass:
                splits = 1440 // self.split_interval
                add("split_per_pass", f"must divide the {splits} slices of a day evenly (split_interval "
                    f"{self.split_interval}), got {self.split_per_pass}; the left-over slices would never be trained")
        if ok("is_data_hourly_placed", "split_interval") and self.is_data_hourly_placed and self.split_interval != 60:
            add("split_interval", "must be 60 when is_data_hourly_placed is on (one HH folder per hour), "
                f"got {self.split_interval}")
        if ok("train_data_dir") and self.train_data_dir.startswith(("afs:", "hdfs:")):
            add("train_data_dir", "afs:/ and hdfs:/ paths are not supported; copy or mount the data locally")
        if ok("data_donefile") and ("/" in self.data_donefile or "\\" in self.data_donefile):
            add("data_donefile", f"must be a file name inside each slice folder, not a path: {self.data_donefile!r}")
        if ok("sparse_slots", "slot_num"):
            slots = self.slots
            if any(s < 2 or s > MAX_SLOT_ID for s in slots):
                add("sparse_slots", f"slot ids must lie in 2..{MAX_SLOT_ID} (slot 1 holds the click label)")
            if len(set(slots)) != len(slots):
                add("sparse_slots", "slot ids must not repeat")
        if ok("layer_sizes") and (not self.layer_sizes or any(n < 1 for n in self.layer_sizes)):
            add("layer_sizes", f"needs at least one hidden layer of size >= 1, got {self.layer_sizes}")
        if ok("train_neg_sample_args") and self.train_neg_sample_args is not None:
            add("train_neg_sample_args", "must be null: a CTR stream's negatives are its non-clicked impressions")
        if ok("learner") and self.learner == "sparse_adam":
            add("learner", "sparse_adam does not apply: the embeddings live in the sparse table, whose optimizers are "
                "embed_sgd_param and embedx_sgd_param; use adam (or adam_d2sum)")
        if ok("adam_d2sum", "learner") and self.adam_d2sum and self.learner != "adam":
            add("adam_d2sum", f"replaces Adam, so it needs learner: adam (got {self.learner})")
        if ok("show_scale", "accessor_class") and not self.show_scale and self.accessor_class != "CtrCommonAccessor":
            add("show_scale", "SparseAccessor always divides gradients by show; show_scale: false needs CtrCommonAccessor")
        if ok("dump_fields", "layer_sizes"):
            unknown = [f for f in self.dump_fields if f not in DUMP_FIELD_NAMES and not _is_fc_name(f, len(self.layer_sizes))]
            if unknown:
                names = ", ".join(DUMP_FIELD_NAMES + tuple(f"fc_{i}" for i in range(len(self.layer_sizes))))
                add("dump_fields", f"unknown field(s) {unknown}; available: {names}")
        if ok("shard_num", "nproc_per_node", "nnodes") and self.shard_num < self.nproc_per_node * self.nnodes:
            ranks = (f"nproc_per_node ({self.nproc_per_node})" if self.nnodes == 1 else
                     f"nnodes x nproc_per_node ({self.nnodes} x {self.nproc_per_node} = {self.nnodes * self.nproc_per_node})")
            add("shard_num", f"must be at least {ranks}: every process holds one or "
                f"more of the table's shards (key % shard_num), got {self.shard_num}")
        if ok("rdzv_endpoint") and self.rdzv_endpoint and not _is_host_port(self.rdzv_endpoint):
            add("rdzv_endpoint", "the c10d rendezvous address must be host:port (a free port on one of the machines, "
                f"reachable from all of them), got {self.rdzv_endpoint!r}")
        if ok("collective_timeout_s", "data_sleep_second") and self.collective_timeout_s < 2 * self.data_sleep_second:
            add("collective_timeout_s", f"must be at least twice data_sleep_second ({self.data_sleep_second:g}): the "
                f"ranks wait for data in rounds of one sleep that end in a collective; got {self.collective_timeout_s:g}")
        problems.raise_if_any()
        return self


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _is_fc_name(name: str, layers: int) -> bool:
    return name.startswith("fc_") and name[3:].isdigit() and int(name[3:]) < layers


def _parse_day(text: str) -> dt.date:
    if len(text) != 8 or not text.isdigit():
        raise ValueError(text)
    return dt.datetime.strptime(text, "%Y%m%d").date()


def next_day(day: str) -> str:
    return (_parse_day(day) + dt.timedelta(days=1)).strftime("%Y%m%d")
