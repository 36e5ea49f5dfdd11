"""What every run API backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from contracts import RunSpec, RunState, System


@dataclass(frozen=True)
class CreatedRun:
    run_id: str


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState | None
    """None when the backend's status is one the bridge does not know: it is kept raw."""
    backend_status: str
    message: str | None = None


class Backend(Protocol):
    """One configured target of one run API. Every call is a single attempt: retrying is
    the caller's decision, because only the caller knows whether a call may be repeated."""

    system: ClassVar[System]

    async def create_run(self, run: RunSpec, *, request_id: str) -> CreatedRun: ...

    async def get_run(self, run_id: str) -> RunStatus: ...

    async def cancel_run(self, run_id: str) -> None: ...

    async def aclose(self) -> None: ...
