"""Ray's records of actors, dead and pending ones included: why a run's actor died (the `lost` message) and whether a
submitted actor's creation has reached the cluster.

ray.util.state is the public way to read them; it is served by the dashboard (`ray[default]`, the default of
`ray start`). A cluster without it (the `ray` extra installs plain `ray`; the test clusters run no dashboard) has no
public call that reads a dead actor's record or a pending one's state, so the GCS accessor in ray._private.state is
read instead. Everything else the executor asks Ray goes through public calls (ray.nodes, ray.get_actor,
ray.util.placement_group and placement_group_table).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActorRecord:
    """Ray's record of one actor, dead ones included, as the two ways of reading it (below) both give it."""

    state: str  # DEPENDENCIES_UNREADY, PENDING_CREATION, ALIVE, RESTARTING, DEAD
    cause: str | None  # Ray's error message, once it is dead
    where: str  # "node <IP or Ray node id>"
    pid: int | None
    start: float  # for the newest of several records of one name


_state_api: bool | None = None  # does this cluster serve Ray's public state API? (found out once per process)


def actor_records(*, name: str | None = None, actor_id: str | None = None) -> list[ActorRecord]:
    """Ray's records of the actors of that name or id, dead ones included: through the public state API where the
    cluster serves it, else the GCS accessor (module docstring). An error here says nothing rather than guesses:
    callers treat [] as "Ray has no record"."""
    global _state_api
    if _state_api is not False:
        try:
            from ray.util.state import list_actors

            found = list_actors(
                filters=[("name", "=", name)] if name is not None else [("actor_id", "=", actor_id)],
                detail=True, timeout=5, raise_on_missing_output=False,
            )  # fmt: skip
            _state_api = True
            return [_record_of_state(a) for a in found]
        except Exception:
            if _state_api is None:
                _state_api = False  # no dashboard: the private accessor from now on
            else:
                return []
    try:
        from ray._private import state  # no public call reads this without the dashboard

        if actor_id is not None:
            one = state.actors(actor_id=actor_id)
            infos = [one] if one else []
        else:
            infos = [a for a in state.actors().values() if a.get("Name") == name]
    except Exception:  # the private API moved
        return []
    return [_record_of_gcs(a) for a in infos]


def _record_of_state(actor: Any) -> ActorRecord:
    cause = getattr(actor, "death_cause", None) or {}
    said = next((c.get("error_message") for c in cause.values() if isinstance(c, dict) and c.get("error_message")), None)
    return ActorRecord(
        state=str(actor.state), cause=said, where=f"node {(actor.node_id or '?')[:12]}",
        pid=actor.pid, start=0.0,
    )  # fmt: skip


def _record_of_gcs(info: dict[str, Any]) -> ActorRecord:
    said = re.findall(r'error_message: "((?:[^"\\]|\\.)*)"', str(info.get("DeathCause") or ""))
    return ActorRecord(
        state=str(info.get("State")), cause=said[0] if said else None, where=f"node {(info.get('Address') or {}).get('IPAddress', '?')}",
        pid=info.get("Pid"), start=float(info.get("StartTime") or 0),
    )  # fmt: skip


def actor_info(name: str) -> ActorRecord | None:
    """Ray's record of the newest actor of that name, dead ones included; None if Ray has none (never submitted, or
    a cluster restarted since)."""
    records = actor_records(name=name)
    return max(records, key=lambda r: r.start) if records else None


def death_cause(info: ActorRecord | None) -> str:
    """Why Ray says the actor died (its worker process died, its node died, it was killed), as best Ray tells."""
    if info is None:
        return "Ray no longer knows it"
    return f"{info.cause or 'no reason given'} ({info.where}, pid {info.pid})"


def wait_until_ray_holds(actor: Any, timeout: float = 10.0) -> None:
    """Return once the cluster (not this process) holds the actor's creation: the submitter may be a CLI that exits
    right after, without a goodbye to Ray (cli.main ends with os._exit), and a creation still on its way would be lost.
    (Registering a named actor is synchronous, so `ray.get_actor` finds it at once; only the actor's record says
    whether its creation has left this process: see actor_records.)"""
    deadline = time.time() + timeout
    actor_id = actor._actor_id.hex()
    while time.time() < deadline:
        records = actor_records(actor_id=actor_id)  # [] until the GCS has it, or when it cannot be read at all
        if records and records[0].state not in ("None", "DEPENDENCIES_UNREADY"):
            return
        time.sleep(0.02)
