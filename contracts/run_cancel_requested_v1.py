"""run-cancel-requested v1: an upstream system asks for a run to be cancelled.

Published on the requests topic with the same Kafka key as the request it cancels, so that
it is handled after that request and by the instance that owns its run.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from ._common import EVENT_TYPE_PREFIX, CorrelationId, Event, RequestId, Text
from .adf import AdfCancel
from .here import HereCancel
from .marquez import MarquezCancel

CancelOptions = Annotated[AdfCancel | MarquezCancel | HereCancel, Field(discriminator="system")]
"""Each system's cancel options, chosen by its ``system``; must match the run's."""


class RunCancelRequestedV1(Event):
    """Cancel the run that request ``request_id`` started (or stop it from starting)."""

    event_type: ClassVar[str] = EVENT_TYPE_PREFIX + "run.cancel-requested.v1"

    request_id: RequestId = Field(description="The run request whose run to cancel.")
    correlation_id: CorrelationId | None = None
    reason: Annotated[Text, Field(max_length=1024)] | None = Field(
        default=None, description="Why, for the record; not sent to the run API."
    )
    options: CancelOptions | None = Field(
        default=None, description="System-specific options; must match the run's system."
    )
