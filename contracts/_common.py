"""Types shared by several contracts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_PREFIX = "org.runbridge."

TargetName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Name of a target in the bridge's own configuration.",
    ),
]
CorrelationId = Annotated[str, Field(min_length=1, max_length=256)]


class System(StrEnum):
    """The run APIs the bridge can call."""

    ADF = "adf"


class RunState(StrEnum):
    """A run's state, the same for every system.

    REJECTED means the request never became a run: it was invalid or the run API refused it.
    UNKNOWN means the bridge could not learn whether the run API started a run (its answer
    was lost, e.g. a timeout after sending); ``reason`` says what happened.
    """

    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunState.REJECTED, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


class Contract(BaseModel):
    """Base of every contract model: strict, so that a misspelt option fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Event(Contract):
    """The data of one CloudEvents type; ``event_type`` carries the version."""

    event_type: ClassVar[str]
