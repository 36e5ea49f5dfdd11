"""Run Bridge's versioned event contracts.

Each event type and version is one module; the version is part of the CloudEvents
``type`` (``org.runbridge.run.requested.v1``). An incompatible change makes a new module
and a new type; the old one stays readable.
"""

from __future__ import annotations

from ._common import EVENT_TYPE_PREFIX, Event, RunState, System
from .adf import AdfCancel, AdfRun
from .dead_letter_v1 import DeadLetterHeaders
from .here import HereCancel, HereRun
from .marquez import MarquezCancel, MarquezRun
from .run_cancel_requested_v1 import CancelOptions, RunCancelRequestedV1
from .run_created_v1 import RunCreatedV1
from .run_requested_v1 import RunRequestedV1, RunSpec
from .run_state_changed_v1 import Reason, RunStateChangedV1
from .run_state_changed_v2 import RunStateChangedV2

#: Every event type the project defines, by CloudEvents ``type``.
EVENT_TYPES: dict[str, type[Event]] = {
    model.event_type: model
    for model in (
        RunRequestedV1,
        RunCancelRequestedV1,
        RunCreatedV1,
        RunStateChangedV1,
        RunStateChangedV2,
    )
}

#: The event types the bridge accepts on its request topic.
Request = RunRequestedV1 | RunCancelRequestedV1
"""What the bridge accepts on its request topic."""
REQUEST_TYPES: dict[str, type[Request]] = {
    model.event_type: model for model in (RunRequestedV1, RunCancelRequestedV1)
}

__all__ = [
    "EVENT_TYPES",
    "EVENT_TYPE_PREFIX",
    "REQUEST_TYPES",
    "AdfCancel",
    "AdfRun",
    "CancelOptions",
    "DeadLetterHeaders",
    "Event",
    "HereCancel",
    "HereRun",
    "MarquezCancel",
    "MarquezRun",
    "Reason",
    "Request",
    "RunCancelRequestedV1",
    "RunCreatedV1",
    "RunRequestedV1",
    "RunSpec",
    "RunState",
    "RunStateChangedV1",
    "RunStateChangedV2",
    "System",
]
