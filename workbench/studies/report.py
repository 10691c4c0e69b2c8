"""What the Study page and `workbench study show` display, as plain frames built from the Optuna study.

Built from one `get_trials(deepcopy=False)` read per refresh: a study of thousands of trials must not rebuild a
parameter table trial by trial through the storage (optuna#4890 took 1.5 h that way).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from workbench.studies.driver import ERROR_ATTR, RUN_ATTR

if TYPE_CHECKING:
    import pandas as pd

TRIAL_COLUMNS = ["number", "state", "value", "run_id", "duration_s", "error"]


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per trial: number, state, value, run_id, duration_s, error, then one `params.<path>` column each."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value if t.value is not None else (_last(t.intermediate_values) if t.state.name == "PRUNED" else None),
            "run_id": t.user_attrs.get(RUN_ATTR),
            "duration_s": duration,
            "error": t.user_attrs.get(ERROR_ATTR),
        }
        row.update({f"params.{k}": v for k, v in t.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame if not frame.empty else pd.DataFrame(columns=TRIAL_COLUMNS)


def _last(values: dict[int, float]) -> float | None:
    return values[max(values)] if values else None


def intermediate_frame(study: Any) -> pd.DataFrame:
    """Long frame of every reported validation: number, state, validation (1, 2, ...), value."""
    import pandas as pd

    rows = [
        {"number": t.number, "state": t.state.name.lower(), "validation": step, "value": value}
        for t in study.get_trials(deepcopy=False)
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pd.DataFrame(rows, columns=["number", "state", "validation", "value"])


def best_so_far(trials: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Completed trials in number order with the best value up to each (the optimisation history)."""
    done = trials[trials["state"] == "complete"].sort_values("number")[["number", "value"]].copy()
    done["best"] = done["value"].cummax() if direction == "maximize" else done["value"].cummin()
    return done


def best_trial(trials: pd.DataFrame, direction: str) -> dict[str, Any] | None:
    done = trials[(trials["state"] == "complete") & trials["value"].notna()]
    if done.empty:
        return None
    row = done.loc[done["value"].idxmax() if direction == "maximize" else done["value"].idxmin()]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()}


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA), or {} while fewer than two trials completed or nothing varies."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not any(len({repr(t.params.get(k)) for t in complete}) > 1 for k in complete[0].params):
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):  # e.g. a space that changed between trials, or constant values
        return {}
