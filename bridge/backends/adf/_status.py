"""ADF's run statuses and what they mean in the bridge's state model."""

from __future__ import annotations

import json
from typing import Any

from contracts import RunState

from ..._http import json_time
from .._base import RunStatus

#: Every status ADF documents (Canceling with one l, Cancelled with two).
STATUS_TO_STATE: dict[str, RunState] = {
    "Queued": RunState.QUEUED,
    "InProgress": RunState.RUNNING,
    "Canceling": RunState.CANCELLING,
    "Succeeded": RunState.SUCCEEDED,
    "Failed": RunState.FAILED,
    "Cancelled": RunState.CANCELLED,
}


def run_status(payload: dict[str, Any]) -> RunStatus:
    """A PipelineRun as the bridge sees it. A status ADF does not document keeps its raw
    value and no state: the caller logs it and keeps following the run."""
    status = str(payload.get("status"))
    duration = payload.get("durationInMs")
    return RunStatus(
        run_id=str(payload.get("runId")),
        state=STATUS_TO_STATE.get(status),
        backend_status=status,
        message=payload.get("message") or None,
        started_at=json_time(payload.get("runStart")),
        ended_at=json_time(payload.get("runEnd")),
        duration_ms=duration if isinstance(duration, int) and duration >= 0 else None,
        updated_at=json_time(payload.get("lastUpdated")),
    )


def parameters_match(sent: dict[str, Any], stored: Any) -> bool:
    """Whether a run's parameters are the ones sent. ADF gives them back as strings
    (objects and arrays JSON-encoded) and adds the pipeline's defaults, so every sent
    parameter must be there with an equal value; others may be."""
    if not isinstance(stored, dict):
        return not sent
    for name, value in sent.items():
        if name not in stored:
            return False
        got = stored[name]
        if not isinstance(got, str):
            got = json.dumps(got, separators=(",", ":"))
        if got not in _spellings(value):
            return False
    return True


def _spellings(value: Any) -> set[str]:
    """The ways ADF may write a value back as a string."""
    if isinstance(value, str):
        return {value}
    compact = json.dumps(value, separators=(",", ":"))
    spellings = {compact, json.dumps(value)}
    if isinstance(value, bool):
        spellings |= {str(value), str(value).lower()}
    elif isinstance(value, int | float):
        spellings.add(str(value))
    return spellings
