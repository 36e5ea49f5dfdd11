"""Marquez's run states and what they mean in the bridge's state model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts import RunState

from .._base import RunStatus

#: Marquez records runs that jobs execute elsewhere: NEW until a job starts it.
STATUS_TO_STATE: dict[str, RunState] = {
    "NEW": RunState.QUEUED,
    "RUNNING": RunState.RUNNING,
    "COMPLETED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "ABORTED": RunState.CANCELLED,
}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def run_status(payload: dict[str, Any]) -> RunStatus:
    """A Marquez run as the bridge sees it; an unknown state (OTHER) keeps its raw value."""
    state = str(payload.get("state"))
    duration = payload.get("durationMs")
    return RunStatus(
        run_id=str(payload.get("id")),
        state=STATUS_TO_STATE.get(state),
        backend_status=state,
        started_at=_time(payload.get("startedAt")),
        ended_at=_time(payload.get("endedAt")),
        duration_ms=duration if isinstance(duration, int) and duration >= 0 else None,
        updated_at=_time(payload.get("updatedAt")),
    )
