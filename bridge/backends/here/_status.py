"""A HERE activation's state, from its operation and the job it started.

The run the bridge reports is the activate operation (its id is the run id). While the
operation is accepted or being processed the run is QUEUED; a failed operation is FAILED
with its message; once it succeeded, its job's state says the rest (starting is still
QUEUED). A job carries no operation id: the job of an activation is the first created at
or after the operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts import RunState

from ..._http import json_time
from .._base import RunStatus

JOB_TO_STATE: dict[str, RunState] = {
    "starting": RunState.QUEUED,
    "running": RunState.RUNNING,
    "completed": RunState.SUCCEEDED,
    "failed": RunState.FAILED,
    "canceled": RunState.CANCELLED,
}
OPERATION_PENDING = frozenset({"accepted", "being_processed"})


def job_of(operation: dict[str, Any], jobs: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The first job created at or after the operation."""
    started = json_time(operation.get("created"))
    if started is None:
        return None
    created = ((json_time(job.get("created")), job) for job in jobs)
    after = [(when, job) for when, job in created if when is not None and when >= started]
    return min(after, key=lambda pair: pair[0], default=(None, None))[1]


def run_status(operation: dict[str, Any], job: dict[str, Any] | None) -> RunStatus:
    """The run (the activate operation) as the bridge sees it."""
    run_id = str(operation.get("id"))
    state = str(operation.get("state"))
    if state in OPERATION_PENDING:
        return RunStatus(run_id, RunState.QUEUED, f"operation {state}")
    if state == "failed":
        message = operation.get("message")
        return RunStatus(
            run_id,
            RunState.FAILED,
            "operation failed",
            message=message if isinstance(message, str) and message else "the activation failed",
            ended_at=json_time(operation.get("updated") or operation.get("created")),
        )
    if state != "succeeded":
        return RunStatus(run_id, None, f"operation {state}")
    if job is None:
        return RunStatus(run_id, RunState.QUEUED, "operation succeeded")
    job_state = str(job.get("state"))
    mapped = JOB_TO_STATE.get(job_state)
    created = json_time(job.get("created"))
    ended = json_time(job.get("updated")) if mapped is not None and mapped.is_terminal else None
    details = {
        name: value
        for name in ("id", "loggingUrl", "pipelineUIUrl")
        if isinstance(value := job.get(name), str) and value
    }
    if "id" in details:
        details["jobId"] = details.pop("id")
    return RunStatus(
        run_id,
        mapped,
        job_state,
        started_at=created if mapped is not RunState.QUEUED else None,
        ended_at=ended,  # the duration follows from the two (states.steps)
        updated_at=json_time(job.get("updated")),
        details=details or None,
    )
