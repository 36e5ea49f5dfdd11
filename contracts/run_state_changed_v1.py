"""run-state-changed v1: a run (or a request that never became one) changed state."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import Field

from ._common import (
    EVENT_TYPE_PREFIX,
    Contract,
    CorrelationId,
    Event,
    RequestId,
    RunState,
    System,
    made_printable,
)

MESSAGE_LIMIT = 4096


class Reason(Contract):
    code: str = Field(description="Stable machine-readable code, e.g. 'unknown-target'.")
    message: Annotated[str, made_printable(MESSAGE_LIMIT)] = Field(
        max_length=MESSAGE_LIMIT,
        description="Human-readable detail; control characters are escaped, long text is cut.",
    )


class RunStateChangedV1(Event):
    """REJECTED and UNKNOWN carry the reason and no run id."""

    event_type: ClassVar[str] = EVENT_TYPE_PREFIX + "run.state-changed.v1"

    request_id: RequestId
    correlation_id: CorrelationId | None = None
    target: str | None = Field(default=None, description="As given in the request.")
    system: System | None = None
    run_id: str | None = None
    state: RunState
    previous_state: RunState | None = None
    backend_status: str | None = Field(
        default=None, description="The run API's own status word, e.g. ADF's 'InProgress'."
    )
    reason: Reason | None = None
    at: datetime
