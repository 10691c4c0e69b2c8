"""Studies: the `study` table and its CRUD. A study's trials are ordinary runs (run.study_id, run.trial_number);
Optuna's own records live in a journal file beside the runs (workbench.studies.optuna_io), not in this database."""

from __future__ import annotations

import time

from sqlalchemy import Engine, func, insert, update
from sqlmodel import select

from workbench.ids import new_run_id
from workbench.store.engine import by_id_or_prefix, session
from workbench.store.models import MetricSummary, Run, RunStatus, Study, StudyCreate, StudyRead, StudyStatus, StudyUpdate

__all__ = ["StudyCreate", "StudyNotFound", "StudyRead", "StudyStatus", "StudyUpdate", "create_study", "get_study", "list_studies", "update_study"]


class StudyNotFound(LookupError):
    pass


def create_study(engine: Engine, *, study_in: StudyCreate) -> StudyRead:
    row = Study(**study_in.model_dump(), id=new_run_id(), created_at=time.time())
    with engine.begin() as conn:
        conn.execute(insert(Study), [{**row.model_dump(), "status": str(row.status)}])
    return get_study(engine, study_id=row.id)


def get_study(engine: Engine, *, study_id: str) -> StudyRead:
    with session(engine) as s:
        row = by_id_or_prefix(s, Study, study_id, not_found=StudyNotFound, what="study")
        out = StudyRead.model_validate(row, from_attributes=True)
    out.trials = _trial_counts(engine, [out.id]).get(out.id, 0)
    out.best_value = _best_values(engine, [out.id]).get(out.id)
    return out


def list_studies(engine: Engine, *, limit: int = 200) -> list[StudyRead]:
    with session(engine) as s:
        rows = s.exec(select(Study).order_by(Study.created_at.desc()).limit(limit)).all()  # type: ignore[attr-defined]
        studies = [StudyRead.model_validate(r, from_attributes=True) for r in rows]
    counts = _trial_counts(engine, [st.id for st in studies])
    bests = _best_values(engine, [st.id for st in studies])
    for st in studies:
        st.trials = counts.get(st.id, 0)
        st.best_value = bests.get(st.id)
    return studies


def _best_values(engine: Engine, study_ids: list[str]) -> dict[str, float]:
    """Each study's best objective value over its completed trial runs (one query: run x study x metric_summary)."""
    if not study_ids:
        return {}
    q = (
        select(Run.study_id, Study.direction, MetricSummary.min, MetricSummary.max)
        .join(Study, Study.id == Run.study_id)  # type: ignore[arg-type]
        .join(MetricSummary, (MetricSummary.run_id == Run.id) & (MetricSummary.key == Study.objective))  # type: ignore[arg-type]
        .where(Run.study_id.in_(study_ids), Run.status == RunStatus.COMPLETED.value)  # type: ignore[union-attr]
    )
    best: dict[str, float] = {}
    with engine.connect() as conn:
        for study_id, direction, lo, hi in conn.execute(q):
            value = hi if direction == "maximize" else lo
            current = best.get(study_id)
            if current is None or (value > current if direction == "maximize" else value < current):
                best[study_id] = value
    return best


def _trial_counts(engine: Engine, study_ids: list[str]) -> dict[str, int]:
    if not study_ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(Run.study_id, func.count()).where(Run.study_id.in_(study_ids)).group_by(Run.study_id))  # type: ignore[union-attr,attr-defined]
        return {study_id: n for study_id, n in rows}


def update_study(engine: Engine, *, study_id: str, study_in: StudyUpdate) -> None:
    values = study_in.model_dump(exclude_unset=True)
    if "status" in values and values["status"] is not None:
        values["status"] = str(values["status"])
    with engine.begin() as conn:
        conn.execute(update(Study).where(Study.id == study_id).values(**values))  # type: ignore[arg-type]
