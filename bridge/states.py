"""A run's states, published in order and recorded in the ledger.

Every change of a run's state goes through ``RunStates``: under the request's lock it
works out the states between the last one published and the one observed, publishes a
run-state-changed event for each, then records the last in the ledger. Publishing comes
first, so a crash in between repeats an event rather than losing one. An event's id
depends only on the request and the state, and its content only on what the ledger or the
run API records, so a repeat is identical and recognisable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from contracts import Reason, RunState, RunStateChangedV2

from ._locks import KeyedLocks
from .backends import RunStatus
from .ledger import Ledger, LedgerEntry
from .metrics import Metrics
from .outputs import OutputBuilder, event_id
from .publisher import Publisher

log = logging.getLogger(__name__)

StateListener = Callable[[LedgerEntry, RunState, datetime, str | None], None]
"""Told of each state published (not of repeats): lineage reporting. Must not block."""

_RANK = {
    RunState.QUEUED: 0,
    RunState.RUNNING: 1,
    RunState.CANCELLING: 2,
    RunState.SUCCEEDED: 3,
    RunState.FAILED: 3,
    RunState.CANCELLED: 3,
}


@dataclass(frozen=True)
class Step:
    """One state to publish, with what is known of the run in it."""

    state: RunState
    at: datetime
    backend_status: str | None = None
    backend_message: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    details: Mapping[str, str] | None = None

    def shaped(self) -> Step:
        """What an event in this state carries, the one rule for it: no start or details
        while QUEUED, an end and a duration only once terminal."""
        queued, final = self.state is RunState.QUEUED, self.state.is_terminal
        return replace(
            self,
            started_at=None if queued else self.started_at,
            details=None if queued else self.details,
            ended_at=self.ended_at if final else None,
            duration_ms=self.duration_ms if final else None,
        )


def _with_known(step: Step, started_at: datetime | None, details: Mapping[str, str] | None) -> Step:
    """A step carries the start time and details known so far, so that the event the
    ledger records is the event published, and a repeat of it is identical."""
    return replace(
        step, started_at=step.started_at or started_at, details=step.details or details
    ).shaped()


def steps(
    entry: LedgerEntry,
    status: RunStatus,
    *,
    now: datetime,
    words: Mapping[RunState, str] | None = None,
) -> list[Step]:
    """The states to publish to go from the state the ledger says was published to the
    one the run API reports. Pure.

    An event's content must not depend on when the run was looked at, so that one published
    again is identical: a state that is not terminal carries the backend's own word for it
    (``words``, e.g. ADF's ``InProgress`` for RUNNING) and no message; a terminal state
    carries what the run API reported.

    - a status the bridge does not know, or a state already published, gives nothing;
    - QUEUED comes first when nothing was published yet;
    - RUNNING is put in when the run has a start time but was first seen further on (a
      poll missed it), so a run that ran always shows RUNNING;
    - a state that would go back (RUNNING after SUCCEEDED) gives nothing: a run's state
      only moves forward, and the bridge stops following a run once it has ended.
    """
    target, current = status.state, entry.state
    if target is None or target == current or target not in _RANK:
        return []
    if current is not None and (current not in _RANK or _RANK[current] >= _RANK[target]):
        return []
    plan: list[Step] = []
    queued_at = entry.created_at or entry.intent_at
    words = words or {}
    if current is None and target is not RunState.QUEUED:
        plan.append(Step(RunState.QUEUED, queued_at, backend_status=words.get(RunState.QUEUED)))
    started = status.started_at
    if (
        started is not None
        and _RANK[target] > _RANK[RunState.RUNNING]
        and current in (None, RunState.QUEUED)
    ):
        plan.append(
            Step(
                RunState.RUNNING,
                started,
                backend_status=words.get(RunState.RUNNING),
                started_at=started,
                details=status.details,
            )
        )
    if target is RunState.QUEUED:
        at = queued_at
    elif target is RunState.RUNNING and started is not None:
        at = started
    elif target.is_terminal and status.ended_at is not None:
        at = status.ended_at
    else:
        at = now
    duration = status.duration_ms
    if duration is None and started is not None and status.ended_at is not None:
        duration = max(0, int((status.ended_at - started).total_seconds() * 1000))
    final = target.is_terminal
    plan.append(
        Step(
            target,
            at,
            backend_status=status.backend_status if final else words.get(target),
            backend_message=status.message if final else None,
            started_at=started,
            ended_at=status.ended_at,
            duration_ms=duration,
            details=status.details,
        ).shaped()
    )
    return plan


class RunStates:
    def __init__(
        self,
        ledger: Ledger,
        publisher: Publisher,
        outputs: OutputBuilder,
        *,
        topic: str,
        metrics: Metrics,
        clock: Callable[[], datetime],
        words: Mapping[str, Mapping[RunState, str]] | None = None,
        on_state: StateListener | None = None,
    ) -> None:
        self._words = words or {}
        self._on_state = on_state
        self._ledger = ledger
        self._publisher = publisher
        self._outputs = outputs
        self._topic = topic
        self._metrics = metrics
        self._now = clock
        self._locks = KeyedLocks()

    async def advance(self, partition: int, entry: LedgerEntry, status: RunStatus) -> LedgerEntry:
        """Publish the states between the ledger's and ``status``; returns the entry as it
        now stands (the ledger's, which may be newer than the one given)."""
        async with self._locks.hold(entry.request_id):
            current = self._ledger.get(partition, entry.request_id) or entry
            if status.state is None:
                self._metrics.unknown_statuses += 1
                log.warning(
                    "run %s of request %s has a status the bridge does not know (%r): "
                    "kept raw, still followed",
                    status.run_id,
                    entry.request_id,
                    status.backend_status,
                )
            plan = steps(current, status, now=self._now(), words=self._words_of(current))
            if not plan:
                return current
            previous, started = current.state, current.started_at
            details: Mapping[str, str] | None = current.details
            for planned in plan:
                step = _with_known(planned, started, details)
                await self._publish(current, step, previous)
                before, previous = previous, step.state
                started, details = step.started_at, step.details
            return await self._record(partition, current, step, before)

    async def created(self, partition: int, entry: LedgerEntry) -> LedgerEntry:
        """QUEUED, right after run-created: every run starts there, whatever comes next."""
        async with self._locks.hold(entry.request_id):
            current = self._ledger.get(partition, entry.request_id) or entry
            if current.state is not None:
                return current
            step = Step(
                RunState.QUEUED,
                current.created_at or current.intent_at,
                backend_status=self._words_of(current).get(RunState.QUEUED),
            )
            await self._publish(current, step, None)
            return await self._record(partition, current, step, None)

    async def decide(
        self, partition: int, entry: LedgerEntry, state: RunState, reason: Reason
    ) -> LedgerEntry:
        """A state the bridge decides rather than observes (e.g. UNKNOWN when it stops
        following a run), published with its reason. A run already ended keeps its end."""
        async with self._locks.hold(entry.request_id):
            current = self._ledger.get(partition, entry.request_id) or entry
            if current.state is not None and current.state.is_terminal:
                return current
            step = _with_known(
                Step(state, self._now(), backend_status=self._words_of(current).get(state)),
                current.started_at,
                current.details,
            )
            await self._publish(current, step, current.state, reason=reason)
            return await self._record(partition, current, step, current.state, reason=reason)

    async def republish(self, entry: LedgerEntry) -> None:
        """The current state's event again, identical to the first (after a restart or a
        hand-over, in case it was published but not recorded)."""
        if entry.state is None or (entry.run_id is None and not entry.cancelled_before_start):
            return
        async with self._locks.hold(entry.request_id):
            step = Step(
                entry.state,
                entry.state_at or entry.updated_at,
                backend_status=entry.backend_status,
                backend_message=entry.backend_message,
                started_at=entry.started_at,
                ended_at=entry.ended_at,
                duration_ms=entry.duration_ms,
                details=entry.details,
            ).shaped()
            reason = (
                Reason(code=entry.reason_code, message=entry.reason_message or "")
                if entry.reason_code is not None
                else None
            )
            await self._publish(entry, step, entry.previous_state, reason=reason, repeat=True)
            self._metrics.state_events_repeated += 1

    def _words_of(self, entry: LedgerEntry) -> Mapping[RunState, str]:
        return self._words.get(entry.target or "", {})

    async def _record(
        self,
        partition: int,
        entry: LedgerEntry,
        step: Step,
        previous: RunState | None,
        *,
        reason: Reason | None = None,
    ) -> LedgerEntry:
        updated = entry.with_(
            state=step.state,
            previous_state=previous,
            state_at=step.at,
            backend_status=step.backend_status,
            backend_message=step.backend_message,
            started_at=step.started_at or entry.started_at,
            ended_at=step.ended_at or entry.ended_at,
            duration_ms=step.duration_ms,
            details=dict(step.details) if step.details else entry.details,
            # the reason of the state published now, if any: a repeat carries it again
            reason_code=reason.code if reason is not None else None,
            reason_message=reason.message if reason is not None else None,
            updated_at=self._now(),
        )
        await self._ledger.put(partition, updated)
        return updated

    async def _publish(
        self,
        entry: LedgerEntry,
        step: Step,
        previous: RunState | None,
        *,
        reason: Reason | None = None,
        repeat: bool = False,
    ) -> None:
        event = RunStateChangedV2(
            request_id=entry.request_id,
            correlation_id=entry.correlation_id,
            target=entry.target,
            system=entry.system,
            run_id=entry.run_id,
            state=step.state,
            previous_state=previous,
            terminal=step.state.is_terminal or step.state is RunState.UNKNOWN,
            backend_status=step.backend_status,
            backend_message=step.backend_message,
            reason=reason,
            started_at=step.started_at,
            ended_at=step.ended_at,
            duration_ms=step.duration_ms,
            details=dict(step.details) if step.details else None,
            at=step.at,
        )
        output = self._outputs.event(
            self._topic,
            entry.request_key or str(entry.request_id).encode(),
            event,
            event_id=event_id(RunStateChangedV2.event_type, entry.request_id, step.state),
            subject=str(entry.request_id),
            correlation_id=entry.correlation_id,
            time=step.at,
        )
        await self._publisher.send(output, about=f"request {entry.request_id}")
        self._metrics.state_events += 1
        if self._on_state is not None and not repeat:
            self._on_state(entry, step.state, step.at, step.backend_message)
