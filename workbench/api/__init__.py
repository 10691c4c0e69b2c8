"""The only surface the UI and the CLI import. Returns plain read models, dataclasses and DataFrames.

One module per subject; each imports only the ones before it in this list (no cycles):
base (engine, user) -> configs -> runs -> metrics -> checkpoints -> compare, lineage -> downloads.
"""

from workbench.config.io import ConfigError, FieldError
from workbench.store.metrics import Series
from workbench.store.models import ACTIVE, ENDED, CheckpointRead, EventRead, RunRead, RunStatus
from workbench.store.runs import RunNotFound
from workbench.tags import clean_tags
from workbench.runner.executor import ExecutorError
from workbench.store.schema import StoreSchemaError
from workbench.studies.options import StudyOptions
from workbench.store.studies import StudyRead
from workbench.api.base import (
    engine,
    store_location,
    DbRevision,
    db_current,
    db_upgrade,
    current_user,
)
from workbench.api.configs import (
    tasks,
    config_class,
    common_setting_names,
    not_used_settings,
    ignored_settings,
    default_config,
    presets,
    load_preset,
    validate_yaml,
    validate_file,
    validate_dict,
    to_yaml,
    to_dict,
    data_commands,
    default_config_yaml,
)
from workbench.api.runs import (
    launch_run,
    list_runs,
    get_run,
    run_status,
    runs_frame,
    run_statuses,
    METRIC_STATS,
    RunsTable,
    runs_table,
    Progress,
    progress,
    cancel_run,
    resume_run,
    delete_run,
    run_config,
    update_run_info,
    events,
    run_dir,
    log_tail,
    profile_summary,
    has_profile_summary,
    housekeeping,
    start_housekeeping,
    SyncResult,
    sync_run,
)
from workbench.api.metrics import (
    metric_keys,
    series,
    metric_summaries,
    metrics_since,
    points_after,
    overlay_series,
    pinned_metrics,
    set_pinned_metrics,
)
from workbench.api.checkpoints import (
    checkpoints,
    UnsafePath,
    safe_run_file,
    compare_checkpoint_tensors,
    compare_checkpoint_metrics,
    not_a_checkpoint_message,
    import_checkpoint,
    infer,
)
from workbench.api.compare import (
    compare_keys,
    EPOCH_KEYS,
    compare_series,
    compare_configs,
    compare_summary,
)
from workbench.api.lineage import (
    fork_run,
    children_of,
    forks_of,
    evaluate_checkpoint,
    evaluations_of,
)
from workbench.api.studies import (
    space_example,
    searchable_settings,
    suggest_ranges,
    check_study,
    start_study,
    list_studies,
    get_study,
    driver_running,
    StudyReport,
    study_report,
    cancel_study,
    resume_study,
    trial_config,
    promote,
    fork_best,
)
from workbench.api.downloads import (
    EXPORT_FORMATS,
    EXPORT_COLUMNS,
    STALE_TEMP_S,
    Download,
    temp_dir,
    checkpoint_source,
    checkpoint_download,
    inference_download,
    bundle_download,
    profile_trace_download,
    matching_keys,
    export_metrics,
    metrics_download,
)

# everything imported above is the api (submodule names included: harmless)
__all__ = [name for name in dir() if not name.startswith("_")]
