"""run-created v1: the run API accepted the request and gave a run id."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from ._common import EVENT_TYPE_PREFIX, CorrelationId, Event, RequestId, System, TargetName
from .run_requested_v1 import RunSpec


class RunCreatedV1(Event):
    event_type: ClassVar[str] = EVENT_TYPE_PREFIX + "run.created.v1"

    request_id: RequestId
    correlation_id: CorrelationId | None = None
    target: TargetName
    system: System
    run_id: str = Field(min_length=1, description="The run API's own id for the run.")
    created_at: datetime
    run: RunSpec = Field(description="What was asked, as in the request.")
