"""Map a PaddleRec `config_online.yaml` (runner / hyper_parameters / table_parameters) onto CtrStreamConfig.

Every key ends up in exactly one place of the report: mapped to a field, mapped with a note, ignored (meaningless
here, e.g. use_gloo), unsupported (meaningful but not honoured, e.g. pipe_command - the workbench reads the slot
format itself and never runs a shell command from a config) or unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workbench.tasks.ctr_stream.config import CtrStreamConfig

RUNNER_FIELDS = {
    "train_data_dir": "train_data_dir", "train_batch_size": "train_batch_size", "model_save_path": "save_model_path",
    "save_model_path": "save_model_path", "checkpoint_per_pass": "checkpoint_per_pass",
    "save_delta_frequency": "save_delta_frequency", "data_donefile": "data_donefile",
    "data_sleep_second": "data_sleep_second", "split_interval": "split_interval", "split_per_pass": "split_per_pass",
    "start_day": "start_day", "end_day": "end_day", "prefetch": "prefetch",
    "is_data_hourly_placed": "is_data_hourly_placed", "train_thread_num": "train_thread_num",
    "print_interval": "print_freq", "dump_fields": "dump_fields", "dump_param": "dump_param",
    "dump_fields_path": "dump_fields_path", "seed": "seed",
}
RUNNER_IGNORED = {
    "use_gloo": "one training process: no gloo barrier", "use_auc": "AUC is always computed",
    "epochs": "a stream sees each pass once", "reader_type": "the workbench keeps each pass in memory (InMemoryDataset)",
    "dataset_debug": "no effect", "split_file_list": "one worker reads every file", "shuffle_thread_num": "no effect",
    "train_reader_path": "the slot format is read by the workbench", "infer_batch_size": "offline inference only",
    "infer_thread_num": "offline inference only", "infer_reader_path": "offline inference only",
    "infer_data_dir": "offline inference only (use `evaluate` on a checkpoint)",
    "infer_load_path": "offline inference only", "infer_start_epoch": "offline inference only",
    "infer_end_epoch": "offline inference only", "use_inference": "base/delta models are always saved",
    "infer_dump_fields_dir": "offline inference only",
}
ACCESSOR_FIELDS = ("accessor_class", "fea_dim", "embedx_dim", "embedx_threshold")
CTR_PARAM_FIELDS = ("nonclk_coeff", "click_coeff", "base_threshold", "delta_threshold", "delta_keep_days",
                    "show_click_decay_rate", "delete_threshold", "delete_after_unseen_days", "zero_init", "show_scale")
SGD_FIELDS = ("learning_rate", "initial_g2sum", "initial_range", "weight_bounds", "beta1_decay_rate",
              "beta2_decay_rate", "ada_epsilon")
LEARNERS = {"adam": "adam", "sgd": "sgd", "adagrad": "adagrad", "rmsprop": "rmsprop"}


@dataclass
class ImportReport:
    config: dict[str, Any] = field(default_factory=lambda: {"task": "ctr_stream"})
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # problems of the mapped config itself (validation)
    emb_dims: list[tuple[str, int]] = field(default_factory=list)  # hyper_parameters' embedding sizes, checked last

    def to_yaml(self, source: str) -> str:
        """The mapped config as YAML, preceded by the report as comments."""
        head = [f"# imported from PaddleRec config {source} by `workbench data import-paddlerec-config`"]
        for title, items in (("notes", self.notes), ("unsupported (not honoured)", self.unsupported),
                             ("ignored (no meaning here)", self.ignored), ("unknown keys", self.unknown),
                             ("problems", self.errors)):
            if items:
                head.append(f"# {title}:")
                head += [f"#   - {item}" for item in items]
        return "\n".join(head) + "\n" + yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True)


def import_paddlerec_file(path: str | Path) -> ImportReport:
    p = Path(path)
    data = yaml.safe_load(p.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{p}: not a PaddleRec config (expected a mapping with runner / hyper_parameters)")
    return import_paddlerec(data)


def import_paddlerec(data: dict[str, Any]) -> ImportReport:
    r = ImportReport()
    for section, value in data.items():
        if section == "runner":
            _runner(r, value or {})
        elif section == "hyper_parameters":
            _hyper(r, value or {})
        elif section == "table_parameters":
            _tables(r, value or {})
        else:
            r.unknown.append(section)
    embedx = int(r.config.get("embedx_dim", CtrStreamConfig.model_fields["embedx_dim"].default))
    r.errors += [f"{where}={d} does not match 1 + embedx_dim = {1 + embedx}" for where, d in r.emb_dims if d != 1 + embedx]
    try:
        CtrStreamConfig.model_validate(r.config)
    except ValidationError as exc:
        r.errors += [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return r


def _runner(r: ImportReport, runner: dict[str, Any]) -> None:
    dumps = [k for k in ("need_train_dump", "need_infer_dump") if runner.get(k)]
    for key, value in runner.items():
        where = f"runner.{key}"
        if key in ("need_train_dump", "need_infer_dump"):
            continue
        if key == "train_data_dir" and str(value).startswith(("afs:", "hdfs:")):
            r.unsupported.append(f"{where}={value}: afs/hdfs paths are not supported; copy or mount the data locally")
        elif key == "data_donefile" and value is None:
            continue
        elif key in RUNNER_FIELDS:
            r.config[RUNNER_FIELDS[key]] = value
        elif key == "pipe_command":
            r.unsupported.append(f"{where}={value!r}: the workbench never runs a shell command from a config; it "
                                 "reads the slot format ([ins_id<TAB>]label:1 feasign:slot ...) itself")
        elif key == "fs_client":
            r.unsupported.append(f"{where}: afs/hdfs clients are not supported (local paths only)")
        elif key == "use_gpu":
            if value:
                r.config["device"] = "cuda"
                r.notes.append(f"{where}=True -> device: cuda (the sparse table stays in CPU memory)")
        elif key == "sync_mode":
            r.notes.append(f"{where}={value}: training is synchronous in one process (PaddleRec: {value} "
                           "parameter servers); results differ from Hogwild updates")
        elif key == "train_dump_fields_dir" and "need_train_dump" in dumps:
            r.config["dump_fields_path"] = value
        elif key in RUNNER_IGNORED or key == "train_dump_fields_dir":
            r.ignored.append(f"{where}: {RUNNER_IGNORED.get(key, 'only used with need_train_dump')}")
        else:
            r.unknown.append(where)
    if dumps:
        r.config["dump_phase"] = "train" if "need_train_dump" in dumps else "infer"
        if "dump_fields" not in runner:
            r.notes.append(f"runner.{dumps[0]}: slot_dnn defines no dump fields; set dump_fields (click, predict, "
                           "concat, fc_0, ...) to dump anything")


def _hyper(r: ImportReport, hyper: dict[str, Any]) -> None:
    for key, value in hyper.items():
        where = f"hyper_parameters.{key}"
        if key == "optimizer":
            for okey, ovalue in (value or {}).items():
                if okey == "class":
                    learner = LEARNERS.get(str(ovalue).lower())
                    if learner is None:
                        r.unsupported.append(f"{where}.class={ovalue}: the dense part trains with adam, sgd, adagrad "
                                             "or rmsprop")
                    else:
                        r.config["learner"] = learner
                elif okey == "learning_rate":
                    r.config["learning_rate"] = float(ovalue)
                    if float(ovalue) < 1e-4:
                        r.notes.append(f"{where}.learning_rate={ovalue}: tuned for asynchronous updates from many "
                                       "threads; synchronous training usually wants about 1e-3")
                elif okey == "strategy":
                    r.ignored.append(f"{where}.strategy: training is synchronous")
                else:
                    r.unknown.append(f"{where}.{okey}")
        elif key in ("emb_dim", "sparse_feature_dim"):
            r.notes.append(f"{where}={value}: the network sees 1 + embedx_dim values per feature; checked against "
                           "embedx_dim")
            r.emb_dims.append((where, int(value)))
        elif key == "slot_num":
            r.config["slot_num"] = int(value)
        elif key in ("layer_sizes", "adam_d2sum"):
            r.config[key] = value
        elif key in ("dict_dim", "distributed_embedding"):
            r.ignored.append(f"{where}: the sparse table grows with the data")
        else:
            r.unknown.append(where)


def _tables(r: ImportReport, tables: dict[str, Any]) -> None:
    names = list(tables)
    for extra in names[1:]:
        r.unsupported.append(f"table_parameters.{extra}: one sparse table (the embedding) is supported")
    if not names:
        return
    prefix = f"table_parameters.{names[0]}"
    for key, value in (tables[names[0]] or {}).items():
        if key in ("table_class", "shard_num"):
            r.config[key] = value
        elif key == "accessor":
            _accessor(r, value or {}, f"{prefix}.accessor")
        else:
            r.unknown.append(f"{prefix}.{key}")


def _accessor(r: ImportReport, acc: dict[str, Any], prefix: str) -> None:
    for key, value in acc.items():
        where = f"{prefix}.{key}"
        if key in ACCESSOR_FIELDS:
            r.config[key] = value
        elif key in ("embed_sgd_param", "embedx_sgd_param"):
            r.config[key] = _sgd(r, value or {}, where)
        elif key == "ctr_accessor_param":
            for ckey, cvalue in (value or {}).items():
                if ckey in CTR_PARAM_FIELDS:
                    r.config[ckey] = cvalue
                elif ckey == "ssd_unseenday_threshold":
                    r.ignored.append(f"{where}.{ckey}: no SSD table here (MemorySparseTable)")
                else:
                    r.unknown.append(f"{where}.{ckey}")
        elif key == "table_accessor_save_param":
            items = value if isinstance(value, list) else [value or {}]
            for item in items:
                for skey in ("converter", "deconverter"):
                    text = str(item.get(skey) or "").strip()
                    if text in ("", "none"):
                        r.config[skey] = "none"
                    elif text == "gzip":
                        r.config[skey] = "gzip"
                    else:
                        r.unsupported.append(f"{where}.{skey}={text!r}: a shell command; built-in formats are "
                                             "none and gzip")
                r.ignored += [f"{where}.{k}: every save mode is always written" for k in item if k in ("num", "param")]
        else:
            r.unknown.append(where)
    if r.config.get("accessor_class") not in (None, "SparseAccessor", "CtrCommonAccessor"):
        r.unsupported.append(f"{prefix}.accessor_class={r.config['accessor_class']}: SparseAccessor or "
                             "CtrCommonAccessor; kept SparseAccessor")
        r.config["accessor_class"] = "SparseAccessor"


def _sgd(r: ImportReport, param: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in param.items():
        if key == "name":
            out["name"] = value
        elif key in ("adagrad", "adam", "naive"):
            for pkey, pvalue in (value or {}).items():
                if pkey in SGD_FIELDS:
                    out[pkey] = pvalue
                else:
                    r.unknown.append(f"{where}.{key}.{pkey}")
        else:
            r.unknown.append(f"{where}.{key}")
    if out.get("name") not in (None, "SparseAdaGradSGDRule", "StdAdaGradSGDRule", "SparseAdamSGDRule"):
        r.unsupported.append(f"{where}.name={out['name']}: supported rules are SparseAdaGradSGDRule, "
                             "StdAdaGradSGDRule and SparseAdamSGDRule; kept SparseAdaGradSGDRule")
        out["name"] = "SparseAdaGradSGDRule"
    return out
