"""ADF's run statuses and what they mean in the bridge's state model."""

from __future__ import annotations

import json
from typing import Any

from contracts import RunState

from ..._http import json_duration_ms, json_time
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
        duration_ms=json_duration_ms(duration),
        updated_at=json_time(payload.get("lastUpdated")),
    )


def parameters_match(sent: dict[str, Any], stored: Any) -> bool:
    """Whether a run's parameters are the ones sent. ADF gives them back as strings
    (objects and arrays JSON-encoded, in whatever layout its serializer chose) and adds the
    pipeline's defaults, so every sent parameter must be there with an equal value; others
    may be."""
    if not isinstance(stored, dict):
        return not sent
    return all(name in stored and _same_value(value, stored[name]) for name, value in sent.items())


def _same_value(sent: Any, got: Any) -> bool:
    """A value sent, and one read back: equal as JSON, however it was written back."""
    if not isinstance(got, str):
        return _json_equal(sent, got)
    if isinstance(sent, str):
        return sent == got
    if isinstance(sent, bool) and got in ("True", "False"):  # .NET's spelling
        return sent == (got == "True")
    try:
        parsed = json.loads(got)
    except ValueError:
        return False
    return _json_equal(sent, parsed)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 are the same number, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
