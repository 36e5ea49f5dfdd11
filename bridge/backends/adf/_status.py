"""ADF's run statuses and what they mean in the bridge's state model."""

from __future__ import annotations

from typing import Any

from contracts import RunState

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
    return RunStatus(
        run_id=str(payload.get("runId")),
        state=STATUS_TO_STATE.get(status),
        backend_status=status,
        message=payload.get("message") or None,
    )
