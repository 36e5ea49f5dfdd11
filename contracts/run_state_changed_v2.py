"""run-state-changed v2: a run (or a request that never became one) changed state.

Why a v2: v1's schema is closed (``additionalProperties: false``), so the fields that
following a run needs (times, whether the state is terminal, the backend's message, the
candidates of an undecided create) could not be added without breaking a listener that
validates against it. v2 carries them, and is open: a listener must ignore fields it does
not know, so later additions stay compatible. v1 stays readable (``EVENT_TYPES``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field

from ._common import (
    EVENT_TYPE_PREFIX,
    CorrelationId,
    Event,
    RequestId,
    RunState,
    System,
    Text,
    made_printable,
)
from .run_state_changed_v1 import MESSAGE_LIMIT, Reason


class RunStateChangedV2(Event):
    """One observed change of a run's state, in order per request.

    REJECTED and UNKNOWN about a request that never became a run carry a ``reason`` and no
    ``run_id``. A listener that waits for a request's end waits for ``terminal``.
    """

    model_config = ConfigDict(extra="ignore")
    event_type: ClassVar[str] = EVENT_TYPE_PREFIX + "run.state-changed.v2"

    request_id: RequestId
    correlation_id: CorrelationId | None = None
    target: str | None = Field(default=None, description="As given in the request.")
    system: System | None = None
    run_id: str | None = Field(default=None, description="The run API's own id for the run.")
    state: RunState
    previous_state: RunState | None = Field(
        default=None, description="The state before this one, as last published."
    )
    terminal: bool = Field(
        description="No further state follows: the run ended, never became one, or the "
        "bridge stopped following it (see reason)."
    )
    backend_status: str | None = Field(
        default=None,
        description="The run API's own status word, raw, e.g. ADF's 'InProgress'.",
    )
    backend_message: Annotated[str, made_printable(MESSAGE_LIMIT)] | None = Field(
        default=None, max_length=MESSAGE_LIMIT, description="The run API's message, if any."
    )
    reason: Reason | None = Field(
        default=None, description="Why, when the bridge decided the state rather than observed it."
    )
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = Field(default=None, ge=0)
    details: dict[str, Text] | None = Field(
        default=None,
        description="What else identifies the run at the run API once it is known, from "
        "RUNNING on (HERE: jobId, loggingUrl, pipelineUIUrl).",
    )
    candidates: list[str] | None = Field(
        default=None,
        description="UNKNOWN after an unclear create: the runs that may be this request's.",
    )
    at: datetime = Field(description="When the bridge observed or decided the change.")
