"""Marquez's run states and what they mean in the bridge's state model."""

from __future__ import annotations

from typing import Any

from contracts import RunState

from ..._http import json_duration_ms, json_time
from .._base import RunStatus

#: Marquez records runs that jobs execute elsewhere: NEW until a job starts it.
STATUS_TO_STATE: dict[str, RunState] = {
    "NEW": RunState.QUEUED,
    "RUNNING": RunState.RUNNING,
    "COMPLETED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "ABORTED": RunState.CANCELLED,
}


def run_status(payload: dict[str, Any]) -> RunStatus:
    """A Marquez run as the bridge sees it; an unknown state (OTHER) keeps its raw value."""
    state = str(payload.get("state"))
    duration = payload.get("durationMs")
    return RunStatus(
        run_id=str(payload.get("id")),
        state=STATUS_TO_STATE.get(state),
        backend_status=state,
        started_at=json_time(payload.get("startedAt")),
        ended_at=json_time(payload.get("endedAt")),
        duration_ms=json_duration_ms(duration),
        updated_at=json_time(payload.get("updatedAt")),
    )
