"""Streaming CTR training with a PaddleRec-faithful sparse feature table (issue 3; seed 001; docs/ctr_stream.md).

Importing this package does not import torch: the registry and the config form only need the schema.
"""

from workbench.tasks.ctr_stream.config import CtrStreamConfig
from workbench.tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="ctr_stream",
    title="Streaming CTR (PaddleRec CPUPS)",
    description="slot_dnn trained pass by pass on a time-sliced click stream, with PaddleRec's sparse table: "
    "show/click statistics, embedx admission, AdaGrad, daily shrink, and checkpoint/delta/base/batch models.",
    config_cls=CtrStreamConfig,
    run_target="workbench.tasks.ctr_stream.train:run",
    monitor=lambda cfg: ("infer/auc", "max"),
    data_commands={
        "synth-ctr": "workbench.tasks.ctr_stream.cli:synth_ctr",
        "criteo-to-slots": "workbench.tasks.ctr_stream.cli:criteo_to_slots",
        "import-paddlerec-config": "workbench.tasks.ctr_stream.cli:import_paddlerec_config",
    },
    evaluate_target="workbench.tasks.ctr_stream.train:evaluate",
    overlays={
        "AUC per pass: infer (before training on it) vs train": ("infer/auc", "train/auc"),
        "COPC (predicted / actual clicks) per pass": ("infer/copc", "train/copc"),
        "Sparse table: rows, rows with embedx": ("table/rows", "table/rows_with_embedx"),
        "Sparse table: created vs deleted (shrink)": ("table/created", "table/deleted"),
    },
    check_target="workbench.tasks.ctr_stream.predict:check_state",
    infer_target="workbench.tasks.ctr_stream.predict:infer",
    infer_input="a slot-format file ([ins_id<TAB>]label:1 feasign:slot ... per line)",
)

__all__ = ["SPEC", "CtrStreamConfig"]
