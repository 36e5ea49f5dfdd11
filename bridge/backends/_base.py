"""What every run API backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol, TypeVar

from contracts import CancelOptions, RunSpec, RunState, System

_Run = TypeVar("_Run")


def own_run(run: RunSpec, kind: type[_Run]) -> _Run:
    """``run`` as the backend's own kind of run. The router sends each system to its own
    backend, so another kind here is a bug, not bad input."""
    if not isinstance(run, kind):
        raise TypeError(f"a {kind.__name__} backend was given a {run.system} run")
    return run


@dataclass(frozen=True)
class CreatedRun:
    run_id: str


@dataclass(frozen=True)
class RunStatus:
    """A run as the backend reports it."""

    run_id: str
    state: RunState | None
    """None when the backend's status is one the bridge does not know: it is kept raw."""
    backend_status: str
    message: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    updated_at: datetime | None = None
    details: Mapping[str, str] | None = None
    """What else identifies the run at the run API, once known (HERE: the job's id and
    its logging and UI links)."""


@dataclass(frozen=True)
class FollowedRun:
    """A run the bridge follows, with what a backend may need to find it cheaply."""

    run_id: str
    run: RunSpec


@dataclass(frozen=True)
class Poll:
    """The statuses of followed runs that changed since the last poll.

    ``through`` is the moment the answer is complete up to: the next poll asks for
    changes after it (with an overlap the backend chooses). ``reads`` counts the read
    calls spent, for the read budget and the metrics.
    """

    statuses: Sequence[RunStatus]
    through: datetime
    reads: int


class Backend(Protocol):
    """One configured target of one run API. Every call is a single attempt: retrying is
    the caller's decision, because only the caller knows whether a call may be repeated."""

    system: ClassVar[System]
    status_words: ClassVar[Mapping[RunState, str]]
    """The run API's own word for each state it has, e.g. ADF's ``InProgress``."""

    async def create_run(
        self, run: RunSpec, *, request_id: str, correlation_id: str | None = None
    ) -> CreatedRun: ...

    async def find_runs(
        self, run: RunSpec, *, request_id: str, since: datetime, until: datetime
    ) -> list[RunStatus]:
        """Runs that this request may have created between ``since`` and ``until``: what
        the bridge looks for before it creates again after an unclear answer."""
        ...

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        """The runs among ``runs`` whose status changed after ``since``."""
        ...

    async def get_run(self, run: FollowedRun) -> RunStatus:
        """One run's status: the fallback when a poll has not reported it for long."""
        ...

    async def cancel_run(self, run: FollowedRun, options: CancelOptions | None) -> bool:
        """Ask for the run to be cancelled: True if the run API took the cancel, False if
        the run had already ended. An idempotent call."""
        ...

    async def aclose(self) -> None: ...
