"""run-requested v1: an upstream system asks for a run."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from ._common import EVENT_TYPE_PREFIX, CorrelationId, Event, RequestId, TargetName
from .adf import AdfRun
from .here import HereRun
from .marquez import MarquezRun

RunSpec = Annotated[AdfRun | MarquezRun | HereRun, Field(discriminator="system")]
"""Each system's part, chosen by its ``system``."""


class RunRequestedV1(Event):
    """Start one run on a configured target. ``request_id`` is the idempotency key."""

    event_type: ClassVar[str] = EVENT_TYPE_PREFIX + "run.requested.v1"

    request_id: RequestId = Field(
        description="Identifies the request in every output, as sent (canonical lowercase "
        "UUID); meant as its idempotency key."
    )
    target: TargetName
    run: RunSpec = Field(description="The system-specific part; must match the target's system.")
    correlation_id: CorrelationId | None = None
